"""Reference Fashion-MNIST models and data: the shipped checkpoints script and keep their accuracy, the
loaders are deterministic and reject bad arguments, and the training script still runs."""
from __future__ import annotations

import importlib.util
import json
import os
import sys

import pytest
import torch

from torchquantx import models
from torchquantx.data import calibration_subset, fashion_mnist_loader

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MIN_ACCURACY = 0.91


@pytest.fixture(scope="module")
def test_set():
    return list(fashion_mnist_loader("test", batch_size=1000))


@pytest.mark.parametrize("name", models.reference_names())
def test_reference_model_scripts_and_reaches_accuracy(name, test_set):
    model = models.load_reference(name)
    assert not model.training
    scripted = torch.jit.script(model)
    x0 = test_set[0][0][:8]
    with torch.no_grad():
        torch.testing.assert_close(scripted(x0), model(x0))
    # Frozen (BatchNorm folded) and channels-last: the 10k images take about half the time.
    fast = torch.jit.freeze(torch.jit.script(model.to(memory_format=torch.channels_last)))
    correct = 0
    with torch.no_grad():
        for x, y in test_set:
            correct += int((fast(x.contiguous(memory_format=torch.channels_last)).argmax(1) == y).sum())
    accuracy = correct / sum(y.numel() for _, y in test_set)
    assert accuracy >= MIN_ACCURACY, f"{name}: {accuracy:.4f} on the 10k test set"


@pytest.mark.parametrize("name", models.reference_names())
def test_checkpoint_small_and_recorded(name):
    path = models.checkpoint_path(name)
    assert os.path.getsize(path) < 2_000_000
    with open(os.path.join(models.CHECKPOINT_DIR, "training_record.json")) as f:
        record = json.load(f)[name]
    assert record["checkpoint"] == os.path.basename(path)
    assert record["test_accuracy"] >= MIN_ACCURACY and record["test_images"] == 10000


def test_load_reference_errors_and_random_init():
    with pytest.raises(ValueError, match="unknown reference model 'vgg'; valid names: mobilenet, resnet"):
        models.load_reference("vgg")
    model = models.load_reference("resnet", pretrained=False)
    assert not model.training
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_loader_batches():
    loader = fashion_mnist_loader("test", batch_size=64, limit=200)
    batches = list(loader)
    assert len(loader) == len(batches) == 4
    assert [x.shape[0] for x, _ in batches] == [64, 64, 64, 8]
    x, y = batches[0]
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= int(y.min()) and int(y.max()) <= 9
    assert len(fashion_mnist_loader("train", batch_size=1000)) == 60


def test_loader_shuffle_is_seeded():
    def first_labels(seed):
        return next(iter(fashion_mnist_loader("train", 32, shuffle=True, limit=500, seed=seed)))[1]

    assert torch.equal(first_labels(3), first_labels(3))
    assert not torch.equal(first_labels(3), first_labels(4))
    plain = torch.cat([y for _, y in fashion_mnist_loader("train", 32, limit=500)])
    shuffled = torch.cat([y for _, y in fashion_mnist_loader("train", 32, shuffle=True, limit=500)])
    assert not torch.equal(plain, shuffled) and torch.equal(plain.sort().values, shuffled.sort().values)


def test_calibration_subset_is_fixed():
    a = calibration_subset(64, seed=0)
    assert a.shape == (64, 1, 28, 28)
    assert torch.equal(a, calibration_subset(64, seed=0))
    assert not torch.equal(a, calibration_subset(64, seed=1))
    # The first images of a larger subset are the same draw.
    assert torch.equal(calibration_subset(128, seed=0)[:64], a)


@pytest.mark.parametrize("call, message", [
    (lambda: fashion_mnist_loader("val"), "split should be 'train' or 'test', got 'val'"),
    (lambda: fashion_mnist_loader("test", batch_size=0), "batch_size should be a positive int, got 0"),
    (lambda: fashion_mnist_loader("test", limit=-5), "limit should be a positive int or None, got -5"),
    (lambda: calibration_subset(0), "n should be a positive int, got 0"),
    (lambda: calibration_subset(60001), "n should be at most 60000"),
])
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_training_script_runs_a_tiny_epoch(tmp_path, capsys, monkeypatch):
    # The script sets OMP_WAIT_POLICY and extends sys.path when imported: undone after the test.
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setattr(sys, "path", list(sys.path))
    path = os.path.join(ROOT, "scripts", "train_reference.py")
    spec = importlib.util.spec_from_file_location("train_reference", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    threads = torch.get_num_threads()
    try:
        assert script.main(["--model", "resnet", "--epochs", "1", "--limit", "128", "--batch-size", "64",
                            "--out", str(tmp_path), "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert "resnet epoch 1/1:" in capsys.readouterr().out
    model = models.FashionResNet()
    model.load_state_dict(torch.load(tmp_path / "fashion_resnet.pt"))
    record = json.loads((tmp_path / "training_record.json").read_text())["resnet"]
    assert record["epochs"] == 1 and record["train_images"] == 128 and record["seed"] == 0
