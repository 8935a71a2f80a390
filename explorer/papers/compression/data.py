"""Data for conceptual compression: real photos (Debian wallpaper packages, or any folder of photos given with
``train compression --data DIR``), Fashion-MNIST, image files.

Photos come from ``plasma-workspace-wallpapers`` (/usr/share/wallpapers/<Name>/contents/images/) and
``mate-backgrounds`` (/usr/share/backgrounds/mate/nature/). Only the photographic wallpapers are used (the
other plasma wallpapers are artwork). Four photos are held out and never trained on. Photos are scaled down
(short side ``PHOTO_SHORT_SIDE`` pixels, about 1/4 of the original) so that a 48x48 crop holds real structure.

No torch at import time (the panel imports the image helpers on the GUI side).
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from explorer.core.errors import UserError

PLASMA_DIR = Path("/usr/share/wallpapers")
MATE_DIR = Path("/usr/share/backgrounds/mate/nature")
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

PLASMA_PHOTOS = (
    "BytheWater",
    "ColdRipple",
    "DarkestHour",
    "EveningGlow",
    "FallenLeaf",
    "Grey",
    "Kite",
    "OneStandsOut",
    "Path",
    "summer_1am",
)
MATE_PHOTOS = (
    "Aqua",
    "Blinds",
    "Dune",
    "FreshFlower",
    "Garden",
    "GreenMeadow",
    "LadyBird",
    "RainDrops",
    "Storm",
    "TwoWings",
    "Wood",
    "YellowFlower",
)
# Held out: never seen in training; the eval set and the bundled samples come from these.
HOLDOUT = ("Kite", "Path", "Garden", "LadyBird")
PHOTO_SHORT_SIDE = 400
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

APT_HINT = "apt-get install -y plasma-workspace-wallpapers mate-backgrounds"


def photo_files(plasma_dir: Path = PLASMA_DIR, mate_dir: Path = MATE_DIR) -> dict[str, Path]:
    """{name: path} of the photographic wallpapers that are installed (largest plasma rendition)."""
    found: dict[str, Path] = {}
    for name in PLASMA_PHOTOS:
        folder = Path(plasma_dir) / name / "contents" / "images"
        if not folder.is_dir():
            continue
        files = sorted(folder.glob("*.jpg")) + sorted(folder.glob("*.png"))

        def area(p: Path) -> int:
            try:
                w, h = p.stem.split("x")
                return int(w) * int(h)
            except ValueError:
                return 0

        if files:
            found[name] = max(files, key=area)
    for name in MATE_PHOTOS:
        p = Path(mate_dir) / f"{name}.jpg"
        if p.is_file():
            found[name] = p
    return found


def split_photos(plasma_dir: Path = PLASMA_DIR, mate_dir: Path = MATE_DIR) -> tuple[dict[str, Path], dict[str, Path]]:
    """(train, holdout) photo dicts; raises UserError when the packages are missing."""
    files = photo_files(plasma_dir, mate_dir)
    if len(files) < 6:
        raise UserError(f"only {len(files)} training photos found; install them with: {APT_HINT}")
    train = {k: v for k, v in files.items() if k not in HOLDOUT}
    hold = {k: v for k, v in files.items() if k in HOLDOUT}
    return train, hold


def load_image(path: os.PathLike | str, channels: int = 3) -> np.ndarray:
    """Read an image file as uint8 (H, W, channels). Grey is replicated to RGB, alpha composited on white.
    Raises UserError for a missing, unreadable or corrupt file."""
    from explorer.core.validate import open_image

    return pil_to_array(open_image(path), channels)


def pil_to_array(im, channels: int = 3) -> np.ndarray:
    from PIL import Image

    if im.mode in ("RGBA", "LA", "P", "PA"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    if channels == 1:
        arr = np.asarray(im.convert("L"), dtype=np.uint8)[:, :, None]
    else:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(arr)


def resize_short_side(img: np.ndarray, short: int) -> np.ndarray:
    """Scale (antialiased) so that the short side is ``short`` pixels (only ever shrinks)."""
    from PIL import Image

    h, w = img.shape[:2]
    s = min(h, w)
    if s <= short:
        return img
    f = short / s
    size = (max(1, round(w * f)), max(1, round(h * f)))
    im = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
    out = np.asarray(im.resize(size, Image.LANCZOS), dtype=np.uint8)
    return out[:, :, None] if out.ndim == 2 else out


def fit_max_side(img: np.ndarray, max_side: int) -> tuple[np.ndarray, str | None]:
    """Scale down so that neither side exceeds ``max_side``; returns (image, note or None)."""
    from PIL import Image

    h, w = img.shape[:2]
    if max(h, w) <= max_side:
        return img, None
    f = max_side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    im = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
    out = np.asarray(im.resize(size, Image.LANCZOS), dtype=np.uint8)
    out = out[:, :, None] if out.ndim == 2 else out
    return out, f"scaled from {w}x{h} to {size[0]}x{size[1]}"


def load_photo_set(files: dict[str, Path], short_side: int = PHOTO_SHORT_SIDE) -> dict[str, np.ndarray]:
    return {name: _scaled(load_image(p), short_side) for name, p in sorted(files.items())}


def _scaled(img: np.ndarray, short_side: int | None) -> np.ndarray:
    return resize_short_side(img, short_side) if short_side else img


# ----- a folder of photos (train compression --data DIR) ---------------------------------------------------
def folder_images(folder: os.PathLike | str, exclude: Sequence[str] = ()) -> tuple[list[Path], list[Path]]:
    """(images, excluded): the image files under ``folder`` (recursively, by extension, hidden entries skipped),
    sorted; files whose name matches one of the ``exclude`` glob patterns are set aside (never trained on nor
    validated on: keep them for your own evaluation)."""
    import fnmatch

    d = Path(folder)
    if not d.is_dir():
        raise UserError(f"{d}: not a folder")
    found = sorted(
        p
        for p in d.rglob("*")
        if p.suffix.lower() in IMAGE_EXTS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(d).parts)
    )
    out, excluded = [], []
    for p in found:
        (excluded if any(fnmatch.fnmatch(p.name, pat) for pat in exclude) else out).append(p)
    if len(out) < 2:
        left = " left after --exclude" if excluded else ""
        raise UserError(
            f"{d}: {len(out)} image file(s) (PNG, JPEG, ...){left}; at least 2 are needed "
            "(one is held out for validation)"
        )
    return out, excluded


def name_hash(name: str) -> float:
    """A file name's place in [0, 1): the first 64 bits of its SHA-256, over 2**64."""
    import hashlib

    return int(hashlib.sha256(name.encode("utf-8")).hexdigest()[:16], 16) / 2.0**64


def split_by_name_hash(
    files: Sequence[Path], folder: os.PathLike | str, fraction: float
) -> tuple[dict[str, Path], dict[str, Path], str]:
    """(train, holdout, rule): a file is held out when the hash of its file name (not its folder: the same
    photo is held out wherever the folder lies or whichever parent folder is given) is below ``fraction``.
    At least one file is held out and at least one kept. Keys are paths relative to ``folder``."""
    root = Path(folder)
    keyed = {p.relative_to(root).as_posix(): p for p in files}
    h = {k: name_hash(p.name) for k, p in keyed.items()}
    hold = {k for k in keyed if h[k] < fraction}
    order = sorted(keyed, key=lambda k: (h[k], k))
    if not hold:
        hold = {order[0]}
    if len(hold) == len(keyed):
        hold.discard(order[-1])
    rule = f"held out when sha256(file name)[:16 hex] / 2**64 < {fraction:g} (at least one held out and one kept)"
    return ({k: keyed[k] for k in sorted(keyed) if k not in hold}, {k: keyed[k] for k in sorted(hold)}, rule)


def load_folder_set(
    files: dict[str, Path], folder: os.PathLike | str, short_side: int | None, log=None
) -> tuple[dict[str, np.ndarray], list[str]]:
    """({name: uint8 RGB image scaled to ``short_side``}, [unreadable names]): files that cannot be read as
    images are skipped with a note."""
    imgs: dict[str, np.ndarray] = {}
    bad: list[str] = []
    for name, p in sorted(files.items()):
        try:
            imgs[name] = _scaled(load_image(p), short_side)
        except UserError as exc:
            bad.append(name)
            if log is not None:
                log(f"skipped {exc}")
    return imgs, bad


class CropSampler:
    """Random square crops (with random horizontal flips) from a list of uint8 (H, W, C) images,
    each image drawn with probability proportional to its area."""

    def __init__(self, images: Sequence[np.ndarray], crop: int, what: str = "training") -> None:
        self.images = [im for im in images if im.shape[0] >= crop and im.shape[1] >= crop]
        if not self.images:
            raise UserError(f"no {what} image is at least {crop}x{crop} pixels")
        self.crop = crop
        areas = np.array([im.shape[0] * im.shape[1] for im in self.images], dtype=np.float64)
        self.p = areas / areas.sum()

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        c = self.crop
        out = np.empty((n, c, c, self.images[0].shape[2]), dtype=np.uint8)
        idx = rng.choice(len(self.images), size=n, p=self.p)
        for j, i in enumerate(idx):
            im = self.images[i]
            y = rng.integers(0, im.shape[0] - c + 1)
            x = rng.integers(0, im.shape[1] - c + 1)
            patch = im[y : y + c, x : x + c]
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            out[j] = patch
        return out  # (N, H, W, C)


class ArraySampler:
    """Minibatches drawn from a fixed uint8 array (N, H, W, C) (Fashion-MNIST)."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.images[rng.integers(0, len(self.images), size=n)]


def read_idx_images(path: os.PathLike | str) -> np.ndarray:
    """An idx3-ubyte(.gz) image file -> uint8 (N, H, W). The header is big-endian."""
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rb") as fh:
        raw = fh.read()
    magic, n, h, w = struct.unpack(">IIII", raw[:16])
    if magic != 2051:
        raise UserError(f"{p.name}: not an idx3 image file (magic {magic})")
    return np.frombuffer(raw, dtype=np.uint8, offset=16, count=n * h * w).reshape(n, h, w)


def fashion_mnist(root: Path = FASHION_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(train (60000, 28, 28, 1), test (10000, 28, 28, 1)) uint8."""
    root = Path(root)
    tr, te = root / "train-images-idx3-ubyte.gz", root / "t10k-images-idx3-ubyte.gz"
    if not tr.exists() or not te.exists():
        raise UserError(f"Fashion-MNIST not found in {root}; install it with: apt-get install -y dataset-fashion-mnist")
    return read_idx_images(tr)[..., None], read_idx_images(te)[..., None]


def list_images(folder: os.PathLike | str) -> list[Path]:
    d = Path(folder)
    if not d.is_dir():
        raise UserError(f"{d}: not a folder")
    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise UserError(f"{d}: no PNG or JPEG images in this folder")
    return files


def synthetic_image(height: int, width: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """A smooth, photo-like test image (gradients, blobs, an edge, mild noise): for tests only."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    yy /= max(1, height - 1)
    xx /= max(1, width - 1)
    img = np.zeros((height, width, channels))
    for c in range(channels):
        a, b, ph = rng.uniform(-1, 1, 3)
        img[..., c] = 0.5 + 0.25 * (a * xx + b * yy) + 0.1 * np.sin(6 * xx + 4 * yy + 6 * ph)
    for _ in range(3):
        cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.25)
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2) < r * r
        img[mask] = rng.uniform(0.1, 0.9, channels)
    img += rng.normal(0, 0.02, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
