"""The ways people get at torchquantx: torch.ops.load_library from plain PyTorch, pip install into
a venv, and find_package(TorchQuantX) from a C++-only LibTorch application."""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import torch

import torchquantx

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("TQX_BUILD_DIR", os.path.join(ROOT, "build"))


def run(cmd, **kw):
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n{res.stdout[-4000:]}"
    return res.stdout


def test_load_library_from_plain_pytorch(tmp_path):
    script = textwrap.dedent(f"""
        import sys, torch
        torch.ops.load_library({torchquantx.library_path()!r})
        assert "torchquantx" not in sys.modules
        q = torch.ops.quantx.quantize_per_tensor(torch.tensor([0.25, 0.75, -9.0]), 0.5, 3, torch.quint8)
        print(q.tolist())
    """)
    out = run([sys.executable, "-c", script], cwd=tmp_path)
    assert out.strip().splitlines()[-1] == "[3, 5, 0]"


def test_pip_install_into_venv(tmp_path):
    # The installed copy must be the one imported: no source tree on the path.
    clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
    py = str(venv / "bin" / "python")
    # --no-index: this machine reaches no PyPI; torch comes from the system site-packages.
    run([py, "-m", "pip", "install", "--no-build-isolation", "--no-index", "--no-deps", "-q", ROOT],
        cwd=tmp_path, env={**clean_env, "TQX_CMAKE_BUILD_DIR": os.path.join(BUILD, "pip-test")})
    out = run([py, "-c", "import torchquantx, torch; print(torchquantx.library_path()); "
                         "print(torch.ops.quantx.quant_range(torch.qint8))"], cwd=tmp_path, env=clean_env)
    lines = out.strip().splitlines()
    assert lines[-2].startswith(str(venv)), lines
    assert lines[-1] == "(-128, 127)"
    out = run([str(venv / "bin" / "torchquantx"), "info"], cwd=tmp_path, env=clean_env)
    assert "kernel ISA" in out


class SmallNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


@pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("ninja") is None, reason="needs cmake and ninja")
def test_cmake_package_for_cpp_users(tmp_path):
    """No Python at run time: the consumer loads a saved int8 model, and quantizes a float one."""
    torch.manual_seed(0)
    model = SmallNet().eval()
    prepared = torchquantx.prepare(model)
    torchquantx.calibrate(prepared, [torch.randn(2, 3, 16, 16) for _ in range(4)], progress=False)
    qmodel = torchquantx.convert(prepared)
    torch.jit.save(qmodel, str(tmp_path / "int8.pt"))
    torch.jit.save(torch.jit.script(model), str(tmp_path / "fp32.pt"))
    expected = qmodel(torch.ones(1, 3, 16, 16)).flatten()
    prefix = tmp_path / "prefix"
    run(["cmake", "--install", BUILD, "--prefix", str(prefix)])
    assert (prefix / "include" / "torchquantx" / "api.h").exists()
    consumer = tmp_path / "consumer"
    run(["cmake", "-S", os.path.join(ROOT, "tests", "cpp", "consumer"), "-B", str(consumer), "-G", "Ninja",
         f"-DCMAKE_PREFIX_PATH={prefix}", "-DCMAKE_BUILD_TYPE=Release"])
    run(["cmake", "--build", str(consumer)])
    out = run([str(consumer / "consumer"), str(tmp_path / "int8.pt"), str(tmp_path / "fp32.pt")],
              env={"PATH": os.environ.get("PATH", ""), "LD_LIBRARY_PATH": str(prefix / "lib")})
    lines = out.strip().splitlines()
    assert lines[-1] == "OK", out
    got = [float(v) for v in next(l for l in lines if l.startswith("int8 output:")).split(":")[1].split()]
    # %.9g round-trips float32 exactly: the C++ run is bit-identical to Python's.
    assert torch.equal(torch.tensor(got, dtype=torch.float32), expected), (got, expected)
    assert any(l.startswith("C++ pipeline SQNR") for l in lines)
