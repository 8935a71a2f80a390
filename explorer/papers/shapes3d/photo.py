"""A photo of one object on a plain background -> the model's input picture, and what was done to it in words.

The model was trained on pictures made by its own renderer (model.py): the object is centred, its larger side spans
a fixed share of the frame (all of it for ModelNet, about 80 % for the primitives), the background is black and
the object is grey, brighter where it is nearer the camera (grey = 1 - 0.7 * depth). A photo differs in every
one of these, so :func:`prepare_photo`

1. turns the photo upright (EXIF orientation) and reads any image mode (16-bit, palette, grey, RGBA);
2. finds the object: a transparent background is the mask; otherwise the background colour is the median of a
   thin band along the border, the border must be plain (refused otherwise: there is no reliable mask), and
   the object is what differs from it by more than the border's own noise, keeping the largest connected part
   (and parts at least a quarter as large), small holes filled;
3. crops a square around the object, with the margin the model's training pictures have (:func:`reference`);
4. draws it like the renderer: black background, the object's grey levels mapped rank for rank onto the grey
   levels of the training pictures (a photo's brightness is not depth: this matches the range, not the
   meaning), and resizes it to the model's input size by area averaging (soft edges, as rendered).

No Qt here: the panel runs :func:`load_photo` in a worker and shows the report under the picture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

WORK_PX = 512  # the longer side of the working copy the mask is computed on
BAND = 0.015  # width of the border band, as a share of the shorter side
MIN_THRESHOLD = 40.0  # RGB distance (0..441) that always counts as "not the background"
NOISY_BORDER = 40.0  # median RGB distance of the border to its own median colour beyond which it is not plain
FAR_BORDER = 0.3  # share of the border band allowed to differ from the background (an object touching an edge)
KEEP_PART = 0.25  # other connected parts kept when at least this share of the largest
SMALL_HOLE = 0.01  # holes below this share of the object's bounding box are filled (highlights, logos)
DEFAULT_FILL = 0.8  # the object's larger side / the frame, when no training pictures are known
FLAT_GREY = 0.84  # the median grey of an object in the ModelNet training pictures (used without a reference)


def _user_error(msg: str) -> Exception:
    from explorer.core.errors import UserError

    return UserError(msg)


# ------------------------------------------------------------------------------------------ reference
def reference(views: np.ndarray, labels: np.ndarray | None = None) -> dict[str, Any]:
    """What the model's input pictures look like, from a few of them ((N, H, W) uint8 or float in [0, 1], e.g.
    the gallery's input views): ``fill`` (median share of the frame the object's larger side spans), ``grey``
    (101 quantiles of the grey levels inside objects, edge pixels left out) and, with ``labels``,
    ``fill_by_class`` ({label: fill}; a ModelNet monitor seen from the side is narrower than its depth, so its
    picture spans less of the frame than a chair's)."""
    from scipy import ndimage

    if labels is not None:
        out = reference(views)
        lab = np.asarray(labels)
        out["fill_by_class"] = {int(c): reference(np.asarray(views)[lab == c])["fill"] for c in np.unique(lab)}
        return out
    v = np.asarray(views, np.float32)
    if v.max(initial=0.0) > 1.5:
        v = v / 255.0
    fills, inner = [], []
    for img in v:
        fg = img > 0.02
        if not fg.any():
            continue
        ys, xs = np.nonzero(fg)
        fills.append(max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) / max(img.shape))
        core = ndimage.binary_erosion(fg, np.ones((3, 3), bool))
        inner.append(img[core])
    if not fills:
        return {"fill": DEFAULT_FILL, "grey": None}
    vals = np.concatenate(inner) if inner else np.zeros(0, np.float32)
    grey = np.quantile(vals, np.linspace(0.0, 1.0, 101)).astype(np.float32) if len(vals) >= 20 else None
    return {"fill": float(np.clip(np.median(fills), 0.3, 1.0)), "grey": grey}


# ------------------------------------------------------------------------------------------ colours
def colour_name(rgb: np.ndarray) -> str:
    """A plain word for a background colour (white, black, grey, light blue, ...)."""
    import colorsys

    r, g, b = (float(c) / 255.0 for c in rgb[:3])
    h, lum, s = colorsys.rgb_to_hls(r, g, b)
    if s < 0.15 or max(r, g, b) - min(r, g, b) < 0.08:
        return "white" if lum > 0.85 else "black" if lum < 0.15 else "light grey" if lum > 0.6 else "grey"
    names = ((15, "red"), (40, "orange"), (70, "yellow"), (160, "green"), (200, "cyan"), (255, "blue"))
    deg = h * 360.0
    word = next((n for top, n in names if deg < top), "purple" if deg < 330 else "red")
    return ("light " if lum > 0.7 else "dark " if lum < 0.3 else "") + word


# ------------------------------------------------------------------------------------------ the photo
def _upright(im) -> tuple[Any, str]:
    from PIL import ImageOps

    try:
        orientation = int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block: keep the pixels as they are
        return im, ""
    if orientation == 1:
        return im, ""
    return ImageOps.exif_transpose(im), f"turned upright (EXIF orientation {orientation})"


def _rgb_or_rgba(im):
    """Any mode (16-bit, float, palette, grey, CMYK, with or without transparency) -> RGB or RGBA."""
    from explorer.core.validate import to_8bit

    im = to_8bit(im)
    has_alpha = "A" in im.mode or (im.mode in ("P", "L", "RGB", "1") and "transparency" in im.info)
    return im.convert("RGBA" if has_alpha else "RGB")


def _arrays(im) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, 3) float32 0..255 colours and the (H, W) alpha in 0..1 of an RGB or RGBA image (None for RGB)."""
    a = np.asarray(im, np.float32)
    return a[..., :3], (a[..., 3] / 255.0 if im.mode == "RGBA" else None)


def _border(a: np.ndarray, width: int) -> np.ndarray:
    return np.concatenate(
        [a[:width].reshape(-1, *a.shape[2:]), a[-width:].reshape(-1, *a.shape[2:]),
         a[:, :width].reshape(-1, *a.shape[2:]), a[:, -width:].reshape(-1, *a.shape[2:])]
    )  # fmt: skip


def _mask_from_colour(rgb: np.ndarray) -> tuple[np.ndarray, str, int]:
    """(object mask, background colour name, filled holes); refuses a non-plain border or no object."""
    from scipy import ndimage

    h, w = rgb.shape[:2]
    width = max(1, int(round(BAND * min(h, w))))
    band = _border(rgb, width)
    bg = np.median(band, axis=0)
    d_band = np.linalg.norm(band - bg, axis=-1)
    noise = float(np.median(d_band))
    if noise > NOISY_BORDER:
        raise _user_error(
            "the background is not plain (the picture's border is too varied or noisy to tell the object from "
            "it); photograph the object against a plain wall or sheet, or give the picture a transparent background"
        )
    threshold = max(MIN_THRESHOLD, 4.0 * noise + 10.0)
    far = float(np.mean(d_band > threshold))
    if far > FAR_BORDER:
        raise _user_error(
            f"the picture's border is not one plain colour ({far:.0%} of it differs from the rest: the object "
            "touches the edges or the background is not plain); leave plain background all around the object"
        )
    d = np.linalg.norm(rgb - bg, axis=-1)
    d = ndimage.median_filter(d, 3)  # JPEG speckle and noise, without growing the object
    mask = d > threshold
    if mask.sum() < max(9, 1e-4 * mask.size):
        raise _user_error(
            "no object found: the picture is one plain colour; open a photo of one object on a plain background"
        )
    lab, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    sizes = np.bincount(lab.ravel())[1:]
    keep = np.nonzero(sizes >= KEEP_PART * sizes.max())[0] + 1
    mask = np.isin(lab, keep)
    ys, xs = np.nonzero(mask)
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    holes = ndimage.binary_fill_holes(mask) & ~mask
    hl, nh = ndimage.label(holes)
    filled = 0
    if nh:
        hs = np.bincount(hl.ravel())[1:]
        small = np.nonzero(hs < SMALL_HOLE * box)[0] + 1
        mask |= np.isin(hl, small)
        filled = len(small)
    return mask, colour_name(bg), filled


def prepare_photo(
    im,
    size: int = 32,
    fill: float = DEFAULT_FILL,
    grey: np.ndarray | None = None,
    shading: str = "flat",
    framing: str = "training",
) -> tuple[np.ndarray, str]:
    """A PIL image of one object -> ((size, size) float32 picture in the renderer's style, report in words).

    ``fill``: the share of the frame the object's larger side spans in the training pictures; ``grey``: sorted
    grey levels (0..1) of objects in them (both from :func:`reference`; without ``grey`` the object is drawn at
    one typical grey). Refuses (UserError, one line saying what to do) a picture with no object or with a
    background that is not plain."""
    from PIL import Image

    steps = []
    im, turned = _upright(im)
    if turned:
        steps.append(turned)
    im = _rgb_or_rgba(im)
    w0, h0 = im.size
    if min(w0, h0) < 4:
        raise _user_error(f"the picture is {w0}x{h0} pixels; it needs at least 4x4 (one object, 32x32 or larger)")
    scale = min(1.0, WORK_PX / max(w0, h0))
    work = im if scale == 1.0 else im.resize((max(1, round(w0 * scale)), max(1, round(h0 * scale))), Image.BOX)
    rgb, alpha = _arrays(work)
    lum = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    if alpha is not None and float(np.mean(alpha < 0.5)) > 0.01:
        mask = alpha >= 0.5
        if mask.sum() < max(9, 1e-4 * mask.size):
            raise _user_error("no object found: the picture is transparent everywhere; open a picture of one object")
        masked = f"used its transparency as the mask (object: {mask.mean():.0%} of the picture)"
    else:
        if (
            (w0, h0) == (size, size)
            and float(np.ptp(rgb, axis=-1).max(initial=0)) < 1
            and np.median(_border(lum, 1)) < 8
        ):
            pic = (lum / 255.0).astype(np.float32)
            if (pic > 0.1).sum() == 0:
                raise _user_error(
                    "no object found: the picture is one plain colour; open a photo of one object on a plain background"
                )
            return pic, f"a {size}x{size} grey picture on black, like the rendered ones: used as it is"
        mask, bg_name, filled = _mask_from_colour(rgb)
        masked = f"masked the {bg_name} background (object: {mask.mean():.0%} of the picture)"
        if filled:
            masked += f", filled {filled} small hole{'s' if filled > 1 else ''} in it"
    # square crop around the object's bounding box, the margin the training pictures have
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = max(y1 - y0, x1 - x0) / float(np.clip(fill, 0.3, 1.0))
    cy, cx = (y0 + y1) / 2.0, (x0 + x1) / 2.0
    top, left = int(round(cy - side / 2.0)), int(round(cx - side / 2.0))
    s = max(1, int(round(side)))
    # object grey levels: the photo's brightness ranks mapped onto the training pictures' grey levels
    obj = lum[mask]
    if shading == "matched" and grey is not None and len(grey) > 1 and len(obj) > 1:
        ranks = np.argsort(np.argsort(obj, kind="stable"), kind="stable") / (len(obj) - 1)
        levels = np.interp(ranks, np.linspace(0.0, 1.0, len(grey)), np.asarray(grey, np.float64))
        shaded = "grey levels matched to the rendered pictures'"
    else:
        level = float(np.median(grey)) if grey is not None and len(grey) else FLAT_GREY
        levels = np.full(len(obj), level)
        shaded = f"drawn in the rendered pictures' median grey ({level:.2f})"
    canvas = np.zeros(mask.shape, np.float32)
    canvas[mask] = levels
    sq = np.zeros((s, s), np.float32)
    ty, tx = max(0, top), max(0, left)
    by, bx = min(mask.shape[0], top + s), min(mask.shape[1], left + s)
    sq[ty - top : by - top, tx - left : bx - left] = canvas[ty:by, tx:bx]
    pic = np.asarray(Image.fromarray(sq, "F").resize((size, size), Image.BOX), np.float32)
    pic = np.clip(pic, 0.0, 1.0)
    crop_px = max(1, int(round(s / scale)))
    steps += [
        masked,
        f"cropped {w0}x{h0} -> {crop_px}x{crop_px} around the object, on black (its larger side fills "
        f"{fill:.0%} of the frame, as in the {framing} pictures)",
        f"resized to {size}x{size}",
        shaded,
    ]
    return pic, "; ".join(steps)


def load_photo(
    path: str | Path,
    size: int = 32,
    fill: float = DEFAULT_FILL,
    grey: np.ndarray | None = None,
    shading: str = "flat",
    framing: str = "training",
) -> tuple[np.ndarray, str]:
    """:func:`prepare_photo` of a picture file (checked by ``explorer.core.validate.open_image``); errors start
    with the file's name."""
    from explorer.core.errors import UserError
    from explorer.core.validate import open_image

    name = Path(path).name
    try:
        return prepare_photo(open_image(path), size, fill, grey, shading, framing)
    except UserError as exc:
        raise UserError(str(exc) if str(exc).startswith(f"{name}:") else f"{name}: {exc}") from None
