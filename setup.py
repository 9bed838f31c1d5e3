"""pip install --no-build-isolation .  — drives the one CMake build; compiles nothing by itself."""
from __future__ import annotations

import os
import subprocess
import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


class CMakeBuild(build_ext):
    """Builds libtorchquantx.so and torchquantx._C with CMake/Ninja into the wheel's package dir."""

    def build_extension(self, ext: Extension) -> None:
        out_dir = os.path.dirname(os.path.abspath(self.get_ext_fullpath(ext.name)))
        build_dir = os.environ.get("TQX_CMAKE_BUILD_DIR", os.path.join(ROOT, "build", "setuptools"))
        configure = [
            "cmake", "-S", ROOT, "-B", build_dir, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
            f"-DTQX_PACKAGE_OUTPUT_DIR={out_dir}", f"-DPython3_EXECUTABLE={sys.executable}",
            "-DTQX_BUILD_TESTS=OFF", "-DTQX_BUILD_BENCH=OFF",
        ]
        subprocess.check_call(configure)
        subprocess.check_call(["cmake", "--build", build_dir, "--target", "torchquantx", "_C"])


setup(
    name="torchquantx",
    version="0.1.0",
    description="Automatic int8 quantization of PyTorch models on CPUs, in C++ over TorchScript",
    packages=find_packages(include=["torchquantx", "torchquantx.*"]),
    package_data={"torchquantx": ["checkpoints/*.pt", "checkpoints/*.json"]},  # reference models' weights
    ext_modules=[Extension("torchquantx._C", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.9",
    install_requires=["torch"],
    entry_points={"console_scripts": ["torchquantx=torchquantx.cli:main"]},
    zip_safe=False,
)
