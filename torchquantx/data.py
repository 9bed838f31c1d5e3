"""Fashion-MNIST from the idx files Debian's dataset-fashion-mnist package installs (no downloads): tensors,
DataLoaders for training and evaluation, and a fixed calibration subset."""
from __future__ import annotations

import gzip
import os
import functools
import struct
from typing import Optional, Tuple

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

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


@functools.lru_cache(maxsize=4)
def _cached(split: str, root: str) -> Tuple[torch.Tensor, torch.Tensor]:
    # Shared by the loaders below, which only index it (indexing copies): decoding 60k images takes a while.
    return load_fashion_mnist(split, root)


def _check_count(fn: str, arg: str, value: object, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{fn}: {arg} should be a positive int{' or None' if allow_none else ''}, got {value!r}")


def fashion_mnist_loader(split: str = "train", batch_size: int = 256, shuffle: bool = False,
                         limit: Optional[int] = None, seed: int = 0, drop_last: bool = False,
                         root: str = DEFAULT_FASHION_MNIST_DIR) -> DataLoader:
    """A DataLoader of (images B x 1 x 28 x 28 float32 normalised, labels B int64) batches.

    ``limit`` keeps the first ``limit`` examples of the split (before shuffling). With ``shuffle`` the
    order is drawn from a generator seeded with ``seed``: iterating the same loader again gives the next
    epoch's order, and a new loader with the same seed repeats the sequence. Works directly as
    ``calibrate(prepared, fashion_mnist_loader("train", 32, shuffle=True), num_batches=16)``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"fashion_mnist_loader: split should be 'train' or 'test', got {split!r}")
    _check_count("fashion_mnist_loader", "batch_size", batch_size)
    _check_count("fashion_mnist_loader", "limit", limit, allow_none=True)
    images, labels = _cached(split, root)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    dataset = TensorDataset(images, labels)
    if shuffle:
        order = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        order = SequentialSampler(dataset)
    # Whole batches are sliced out of the tensors in one indexing op (batch_size=None: no per-image collate).
    return DataLoader(dataset, sampler=BatchSampler(order, batch_size, drop_last), batch_size=None)


def calibration_subset(n: int = 512, seed: int = 0, root: str = DEFAULT_FASHION_MNIST_DIR) -> torch.Tensor:
    """``n`` training images (n x 1 x 28 x 28, normalised) drawn without replacement by ``seed``: the same on
    every call and machine. Split it into batches for calibrate(): ``calibration_subset(512).split(32)``."""
    _check_count("calibration_subset", "n", n)
    images, _ = _cached("train", root)
    if n > images.shape[0]:
        raise ValueError(f"calibration_subset: n should be at most {images.shape[0]} (the training set), got {n}")
    index = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return images.index_select(0, index)
