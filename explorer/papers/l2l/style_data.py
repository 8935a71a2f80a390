"""Images of the neural-art problems: content photos and style images, as float tensors (3, S, S) in [0, 1].

Content photos for meta-training and measuring are research images, read from ``$NIPS_EXPLORER_PHOTOS`` (default
``../shared/data/photos`` beside the checkout; never shipped): the BSDS500 split decides their role, ``train_``
photos for meta-training, ``val_`` photos for tuning the baselines' rates, ``test_`` photos for the held-out
numbers. Style images ship in ``resources/l2l/style/`` (crops of Debian-packaged artwork and GIMP patterns, see its
LICENSES.md): one for meta-training (as in the paper), the others held out. The tab's content photos are the
compression tab's Debian wallpapers (``resources/compression/*.png``).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from explorer.core.errors import UserError
from explorer.core.paths import ROOT_DIR, resources_dir

TRAIN_STYLES = ("disco",)  # the meta-training style (the paper used one)
HELD_OUT_STYLES = ("colorwhirl", "meltedcolors", "abstract_flowers", "electric_blue_ribbons", "flow")
STYLES = TRAIN_STYLES + HELD_OUT_STYLES
STYLE_LABELS = {
    "disco": "Disco (GIMP pattern)",
    "colorwhirl": "Colour whirl (GIMP pattern)",
    "meltedcolors": "Melted colours (GIMP pattern)",
    "abstract_flowers": "Abstract flowers (GIMP pattern)",
    "electric_blue_ribbons": "Electric blue ribbons (GIMP pattern)",
    "flow": "Flow (KDE Plasma wallpaper)",
}
# the roles of the BSDS500 photos (their file-name prefixes)
SPLIT_PREFIX = {"train": "train_", "tune": "val_", "test": "test_"}
TAB_PHOTOS = ("garden", "kite", "ladybird", "path")


def photos_dir() -> Path:
    env = os.environ.get("NIPS_EXPLORER_PHOTOS")
    return Path(env) if env else ROOT_DIR.parent / "shared" / "data" / "photos"


@lru_cache(maxsize=4)
def photo_files(split: str) -> tuple[Path, ...]:
    """The content photos of ``split`` ('train', 'tune' or 'test'), sorted by name."""
    d = photos_dir()
    sub = d / "bsds500" if (d / "bsds500").is_dir() else d
    files = tuple(sorted(p for p in sub.glob(SPLIT_PREFIX[split] + "*") if p.suffix.lower() in (".jpg", ".png")))
    if not files:
        raise UserError(
            f"no {SPLIT_PREFIX[split]}* content photos in {sub} (set NIPS_EXPLORER_PHOTOS to a folder of BSDS500 "
            "photos)"
        )
    return files


def to_tensor(im, size: int) -> torch.Tensor:
    """A PIL image scaled (short side ``size``) and centre-cropped to (3, size, size) in [0, 1]."""
    from PIL import Image

    im = im.convert("RGB")
    w, h = im.size
    s = size / min(w, h)
    im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    im = im.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


@lru_cache(maxsize=256)
def _photo(path: str, size: int) -> torch.Tensor:
    from explorer.core.validate import open_image

    return to_tensor(open_image(path), size)


def content_image(split: str, index: int, size: int) -> torch.Tensor:
    """Content photo ``index`` (modulo the split's count) of ``split`` at ``size``x``size``."""
    files = photo_files(split)
    return _photo(str(files[int(index) % len(files)]), int(size)).clone()


def style_dir() -> Path:
    return resources_dir() / "l2l" / "style"


@lru_cache(maxsize=32)
def _style(name: str, size: int) -> torch.Tensor:
    from explorer.core.validate import open_image

    if name not in STYLES:
        raise UserError(f"unknown style {name!r} (one of {', '.join(STYLES)})")
    return to_tensor(open_image(style_dir() / f"{name}.png"), size)


def style_image(name: str, size: int) -> torch.Tensor:
    """Bundled style ``name`` (a 256x256 crop) scaled to ``size``x``size``."""
    return _style(name, int(size)).clone()


def tab_photo_path(name: str) -> Path:
    return resources_dir() / "compression" / f"{name}.png"


def open_content(path: os.PathLike | str, size: int) -> torch.Tensor:
    """Any image file as a content image (one clear UserError line on a bad file)."""
    from explorer.core.validate import open_image

    return to_tensor(open_image(path), int(size))
