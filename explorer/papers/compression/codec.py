"""A real conv DRAW codec: the latents of the first k iterations, quantised and entropy-coded with the model's own
learned prior, in a ``.cdraw`` file that rebuilds the picture on its own (headless: no Qt).

Coding of iteration t (the decoder computes the same numbers from the file alone):

* the prior p(z_t | z_<t) = N(mu_p, sigma_p) from the decoder state; its mean is rounded to a grid of 2**-12 and
  its log-scale to a grid of 1/16, so that encoder and decoder agree on it even if a convolution differed in its
  last bit;
* the symbol of each latent is n = round((mu_q - mu_p) / D), clipped to [-255, 255] (D: the quantisation step in
  the header), and the transmitted latent is z_t = mu_p + n D;
* n is coded with constriction's range coder under the prior discretised to the grid,
  P(n) = Phi((n + 1/2) D / sigma_p) - Phi((n - 1/2) D / sigma_p) (``QuantizedGaussian``);
* iterations k+1..T are not sent: the decoder takes their latents from the prior's mean (free).

What the decoder rebuilds is exactly what the encoder reports (same arithmetic on the same numbers: both run
:func:`_trajectory` on the CPU in float32), and the file size is all that is paid: header, range-coder words and
checksum.

File layout (little-endian)::

    magic "CDRW" | version u8 | channels u8 | width u16 | height u16 | k u8 | step float32
    | model id: sha256 of the weights, first 8 bytes | model name: length u8 + UTF-8
    | payload: range-coder words (uint32) | crc32 of everything before it (u32)
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from explorer.core.errors import UserError

MAGIC = b"CDRW"
VERSION = 1
SUFFIX = ".cdraw"
MAX_SYMBOL = 255
MEAN_GRID = 4096.0  # prior means rounded to 1/4096
LOGSTD_GRID = 16.0  # prior log-scales rounded to 1/16
_FIXED = struct.Struct("<4sBBHHBf8s")  # magic, version, channels, width, height, k, step, model id
CRC_BYTES = 4
DEFAULT_STEP = 1.0  # for a model trained without quantisation (its config's quant_step is 0)
# --bpp tries these multiples of the model's step: 2**(i/3) for i = -2..10, 0.63 to 10.1 (the file size falls with
# the step; the model then sends the first iterations of a coarser grid)
STEP_FACTORS = tuple(round(2.0 ** (i / 3.0), 4) for i in range(-2, 11))
ENVELOPE_STEP_FACTORS = STEP_FACTORS[::2]  # rd_files (the tab): every file of every k at these


@dataclass
class Header:
    channels: int
    width: int
    height: int
    k: int
    step: float
    model_id: bytes
    model_name: str
    version: int = VERSION

    def pack(self) -> bytes:
        name = self.model_name.encode("utf-8")[:255]
        fixed = _FIXED.pack(
            MAGIC, self.version, self.channels, self.width, self.height, self.k, self.step, self.model_id
        )
        return fixed + bytes([len(name)]) + name


@dataclass
class Coded:
    """One coded image: the file's bytes and the picture the decoder will rebuild from them."""

    header: Header
    data: bytes
    image: np.ndarray  # uint8 (H, W, C): what decode(data) returns, bit for bit
    canvas: Any = field(repr=False, default=None)  # the float canvas (for tests)
    state: Any = field(repr=False, default=None)  # the decoder state after k iterations (ladder(keep_state=True))

    @property
    def nbytes(self) -> int:
        return len(self.data)

    @property
    def bpp(self) -> float:
        return 8.0 * len(self.data) / (self.header.width * self.header.height)


# ----- model identity ---------------------------------------------------------------------------------------
def weights_id(model) -> bytes:
    """First 8 bytes of the SHA-256 of the model's weights (float32, parameters in name order): what a file
    records to find its model again; the same for a checkpoint stored in float16 or float32 once loaded."""
    cached = getattr(model, "_codec_weights_id", None)
    if cached is not None:
        return cached
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode("utf-8"))
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    digest = h.digest()[:8]
    model._codec_weights_id = digest
    return digest


def model_name(path: str | Path | None) -> str:
    if path is None:
        return "unnamed"
    name = Path(path).name
    return name[: -len(".safetensors")] if name.endswith(".safetensors") else name


def default_step(model) -> float:
    return float(np.float32(model.quant_step if getattr(model, "quant_step", 0.0) > 0 else DEFAULT_STEP))


# ----- the coding itself ------------------------------------------------------------------------------------
def _prior_grid(model, st, step: float):
    """(mean on its grid (tensor), std in symbol units (float64 array)) of the prior at this state."""
    import torch

    mu_p, ls_p = model.prior_params(st)
    mu = torch.round(mu_p * MEAN_GRID) / MEAN_GRID
    idx = torch.round(ls_p * LOGSTD_GRID).to(torch.int32).reshape(-1).numpy()
    return mu, np.exp(idx.astype(np.float64) / LOGSTD_GRID) / step


def _family():
    import constriction

    return constriction.stream.model.QuantizedGaussian(-MAX_SYMBOL, MAX_SYMBOL)


def _cpu_model(model):
    import torch

    if next(model.parameters()).device.type == "cpu":
        return model
    import copy

    m = copy.deepcopy(model).to(torch.device("cpu"))
    m._codec_weights_id = weights_id(model)
    return m


def _prepare(model, img: np.ndarray):
    from .infer import _tensor, match_channels

    img = match_channels(np.asarray(img), model.in_channels)
    h, w = img.shape[:2]
    if h > 65535 or w > 65535:
        raise UserError(f"{w}x{h}: the .cdraw format holds images up to 65535 pixels a side")
    x, hw = _tensor(img, model, "cpu")
    return img, x, hw


def _trajectory(model, x, step: float, token=None) -> Iterator[tuple[int, Any, np.ndarray]]:
    """The encoder's pass: yields (t, decoder state after iteration t, range-coder words of iterations 1..t)."""
    import constriction
    import torch

    fam = _family()
    enc = constriction.stream.queue.RangeEncoder()
    st = model.init_state(x)
    with torch.no_grad():
        for t in range(1, model.iterations + 1):
            if token is not None:
                token.check()
            mu, std = _prior_grid(model, st, step)
            mu_q, _ = model.encode_step(x, st)
            n = torch.round((mu_q - mu) / step).clamp(-MAX_SYMBOL, MAX_SYMBOL)
            sym = n.to(torch.int32).reshape(-1).numpy()
            enc.encode(sym, fam, np.zeros(sym.size), std)
            st = model.decode_step(mu + n * step, st)
            yield t, st.clone_decoder(), enc.get_compressed()


def _finish(model, st, k: int):
    import torch

    with torch.no_grad():
        return model.continue_from(st, k)


def _pack(header: Header, words: np.ndarray) -> bytes:
    body = header.pack() + np.asarray(words, dtype="<u4").tobytes()
    return body + struct.pack("<I", zlib.crc32(body))


def _header(model, img: np.ndarray, k: int, step: float, name: str) -> Header:
    return Header(model.in_channels, img.shape[1], img.shape[0], k, step, weights_id(model), name)


def encode(model, img: np.ndarray, k: int, step: float | None = None, name: str = "unnamed", token=None) -> Coded:
    """Code the first ``k`` iterations of ``img`` (uint8 (H, W, C)) with quantisation step ``step`` (default: the
    model's own)."""
    from .infer import _image

    model = _cpu_model(model)
    T = model.iterations
    if not 1 <= k <= T:
        raise UserError(f"--iterations must be between 1 and {T} for this model (got {k})")
    step = float(np.float32(step if step is not None else default_step(model)))
    img, x, hw = _prepare(model, img)
    for t, st, words in _trajectory(model, x, step, token):
        if t == k:
            canvas = _finish(model, st, k)
            header = _header(model, img, k, step, name)
            return Coded(header, _pack(header, words), _image(canvas, hw), canvas)
    raise AssertionError("unreachable")


def ladder(
    model, img: np.ndarray, step: float | None = None, name: str = "unnamed", token=None, keep_state: bool = False
) -> list[Coded]:
    """The files for k = 1..T at one step (one encoder pass; every prefix of the range coder is a file).
    ``keep_state``: each keeps the decoder state after its k iterations (to sample the iterations not sent)."""
    from .infer import _image

    model = _cpu_model(model)
    step = float(np.float32(step if step is not None else default_step(model)))
    img, x, hw = _prepare(model, img)
    out = []
    for t, st, words in _trajectory(model, x, step, token):
        canvas = _finish(model, st, t)
        header = _header(model, img, t, step, name)
        out.append(Coded(header, _pack(header, words), _image(canvas, hw), canvas, st if keep_state else None))
    return out


def rd_files(
    model,
    img: np.ndarray,
    steps: Sequence[float] | None = None,
    name: str = "unnamed",
    token=None,
    max_files: int | None = None,
) -> list[Coded]:
    """The files worth having, smallest first: over k = 1..T and the quantisation ``steps`` (default:
    :data:`ENVELOPE_STEP_FACTORS` times the model's step), each file whose decoded PSNR is higher than that of every
    smaller file (the rate-distortion envelope), thinned to ``max_files`` spread evenly in log(size). Each keeps
    its decoder state (to sample the iterations not sent)."""
    from .baselines import psnr

    base = default_step(model)
    every = []
    for s in steps or [f * base for f in ENVELOPE_STEP_FACTORS]:
        for c in ladder(model, img, step=s, name=name, token=token, keep_state=True):
            every.append((c.nbytes, -psnr(img, c.image), c))
    every.sort(key=lambda e: (e[0], e[1]))
    out: list[Coded] = []
    best = -math.inf
    for _, neg, c in every:
        if -neg > best + 0.01:
            out.append(c)
            best = -neg
    if max_files is not None and len(out) > max_files >= 2:
        logs = np.log([c.nbytes for c in out])
        grid = np.linspace(logs[0], logs[-1], max_files)
        keep = sorted({int(np.argmin(np.abs(logs - g))) for g in grid})
        out = [out[i] for i in keep]
    return out


def encode_within(
    model,
    img: np.ndarray,
    max_bytes: int,
    steps: Sequence[float] | None = None,
    name: str = "unnamed",
    token=None,
) -> Coded:
    """The best file (highest PSNR) of at most ``max_bytes`` bytes, over k = 1..T and the quantisation steps
    ``steps`` (default: :data:`STEP_FACTORS` times the model's step). Raises UserError when even one iteration
    at the coarsest step does not fit."""
    best = encode_within_each(model, img, [max_bytes], steps, name, token)[0]
    if isinstance(best, str):
        raise UserError(best)
    return best


def encode_within_each(
    model,
    img: np.ndarray,
    budgets: Sequence[int],
    steps: Sequence[float] | None = None,
    name: str = "unnamed",
    token=None,
) -> list[Coded | str]:
    """:func:`encode_within` for several byte budgets at once (one encoder pass per step for all of them); where
    no file fits, the item is the reason (a string)."""
    from .baselines import psnr
    from .infer import _image

    model = _cpu_model(model)
    base = default_step(model)
    steps = [float(np.float32(s)) for s in (steps or [f * base for f in STEP_FACTORS])]
    img, x, hw = _prepare(model, img)
    best: list[tuple[float, Coded] | None] = [None] * len(budgets)
    smallest = math.inf
    for step in steps:
        fits: list[tuple | None] = [None] * len(budgets)
        for t, st, words in _trajectory(model, x, step, token):
            header = _header(model, img, t, step, name)
            size = len(header.pack()) + 4 * len(words) + CRC_BYTES
            smallest = min(smallest, size)
            if size > max(budgets):
                break
            for i, b in enumerate(budgets):
                if size <= b:
                    fits[i] = (t, st, header, words)
        done: dict[int, tuple[float, Coded]] = {}
        for i, fit in enumerate(fits):
            if fit is None:
                continue
            t, st, header, words = fit
            if t not in done:
                canvas = _finish(model, st, t)
                coded = Coded(header, _pack(header, words), _image(canvas, hw), canvas)
                done[t] = (psnr(img, coded.image), coded)
            cur = best[i]
            if cur is None or done[t][0] > cur[0]:
                best[i] = done[t]
    h, w = img.shape[:2]
    out: list[Coded | str] = []
    for b, found in zip(budgets, best, strict=True):
        if found is None:
            out.append(
                f"{b} bytes ({8 * b / (h * w):.4f} bpp) is too small for this image: the smallest conv DRAW file "
                f"is {int(smallest)} bytes ({8 * smallest / (h * w):.4f} bpp)"
            )
        else:
            out.append(found[1])
    return out


# ----- reading a file ---------------------------------------------------------------------------------------
def read_header(data: bytes, what: str = "file") -> tuple[Header, np.ndarray]:
    """(header, range-coder words), or UserError for anything that is not an intact .cdraw file."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise UserError(f"{what}: not a conv DRAW file (it does not start with {MAGIC.decode()})")
    if len(data) < _FIXED.size + 1 + CRC_BYTES:
        raise UserError(f"{what}: truncated ({len(data)} bytes, not even a whole header)")
    magic, version, channels, width, height, k, step, mid = _FIXED.unpack_from(data)
    if version != VERSION:
        raise UserError(f"{what}: format version {version}; this program reads version {VERSION}")
    body, crc = data[:-CRC_BYTES], struct.unpack("<I", data[-CRC_BYTES:])[0]
    if zlib.crc32(body) != crc:
        raise UserError(f"{what}: corrupt or truncated (checksum mismatch)")
    n = data[_FIXED.size]
    start = _FIXED.size + 1 + n
    payload = body[start:]
    if start > len(body) or len(payload) % 4:
        raise UserError(f"{what}: corrupt (the payload is not whole 32-bit words)")
    try:
        name = data[_FIXED.size + 1 : start].decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{what}: corrupt (the model name is not UTF-8)") from None
    if channels not in (1, 3) or width < 1 or height < 1 or k < 1 or not (math.isfinite(step) and step > 0):
        raise UserError(f"{what}: corrupt header ({channels} channels, {width}x{height}, k={k}, step {step})")
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    return Header(channels, width, height, k, float(step), mid, name, version), words


def describe_model(header: Header) -> str:
    return f"'{header.model_name}' (weights sha256 {header.model_id.hex()}…)"


def check_model(model, header: Header, what: str = "file") -> None:
    if weights_id(model) != header.model_id:
        raise UserError(
            f"{what} was made with model {describe_model(header)}; the model given is another one "
            f"(weights {weights_id(model).hex()}…)"
        )
    if model.in_channels != header.channels:
        raise UserError(f"{what}: {header.channels} channels, the model codes {model.in_channels}")
    if header.k > model.iterations:
        raise UserError(f"{what}: k={header.k} but the model has {model.iterations} iterations")


def decode(model, data: bytes, what: str = "file", token=None) -> tuple[np.ndarray, Header]:
    """Rebuild the picture (uint8 (H, W, C)) from a file's bytes with ``model`` (which must be the one it was
    made with)."""
    import constriction
    import torch

    from .infer import _image

    header, words = read_header(data, what)
    model = _cpu_model(model)
    check_model(model, header, what)
    s = model.stride
    h, w = header.height, header.width
    x = torch.zeros(1, model.in_channels, h + (-h) % s, w + (-w) % s)
    st = model.init_state(x)
    fam = _family()
    dec = constriction.stream.queue.RangeDecoder(words)
    step = header.step
    try:
        with torch.no_grad():
            for _ in range(header.k):
                if token is not None:
                    token.check()
                mu, std = _prior_grid(model, st, step)
                sym = dec.decode(fam, np.zeros(std.size), std)
                n = torch.from_numpy(np.asarray(sym, dtype=np.int32)).to(torch.float32).reshape(mu.shape)
                st = model.decode_step(mu + n * step, st)
    except (AssertionError, ValueError, RuntimeError) as exc:
        raise UserError(f"{what}: corrupt (the range coder could not decode it: {str(exc)[:80]})") from exc
    canvas = _finish(model, st, header.k)
    return _image(canvas, (h, w)), header


# ----- finding the model of a file --------------------------------------------------------------------------
_ID_CACHE: dict[tuple[str, int, int], bytes] = {}


def _file_id(path: Path) -> bytes | None:
    from explorer.core.checkpoints import read_metadata

    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        if key in _ID_CACHE:
            return _ID_CACHE[key]
        if read_metadata(path).paper != "compression":
            return None
        from .infer import load

        model, _ = load(path, "cpu")
        _ID_CACHE[key] = weights_id(model)
        return _ID_CACHE[key]
    except (UserError, OSError):
        return None


def find_model(header: Header, folders: Sequence[Path], what: str = "file") -> Path:
    """The checkpoint among the ``.safetensors`` files in ``folders`` whose weights the file was made with: the one
    named in the header first, then the others."""
    candidates: list[Path] = []
    for d in folders:
        if Path(d).is_dir():
            files = sorted(Path(d).glob("*.safetensors"))
            candidates += [p for p in files if model_name(p) == header.model_name]
            candidates += [p for p in files if model_name(p) != header.model_name]
    for p in candidates:
        if _file_id(p) == header.model_id:
            return p
    raise UserError(
        f"{what} was made with model {describe_model(header)}, which is not among the bundled models; "
        "pass that checkpoint with --model FILE"
    )
