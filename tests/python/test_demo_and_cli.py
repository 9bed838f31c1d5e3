"""The README's main job (./tqx demo) and the CLI, on real Fashion-MNIST data."""
import os
import re
import subprocess
import sys

import pytest

from torchquantx import cli
from torchquantx.data import DEFAULT_FASHION_MNIST_DIR, load_fashion_mnist

pytestmark = pytest.mark.skipif(not os.path.isdir(DEFAULT_FASHION_MNIST_DIR),
                                reason="Debian's dataset-fashion-mnist is not installed")


def test_fashion_mnist_loader():
    x, y = load_fashion_mnist("test")
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,)
    assert int(y.min()) == 0 and int(y.max()) == 9
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1.0) < 0.05  # normalised
    with pytest.raises(ValueError, match="split should be 'train' or 'test'"):
        load_fashion_mnist("validation")
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_fashion_mnist("test", root="/nonexistent")


def test_demo_quantizes_with_small_accuracy_loss(capsys):
    assert cli.main(["demo", "--train-images", "6000", "--calib-batches", "4", "--no-progress"]) == 0
    out = capsys.readouterr().out
    acc = re.search(r"test accuracy\s+([\d.]+) %\s+([\d.]+) %", out)
    assert acc, out
    fp32, int8 = float(acc.group(1)), float(acc.group(2))
    assert fp32 > 70.0, out                     # the model learned something
    assert abs(fp32 - int8) < 2.0, out          # int8 stays close
    size = re.search(r"\(([\d.]+)x smaller\)", out)
    assert size and float(size.group(1)) > 3.5, out
    kernels = re.search(r"target quantx: (\d+) int8 kernels, (\d+) float ops", out)
    assert kernels and int(kernels.group(1)) == 6 and int(kernels.group(2)) == 0, out


def test_cli_reports_bad_arguments(capsys):
    assert cli.main(["nonsense"]) == 2
    assert "unknown command 'nonsense'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["demo", "--epochs", "0"])
    assert "--epochs and --calib-batches should be >= 1, got 0" in capsys.readouterr().err


def test_module_entry_point_info():
    out = subprocess.run([sys.executable, "-m", "torchquantx", "info"], check=True, text=True,
                         stdout=subprocess.PIPE).stdout
    assert "kernel ISA: detected" in out
