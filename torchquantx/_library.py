"""Finds and loads libtorchquantx.so (registers torch.ops.quantx and torch.classes.quantx)."""
from __future__ import annotations

import glob
import os

import torch

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_loaded_path: str | None = None


def library_path() -> str:
    """Path of libtorchquantx.so, for ``torch.ops.load_library`` in processes without this package."""
    candidates = sorted(glob.glob(os.path.join(_PACKAGE_DIR, "libtorchquantx.so*")), key=len)
    if not candidates:
        raise ImportError(
            f"torchquantx: libtorchquantx.so was not found in {_PACKAGE_DIR}. Build it first: run "
            "`./tqx build` in the source tree, or install the package with "
            "`pip install --no-build-isolation .`"
        )
    return candidates[0]


def load() -> str:
    """Loads the operator library once and returns its path."""
    global _loaded_path
    if _loaded_path is None:
        path = library_path()
        torch.ops.load_library(path)
        _loaded_path = path
    return _loaded_path
