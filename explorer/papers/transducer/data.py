"""The real recordings: FSDD and folders of isolated digits, read into clips of one digit each, and the speaker
split.

FSDD files are read from ``--data DIR`` (never committed); every clip is resampled to 8 kHz and trimmed to its
word. :class:`Clip` (one isolated digit) and :class:`Utterance` (connected digits with each digit's known
boundaries) are the types the other data modules pass around: ``voices`` (synthesized and packaged voices),
``augment`` (joining clips into augmented training utterances) and ``testsets`` (the fixed held-out sets).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .features import SAMPLE_RATE, resample, to_mono_float

SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_FSDD_RE = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


@dataclass
class Clip:
    audio: np.ndarray
    digit: int
    speaker: str
    index: int


@dataclass
class Utterance:
    audio: np.ndarray
    digits: list[int]
    bounds: list[tuple[int, int]]  # (start, end) samples of each digit
    speaker: str = ""

    @property
    def text(self) -> str:
        return "".join(str(d) for d in self.digits)


TRIM_HOP = 80  # 10 ms at 8 kHz


def loud_frames(x: np.ndarray, rel_db: float) -> np.ndarray:
    """Per 10 ms frame: is its energy above ``rel_db`` of the loudest frame's?"""
    n = len(x) // TRIM_HOP
    e = (x[: n * TRIM_HOP].reshape(n, TRIM_HOP) ** 2).mean(1) + 1e-12
    return e > e.max() * 10 ** (rel_db / 10)


def trim(x: np.ndarray, rel_db: float = -40.0, pad: int = 80) -> np.ndarray:
    """Cut leading/trailing quiet parts (frame energy below rel_db of the loudest 10 ms frame)."""
    hop = TRIM_HOP
    if len(x) < 2 * hop:
        return x
    idx = np.nonzero(loud_frames(x, rel_db))[0]
    if len(idx) == 0:
        return x
    a = max(0, idx[0] * hop - pad)
    b = min(len(x), (idx[-1] + 1) * hop + pad)
    return x[a:b]


def fsdd_dir(path) -> Path:
    """Accept the FSDD folder or its recordings/ folder; UserError when no FSDD files are there."""
    from explorer.core.errors import UserError

    p = Path(path).expanduser()
    if not p.is_dir():
        raise UserError(f"--data {path}: no such folder (point it at the FSDD folder with recordings/)")
    rec = p / "recordings" if (p / "recordings").is_dir() else p
    if not any(_FSDD_RE.match(f.name) for f in rec.iterdir()):
        raise UserError(f"--data {path}: no FSDD files like 7_jackson_32.wav in {rec}")
    return rec


def load_fsdd(path, speakers: Sequence[str] | None = None, indices: Sequence[int] | None = None) -> list[Clip]:
    """Read FSDD clips (8 kHz mono) filtered by speaker names and recording indices."""
    import soundfile as sf

    rec = fsdd_dir(path)
    want_s = set(speakers) if speakers else None
    want_i = set(indices) if indices is not None else None
    clips = []
    for f in sorted(rec.iterdir()):
        m = _FSDD_RE.match(f.name)
        if not m:
            continue
        d, spk, idx = int(m.group(1)), m.group(2), int(m.group(3))
        if (want_s is not None and spk not in want_s) or (want_i is not None and idx not in want_i):
            continue
        x, sr = sf.read(str(f), dtype="float32", always_2d=False)
        x = resample(to_mono_float(x), sr, SAMPLE_RATE)
        clips.append(Clip(trim(x), d, spk, idx))
    return clips


DIGIT_FILE_RE = re.compile(r"^(\d)_([A-Za-z0-9]+)_(\d+)\.wav$")


def load_digit_folders(
    paths: Sequence, exclude_speakers: Sequence[str] = (), only_speakers=None, min_s: float = 0.1, progress=None
) -> tuple[list[Clip], list[str]]:
    """Isolated digits named ``{digit}_{speaker}_{index}.wav`` anywhere under ``paths`` (e.g. the Speech Commands
    speakers and the extra FSDD speaker of shared/data/digits): read as recorded (any rate, checked by
    ``explorer.core.validate``), resampled to 8 kHz, trimmed to the word. Returns the clips and one line per file
    that was skipped (unreadable, or under ``min_s`` seconds of sound after trimming)."""
    from explorer.core.errors import UserError
    from explorer.core.validate import read_audio as read_checked

    files = []
    for path in paths:
        p = Path(path).expanduser()
        if not p.is_dir():
            raise UserError(f"--more-data {path}: no such folder")
        files += sorted(f for f in p.rglob("*.wav") if DIGIT_FILE_RE.match(f.name))
    if not files:
        raise UserError(f"--more-data {', '.join(map(str, paths))}: no files named like 7_speaker_0.wav")
    skip_s = set(exclude_speakers)
    keep_s = set(only_speakers) if only_speakers is not None else None
    clips, skipped = [], []
    for i, f in enumerate(files):
        m = DIGIT_FILE_RE.match(f.name)
        d, spk, idx = int(m.group(1)), m.group(2), int(m.group(3))
        if spk in skip_s or (keep_s is not None and spk not in keep_s):
            continue
        try:
            x, sr = read_checked(f)
        except UserError as exc:
            skipped.append(str(exc))
            continue
        x = trim(resample(x, sr, SAMPLE_RATE))
        if len(x) < min_s * SAMPLE_RATE:
            skipped.append(f"{f.name}: under {min_s:g} s of sound")
            continue
        clips.append(Clip(x, d, spk, idx))
        if progress is not None:
            progress((i + 1) / len(files), f.name)
    return clips, skipped


def split_speakers(
    speakers: Sequence[str], test_share: float, salt: str = "nips-explorer"
) -> tuple[list[str], list[str]]:
    """A fixed speaker-disjoint split: (train, test). The test speakers are the ``test_share`` of the names that
    come first in the order of a hash of each name: the split depends only on the set of speaker names, not on
    file order, clip counts or a random seed."""
    import hashlib

    names = sorted(set(speakers))
    ranked = sorted(names, key=lambda s: hashlib.sha1(f"{salt}:{s}".encode()).hexdigest())
    n_test = int(round(test_share * len(names)))
    test = set(ranked[:n_test])
    return [s for s in names if s not in test], [s for s in names if s in test]


def group_by_speaker_digit(clips: Sequence[Clip], partial: Sequence[str] = ()) -> dict[str, dict[int, list[Clip]]]:
    """{speaker: {digit: clips}} for the speakers with all ten digits, and for those named in ``partial`` with
    whatever digits they have."""
    out: dict[str, dict[int, list[Clip]]] = {}
    for c in clips:
        out.setdefault(c.speaker, {}).setdefault(c.digit, []).append(c)
    keep = set(partial)
    return {s: g for s, g in out.items() if len(g) == 10 or s in keep}


def speaker_list(text) -> list[str]:
    """A comma-separated list of speaker names (a command-line option) -> the names."""
    return [s for s in (text or "").split(",") if s]
