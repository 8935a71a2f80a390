"""The fixed held-out sets: connected digits from FSDD's test recordings, the demo voices (espeak-ng voices never
used in training: the WAVs in resources/transducer/), fluent strings in those voices, and what an open microphone
hears with nobody speaking. Same seed, same audio. ``transducer-utterances`` (:func:`main`) writes them as WAVs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .augment import Augment, build_utterance, fluent_utterance
from .data import DIGIT_WORDS, SPEAKERS, Clip, Utterance, group_by_speaker_digit, load_fsdd, speaker_list, trim
from .voices import DEMO_VOICES, espeak_available, espeak_say, random_fluent


def test_utterances(
    clips: Sequence[Clip], n_per_speaker: int, seed: int = 1234, aug: Augment = Augment()
) -> list[Utterance]:
    """A fixed, reproducible evaluation set: n utterances per speaker (same seed -> same audio)."""
    groups = group_by_speaker_digit(clips)
    out = []
    for s in sorted(groups):
        rng = np.random.default_rng([seed, SPEAKERS.index(s) if s in SPEAKERS else 99])
        out += [build_utterance(rng, groups[s], aug) for _ in range(n_per_speaker)]
    return out


def demo_clips(voices=DEMO_VOICES) -> list[Clip]:
    """Isolated digits in the demo voices (never used for training)."""
    clips = []
    for vi, (accent, variant, rate, pitch) in enumerate(voices):
        for d in range(10):
            clips.append(
                Clip(
                    trim(espeak_say(DIGIT_WORDS[d], f"{accent}+{variant}", rate, pitch)),
                    d,
                    f"espeak-{accent}+{variant}",
                    vi,
                )
            )
    return clips


DEMO_AUG = Augment(
    min_digits=4,
    max_digits=6,
    gap=(0.15, 0.4),
    lead=(0.4, 0.5),
    tail=(0.6, 0.7),
    gain_db=(-2.0, 2.0),
    level_db=(-24.0, -22.0),
    speed=(1.0, 1.0),
    snr_db=(30.0, 35.0),
    p_noise=1.0,
)


def demo_utterances(n_per_voice: int = 2, seed: int = 7) -> list[Utterance]:
    """Connected digits in held-out espeak-ng voices (used for resources/transducer/ demo WAVs)."""
    clips = demo_clips()
    out = []
    for spk, groups in sorted(group_by_speaker_digit(clips).items()):
        rng = np.random.default_rng([seed, len(out)])
        for _ in range(n_per_voice):
            u = build_utterance(rng, groups, DEMO_AUG)
            u.speaker = spk.replace("espeak-", "").replace("+", "-")
            out.append(u)
    return out


def fluent_test_phrases(n_per_voice: int = 10, seed: int = 4321) -> list[Utterance]:
    """Fluent digit strings in the held-out demo voices (never used for training), 2-7 digits, rates 140-260,
    with the demo files' silences, level and light noise.

    libespeak-ng's audio for one string can differ by a few samples from one call to the next in a process (not
    in the first call of a fresh one), and the noise drawn for a string has its length, so a second call would
    draw other strings after the first such change: the set is made once per process and reused, so every model
    scored in one process (and every process) reads the same strings."""
    key = (int(n_per_voice), int(seed))
    if key not in _FLUENT_TEST_SETS:
        _FLUENT_TEST_SETS[key] = tuple(_make_fluent_test_phrases(*key))
    return list(_FLUENT_TEST_SETS[key])


_FLUENT_TEST_SETS: dict[tuple[int, int], tuple[Utterance, ...]] = {}


def _make_fluent_test_phrases(n_per_voice: int, seed: int) -> list[Utterance]:
    out = []
    for vi, (accent, variant, _, pitch) in enumerate(DEMO_VOICES):
        rng = np.random.default_rng([seed, vi])
        got = 0
        for _ in range(3 * n_per_voice):
            u = random_fluent(rng, lambda r, v=f"{accent}+{variant}": v, (140, 260), lambda r, p=pitch: p)
            if u is not None:
                u = fluent_utterance(rng, u, DEMO_AUG)
                u.speaker = f"{accent}-{variant}-fluent"
                out.append(u)
                got += 1
            if got == n_per_voice:
                break
    return out


def open_microphone_cases(seed: int = 0, seconds: float = 16.0) -> dict[str, np.ndarray]:
    """Fixed test signals of what an open microphone hears with nobody speaking (16 s each, 8 kHz): a quiet and a
    noisy room, breathing, clicks, mains hum, digital silence. Not used in training (``nonspeech_utterance`` draws
    its own)."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    n, sr = int(seconds * 8000), 8000

    def pink(level_db):
        w = lfilter([0.05], [1, -0.95], rng.standard_normal(n))
        return w / w.std() * 10 ** (level_db / 20)

    breath = np.zeros(n)
    for s in range(0, n - 6400, int(3.5 * sr)):
        env = np.sin(np.linspace(0, np.pi, 6400)) ** 2
        breath[s : s + 6400] += lfilter([1], [1, -0.9], rng.standard_normal(6400)) * env
    clicks = pink(-60)
    for s in rng.integers(0, n - 4, 6):
        clicks[s : s + 3] += (0.4, -0.3, 0.1)
    hum = 0.02 * np.sin(2 * np.pi * 50 * np.arange(n) / sr) + pink(-60)
    cases = {
        "quiet room": pink(-50),
        "noisy room": pink(-35),
        "breathing": breath / np.abs(breath).max() * 0.05 + pink(-60),
        "clicks": clicks,
        "mains hum": hum,
        "digital silence": np.zeros(n),
    }
    return {k: v.astype(np.float32) for k, v in cases.items()}


def main(args) -> int:
    """``nips-explorer transducer-utterances``: write a held-out set as WAV files for ``eval --audio-dir``."""
    import soundfile as sf

    from explorer.core.errors import UserError
    from explorer.core.validate import atomic_output

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.data:
        spk = speaker_list(args.speakers) or list(SPEAKERS)
        clips = load_fsdd(args.data, speakers=spk, indices=range(0, 5) if args.indices == "test" else None)
        utts = test_utterances(clips, args.n, seed=args.seed)
    elif args.fluent:
        utts = fluent_test_phrases(args.n, seed=args.seed)
        if not utts:
            raise UserError("libespeak-ng is not installed (apt-get install espeak-ng): no fluent strings")
    else:
        if not espeak_available():
            raise UserError("espeak-ng is not installed; give --data DIR to build utterances from FSDD")
        utts = demo_utterances(args.n, seed=args.seed)
    for i, u in enumerate(utts):
        with atomic_output(out / f"{u.text}_{u.speaker}_{i:04d}.wav", "WAV file") as tmp:
            sf.write(str(tmp), u.audio, 8000, subtype="PCM_16", format="WAV")
    print(f"wrote {len(utts)} files to {out}")
    return 0
