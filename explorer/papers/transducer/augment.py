"""Training utterances: isolated digit clips joined into connected digits with random gaps, per-digit gain, speed
perturbation and background noise (and, by choice, channel colouring, formant warping, clipped onsets, tight
trimming and input faults), fluent strings given the same treatment, utterances with no digit at all, and
:class:`UtteranceSource`, which samples them from a mix of speakers.

Each digit's start and end sample is known, which gives the initial block alignment (a digit belongs to the block
holding its last frame, as the paper does with forced alignments).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .data import SPEAKERS, Clip, Utterance, group_by_speaker_digit
from .features import SAMPLE_RATE


# ------------------------------------------------------------------------------------------ utterances
@dataclass(frozen=True)
class Augment:
    min_digits: int = 1
    max_digits: int = 7
    gap: tuple[float, float] = (0.03, 0.45)  # seconds between digits
    lead: tuple[float, float] = (0.05, 0.6)
    tail: tuple[float, float] = (0.3, 0.7)
    gain_db: tuple[float, float] = (-6.0, 6.0)  # per digit
    level_db: tuple[float, float] = (-30.0, -10.0)  # utterance RMS target, dBFS
    speed: tuple[float, float] = (0.9, 1.1)
    snr_db: tuple[float, float] = (8.0, 40.0)
    p_noise: float = 0.8
    # channel bandwidth: with probability p_channel the audio goes through a random shelf, everything above a
    # corner frequency (log-uniform in shelf_hz) scaled by shelf_db, *before* the background noise is added, so
    # the bands above the corner keep less (or more) signal over the noise. A fixed colouring alone would be
    # removed by the running-mean normalisation; what differs between FSDD's microphones is this per-band SNR
    # (nicolas: 0-7 dB above 2 kHz, the others 15-30 dB).
    p_channel: float = 0.0
    shelf_hz: tuple[float, float] = (500.0, 3000.0)
    shelf_db: tuple[float, float] = (-35.0, 10.0)
    # vocal-tract length: with probability p_formant the utterance's spectral envelope (formants) is stretched
    # along the frequency axis by a log-uniform factor in ``formant``, pitch and timing unchanged, so each
    # utterance is said by a pseudo-speaker with a shorter or longer vocal tract (speed perturbation moves pitch,
    # formants and tempo together; this moves the formants alone).
    p_formant: float = 0.0
    formant: tuple[float, float] = (0.87, 1.15)
    # clipped recordings: with probability p_crop a digit clip loses up to ``crop_s`` seconds at its start and
    # (independently) at its end, at most a fifth of it each. Many FSDD files start or stop mid-word (the first
    # 10 ms within 20 dB of the peak: nicolas 77%, theo 67%, jackson 50%, george 34%, lucas 3%), so a speaker's
    # onsets and endings are not to be relied on.
    p_crop: float = 0.0
    crop_s: float = 0.08
    # tight: with probability p_tight the utterance starts and ends within 20 ms of its first and last word, as a
    # clip trimmed to the word does (the end-of-input silence, FLUSH_S in model.py, still follows it)
    p_tight: float = 0.0
    # robustness to how a visitor's input arrives: with probability p_robust one of a very low level (-65..-40
    # dBFS), clipping (driven 1.5-10x past full scale), a DC offset (up to +-0.3) or mains hum (50/60 Hz and two
    # harmonics, -45..-20 dBFS)
    p_robust: float = 0.0


CLEAN = Augment(gain_db=(0.0, 0.0), speed=(1.0, 1.0), p_noise=0.0)


def _speed(x: np.ndarray, f: float) -> np.ndarray:
    if abs(f - 1.0) < 1e-3:
        return x
    n = max(2, int(round(len(x) / f)))
    return np.interp(np.linspace(0, len(x) - 1, n), np.arange(len(x)), x).astype(np.float32)


def _crop(rng: np.random.Generator, x: np.ndarray, crop_s: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Cut a random 0..crop_s seconds (at most a fifth of the clip) off each end."""
    most = min(int(crop_s * sr), len(x) // 5)
    a, b = (int(rng.integers(0, most + 1)) for _ in range(2))
    return x[a : len(x) - b]


def _noise(rng, n: int) -> np.ndarray:
    """White noise through a random one-pole low-pass (white to brown-ish), unit RMS."""
    w = rng.standard_normal(n).astype(np.float32)
    a = float(rng.uniform(0.0, 0.97))
    if a > 0:
        from scipy.signal import lfilter

        w = lfilter([1.0 - a], [1.0, -a], w).astype(np.float32)
    return w / (np.sqrt((w**2).mean()) + 1e-9)


def build_utterance(
    rng: np.random.Generator,
    by_digit: dict[int, list[Clip]],
    aug: Augment = Augment(),
    digits: Sequence[int] | None = None,
    sr: int = SAMPLE_RATE,
) -> Utterance:
    """Join isolated digit clips into one utterance; returns the audio and each digit's (start, end) sample."""
    if digits is None and len(by_digit) < 10:
        # a speaker with only some digits recorded (most Speech Commands voices have one to three clips):
        # short strings of the digits there are
        n = int(rng.integers(1, min(3, aug.max_digits) + 1))
        have = sorted(by_digit)
        digits = [int(have[i]) for i in rng.integers(0, len(have), size=n)]
    if digits is None:
        n = int(rng.integers(aug.min_digits, aug.max_digits + 1))
        digits = [int(d) for d in rng.integers(0, 10, size=n)]
    tight = bool(aug.p_tight) and rng.random() < aug.p_tight
    edge = (0.0, 0.02)
    parts, bounds, pos = [], [], 0
    lead = np.zeros(int(rng.uniform(*(edge if tight else aug.lead)) * sr), dtype=np.float32)
    parts.append(lead)
    pos += len(lead)
    speaker = ""
    for i, d in enumerate(digits):
        pool = by_digit[d]
        clip = pool[int(rng.integers(len(pool)))]
        speaker = clip.speaker
        x = clip.audio
        if aug.p_crop and rng.random() < aug.p_crop:
            x = _crop(rng, x, aug.crop_s)
        x = _speed(x, float(rng.uniform(*aug.speed)))
        x = x / (np.sqrt((x**2).mean()) + 1e-9) * 10 ** (rng.uniform(*aug.gain_db) / 20)
        bounds.append((pos, pos + len(x)))
        parts.append(x.astype(np.float32))
        pos += len(x)
        last = i == len(digits) - 1
        g = np.zeros(int(rng.uniform(*((edge if tight else aug.tail) if last else aug.gap)) * sr), dtype=np.float32)
        parts.append(g)
        pos += len(g)
    return _finish(rng, np.concatenate(parts), list(digits), bounds, speaker, aug)


def _shelf(x: np.ndarray, corner_hz: float, gain_db: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Zero-phase shelf: the part of ``x`` above ``corner_hz`` scaled by ``gain_db`` (no shift of any boundary)."""
    from scipy.signal import butter, sosfiltfilt

    low = sosfiltfilt(butter(4, corner_hz, fs=sr, output="sos"), x)
    return (low + 10 ** (gain_db / 20) * (x - low)).astype(np.float32)


def _formant_warp(x: np.ndarray, factor: float, n_fft: int = 256, hop: int = 64, lifter: int = 24) -> np.ndarray:
    """Stretch the spectral envelope of ``x`` along frequency by ``factor`` (> 1: formants move up), keeping the
    harmonics (pitch), the phase and the length. Per STFT frame, the envelope is the cepstrally smoothed log
    magnitude (quefrencies below ``lifter`` samples, 3 ms at 8 kHz: under any voice's pitch period); each bin is
    scaled by warped envelope / envelope."""
    from scipy.signal import istft, stft

    if len(x) < n_fft or abs(factor - 1.0) < 1e-3:
        return x
    _, _, spec = stft(x, nperseg=n_fft, noverlap=n_fft - hop, boundary="even")
    cep = np.fft.irfft(np.log(np.abs(spec) + 1e-7), n=n_fft, axis=0)
    cep[lifter : n_fft - lifter + 1] = 0.0
    env = np.fft.rfft(cep, axis=0).real  # (bins, frames) log envelope
    bins = np.arange(env.shape[0])
    src = np.clip(bins / factor, 0, bins[-1])  # envelope at f/factor moves to f
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, bins[-1])
    w = (src - lo)[:, None]
    warped = (1 - w) * env[lo] + w * env[hi]
    gain = np.exp(np.clip(warped - env, -3.0, 3.0))  # at most +-26 dB per bin
    _, y = istft(spec * gain, nperseg=n_fft, noverlap=n_fft - hop, boundary=True)
    y = y[: len(x)]
    return np.pad(y, (0, len(x) - len(y))).astype(np.float32)


def _finish(
    rng: np.random.Generator,
    audio: np.ndarray,
    digits: list[int],
    bounds: list[tuple[int, int]],
    speaker: str,
    aug: Augment,
) -> Utterance:
    """Random vocal-tract length, channel bandwidth, speech level, background noise at a random SNR; no clipping."""
    if aug.p_formant and rng.random() < aug.p_formant:
        audio = _formant_warp(audio, float(np.exp(rng.uniform(*np.log(aug.formant)))))
    if aug.p_channel and rng.random() < aug.p_channel:
        audio = _shelf(audio, float(np.exp(rng.uniform(*np.log(aug.shelf_hz)))), float(rng.uniform(*aug.shelf_db)))
    speech = np.concatenate([audio[a:b] for a, b in bounds])
    rms = np.sqrt((speech**2).mean()) + 1e-9
    audio = audio * (10 ** (rng.uniform(*aug.level_db) / 20) / rms)
    if rng.random() < aug.p_noise:
        srms = 10 ** (rng.uniform(*aug.level_db) / 20)
        audio += _noise(rng, len(audio)) * srms * 10 ** (-rng.uniform(*aug.snr_db) / 20)
    if aug.p_robust and rng.random() < aug.p_robust:
        return Utterance(_input_fault(rng, audio), digits, bounds, speaker)
    peak = np.abs(audio).max()
    if peak > 0.99:
        audio *= 0.99 / peak
    return Utterance(audio.astype(np.float32), digits, bounds, speaker)


def _input_fault(rng: np.random.Generator, audio: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """One of: very low level, clipping, DC offset, mains hum (see Augment.p_robust)."""
    kind = int(rng.integers(4))
    peak = float(np.abs(audio).max()) + 1e-9
    if kind == 0:
        audio = audio / peak * 10 ** (rng.uniform(-65.0, -40.0) / 20)
        audio = np.round(audio * 32767) / 32767  # what a 16-bit file keeps of it
    elif kind == 1:
        audio = np.clip(audio / peak * rng.uniform(1.5, 10.0), -1.0, 1.0)
    elif kind == 2:
        audio = audio / peak * 0.6 + rng.uniform(-0.3, 0.3)
    else:
        f0 = 50.0 if rng.random() < 0.5 else 60.0
        tt = np.arange(len(audio)) / sr
        hum = sum(rng.uniform(0.3, 1.0) / h * np.sin(2 * np.pi * f0 * h * tt + rng.uniform(0, 6.3)) for h in (1, 2, 3))
        audio = audio / peak * 0.5 + hum / 2 * 10 ** (rng.uniform(-45.0, -20.0) / 20)
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def nonspeech_utterance(rng: np.random.Generator, sr: int = SAMPLE_RATE) -> Utterance:
    """0.5-4 s with no digit in it, what an open microphone hears when nobody speaks: background noise (or digital
    silence) and, at random, breaths (band-limited noise bursts), clicks and mains hum. Its transcript is empty,
    so the model learns to stay silent on them."""
    n = int(rng.uniform(0.5, 4.0) * sr)
    audio = np.zeros(n, np.float32)
    if rng.random() < 0.85:
        audio += _noise(rng, n) * 10 ** (rng.uniform(-75.0, -25.0) / 20)
    if rng.random() < 0.4:  # breaths
        from scipy.signal import lfilter

        for _ in range(int(rng.integers(1, 4))):
            L = int(rng.uniform(0.25, 1.0) * sr)
            s = int(rng.integers(0, max(1, n - L)))
            burst = lfilter([1.0], [1.0, -float(rng.uniform(0.5, 0.97))], rng.standard_normal(L))
            burst *= np.sin(np.linspace(0, np.pi, L)) ** 2
            burst /= np.abs(burst).max() + 1e-9
            seg = audio[s : s + L]
            seg += (burst[: len(seg)] * 10 ** (rng.uniform(-45.0, -15.0) / 20)).astype(np.float32)
    if rng.random() < 0.3:  # clicks and pops
        for s in rng.integers(0, n - 8, int(rng.integers(1, 8))):
            k = int(rng.integers(1, 6))
            audio[s : s + k] += (rng.uniform(-1, 1, k) * 10 ** (rng.uniform(-30.0, -3.0) / 20)).astype(np.float32)
    if rng.random() < 0.2:  # mains hum and its harmonics
        f0 = 50.0 if rng.random() < 0.5 else 60.0
        tt = np.arange(n) / sr
        hum = sum(rng.uniform(0.2, 1.0) / h * np.sin(2 * np.pi * f0 * h * tt + rng.uniform(0, 6.3)) for h in (1, 2, 3))
        audio += (hum / 2 * 10 ** (rng.uniform(-50.0, -20.0) / 20)).astype(np.float32)
    return Utterance(np.clip(audio, -0.99, 0.99).astype(np.float32), [], [], "nonspeech")


def fluent_utterance(rng: np.random.Generator, phrase: Utterance, aug: Augment = Augment()) -> Utterance:
    """A fluently spoken digit string (see ``espeak_fluent``) with the same speed, silence, level and noise
    augmentation as the joined utterances."""
    f = float(rng.uniform(*aug.speed))
    x = _speed(phrase.audio, f)
    scale = len(x) / max(1, len(phrase.audio))
    lead = int(rng.uniform(*aug.lead) * SAMPLE_RATE)
    tail = int(rng.uniform(*aug.tail) * SAMPLE_RATE)
    audio = np.concatenate([np.zeros(lead, np.float32), x.astype(np.float32), np.zeros(tail, np.float32)])
    bounds = [(lead + int(a * scale), lead + max(int(a * scale) + 1, int(b * scale))) for a, b in phrase.bounds]
    return _finish(rng, audio, list(phrase.digits), bounds, phrase.speaker, aug)


class UtteranceSource:
    """Samples utterances: a speaker, then digits. Synthetic voices (any speaker that is not an FSDD speaker:
    espeak-ng counts as one, each flite/festival voice as one) share the weight ``espeak_weight`` equally;
    ``real`` names the human speakers (FSDD's, or an enrolled voice), which share the rest.
    With ``fluent`` phrases, a share ``fluent_weight`` of the utterances is one of them instead (spoken as one
    phrase, no pauses needed between digits), augmented like the rest."""

    def __init__(
        self,
        clips: Sequence[Clip],
        aug: Augment = Augment(),
        espeak_weight: float = 0.0,
        fluent: Sequence[Utterance] = (),
        fluent_weight: float = 0.0,
        real: Sequence[str] = SPEAKERS,
        more: Sequence[str] = (),
        more_weight: float = 0.0,
        nonspeech_weight: float = 0.0,
    ) -> None:
        """``more``: further real speakers (Speech Commands, ...), kept even with only some digits recorded; they
        share ``more_weight`` of the speaker draws equally, the synthetic voices ``espeak_weight``, and ``real``
        (FSDD's) the rest. ``nonspeech_weight``: share of utterances with no digit at all (noise, breaths,
        clicks, hum; see ``nonspeech_utterance``)."""
        self.nonspeech_weight = float(nonspeech_weight)
        self.fluent = list(fluent)
        self.fluent_weight = float(fluent_weight) if self.fluent else 0.0
        self.groups = group_by_speaker_digit(clips, partial=more)
        if not self.groups:
            from explorer.core.errors import UserError

            raise UserError("no speaker has recordings of all ten digits in the selected data")
        self.speakers = sorted(self.groups)
        more_set = set(more) & set(self.speakers)
        synth = [s for s in self.speakers if s not in real and s not in more_set]
        n_real = len(self.speakers) - len(synth) - len(more_set)
        shares = {"synth": espeak_weight if synth else 0.0, "more": more_weight if more_set else 0.0}
        shares["real"] = max(0.0, 1.0 - shares["synth"] - shares["more"]) if n_real else 0.0
        counts = {"synth": len(synth), "more": len(more_set), "real": n_real}

        def kind(s: str) -> str:
            return "more" if s in more_set else ("synth" if s in synth else "real")

        w = np.array([shares[kind(s)] / counts[kind(s)] for s in self.speakers])
        if w.sum() <= 0:
            w = np.ones(len(self.speakers))
        self.p = w / w.sum()
        self.aug = aug

    def sample(self, rng: np.random.Generator) -> Utterance:
        if self.nonspeech_weight and rng.random() < self.nonspeech_weight:
            return nonspeech_utterance(rng)
        if self.fluent_weight and rng.random() < self.fluent_weight:
            return fluent_utterance(rng, self.fluent[int(rng.integers(len(self.fluent)))], self.aug)
        s = self.speakers[int(rng.choice(len(self.speakers), p=self.p))]
        return build_utterance(rng, self.groups[s], self.aug)

    def batch(self, rng: np.random.Generator, n: int) -> list[Utterance]:
        return [self.sample(rng) for _ in range(n)]
