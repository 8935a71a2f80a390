"""Live inference: a streaming recogniser fed audio chunks (microphone, file at real-time pace) and the loader.

Features are computed incrementally (identical to the batch features), the encoder GRU carries its hidden state
across chunks, and the transducer decodes a block as soon as its W encoder frames exist: nothing is ever decoded
from audio beyond the current block.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .features import SAMPLE_RATE, StreamingLogMel
from .model import BlockDecoder, Transducer, build, decode_utterance

PAPER = "transducer"
OFFLINE_FILE = "transducer_offline.safetensors"


class StreamingRecognizer:
    def __init__(self, model: Transducer, beam: int = 1) -> None:
        if not model.online:
            raise ValueError("the offline variant cannot stream")
        self.model = model
        self.beam = beam
        self.sample_rate = SAMPLE_RATE
        self.W = model.cfg["block"]
        self.reset()

    def reset(self) -> None:
        self.feat = StreamingLogMel(self.model.logmel)
        self._norm_state: dict = {}
        self.decoder = BlockDecoder(self.model, self.beam)
        self._stack = torch.zeros(0, self.model.cfg["n_mels"])
        self._enc: list[torch.Tensor] = []
        self._keys: list[torch.Tensor] = []
        self._hidden = None
        self.samples_in = 0
        self.frames_out = 0
        self.compute_s = 0.0
        self.blocks_done = 0

    @property
    def digits(self) -> list[int]:
        return self.decoder.digits

    @torch.no_grad()
    def accept(self, samples: np.ndarray) -> dict:
        """Feed audio (float32 mono at 8 kHz). Returns new normalised log-mel frames and finished blocks."""
        t0 = time.perf_counter()
        m = self.model
        dev = m.feat_mean.device
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.samples_in += len(samples)
        raw = self.feat.push(samples).to(dev)
        frames = m.normalize(raw, self._norm_state)
        start = self.frames_out
        self.frames_out += frames.shape[0]
        blocks = []
        if frames.shape[0]:
            self._stack = torch.cat([self._stack.to(dev), frames])
            s = m.cfg["stack"]
            n = self._stack.shape[0] // s
            if n:
                enc, keys, _, self._hidden = m.encode(self._stack[None, : n * s], None, self._hidden)
                self._stack = self._stack[n * s :]
                self._enc += list(enc[0])
                self._keys += list(keys[0])
                while len(self._enc) >= self.W:
                    blocks.append(self._decode_block(self.W))
        self.compute_s += time.perf_counter() - t0
        return {"frames": frames.cpu().numpy(), "frame_start": start, "blocks": blocks}

    def _decode_block(self, n: int) -> dict:
        m = self.model
        W = self.W
        hb = torch.stack(self._enc[:n])
        kb = torch.stack(self._keys[:n])
        if n < W:
            hb = torch.cat([hb, hb.new_zeros(W - n, hb.shape[1])])
            kb = torch.cat([kb, kb.new_zeros(W - n, kb.shape[1])])
        mb = torch.arange(W, device=hb.device) < n
        del self._enc[:n], self._keys[:n]
        b = self.blocks_done
        new = self.decoder.push_block(hb, kb, mb)
        self.blocks_done += 1
        fs = m.frame_seconds
        t_end = min(m.block_end_sample(b, 10**9), self.samples_in) / SAMPLE_RATE
        return {
            "block": b,
            "start_s": b * W * fs,
            "end_s": (b * W + n) * fs,
            "time_s": t_end,
            "digits": [d for d, _ in new],
            "attention": [a for _, a in new],
            "frames": n,
            "transcript": "".join(str(d) for d in self.decoder.digits),
        }

    @torch.no_grad()
    def finish(self) -> dict:
        """End of input: the end-of-input silence goes through like audio, then the last, partial block is decoded,
        exactly as the whole-file decode does. The silence's frames are not returned, and the blocks it completes
        are reported as ending with the audio (nothing was heard after it)."""
        n = self.model.flush_samples
        samples_in = self.samples_in
        out = (
            self.accept(np.zeros(n, np.float32))
            if n
            else {
                "frames": np.zeros((0, self.model.cfg["n_mels"]), np.float32),
                "frame_start": self.frames_out,
                "blocks": [],
            }
        )
        self.samples_in = samples_in  # the silence was not heard: block times stay within the audio
        end_s = samples_in / SAMPLE_RATE
        out["frames"] = np.zeros((0, self.model.cfg["n_mels"]), np.float32)
        out["frame_start"] = self.frames_out
        t0 = time.perf_counter()
        if self._enc:
            out["blocks"].append(self._decode_block(len(self._enc)))
        for b in out["blocks"]:
            for k in ("time_s", "end_s", "start_s"):
                b[k] = min(b[k], end_s)
        self.compute_s += time.perf_counter() - t0
        return out


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
