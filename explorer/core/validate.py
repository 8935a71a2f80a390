"""One validation layer per input kind, shared by every paper: files, audio, images, command-line numbers, and
the safe way to write an output file. Each check raises ``UserError`` with a message that names the file and the
problem; nothing here imports Qt (or torch).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UserError

if TYPE_CHECKING:
    import numpy as np

# numpy, soundfile and Pillow are imported inside the functions: the command line builds its parser (and the
# GUI starts) without them

# audio: what a microphone, a phone or a studio writes; anything outside is refused before decoding
AUDIO_MIN_RATE = 4000
AUDIO_MAX_RATE = 384_000
AUDIO_MAX_SECONDS = 600.0
AUDIO_MIN_SECONDS = 0.02
# images: up to 64 megapixels (a 8000x8000 photo); Pillow's own bomb check is set to the same bound
IMAGE_MAX_PIXELS = 64_000_000


# ----------------------------------------------------------------------------------------------- files
def regular_file(path: os.PathLike | str, what: str = "file") -> Path:
    """``path`` as a Path when it names a readable regular file; a named pipe, device, socket or folder is refused
    before anything opens it (opening a FIFO blocks for ever)."""
    p = Path(path).expanduser()
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise UserError(f"{p}: no such file") from None
    except PermissionError:
        raise UserError(f"{p}: permission denied") from None
    except OSError as exc:
        raise UserError(f"{p}: cannot be read ({exc.strerror or exc})") from exc
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{p}: is a folder, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{p}: is not a regular file (a pipe, device or socket), so it is not read")
    if not os.access(p, os.R_OK):
        raise UserError(f"{p}: permission denied")
    return p


def output_file(path: os.PathLike | str, what: str = "file") -> Path:
    """Check that ``path`` can be written: its folder exists and is writable, and it is not a folder itself."""
    p = Path(path).expanduser()
    folder = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise UserError(f"{p}: is a folder; give a {what} name")
    if not folder.is_dir():
        raise UserError(f"{p}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UserError(f"{p}: the folder {folder} is not writable")
    return p


@contextlib.contextmanager
def atomic_output(path: os.PathLike | str, what: str = "file") -> Iterator[Path]:
    """Write through a temporary file in the same folder, renamed over ``path`` only when the writer finished:
    a failure (full disk, exception, cancel) leaves the previous file, or nothing, never a half-written one.

        with atomic_output("shape.obj") as tmp:
            write_obj(tmp)
    """
    p = output_file(path, what)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part" + p.suffix, dir=p.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp makes the file private (0600): the result gets the mode a plain open() would (or the old file's),
    # set after the writer is done since some writers (safetensors) replace the file they are given
    mode = (p.stat().st_mode & 0o777) if p.exists() else (0o666 & ~_umask())
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        try:
            os.chmod(tmp, mode)
        except OSError:
            pass
        os.replace(tmp, p)
    except OSError as exc:
        _remove(tmp)
        if exc.errno == 28:  # ENOSPC
            raise UserError(f"{p}: the disk is full; nothing was written") from exc
        raise UserError(f"{p}: could not be written ({exc.strerror or exc}); nothing was written") from exc
    except BaseException:
        _remove(tmp)
        raise


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, for a moment, in every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _remove(p: Path) -> None:
    try:
        p.unlink()
    except OSError:
        pass


# ----------------------------------------------------------------------------------------------- audio
def read_audio(path: os.PathLike | str) -> tuple[np.ndarray, int]:
    """An audio file as (mono float32 samples in [-1, 1], sample rate). The header is checked before decoding:
    rate within 4-384 kHz, length within 0.02 s - 10 min; the samples must be finite."""
    import numpy as np
    import soundfile as sf

    p = regular_file(path, "audio file")
    try:
        info = sf.info(str(p))
    except Exception as exc:  # noqa: BLE001 - LibsndfileError, RuntimeError, TypeError on odd headers
        raise UserError(f"{p.name}: not a readable audio file ({_first_line(exc)})") from exc
    rate, frames = int(info.samplerate), int(info.frames)
    if not AUDIO_MIN_RATE <= rate <= AUDIO_MAX_RATE:
        raise UserError(
            f"{p.name}: its header says {rate} samples per second; audio must be "
            f"{AUDIO_MIN_RATE // 1000}-{AUDIO_MAX_RATE // 1000} kHz"
        )
    seconds = frames / rate
    if seconds > AUDIO_MAX_SECONDS:
        raise UserError(
            f"{p.name}: {seconds / 60:.0f} minutes long; at most {AUDIO_MAX_SECONDS / 60:.0f} minutes of audio are read"
        )
    if seconds < AUDIO_MIN_SECONDS:
        raise UserError(f"{p.name}: holds {frames} sample(s), {seconds * 1000:.1f} ms; too short to hold a word")
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{p.name}: not a readable audio file ({_first_line(exc)})") from exc
    if data.size == 0:
        raise UserError(f"{p.name}: the audio file is empty")
    if not np.isfinite(data).all():
        raise UserError(f"{p.name}: holds NaN or infinite samples (a corrupt float WAV?)")
    x = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return np.ascontiguousarray(np.clip(x, -1.0, 1.0), dtype=np.float32), int(rate)


def check_samples(x, name: str = "audio"):
    """Samples from a microphone or a caller: finite float32, or UserError."""
    import numpy as np

    x = np.asarray(x, dtype=np.float32)
    if x.size and not np.isfinite(x).all():
        raise UserError(f"{name}: holds NaN or infinite samples")
    return x


# ---------------------------------------------------------------------------------------------- images
def open_image(path: os.PathLike | str):
    """A fully loaded PIL image in an 8-bit mode (L, LA, RGB, RGBA, P), with 16-bit and float pixels scaled from
    their real range (a 16-bit PNG is not clipped to white). Refuses non-images, truncated files, decompression
    bombs and images over 64 megapixels before decoding their pixels."""
    from PIL import Image, UnidentifiedImageError

    p = regular_file(path, "image file")
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = IMAGE_MAX_PIXELS
    try:
        with Image.open(p) as im:
            w, h = im.size
            if w < 1 or h < 1:
                raise UserError(f"{p.name}: the image is empty ({w}x{h})")
            if w * h > IMAGE_MAX_PIXELS:
                raise UserError(
                    f"{p.name}: {w}x{h} pixels; at most {IMAGE_MAX_PIXELS // 1_000_000} megapixels are read"
                )
            im.load()
            return to_8bit(im)
    except UserError:
        raise
    except Image.DecompressionBombError as exc:
        raise UserError(f"{p.name}: refused as a decompression bomb ({_first_line(exc)})") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UserError(f"{p.name}: not a readable image ({_first_line(exc)})") from exc
    finally:
        Image.MAX_IMAGE_PIXELS = old


def to_8bit(im):
    """Map 16-bit integer ('I;16*', 'I') and float ('F') images onto 0-255 by their real range."""
    import numpy as np
    from PIL import Image

    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if (mode.startswith("I;16") or a.max(initial=0) > 255) else 255.0
        return Image.fromarray(np.clip(np.round(a * (255.0 / top)), 0, 255).astype(np.uint8), "L")
    if mode == "F":
        a = np.asarray(im, dtype=np.float64)
        if not np.isfinite(a).all():
            raise ValueError("float pixels hold NaN or infinity")
        top = 1.0 if a.max(initial=0) <= 1.0 else float(a.max())
        return Image.fromarray(np.clip(np.round(a * (255.0 / top)), 0, 255).astype(np.uint8), "L")
    if mode in ("1", "L", "LA", "RGB", "RGBA", "P", "PA"):
        return im.copy()
    return im.convert("RGBA" if "A" in mode else "RGB")  # CMYK, YCbCr, LAB, HSV, ...


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


# ------------------------------------------------------------------------------------- command-line numbers
def number(
    kind: Callable = float,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> Callable[[str], float]:
    """An argparse ``type=`` that accepts finite numbers within [low, high] (an end open when asked) and says what
    it wants otherwise: ``--minutes 0``, ``--lr nan``, ``--batch -3`` and ``--steps 1e9999`` are refused."""

    def describe() -> str:
        parts = []
        if low is not None:
            parts.append(f"{'above' if low_open else 'at least'} {low:g}")
        if high is not None:
            parts.append(f"{'below' if high_open else 'at most'} {high:g}")
        return ("a whole number" if kind is int else "a number") + (" " + " and ".join(parts) if parts else "")

    def parse(text: str):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"'{text}' is not {describe()}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"'{text}' is not {describe()}")
        if low is not None and (value < low or (low_open and value == low)):
            raise argparse.ArgumentTypeError(f"'{text}': expected {describe()}")
        if high is not None and (value > high or (high_open and value == high)):
            raise argparse.ArgumentTypeError(f"'{text}': expected {describe()}")
        return value

    parse.__name__ = "number"  # argparse names the type in its messages
    return parse


POSITIVE_INT = number(int, 1)
COUNT = number(int, 0)  # zero allowed: "none"
SEED = number(int, 0, 2**32 - 1)
POSITIVE = number(float, 0, low_open=True)
NON_NEGATIVE = number(float, 0)
FRACTION = number(float, 0, 1)  # a share or probability, 0-1
MINUTES = number(float, 0, 60 * 24 * 30, low_open=True)  # a wall-clock budget: above 0, at most 30 days
THREADS = number(int, 1, 1024)
