"""Fashion-MNIST from the idx files Debian's dataset-fashion-mnist package installs (no downloads)."""
from __future__ import annotations

import gzip
import os
import struct
from typing import Tuple

import torch

DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")
# Mean and standard deviation of the training images' pixels in [0, 1].
MEAN, STD = 0.2860, 0.3530


def _read_idx(path: str) -> torch.Tensor:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an idx file of unsigned bytes (magic {data[:4].hex()})")
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    expected = 4 + 4 * ndim
    count = 1
    for d in dims:
        count *= d
    if len(data) != expected + count:
        raise ValueError(f"{path}: header says {dims} ({count} bytes) but the file holds {len(data) - expected}")
    return torch.frombuffer(bytearray(data[expected:]), dtype=torch.uint8).reshape(dims)


def _find(root: str, stem: str) -> str:
    for name in (stem + ".gz", stem):
        path = os.path.join(root, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}[.gz] not found in {root}. Install Debian's dataset-fashion-mnist package "
        f"(scripts/install-deps.sh does) or pass --data DIR with the idx files")


def load_fashion_mnist(split: str = "train", root: str = DEFAULT_FASHION_MNIST_DIR) -> Tuple[torch.Tensor, torch.Tensor]:
    """Returns (images N x 1 x 28 x 28 float32, normalised; labels N int64) for split 'train' or 'test'."""
    if split not in ("train", "test"):
        raise ValueError(f"load_fashion_mnist: split should be 'train' or 'test', got {split!r}")
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(_find(root, f"{prefix}-images-idx3-ubyte"))
    labels = _read_idx(_find(root, f"{prefix}-labels-idx1-ubyte"))
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"Fashion-MNIST {split}: {images.shape[0]} images but {labels.shape[0]} labels")
    x = images.to(torch.float32).div_(255.0).sub_(MEAN).div_(STD).unsqueeze(1)
    return x, labels.to(torch.int64)
