"""Rate-distortion evaluation of a conv DRAW checkpoint on a folder of images, against JPEG and JPEG 2000."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from explorer.core.errors import Cancelled, UserError

log = logging.getLogger(__name__)

POINT_FIELDS = (
    "bpp",
    "psnr",
    "ssim",
    "jpeg_bpp",
    "jpeg_psnr",
    "jpeg_ssim",
    "jpeg2000_bpp",
    "jpeg2000_psnr",
    "jpeg2000_ssim",
)


def evaluate_folder(model, folder, device, max_side: int = 768, progress=None, token=None) -> dict[str, Any]:
    """``{"images": [{"file", "width", "height", "points": [...]}], "mean": [...], "errors": [...]}``.
    A file that cannot be read is listed under "errors" and skipped."""
    from .data import fit_max_side, list_images, load_image
    from .infer import analyse_points

    files = list_images(folder)
    images: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    T = model.iterations
    for i, f in enumerate(files):
        if token is not None:
            token.check()
        try:
            img = load_image(f, channels=model.in_channels)
        except UserError as exc:
            errors.append({"file": f.name, "error": str(exc)})
            continue
        img, note = fit_max_side(img, max_side)
        pts = []
        try:
            for p in analyse_points(model, img, device, token=token):
                pts.append({k: (round(v, 5) if isinstance(v, float) else v) for k, v in p.items() if k != "bits"})
                if progress is not None:
                    progress((i + len(pts) / T) / len(files), f"{f.name} k={p['k']}")
        except (UserError, Cancelled):
            raise
        except Exception as exc:  # noqa: BLE001 - one image that breaks the coder is reported; the rest go on
            log.warning("coding %s failed", f, exc_info=True)
            errors.append({"file": f.name, "error": f"{f.name}: could not be coded ({type(exc).__name__})"})
            continue
        rec = {"file": f.name, "width": int(img.shape[1]), "height": int(img.shape[0]), "points": pts}
        if note:
            rec["note"] = note
        images.append(rec)
    if not images:
        raise UserError(
            f"{folder}: none of the {len(files)} images could be coded"
            + (f" (first: {errors[0]['error']})" if errors else "")
        )
    return {
        "rate": "ideal code length: sum of KL_1..k in bits per pixel (bits-back); JPEG and JPEG 2000 "
        "rates are real file sizes",
        "images": images,
        "mean": mean_points(images),
        "errors": errors,
    }


def mean_points(images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not images:
        return []
    by_k: dict[int, list[dict[str, Any]]] = {}
    for im in images:
        for p in im["points"]:
            by_k.setdefault(p["k"], []).append(p)
    out = []
    for k in sorted(by_k):
        row: dict[str, Any] = {"k": k}
        for fld in POINT_FIELDS:
            vals = [p[fld] for p in by_k[k] if p.get(fld) is not None]
            row[fld] = round(float(np.mean(vals)), 5) if vals else None
        out.append(row)
    return out


def format_table(result: dict[str, Any]) -> str:
    lines = [f"checkpoint: {result.get('checkpoint')}", result.get("rate", "")]

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    def block(title: str, pts: list[dict[str, Any]]) -> None:
        lines.append(title)
        lines.append(" k    bpp   PSNR   SSIM |  JPEG bpp  PSNR   SSIM |  JP2 bpp  PSNR   SSIM")
        for p in pts:
            lines.append(
                f"{p['k']:2d} {fmt(p['bpp'], '6.3f')} {fmt(p['psnr'], '6.2f')} {fmt(p['ssim'], '6.3f')} | "
                f"{fmt(p['jpeg_bpp'], '8.3f')} {fmt(p['jpeg_psnr'], '5.2f')} {fmt(p['jpeg_ssim'], '6.3f')} | "
                f"{fmt(p['jpeg2000_bpp'], '7.3f')} {fmt(p['jpeg2000_psnr'], '5.2f')} {fmt(p['jpeg2000_ssim'], '6.3f')}"
            )

    for im in result.get("images", []):
        block(f"{im['file']} ({im['width']}x{im['height']})", im["points"])
    if result.get("mean"):
        block("mean over images", result["mean"])
    for e in result.get("errors", []):
        lines.append(f"skipped {e['file']}: {e['error']}")
    return "\n".join(lines)


def interpolate_psnr(points: list[dict[str, Any]], bpp: float, prefix: str = "") -> float | None:
    """PSNR of a curve (model: prefix "", or "jpeg_" / "jpeg2000_") at ``bpp``, linear in bpp."""
    xs = [p[f"{prefix}bpp"] for p in points if p.get(f"{prefix}bpp") is not None]
    ys = [p[f"{prefix}psnr"] for p in points if p.get(f"{prefix}bpp") is not None]
    if not xs:
        return None
    order = np.argsort(xs)
    xs, ys = np.asarray(xs)[order], np.asarray(ys)[order]
    if bpp < xs[0] or bpp > xs[-1]:
        return None
    return float(np.interp(bpp, xs, ys))
