"""Rate-distortion of the conv DRAW codec on a folder of images, in real bytes, against JPEG, JPEG 2000, WebP and
AVIF at the same real bytes.

Per image and per target rate B (bits per pixel): the best .cdraw file of at most B bpp (header included; the
iterations sent and the quantisation step chosen for the highest PSNR, :func:`.codec.encode_within`), decoded;
then each peer's largest file no larger than that .cdraw file (:func:`.baselines.largest_within`). Every ``bytes``
is a file's length and ``bpp = 8 * bytes / (width * height)``. Also per image: ``ladder`` (the .cdraw files for
k = 1..T at the model's step) and ``ideal_rate_curve`` (the sum of KL_1..k of the continuous model with the
posterior means decoded, the paper's ideal code length: no file has that size).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from explorer.core.errors import Cancelled, UserError

log = logging.getLogger(__name__)

TARGETS = (0.1, 0.25, 0.5)
CODECS = ("draw", "jpeg", "jpeg2000", "webp", "avif")


def _summary(nbytes: int, h: int, w: int, ref: np.ndarray, img: np.ndarray, **extra) -> dict[str, Any]:
    from .baselines import psnr, ssim

    return {
        "bytes": int(nbytes),
        "bpp": round(8.0 * nbytes / (h * w), 5),
        "psnr": round(psnr(ref, img), 4),
        "ssim": round(ssim(ref, img), 5),
        **extra,
    }


def evaluate_image(model, img: np.ndarray, targets=TARGETS, token=None, name: str = "unnamed") -> dict[str, Any]:
    """One image (uint8 (H, W, C)): ``points`` (one per target), ``ladder`` and ``ideal_rate_curve``."""
    from .baselines import PEERS, largest_within, psnr, ssim
    from .codec import encode_within_each, ladder
    from .infer import Analysis, match_channels

    img = match_channels(img, model.in_channels)
    h, w = img.shape[:2]
    points = []
    coded = encode_within_each(model, img, [int(b * h * w / 8.0) for b in targets], name=name, token=token)
    for b, c in zip(targets, coded, strict=True):
        p: dict[str, Any] = {"target_bpp": b}
        if isinstance(c, str):  # below the smallest .cdraw file: no point at this rate
            p["draw"] = None
            p["note"] = c
            points.append(p)
            continue
        p["draw"] = _summary(c.nbytes, h, w, img, c.image, k=c.header.k, step=c.header.step)
        for codec in PEERS:
            if token is not None:
                token.check()
            r = largest_within(codec, img, c.nbytes)
            p[codec] = None if r is None else _summary(r.nbytes, h, w, img, r.image, setting=round(r.setting, 3))
        points.append(p)
    lad = [
        _summary(c.nbytes, h, w, img, c.image, k=c.header.k, step=c.header.step)
        for c in ladder(model, img, name=name, token=token)
    ]
    an = Analysis(model, img, "cpu")
    ideal = [
        {
            "k": k,
            "ideal_bpp": round(float(an.rate_bpp[k]), 5),
            "psnr": round(psnr(img, an.recons[k]), 4),
            "ssim": round(ssim(img, an.recons[k]), 5),
        }
        for k in range(1, an.T + 1)
    ]
    return {"width": w, "height": h, "points": points, "ladder": lad, "ideal_rate_curve": ideal}


def evaluate_files(
    model, files: list[Path], max_side: int = 768, targets=TARGETS, progress=None, token=None, root=None, name="unnamed"
) -> dict[str, Any]:
    """``{"images": [...], "mean": [...], "errors": [...]}``; a file that cannot be read is listed under "errors"."""
    from .data import fit_max_side, load_image

    images: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    for i, f in enumerate(files):
        label = f.relative_to(root).as_posix() if root is not None else f.name
        if token is not None:
            token.check()
        try:
            img = load_image(f, channels=model.in_channels)
        except UserError as exc:
            errors.append({"file": label, "error": str(exc)})
            continue
        img, note = fit_max_side(img, max_side)
        try:
            rec = {"file": label, **evaluate_image(model, img, targets, token=token, name=name)}
        except (UserError, Cancelled):
            raise
        except Exception as exc:  # noqa: BLE001 - one image that breaks the coder is reported; the rest go on
            log.warning("coding %s failed", f, exc_info=True)
            errors.append({"file": label, "error": f"{label}: could not be coded ({type(exc).__name__})"})
            continue
        if note:
            rec["note"] = note
        images.append(rec)
        if progress is not None:
            progress((i + 1) / len(files), label)
    if not images:
        raise UserError(
            f"none of the {len(files)} images could be coded" + (f" (first: {errors[0]['error']})" if errors else "")
        )
    return {
        "rate": "real file sizes: bytes of each file (the .cdraw header and checksum included), bpp = 8 * bytes / "
        "(width * height); each peer's largest file no larger than the .cdraw file. ideal_rate_curve: the "
        "continuous model's sum of KL_1..k (no file), for comparison only",
        "targets_bpp": list(targets),
        "images": images,
        "mean": mean_points(images, targets),
        "errors": errors,
    }


def evaluate_folder(model, folder, device=None, max_side: int = 768, progress=None, token=None, **kw):
    from .data import list_images

    return evaluate_files(model, list_images(folder), max_side, progress=progress, token=token, **kw)


def mean_points(images: list[dict[str, Any]], targets=TARGETS) -> list[dict[str, Any]]:
    """Per target: each codec's mean bytes-derived bpp, PSNR and SSIM over the images where it has a file (``n``;
    a peer's files are those no larger than the .cdraw file, so only images where conv DRAW has one count), and
    how many images it could not reach (``missing``: its smallest file is larger)."""
    out = []
    for i, b in enumerate(targets):
        row: dict[str, Any] = {"target_bpp": b}
        pts = [im["points"][i] for im in images if im["points"][i].get("draw") is not None]
        for codec in CODECS:
            have = [p[codec] for p in pts if p.get(codec) is not None]
            row[codec] = {
                "n": len(have),
                "missing": (len(images) if codec == "draw" else len(pts)) - len(have),
                **{
                    f: (round(float(np.mean([h[f] for h in have])), 4) if have else None)
                    for f in ("bpp", "psnr", "ssim")
                },
            }
        out.append(row)
    return out


def format_table(result: dict[str, Any]) -> str:
    from .baselines import PEER_NAMES

    names = {"draw": "conv DRAW", **PEER_NAMES}
    lines = [f"checkpoint: {result.get('checkpoint')}", result.get("rate", ""), ""]
    lines.append(f"mean over {len(result.get('images', []))} images (bpp / PSNR dB / SSIM; real files)")
    lines.append("target | " + " | ".join(f"{names[c]:>22s}" for c in CODECS))
    for row in result.get("mean", []):
        cells = []
        for c in CODECS:
            m = row[c]
            if m["psnr"] is None:
                cells.append(f"{'-':>22s}")
            else:
                miss = f"*{m['missing']}" if m["missing"] else ""
                cells.append(f"{m['bpp']:.3f} {m['psnr']:6.2f} {m['ssim']:.3f}{miss:>4s}")
        lines.append(f"{row['target_bpp']:6.2f} | " + " | ".join(cells))
    lines.append(
        "(*n: the codec could not make a file that small for n images (a peer: no larger than the .cdraw file); "
        "its mean leaves them out)"
    )
    for e in result.get("errors", []):
        lines.append(f"skipped {e['file']}: {e['error']}")
    return "\n".join(lines)


def psnr_gap(result: dict[str, Any], target: float, codec: str) -> float | None:
    """Mean PSNR of conv DRAW minus ``codec``'s at ``target`` over the images where both have a file."""
    for i, b in enumerate(result.get("targets_bpp", [])):
        if math.isclose(b, target):
            d = [
                im["points"][i]["draw"]["psnr"] - im["points"][i][codec]["psnr"]
                for im in result["images"]
                if im["points"][i].get("draw") and im["points"][i].get(codec)
            ]
            return float(np.mean(d)) if d else None
    return None
