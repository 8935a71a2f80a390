"""Distortion metrics and the classical codecs at a matched rate (numpy + Pillow only; no torch, no Qt).

* PSNR on 8-bit values (peak 255), over all channels.
* SSIM (Wang et al. 2004): Gaussian window sigma 1.5 (11 taps), K1 = 0.01, K2 = 0.03, computed per channel
  and averaged, borders of 5 pixels left out (like scikit-image's default).
* JPEG: Pillow/libjpeg, 4:2:0 chroma subsampling, optimised Huffman tables; the integer quality (1..95) is
  bisected so that the real file size lands as close as possible to the target bits per pixel.
* JPEG 2000: Pillow's OpenJPEG, 9/7 irreversible wavelet, ``quality_mode="rates"``; the compression ratio is
  refined until the real file (JP2 container included) lands within 2% of the target.
* WebP (libwebp, lossy, ``method=6``: its slowest, best compression) and AVIF (libavif/AV1, Pillow's default
  speed), integer quality 0..100.
Rates are real file sizes in bits divided by the number of pixels (width x height).

:func:`largest_within` gives each codec's best file that is no larger than a byte budget (the conv DRAW file's
size): the quality (JPEG 2000: compression ratio) is bisected to the largest file of at most that many bytes.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return psnr_from_mse(float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of a mean squared error on the 0..255 scale (100 dB for an exact copy)."""
    if mse <= 1e-12:
        return 100.0
    return 10.0 * math.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.ndimage import gaussian_filter

    a = a.astype(np.float64)
    b = b.astype(np.float64)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch], b[..., ch]
        f = lambda z: gaussian_filter(z, 1.5, truncate=3.5, mode="reflect")  # noqa: E731
        mx, my = f(x), f(y)
        sxx = f(x * x) - mx * mx
        syy = f(y * y) - my * my
        sxy = f(x * y) - mx * my
        m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        if m.shape[0] > 10 and m.shape[1] > 10:
            m = m[5:-5, 5:-5]
        vals.append(float(m.mean()))
    return float(np.mean(vals))


def _to_pil(img: np.ndarray):
    from PIL import Image

    if img.ndim == 3 and img.shape[2] == 1:
        return Image.fromarray(img[:, :, 0], "L")
    return Image.fromarray(img, "RGB")


def _from_bytes(data: bytes, channels: int) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        if channels == 1:
            return np.asarray(im.convert("L"), dtype=np.uint8)[:, :, None]
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


@dataclass
class CodecResult:
    codec: str
    bpp: float
    nbytes: int
    image: np.ndarray  # decoded, uint8 (H, W, C)
    setting: float  # JPEG quality or JPEG 2000 compression ratio
    psnr: float
    ssim: float

    def summary(self) -> dict[str, float]:
        return {"bpp": self.bpp, "bytes": self.nbytes, "psnr": self.psnr, "ssim": self.ssim, "setting": self.setting}


def jpeg_bytes(img: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    _to_pil(img).save(buf, "JPEG", quality=int(quality), optimize=True, subsampling="4:2:0")
    return buf.getvalue()


def jpeg2000_bytes(img: np.ndarray, ratio: float) -> bytes:
    buf = io.BytesIO()
    _to_pil(img).save(buf, "JPEG2000", quality_mode="rates", quality_layers=[float(ratio)], irreversible=True)
    return buf.getvalue()


def webp_bytes(img: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    _to_pil(img).save(buf, "WEBP", quality=int(quality), method=6)
    return buf.getvalue()


def avif_bytes(img: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    _to_pil(img).save(buf, "AVIF", quality=int(quality))
    return buf.getvalue()


PEERS = ("jpeg", "jpeg2000", "webp", "avif")
PEER_NAMES = {"jpeg": "JPEG", "jpeg2000": "JPEG 2000", "webp": "WebP", "avif": "AVIF"}
_QUALITY = {"jpeg": (jpeg_bytes, 1, 95), "webp": (webp_bytes, 0, 100), "avif": (avif_bytes, 0, 100)}


def largest_within(codec: str, img: np.ndarray, max_bytes: int) -> CodecResult | None:
    """``codec``'s file of ``img`` with the highest quality setting whose size is at most ``max_bytes``;
    None when even its lowest setting makes a larger file."""
    if codec == "jpeg2000":
        return _jpeg2000_within(img, max_bytes)
    encode, lo, hi = _QUALITY[codec]
    cache: dict[int, bytes] = {}

    def size(q: int) -> int:
        if q not in cache:
            cache[q] = encode(img, q)
        return len(cache[q])

    if size(lo) > max_bytes:
        return None
    if size(hi) <= max_bytes:
        return _result(codec, img, cache[hi], hi)
    while hi - lo > 1:  # invariant: size(lo) <= max_bytes < size(hi)
        mid = (lo + hi) // 2
        if size(mid) <= max_bytes:
            lo = mid
        else:
            hi = mid
    return _result(codec, img, cache[lo], lo)


def _jpeg2000_within(img: np.ndarray, max_bytes: int, iters: int = 10) -> CodecResult | None:
    """JPEG 2000 by bisection of log(compression ratio) for the largest file of at most ``max_bytes``."""
    h, w = img.shape[:2]
    channels = img.shape[2] if img.ndim == 3 else 1
    raw = h * w * channels
    best: tuple[int, bytes, float] | None = None
    lo, hi = math.log(max(1.0, raw / max(1, max_bytes) * 0.7)), math.log(max(2.0, raw / max(1, max_bytes) * 2.0))
    for _ in range(3):  # widen until the top ratio fits
        data = jpeg2000_bytes(img, math.exp(hi))
        if len(data) <= max_bytes:
            best = (len(data), data, math.exp(hi))
            break
        hi += math.log(4.0)
    if best is None:
        return None
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        data = jpeg2000_bytes(img, math.exp(mid))
        if len(data) <= max_bytes:
            if len(data) > best[0]:
                best = (len(data), data, math.exp(mid))
            hi = mid
        else:
            lo = mid
    return _result("jpeg2000", img, best[1], best[2])


def _result(codec: str, img: np.ndarray, data: bytes, setting: float) -> CodecResult:
    h, w = img.shape[:2]
    dec = _from_bytes(data, img.shape[2] if img.ndim == 3 else 1)
    ref = img if img.ndim == 3 else img[..., None]
    return CodecResult(codec, len(data) * 8.0 / (h * w), len(data), dec, setting, psnr(ref, dec), ssim(ref, dec))


def jpeg_at_bpp(img: np.ndarray, target_bpp: float) -> CodecResult:
    """JPEG with the quality whose real size is closest (in ratio) to ``target_bpp``. Below the rate of
    quality 1 (JPEG cannot go lower) the quality-1 file is returned; its bpp shows the overshoot."""
    h, w = img.shape[:2]
    cache: dict[int, bytes] = {}

    def size(q: int) -> float:
        if q not in cache:
            cache[q] = jpeg_bytes(img, q)
        return len(cache[q]) * 8.0 / (h * w)

    lo, hi = 1, 95
    if size(lo) >= target_bpp:
        return _result("jpeg", img, cache[lo], lo)
    if size(hi) <= target_bpp:
        return _result("jpeg", img, cache[hi], hi)
    while hi - lo > 1:  # invariant: size(lo) < target <= size(hi)
        mid = (lo + hi) // 2
        if size(mid) < target_bpp:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda q: abs(math.log(size(q) / target_bpp)))
    return _result("jpeg", img, cache[best], best)


def jpeg2000_at_bpp(img: np.ndarray, target_bpp: float, tol: float = 0.02, max_iter: int = 8) -> CodecResult:
    """JPEG 2000 (9/7 wavelet) at a compression ratio refined until the real size is within ``tol``."""
    h, w = img.shape[:2]
    channels = img.shape[2] if img.ndim == 3 else 1
    raw_bpp = 8.0 * channels
    ratio = max(1.0, raw_bpp / max(target_bpp, 1e-4))
    best: tuple | None = None
    for _ in range(max_iter):
        data = jpeg2000_bytes(img, ratio)
        bpp = len(data) * 8.0 / (h * w)
        err = abs(math.log(bpp / target_bpp))
        if best is None or err < best[0]:
            best = (err, data, ratio)
        if err <= math.log1p(tol):
            break
        ratio = max(1.0, ratio * bpp / target_bpp)
    return _result("jpeg2000", img, best[1], best[2])
