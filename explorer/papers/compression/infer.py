"""Inference for the app and the CLI: conceptual compression of one image at every k, with the peer codecs.

:class:`CodecAnalysis` (what the tab shows): the real .cdraw files of k = 1..T iterations (:mod:`.codec`), their
sizes in bytes and the pictures they decode to, and samples for the iterations not sent ("imagine the rest":
the first k iterations as decoded from the file, the rest drawn from the learned prior).

:class:`Analysis`: the continuous model's ideal code length, sum_{t<=k} KL(q_t || p_t) in bits along the trajectory
of the posterior means (what bits-back coding would approach; no file has that size), for comparison only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .baselines import PEERS, largest_within, psnr, ssim

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


class CodecAnalysis:
    """The .cdraw files of one image along its rate-distortion envelope (:func:`.codec.rd_files`: over k = 1..T
    and a few quantisation steps, each file better than every smaller one), smallest first, decoded. ``files[i]``,
    ``recons[i]`` and ``point(i)`` are indexed by the position i = 0..n-1."""

    def __init__(self, model, img: np.ndarray, token=None, name: str = "unnamed", max_files: int = 12) -> None:
        from .codec import _cpu_model, rd_files

        self.model = _cpu_model(model)
        self.image = match_channels(img, model.in_channels)
        self.height, self.width = self.image.shape[:2]
        self.T = model.iterations
        self.files = rd_files(self.model, self.image, name=name, token=token, max_files=max_files)
        self.recons = [c.image for c in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def point(self, i: int) -> dict[str, Any]:
        c = self.files[i]
        return {
            "k": c.header.k,
            "step": c.header.step,
            "bytes": c.nbytes,
            "bpp": c.bpp,
            "psnr": psnr(self.image, c.image),
            "ssim": ssim(self.image, c.image),
        }

    def samples(self, i: int, n: int = 4, seed: int = 0, temperature: float = 1.0) -> list[np.ndarray]:
        """n completions of file i: its k iterations as decoded, the rest sampled from the learned prior."""
        import torch

        g = torch.Generator(device="cpu").manual_seed(seed)
        c = self.files[i]
        hw = (self.height, self.width)
        with torch.no_grad():
            return [
                _image(
                    self.model.continue_from(c.state, c.header.k, sample=True, temperature=temperature, generator=g),
                    hw,
                )
                for _ in range(n)
            ]


def peers_within(image: np.ndarray, max_bytes: int) -> dict[str, Any]:
    """JPEG, JPEG 2000, WebP and AVIF: each one's largest file of ``image`` of at most ``max_bytes`` bytes (None
    where its smallest file is larger)."""
    if max_bytes <= 0:
        return {name: None for name in PEERS}
    return {name: largest_within(name, image, int(max_bytes)) for name in PEERS}


# ----- the tab's worker jobs (plain Python, no Qt) -----------------------------------------------------------
def load_image_for_app(path: str, max_side: int) -> tuple[np.ndarray, str]:
    """An image file as RGB at most ``max_side`` pixels on its longer side, and a note on what was done to it."""
    from .data import fit_max_side, load_image

    img = load_image(path, channels=3)
    return fit_max_side(img, max_side)


def analyse_for_app(model, img: np.ndarray, target_bpp: float, token=None):
    """Generator: yields ("model", CodecAnalysis, points) first, then ("baseline", k, {...}) for every file, the
    ones nearest ``target_bpp`` first, with progress in between. The codec runs on the CPU whatever the app's device
    (the file format is defined by its float32 arithmetic); the peers are encoded in a helper process."""
    import time

    from explorer.core.tasks import Progress

    from .codec_process import shared

    codec = shared()
    codec.start()  # the helper process starts while the model works
    t0 = time.perf_counter()
    an = CodecAnalysis(model, img, token=token)
    an.elapsed_ms = (time.perf_counter() - t0) * 1000.0
    points = {i: an.point(i) for i in range(len(an))}
    yield ("model", an, points)
    order = sorted(points, key=lambda i: abs(points[i]["bpp"] - target_bpp))
    for n, i in enumerate(order):
        if token is not None:
            token.check()
        b = codec.peers_within(an.image, points[i]["bytes"])  # in its own process: no GIL held here
        yield Progress((n + 1) / len(order), f"JPEG / JPEG 2000 / WebP / AVIF within {points[i]['bytes']} bytes")
        yield ("baseline", i, b)
    return an


def samples_for_app(an, k: int, seed: int, n: int, token=None):
    """(k, n pictures imagined beyond the first k iterations sent) for the tab."""
    if token is not None:
        token.check()
    return k, an.samples(k, n=n, seed=seed)
