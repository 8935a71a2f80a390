"""Log-mel features in torch with our own mel filterbank; batch and streaming give identical frames.

Frames are not centred: frame i covers samples [i*hop, i*hop + win). A signal of n samples has
1 + (n - win) // hop frames (0 when n < win). The streaming extractor keeps the samples that do not yet fill a
frame, so pushing a signal in any chunking yields exactly the batch frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

SAMPLE_RATE = 8000


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = SAMPLE_RATE
    win: int = 200  # 25 ms at 8 kHz
    hop: int = 80  # 10 ms
    n_fft: int = 256
    n_mels: int = 40
    fmin: float = 20.0
    fmax: float | None = None  # None: Nyquist
    floor: float = 1e-6
    remove_dc: bool = False  # subtract each frame's mean before the window (a DC offset leaks into the low bands)

    @property
    def frame_seconds(self) -> float:
        return self.hop / self.sample_rate


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def vtlp_warp(freqs: np.ndarray, alpha: float, nyquist: float, f_hi: float = 0.8) -> np.ndarray:
    """Vocal tract length perturbation (Jaitly & Hinton 2013): frequencies scaled by ``alpha`` up to a
    boundary, then a straight line that keeps the Nyquist frequency fixed."""
    f = np.asarray(freqs, dtype=np.float64)
    if abs(alpha - 1.0) < 1e-9:
        return f
    b = f_hi * nyquist * min(alpha, 1.0) / alpha
    upper = nyquist - (nyquist - alpha * b) / (nyquist - b) * (nyquist - f)
    return np.where(f <= b, f * alpha, upper)


def mel_filterbank(cfg: FeatureConfig, warp: float = 1.0) -> np.ndarray:
    """Triangular filters on the HTK mel scale, shape (n_mels, n_fft//2+1), each peaking at 1.

    ``warp`` != 1 moves every FFT bin to ``vtlp_warp(f, warp)`` before the filters read it (training-time
    speaker augmentation: > 1 behaves like a shorter vocal tract)."""
    fmax = cfg.fmax or cfg.sample_rate / 2
    n_bins = cfg.n_fft // 2 + 1
    freqs = vtlp_warp(np.linspace(0.0, cfg.sample_rate / 2, n_bins), warp, cfg.sample_rate / 2)
    edges = mel_to_hz(np.linspace(hz_to_mel(cfg.fmin), hz_to_mel(fmax), cfg.n_mels + 2))
    fb = np.zeros((cfg.n_mels, n_bins))
    for m in range(cfg.n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        up = (freqs - lo) / max(mid - lo, 1e-9)
        down = (hi - freqs) / max(hi - mid, 1e-9)
        fb[m] = np.clip(np.minimum(up, down), 0.0, None)
    return fb.astype(np.float32)


class LogMel(torch.nn.Module):
    """(batch, samples) float audio in [-1, 1] -> (batch, frames, n_mels) natural-log mel power."""

    def __init__(self, cfg: FeatureConfig = FeatureConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.win, periodic=True), persistent=False)
        self.register_buffer("fb", torch.from_numpy(mel_filterbank(cfg)), persistent=False)
        self._warped: dict = {}

    def n_frames(self, n_samples: int) -> int:
        c = self.cfg
        return 0 if n_samples < c.win else 1 + (n_samples - c.win) // c.hop

    def warped_filterbank(self, warp: float) -> torch.Tensor:
        """The filterbank under a VTLP warp (quantised to 0.005 and cached)."""
        key = round(float(warp) * 200) / 200
        if key == 1.0:
            return self.fb
        fb = self._warped.get(key)
        if fb is None or fb.device != self.fb.device:
            fb = torch.from_numpy(mel_filterbank(self.cfg, key)).to(self.fb.device)
            self._warped[key] = fb
        return fb

    def forward(self, audio: torch.Tensor, warp: float = 1.0) -> torch.Tensor:
        """``warp``: VTLP factor (training augmentation only; 1 = the plain features)."""
        c = self.cfg
        if audio.dim() == 1:
            audio = audio[None]
        n = self.n_frames(audio.shape[-1])
        if n == 0:
            return audio.new_zeros(audio.shape[0], 0, c.n_mels)
        frames = audio[..., : (n - 1) * c.hop + c.win].unfold(-1, c.win, c.hop)  # (B, n, win)
        if c.remove_dc:
            frames = frames - frames.mean(-1, keepdim=True)
        spec = torch.fft.rfft(frames * self.window, n=c.n_fft)
        power = spec.real**2 + spec.imag**2
        fb = self.fb if warp == 1.0 else self.warped_filterbank(warp)
        mel = power @ fb.t()
        return torch.log(mel + c.floor)


class StreamingLogMel:
    """Push audio chunks, get exactly the frames the batch LogMel gives for the concatenated signal."""

    def __init__(self, logmel: LogMel) -> None:
        self.logmel = logmel
        self.cfg = logmel.cfg
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros(0, dtype=np.float32)
        self.frames_out = 0

    def push(self, chunk: np.ndarray) -> torch.Tensor:
        c = self.cfg
        self._buf = np.concatenate([self._buf, np.asarray(chunk, dtype=np.float32).reshape(-1)])
        n = self.logmel.n_frames(len(self._buf))
        if n == 0:
            return torch.zeros(0, c.n_mels)
        used = (n - 1) * c.hop + c.win
        with torch.no_grad():
            out = self.logmel(torch.from_numpy(self._buf[:used].copy()))[0]
        self._buf = self._buf[n * c.hop :]
        self.frames_out += n
        return out


def to_mono_float(data: np.ndarray) -> np.ndarray:
    """soundfile data (frames,) or (frames, channels) -> mono float32."""
    x = np.asarray(data, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    return x


def pcm_to_float(data: bytes, sample_format: str, channels: int = 1) -> np.ndarray | None:
    """Raw interleaved PCM bytes (a microphone's) -> mono float32 in [-1, 1]. ``sample_format`` names the sample
    type as Qt does ("Int16", "Int32", "Float", "UInt8"); None for any other."""
    if sample_format == "Int16":
        x = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
    elif sample_format == "Int32":
        x = np.frombuffer(data[: len(data) // 4 * 4], dtype="<i4").astype(np.float32) / 2147483648.0
    elif sample_format == "Float":
        x = np.frombuffer(data[: len(data) // 4 * 4], dtype="<f4").astype(np.float32)
    elif sample_format == "UInt8":
        x = (np.frombuffer(data, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    else:
        return None
    ch = max(1, int(channels))
    if ch > 1:
        x = x[: len(x) // ch * ch].reshape(-1, ch).mean(1)
    return x


def resample(x: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited polyphase resampling (scipy), exact ratio."""
    if sr_in == sr_out:
        return np.asarray(x, dtype=np.float32)
    from scipy.signal import resample_poly

    g = math.gcd(int(sr_in), int(sr_out))
    return resample_poly(np.asarray(x, dtype=np.float64), sr_out // g, sr_in // g).astype(np.float32)


def read_audio(path, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Any soundfile-readable file (4-384 kHz, mono or stereo, up to 10 minutes) -> mono float32 at ``sr_out``.
    Header, length and finiteness are checked by ``explorer.core.validate.read_audio`` before decoding."""
    from explorer.core.validate import read_audio as read_checked

    x, sr = read_checked(path)
    return resample(x, sr, sr_out)


class StreamResampler:
    """Stateful linear-interpolation resampler for live input at a rate other than the model's."""

    def __init__(self, sr_in: int, sr_out: int = SAMPLE_RATE) -> None:
        self.ratio = sr_in / sr_out
        self.sr_in, self.sr_out = sr_in, sr_out
        self._buf = np.zeros(0, dtype=np.float32)
        self._pos = 0.0  # position of the next output sample in _buf coordinates

    def push(self, x: np.ndarray) -> np.ndarray:
        if self.sr_in == self.sr_out:
            return np.asarray(x, dtype=np.float32)
        self._buf = np.concatenate([self._buf, np.asarray(x, dtype=np.float32)])
        n_out = int(np.floor((len(self._buf) - 1 - self._pos) / self.ratio)) + 1 if len(self._buf) > 1 else 0
        if n_out <= 0:
            return np.zeros(0, dtype=np.float32)
        t = self._pos + self.ratio * np.arange(n_out)
        out = np.interp(t, np.arange(len(self._buf)), self._buf).astype(np.float32)
        nxt = self._pos + self.ratio * n_out
        drop = min(int(np.floor(nxt)), len(self._buf))
        self._buf = self._buf[drop:]
        self._pos = nxt - drop
        return out
