"""One checkpoint format for the whole app.

A checkpoint is a ``.safetensors`` file: tensors plus a JSON metadata header with the keys

    paper, format_version, model_config, metrics, data, created, explorer_version

(each stored as a JSON string, since safetensors metadata values are strings). The metadata is read
*without touching the weights*, so the app can refuse a wrong file first.

A plain ``.pt``/``.pth`` state dict is accepted too, loaded only with ``torch.load(weights_only=True)``
(a pickle carrying code is refused and never executed). It may be a bare state dict, or
``{"state_dict": ..., "meta": {...}}`` with the same metadata keys.

Every failure raises :class:`CheckpointError` with a message naming the problem.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CheckpointError

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
META_KEYS = ("paper", "format_version", "model_config", "metrics", "data", "created", "explorer_version")
_MAX_HEADER = 100 * 1024 * 1024
_DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "U16": 2,
    "U32": 4,
    "U64": 8,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}


@dataclass
class CheckpointMeta:
    paper: str | None
    format_version: int
    model_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    explorer_version: str = ""
    path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return Path(self.path).name if self.path else "(unsaved)"

    def headline(self) -> str:
        """The headline metric, as 'name value' (first entry of metrics['headline'] or first metric)."""
        m = self.metrics or {}
        key = m.get("headline")
        if key and key in m:
            return f"{key} {_fmt(m[key])}"
        for k, v in m.items():
            if isinstance(v, (int, float)):
                return f"{k} {_fmt(v)}"
        return ""

    def data_summary(self) -> str:
        d = self.data or {}
        return str(d.get("name") or d.get("dataset") or d.get("description") or "")

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in META_KEYS}
        out.update(self.extra)
        out["file"] = self.path
        return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _meta_from_strings(raw: Mapping[str, str], path: str | None) -> CheckpointMeta:
    def parse(key: str, default: Any) -> Any:
        if key not in raw:
            return default
        try:
            return json.loads(raw[key])
        except (TypeError, ValueError):
            return raw[key]

    try:
        version = int(parse("format_version", 0))
    except (TypeError, ValueError):
        raise CheckpointError(f"{_name(path)}: metadata field format_version is not a number") from None
    extra = {k: parse(k, None) for k in raw if k not in META_KEYS}
    meta = CheckpointMeta(
        paper=parse("paper", None),
        format_version=version,
        model_config=parse("model_config", {}) or {},
        metrics=parse("metrics", {}) or {},
        data=parse("data", {}) or {},
        created=str(parse("created", "")),
        explorer_version=str(parse("explorer_version", "")),
        path=path,
        extra=extra,
    )
    for key in ("model_config", "metrics", "data"):
        if not isinstance(getattr(meta, key), dict):
            raise CheckpointError(f"{_name(path)}: metadata field {key} is not a JSON object")
    if meta.paper is not None and not isinstance(meta.paper, str):
        raise CheckpointError(f"{_name(path)}: metadata field paper is not a text")
    return meta


def _name(path: str | None) -> str:
    return Path(path).name if path else "checkpoint"


def _check_exists(path: Path) -> None:
    """A readable regular file, or CheckpointError; a named pipe or device is refused before it is opened."""
    from .errors import UserError
    from .validate import regular_file

    try:
        regular_file(path, "checkpoint file")
    except CheckpointError:
        raise
    except UserError as exc:
        raise CheckpointError(str(exc)) from None


def _read_safetensors_header(path: Path) -> dict[str, Any]:
    """Parse the safetensors header by hand: clear messages for truncated or foreign files."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise CheckpointError(
                f"{path.name}: file is truncated or empty ({size} bytes), not a safetensors checkpoint"
            )
        (n,) = struct.unpack("<Q", head)
        if n <= 0 or n > _MAX_HEADER or 8 + n > size:
            raise CheckpointError(
                f"{path.name}: not a valid safetensors file (header length {n} does not fit in {size} bytes; "
                "truncated or corrupt)"
            )
        try:
            header = json.loads(fh.read(n).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise CheckpointError(f"{path.name}: corrupt safetensors header (not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path.name}: corrupt safetensors header")
    data_len = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            start, end = info["data_offsets"]
            dtype, shape = info["dtype"], info["shape"]
            ok = (
                isinstance(start, int)
                and isinstance(end, int)
                and 0 <= start <= end
                and dtype in _DTYPE_BYTES
                and isinstance(shape, list)
                and all(isinstance(s, int) and s >= 0 for s in shape)
            )
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise CheckpointError(f"{path.name}: corrupt safetensors header entry for tensor '{name}'")
        if math.prod(shape) * _DTYPE_BYTES[dtype] != end - start:
            raise CheckpointError(
                f"{path.name}: tensor '{name}' claims shape {shape} of {dtype} but holds "
                f"{end - start} bytes (corrupt header)"
            )
        if end > data_len:
            raise CheckpointError(
                f"{path.name}: file is truncated (tensor '{name}' needs bytes up to {end}, only {data_len} present)"
            )
    return header


def read_metadata(path: os.PathLike | str) -> CheckpointMeta:
    """Read a checkpoint's metadata without loading its weights (safetensors), or safely (.pt)."""
    p = Path(path)
    _check_exists(p)
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        header = _read_safetensors_header(p)
        raw = header.get("__metadata__") or {}
        if not raw:
            raise CheckpointError(f"{p.name}: safetensors file has no NIPS Explorer metadata (paper, model_config)")
        return _meta_from_strings(raw, str(p))
    if suffix in (".pt", ".pth"):
        meta, _ = _load_pt(p)
        return meta
    raise CheckpointError(f"{p.name}: unsupported file type '{suffix or '(none)'}' (use .safetensors, .pt or .pth)")


def _load_pt(p: Path):
    import pickle

    import torch

    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else "unsupported content"
        if "weights_only" in str(exc) or "Unsupported global" in str(exc) or "GLOBAL" in str(exc):
            raise CheckpointError(
                f"{p.name}: refused: the file contains Python code or objects, not just tensors "
                f"(unsafe pickle; nothing from it was run). Details: {msg[:200]}"
            ) from exc
        raise CheckpointError(f"{p.name}: not a readable PyTorch file ({msg[:200]})") from exc
    except (EOFError, RuntimeError, OSError, ValueError, AttributeError, ImportError, TypeError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"{p.name}: not a readable PyTorch checkpoint (truncated or corrupt?): {text[:200]}"
        ) from exc
    except Exception as exc:  # any other unpickling failure
        raise CheckpointError(f"{p.name}: could not be read safely: {type(exc).__name__}: {str(exc)[:200]}") from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        raw_meta = obj.get("meta") or {}
        state = obj["state_dict"]
    elif isinstance(obj, dict):
        raw_meta, state = {}, obj
    else:
        raise CheckpointError(f"{p.name}: holds a {type(obj).__name__}, not a state dict")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{p.name}: the state dict holds something other than named tensors")
    raw = (
        {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in raw_meta.items()}
        if isinstance(raw_meta, dict)
        else {}
    )
    meta = _meta_from_strings(raw, str(p))
    if "format_version" not in raw:
        meta.format_version = 0  # a bare state dict: paper and config unknown
    return meta, state


@dataclass
class Checkpoint:
    meta: CheckpointMeta
    state_dict: dict[str, Any]


def load_checkpoint(path: os.PathLike | str, expected_paper: str | None = None) -> Checkpoint:
    """Load metadata and tensors (on CPU). Checks the paper id before reading any weight."""
    p = Path(path)
    meta = read_metadata(p)
    _check_paper(meta, expected_paper)
    if p.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(p), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{p.name}: could not read tensors (corrupt file?): {str(exc)[:200]}") from exc
    else:
        _, state = _load_pt(p)
    return Checkpoint(meta=meta, state_dict=state)


def _check_paper(meta: CheckpointMeta, expected: str | None) -> None:
    if meta.format_version > FORMAT_VERSION:
        raise CheckpointError(
            f"{meta.name}: made by a newer NIPS Explorer (format {meta.format_version}, this app reads up to "
            f"{FORMAT_VERSION}); please update the app"
        )
    if expected is None or meta.paper is None:
        return
    if meta.paper != expected:
        raise CheckpointError(f"{meta.name}: this checkpoint is for the '{meta.paper}' tab, not '{expected}'")


def check_state_dict(model, state: Mapping[str, Any], name: str = "checkpoint") -> None:
    """Refuse a state dict whose keys or shapes do not match ``model``; lists the first differences."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if wrong:
        problems.append("shape mismatch: " + "; ".join(wrong[:3]) + (" ..." if len(wrong) > 3 else ""))
    if missing:
        problems.append("missing tensors: " + ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else ""))
    if unexpected:
        problems.append("unexpected tensors: " + ", ".join(unexpected[:4]) + (" ..." if len(unexpected) > 4 else ""))
    if problems:
        raise CheckpointError(f"{name}: does not fit the model ({'; '.join(problems)})")


def load_model(
    path: os.PathLike | str,
    paper: str,
    build: Callable[[dict[str, Any]], Any],
    device: Any = "cpu",
    default_config: dict[str, Any] | None = None,
):
    """Load a checkpoint for ``paper``: check paper and shapes, build the model from its config, load weights.

    ``build(model_config)`` returns an ``nn.Module``. For a bare ``.pt`` state dict without metadata,
    ``default_config`` is used to build the model (shapes are still checked).
    Returns ``(model, meta)``; the model is in eval mode on ``device``.
    """
    ckpt = load_checkpoint(path, expected_paper=paper)
    meta = ckpt.meta
    config = meta.model_config or default_config
    if not config:
        raise CheckpointError(f"{meta.name}: has no model_config metadata, and no default configuration is known")
    # The config is checked against the file's tensors on a model without storage (device "meta") first, so a
    # small file whose config claims a huge model is refused before any memory is spent on it.
    skeleton = _build(build, config, meta, device="meta")
    if skeleton is not None:
        check_state_dict(skeleton, ckpt.state_dict, meta.name)
        del skeleton
    check_finite(ckpt.state_dict, meta.name)
    model = _build(build, config, meta)
    check_state_dict(model, ckpt.state_dict, meta.name)
    try:
        model.load_state_dict(ckpt.state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{meta.name}: weights do not fit the model: {str(exc)[:300]}") from exc
    if meta.paper is None:
        meta.paper = paper
    if not meta.model_config:
        meta.model_config = dict(config)
    model.to(device).eval()
    return model, meta


def _build(build: Callable[[dict[str, Any]], Any], config: Mapping[str, Any], meta: CheckpointMeta, device=None):
    """``build(config)``; on ``device="meta"`` returns None when the model can't be built without storage."""
    import torch

    if device == "meta" and not _meta_build_is_safe():
        return None
    try:
        if device == "meta":
            with torch.device("meta"):
                return build(dict(config))
        return build(dict(config))
    except Exception as exc:  # noqa: BLE001 - a config from a file can make any builder fail
        if device == "meta" and not isinstance(exc, (TypeError, ValueError, KeyError)):
            log.debug("%s: no storage-free build (%s); checking shapes after the real build", meta.name, exc)
            return None
        raise CheckpointError(
            f"{meta.name}: its model_config cannot build a model: {type(exc).__name__}: {str(exc)[:200]}"
        ) from exc


def loader_imports() -> list[str]:
    """Modules the first :func:`load_model` imports by itself (the storage-free check's meta kernels import
    torch._dynamo, about 150 modules), for the app to import ahead, in its warm-up; none where that check is off
    (see ``_meta_build_is_safe``: there, importing them early could bring the crash it avoids)."""
    import importlib.util

    return ["torch._dynamo"] if importlib.util.find_spec("triton") is None else []


def _meta_build_is_safe() -> bool:
    """Weight initialisation on the "meta" device runs torch's Python meta kernels, which import torch._dynamo and,
    in CUDA builds, Triton. Importing Triton in a worker after Mesa's OpenGL is loaded (the 3D tab's VTK view)
    crashed the process on a bare Debian machine with the CUDA build and no GPU, so the storage-free check runs
    only where Triton is absent (CPU builds) or torch._dynamo is already loaded; elsewhere the shapes are checked
    after the real build, as before."""
    import importlib.util
    import sys

    return "torch._dynamo" in sys.modules or importlib.util.find_spec("triton") is None


def check_finite(state: Mapping[str, Any], name: str = "checkpoint") -> None:
    """Refuse weights holding NaN or infinity (they would load and draw black images or 'nan' scores)."""
    import torch

    bad = [
        k
        for k, v in state.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if bad:
        raise CheckpointError(
            f"{name}: holds NaN or infinite weights (tensor{'s' if len(bad) > 1 else ''} "
            f"{', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}); the file is damaged"
        )


def save_checkpoint(
    path: os.PathLike | str,
    state_dict: Mapping[str, Any],
    *,
    paper: str,
    model_config: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a ``.safetensors`` checkpoint with metadata; atomic (temp file then rename)."""
    from safetensors.torch import save_file

    from .. import __version__

    p = Path(path)
    if p.suffix.lower() != ".safetensors":
        raise CheckpointError(f"{p.name}: checkpoints are written as .safetensors")
    p.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "paper": json.dumps(paper),
        "format_version": json.dumps(FORMAT_VERSION),
        "model_config": json.dumps(dict(model_config)),
        "metrics": json.dumps(dict(metrics or {})),
        "data": json.dumps(dict(data or {})),
        "created": json.dumps(_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")),
        "explorer_version": json.dumps(__version__),
    }
    for k, v in (extra or {}).items():
        meta[k] = json.dumps(v)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    from .validate import atomic_output

    with atomic_output(p, "checkpoint") as tmp:  # a full disk or a crash leaves the previous file, or none
        save_file(tensors, str(tmp), metadata=meta)
    return p


def update_metrics(path: os.PathLike | str, metrics: Mapping[str, Any]) -> None:
    """Merge ``metrics`` into a safetensors checkpoint's metadata (rewrites the file)."""
    ckpt = load_checkpoint(path)
    m = dict(ckpt.meta.metrics)
    m.update(metrics)
    save_checkpoint(
        path,
        ckpt.state_dict,
        paper=ckpt.meta.paper or "",
        model_config=ckpt.meta.model_config,
        metrics=m,
        data=ckpt.meta.data,
        extra=ckpt.meta.extra,
    )
