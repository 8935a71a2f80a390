"""Running a trained transducer for a user: loading checkpoints (the app's bundle, the commands' models and
ensembles), and the jobs the tab hands to a worker: a file or a microphone queue streamed through
:class:`~.decode.StreamingRecognizer` chunk by chunk, with the offline model's answer at the end. Plain
PyTorch/NumPy (no Qt); generators yield partial results and check the cancel token between chunks. Also the
``transcribe`` command (:func:`main`), the same stream in a terminal.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import SPEC
from .decode import StreamingRecognizer, decode_utterance
from .features import SAMPLE_RATE
from .model import Transducer, build

PAPER = SPEC.id
OFFLINE_FILE = "transducer_offline.safetensors"


@dataclass
class ModelBundle:
    """What the app holds: the online model and, when bundled, the offline comparison model."""

    online: Transducer
    offline: Transducer | None = None
    offline_meta: object = None


def load_for_app(path: str, device):
    from explorer.core.checkpoints import load_model
    from explorer.core.errors import CheckpointError

    model, meta = load_model(path, PAPER, build, device)
    if not model.online:
        raise CheckpointError(f"{Path(path).name} is the offline variant; open an online (block-wise) checkpoint")
    off, off_meta = None, None
    off_path = Path(path).with_name(OFFLINE_FILE)
    if off_path.exists():
        try:
            off, off_meta = load_model(off_path, PAPER, build, device)
        except Exception:  # noqa: BLE001 - the comparison is optional
            off = None
    warm_up(model)
    if off is not None:
        offline_transcribe(off, np.zeros(SAMPLE_RATE, np.float32))
    return ModelBundle(model, off, off_meta), meta


def load_checkpoints(paths):
    """One checkpoint, or the ensemble of several (each one checked and loaded on its own first).
    Returns (model, metadata of the first, a label naming them all)."""
    from explorer.core.checkpoints import load_model
    from explorer.core.paths import bundled

    paths = [paths] if isinstance(paths, str) else list(paths or [])
    if len(paths) <= 1:
        model, meta = load_model(Path(paths[0]) if paths else bundled(SPEC.default_checkpoint), PAPER, build, "cpu")
        return model, meta, meta.name
    loaded = [load_model(Path(p), PAPER, build, "cpu") for p in paths]
    return ensemble_of([m for m, _ in loaded]), loaded[0][1], " + ".join(mt.name for _, mt in loaded)


def ensemble_of(models):
    """The :class:`~.model.Ensemble` of loaded models (eval mode); one line when they cannot form one."""
    from explorer.core.errors import UserError

    from .model import Ensemble

    try:
        return Ensemble(list(models)).eval()
    except ValueError as exc:
        raise UserError(f"these checkpoints cannot form an ensemble: {exc}") from None


def set_threads(threads: int | None) -> None:
    """torch CPU threads for a command: ``threads``, else NIPS_EXPLORER_THREADS, else every core."""
    import os

    torch.set_num_threads(threads or int(os.environ.get("NIPS_EXPLORER_THREADS", 0)) or (os.cpu_count() or 1))


def warm_up(model: Transducer) -> None:
    """One second of silence through the stream: the first calls into torch kernels are slow, so the first live
    stream then runs at its steady speed."""
    warm = StreamingRecognizer(model)
    warm.accept(np.zeros(SAMPLE_RATE, np.float32))
    warm.finish()


@torch.no_grad()
def offline_transcribe(model: Transducer, audio: np.ndarray) -> dict:
    t0 = time.perf_counter()
    digits, _, _ = decode_utterance(model, torch.from_numpy(np.asarray(audio, dtype=np.float32)))
    return {"digits": digits, "compute_s": time.perf_counter() - t0, "audio_s": len(audio) / SAMPLE_RATE}


# ----------------------------------------------------------------------------- worker-side streaming jobs
def _level_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x))) + 1e-6)) if len(x) else -120.0


def stream_file(bundle: ModelBundle, audio: np.ndarray, pace: float = 1.0, chunk_s: float = 0.04, token=None):
    """Generator for a worker: feeds ``audio`` (8 kHz) at ``pace`` x real time (0 = as fast as possible),
    yields {"frames", "frame_start", "blocks", "t", "level_db", "rtf"} per chunk, then the offline model's
    answer {"offline": ...}; returns a summary."""
    rec = StreamingRecognizer(bundle.online)
    n = max(1, int(chunk_s * SAMPLE_RATE))
    t0 = time.perf_counter()
    for i in range(0, len(audio), n):
        if token is not None:
            token.check()
        chunk = audio[i : i + n]
        if pace > 0:  # wait until this chunk "has been spoken"
            due = t0 + (i + len(chunk)) / SAMPLE_RATE / pace
            while True:
                left = due - time.perf_counter()
                if left <= 0:
                    break
                if token is not None:
                    token.check()
                time.sleep(min(left, 0.02))
        out = rec.accept(chunk)
        _annotate(out, rec, _level_db(chunk))
        yield out
    out = rec.finish()
    _annotate(out, rec, -120.0)
    yield out
    summary = {"digits": rec.digits, "audio_s": len(audio) / SAMPLE_RATE, "rtf": out["rtf"]}
    if bundle.offline is not None:
        off = offline_transcribe(bundle.offline, audio)
        yield {"offline": off}
        summary["offline"] = off
    return summary


def stream_path(bundle: ModelBundle, path, pace: float = 1.0, token=None):
    """Generator for a worker: read the audio file ``path`` (any rate, mono or stereo) and stream it like
    :func:`stream_file`."""
    from .features import read_audio

    audio = read_audio(path)
    return (yield from stream_file(bundle, audio, pace=pace, token=token))


def _annotate(out: dict, rec, level_db: float) -> None:
    """Add the stream time, input level and running real-time factor to a recognizer update."""
    audio_s = rec.samples_in / SAMPLE_RATE
    out.update(t=audio_s, level_db=level_db, rtf=rec.compute_s / max(1e-9, audio_s))


def stream_queue(bundle: ModelBundle, q, sample_rate: int, token=None, keep_audio_s: float = 60.0):
    """Generator for a worker: live audio chunks (float32 mono at ``sample_rate``) from queue ``q``; ``None`` in the
    queue ends the stream. Yields like :func:`stream_file`, with the offline comparison at the end."""
    import queue as _queue

    from .features import StreamResampler

    rec = StreamingRecognizer(bundle.online)
    rs = StreamResampler(sample_rate, SAMPLE_RATE)
    kept: list[np.ndarray] = []
    kept_n = 0
    while True:
        if token is not None:
            token.check()
        try:
            chunk = q.get(timeout=0.05)
        except _queue.Empty:
            continue
        if chunk is None:
            break
        x = rs.push(chunk)
        kept.append(x)
        kept_n += len(x)
        while kept_n - len(kept[0]) > keep_audio_s * SAMPLE_RATE:
            kept_n -= len(kept.pop(0))
        out = rec.accept(x)
        _annotate(out, rec, _level_db(x))
        yield out
    out = rec.finish()
    _annotate(out, rec, -120.0)
    yield out
    summary = {"digits": rec.digits, "audio_s": rec.samples_in / SAMPLE_RATE, "rtf": out["rtf"]}
    if bundle.offline is not None and kept_n:
        audio = np.concatenate(kept)
        off = offline_transcribe(bundle.offline, audio)
        yield {"offline": off}
        summary["offline"] = off
    return summary


# ------------------------------------------------ the command: nips-explorer transcribe FILE.wav
def main(args) -> int:
    """``nips-explorer transcribe FILE.wav``: stream a file in chunks and print each digit as it is emitted."""
    from .features import read_audio

    torch.set_num_threads(1)
    model, meta, _ = load_checkpoints(args.checkpoint)
    if not model.online:
        from explorer.core.errors import UserError

        raise UserError(
            f"{meta.name} is an offline model (it reads the whole utterance before its first "
            f"digit), so it cannot stream; decode the file with: nips-explorer eval transducer "
            f"--audio-dir DIR --checkpoint {args.checkpoint or meta.name}"
        )
    audio = read_audio(args.file)
    rec = StreamingRecognizer(model, beam=args.beam)
    step = max(1, int(args.chunk_ms / 1000 * rec.sample_rate))
    events = []
    t0 = time.perf_counter()
    for i in range(0, len(audio), step):
        for ev in rec.accept(audio[i : i + step])["blocks"]:
            events += _print_block(ev, args.json)
    for ev in rec.finish()["blocks"]:
        events += _print_block(ev, args.json)
    wall = time.perf_counter() - t0
    dur = len(audio) / rec.sample_rate
    summary = {
        "file": str(args.file),
        "transcript": "".join(str(d) for d in rec.digits),
        "emissions": events,
        "audio_seconds": dur,
        "real_time_factor": wall / dur,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"transcript: {summary['transcript'] or '(nothing)'}   ({dur:.2f} s audio, RTF {wall / dur:.4f})")
    return 0


def _print_block(ev, quiet):
    out = []
    for d in ev["digits"]:
        out.append({"digit": d, "time_s": round(ev["time_s"], 3), "block": ev["block"]})
        if not quiet:
            print(f"{ev['time_s']:7.2f} s  block {ev['block']:3d}  {d}", flush=True)
    return out
