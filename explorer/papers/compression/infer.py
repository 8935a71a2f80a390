"""Inference for the app and the CLI: conceptual compression of one image at every k, with baselines.

The rate of k iterations is sum_{t<=k} KL(q_t || p_t) in bits over the image's pixels: the ideal code length
that bits-back coding (or an entropy coder matched to the prior) would reach. It is computed along the
decoded trajectory, with the transmitted latents set to the posterior means. The remaining T - k
iterations take their latents from the learned prior (its mean for the reconstruction, samples for
"imagine the rest").
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from explorer.core.errors import UserError

from .baselines import jpeg2000_at_bpp, jpeg_at_bpp, psnr, ssim

PAPER = "compression"


def load(path, device="cpu"):
    from explorer.core.checkpoints import load_model

    from .model import build

    return load_model(path, PAPER, build, device)


def load_for_app(path, device):
    """SPEC.loader: (model, meta)."""
    return load(path, device)


def match_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (H, W, C) with C in {1, 3} -> the model's channel count."""
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == channels:
        return img
    if channels == 3:
        return np.repeat(img[:, :, :1], 3, axis=2)
    w = np.array([0.299, 0.587, 0.114])
    return np.clip(img[:, :, :3].astype(np.float64) @ w, 0, 255).round().astype(np.uint8)[:, :, None]


def _tensor(img: np.ndarray, model, device):
    import torch

    from .model import to_model_range

    x = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None]
    x = to_model_range(x).to(device)
    return model.pad(x)


def _image(canvas, hw) -> np.ndarray:
    from .model import to_uint8

    h, w = hw
    return to_uint8(canvas[0, :, :h, :w]).permute(1, 2, 0).cpu().numpy()


class Analysis:
    """Everything about one image under one model: rates, reconstructions for k = 0..T, and the state
    needed to draw samples for the iterations not sent."""

    def __init__(self, model, img: np.ndarray, device) -> None:
        import torch

        self.model, self.device = model, device
        self.image = match_channels(img, model.in_channels)
        self.height, self.width = self.image.shape[:2]
        x, self.hw = _tensor(self.image, model, device)
        with torch.no_grad():
            rec = model.reconstructions(x)
        self.enc = rec["encoded"]
        kl_bits = (rec["kl"][0] / math.log(2.0)).cpu().numpy().astype(np.float64)
        self.kl_bits = kl_bits  # per iteration, whole image
        self.kl_bpp = kl_bits / (self.height * self.width)
        self.rate_bpp = np.concatenate([[0.0], np.cumsum(self.kl_bpp)])  # index k
        self.recons = {k: _image(c, self.hw) for k, c in rec["canvas"].items()}
        self.T = model.iterations

    def point(self, k: int) -> dict[str, Any]:
        r = self.recons[k]
        return {
            "k": k,
            "bpp": float(self.rate_bpp[k]),
            "bits": float(self.rate_bpp[k] * self.height * self.width),
            "psnr": psnr(self.image, r),
            "ssim": ssim(self.image, r),
        }

    def samples(self, k: int, n: int = 4, seed: int = 0, temperature: float = 1.0) -> list[np.ndarray]:
        """n completions: the first k iterations as sent, the rest sampled from the learned prior."""
        import torch

        g = torch.Generator(device="cpu").manual_seed(seed)
        out = []
        for _ in range(n):
            st = self.enc["states"][k]
            if self.device is not None and torch.device(self.device).type != "cpu":
                c = self.model.continue_from(st, k, sample=True, temperature=temperature, generator=None)
            else:
                c = self.model.continue_from(st, k, sample=True, temperature=temperature, generator=g)
            out.append(_image(c, self.hw))
        return out


def baselines_at(image: np.ndarray, bpp: float) -> dict[str, Any]:
    """JPEG and JPEG 2000 of ``image`` at (about) ``bpp`` bits per pixel."""
    if bpp <= 0:
        return {"jpeg": None, "jpeg2000": None}
    return {"jpeg": jpeg_at_bpp(image, bpp), "jpeg2000": jpeg2000_at_bpp(image, bpp)}


def analyse_points(model, img: np.ndarray, device, ks: list[int] | None = None, token=None) -> Iterator[dict[str, Any]]:
    """Yield one record per k (1..T by default): model point plus JPEG and JPEG 2000 at the same bpp."""
    an = Analysis(model, img, device)
    for k in ks or range(1, an.T + 1):
        if token is not None:
            token.check()
        p = an.point(k)
        b = baselines_at(an.image, p["bpp"])
        for name in ("jpeg", "jpeg2000"):
            r = b[name]
            p[f"{name}_bpp"] = r.bpp if r else None
            p[f"{name}_psnr"] = r.psnr if r else None
            p[f"{name}_ssim"] = r.ssim if r else None
        yield p


def compress_file(model, image_path, k: int, out: Path, device, max_side: int = 1024) -> dict[str, Any]:
    from PIL import Image

    from .data import fit_max_side, load_image

    T = model.iterations
    if not 1 <= k <= T:
        raise UserError(f"--iterations must be between 1 and {T} for this model (got {k})")
    img = load_image(image_path, channels=model.in_channels)
    img, note = fit_max_side(img, max_side)
    an = Analysis(model, img, device)
    p = an.point(k)
    rec = an.recons[k]
    out = Path(out)
    from explorer.core.validate import atomic_output

    ext = out.suffix.lower()
    Image.init()
    if ext not in Image.EXTENSION:
        raise UserError(f"{out.name}: unknown image type '{ext or '(none)'}' (use .png, .jpg, ...)")
    with atomic_output(out, "image file") as tmp:
        Image.fromarray(rec[:, :, 0] if rec.shape[2] == 1 else rec).save(tmp, format=Image.EXTENSION[ext])
    return {
        "image": str(image_path),
        "out": str(out),
        "width": an.width,
        "height": an.height,
        "k": k,
        "iterations": T,
        "bpp": p["bpp"],
        "bytes": p["bits"] / 8.0,
        "psnr": p["psnr"],
        "ssim": p["ssim"],
        "rate": "ideal code length (sum of KL_1..k, bits-back)",
        "note": note,
    }
