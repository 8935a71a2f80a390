"""Connected-digit utterances from isolated real (FSDD) and synthetic (espeak-ng) digits, with known boundaries.

FSDD files are read from ``--data DIR`` (never committed). An utterance joins 1..7 digits of one speaker with
random gaps, per-digit gain, speed perturbation and background noise; each digit's start and end sample is known,
which gives the initial block alignment (a digit belongs to the block holding its last frame, as the paper does
with forced alignments).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .features import SAMPLE_RATE, resample, to_mono_float

SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_FSDD_RE = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")

# espeak-ng voices for training; DEMO_VOICES are kept out of training (the demo is heard fresh).
ESPEAK_ACCENTS = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "croak")
DEMO_VOICES = (("en-us", "m8", 150, 40), ("en-gb", "f5", 140, 55), ("en-gb-scotland", "m8", 165, 45))


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


_HOP = 80  # 10 ms at 8 kHz


def _loud_frames(x: np.ndarray, rel_db: float) -> np.ndarray:
    """Per 10 ms frame: is its energy above ``rel_db`` of the loudest frame's?"""
    n = len(x) // _HOP
    e = (x[: n * _HOP].reshape(n, _HOP) ** 2).mean(1) + 1e-12
    return e > e.max() * 10 ** (rel_db / 10)


def _trim(x: np.ndarray, rel_db: float = -40.0, pad: int = 80) -> np.ndarray:
    """Cut leading/trailing quiet parts (frame energy below rel_db of the loudest 10 ms frame)."""
    hop = _HOP
    if len(x) < 2 * hop:
        return x
    idx = np.nonzero(_loud_frames(x, rel_db))[0]
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
        clips.append(Clip(_trim(x), d, spk, idx))
    return clips


_DIGIT_FILE_RE = re.compile(r"^(\d)_([A-Za-z0-9]+)_(\d+)\.wav$")


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
        files += sorted(f for f in p.rglob("*.wav") if _DIGIT_FILE_RE.match(f.name))
    if not files:
        raise UserError(f"--more-data {', '.join(map(str, paths))}: no files named like 7_speaker_0.wav")
    skip_s = set(exclude_speakers)
    keep_s = set(only_speakers) if only_speakers is not None else None
    clips, skipped = [], []
    for i, f in enumerate(files):
        m = _DIGIT_FILE_RE.match(f.name)
        d, spk, idx = int(m.group(1)), m.group(2), int(m.group(3))
        if spk in skip_s or (keep_s is not None and spk not in keep_s):
            continue
        try:
            x, sr = read_checked(f)
        except UserError as exc:
            skipped.append(str(exc))
            continue
        x = _trim(resample(x, sr, SAMPLE_RATE))
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


# ---------------------------------------------------------------------------------------------- espeak-ng
def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def espeak_say(text: str, voice: str, rate: int = 160, pitch: int = 50) -> np.ndarray:
    """Synthesize with the espeak-ng CLI -> mono float32 at 8 kHz."""
    import io

    import soundfile as sf

    out = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "--stdout", text],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    x, sr = sf.read(io.BytesIO(out), dtype="float32", always_2d=False)
    return resample(to_mono_float(x), sr, SAMPLE_RATE)


def _cached_clips(name: str, key: str, make, cache: Path | None = None) -> list[Clip]:
    """Clips built once by ``make()`` and kept as ``transducer_{name}_{key}.npz`` in the cache folder."""
    from explorer.core.paths import cache_dir

    f = (Path(cache) if cache else cache_dir()) / f"transducer_{name}_{key}.npz"
    if f.exists():
        z = np.load(f, allow_pickle=False)
        speakers = z["speakers"] if "speakers" in z.files else [name] * len(z["digits"])
        return [Clip(z[f"a{i}"], int(d), str(s), i) for i, (d, s) in enumerate(zip(z["digits"], speakers))]
    clips = make()
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_name(f"{f.stem}.part{os.getpid()}.npz")  # written whole, then renamed: no half-written cache
    np.savez(
        tmp,
        digits=np.array([c.digit for c in clips]),
        speakers=np.array([c.speaker for c in clips]),
        **{f"a{i}": c.audio for i, c in enumerate(clips)},
    )
    tmp.replace(f)
    return clips


def espeak_clips(cache: Path | None = None, seed: int = 0, n_per_digit: int = 40, progress=None) -> list[Clip]:
    """Isolated digits from training voices (accent x variant x rate x pitch), cached as .npz."""
    if not espeak_available():
        return []
    combos = [(a, v) for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]

    def make() -> list[Clip]:
        rng = np.random.default_rng(seed)
        clips = []
        total = 10 * n_per_digit
        for d in range(10):
            for _ in range(n_per_digit):
                a, v = combos[rng.integers(len(combos))]
                rate, pitch = int(rng.integers(120, 230)), int(rng.integers(20, 80))
                clips.append(Clip(_trim(espeak_say(DIGIT_WORDS[d], f"{a}+{v}", rate, pitch)), d, "espeak", len(clips)))
                if progress:
                    progress(len(clips) / total, "synthesizing espeak-ng digits")
        return clips

    key = hashlib.sha1(f"{seed}-{n_per_digit}-{combos}".encode()).hexdigest()[:10]
    return _cached_clips("espeak", key, make, cache)


# ------------------------------------------------------------- fluent digit strings (libespeak-ng, word timings)
# Joined isolated digits always have a pause between them; people say "two nine three four" as one phrase, with
# coarticulation and ~4 digits per second. espeak-ng's library speaks a whole string and reports where each word
# starts (synth callback word events), which gives every digit's boundaries without any alignment model.
_ESPEAK_LIB: dict = {}
_ESPEAK_LOCK = threading.Lock()  # the library keeps one global synthesizer state


def _espeak_lib():
    """libespeak-ng in synchronous mode with a collecting callback (loaded once); None when not installed."""
    if "lib" in _ESPEAK_LIB:
        return _ESPEAK_LIB["lib"]
    import ctypes
    import ctypes.util

    class Event(ctypes.Structure):  # espeak_EVENT (speak_lib.h)
        _fields_ = [
            ("type", ctypes.c_int),
            ("unique_identifier", ctypes.c_uint),
            ("text_position", ctypes.c_int),
            ("length", ctypes.c_int),
            ("audio_position", ctypes.c_int),
            ("sample", ctypes.c_int),
            ("user_data", ctypes.c_void_p),
            ("id", ctypes.c_char * 8),
        ]

    lib = None
    for name in ("libespeak-ng.so.1", ctypes.util.find_library("espeak-ng")):
        try:
            lib = ctypes.CDLL(name) if name else None
        except OSError:
            lib = None
        if lib is not None:
            break
    if lib is None:
        _ESPEAK_LIB["lib"] = None
        return None
    sr = lib.espeak_Initialize(2, 0, None, 0)  # AUDIO_OUTPUT_SYNCHRONOUS; returns the sample rate
    if sr <= 0:
        _ESPEAK_LIB["lib"] = None
        return None
    state = {"audio": [], "words": []}

    def collect(wav, n, events):
        if n > 0:
            state["audio"].append(np.ctypeslib.as_array(wav, shape=(n,)).astype(np.float32) / 32768.0)
        i = 0
        while events[i].type != 0:  # espeakEVENT_LIST_TERMINATED
            if events[i].type == 1:  # espeakEVENT_WORD: (character position, start sample)
                state["words"].append((int(events[i].text_position), int(events[i].sample)))
            i += 1
        return 0

    cb = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(Event))(collect)
    lib.espeak_SetSynthCallback(cb)
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    _ESPEAK_LIB.update(lib=lib, sr=int(sr), state=state, cb=cb)
    return lib


def _word_ends(x: np.ndarray, starts: list[int], rel_db: float = -35.0) -> list[int]:
    """Each word ends at its last 10 ms frame above ``rel_db`` of the loudest frame, before the next word starts
    (a comma pause is not part of the word)."""
    hop = _HOP
    loud = _loud_frames(x, rel_db)
    ends = []
    for k, a in enumerate(starts):
        b = starts[k + 1] if k + 1 < len(starts) else len(x)
        fr = np.nonzero(loud[a // hop : max(a // hop + 1, b // hop)])[0]
        ends.append(min(b, a + (int(fr[-1]) + 1) * hop) if len(fr) else b)
    return ends


def espeak_fluent(
    digits: Sequence[int], voice: str, rate: int = 160, pitch: int = 50, pauses: Sequence[int] = ()
) -> Utterance | None:
    """Speak ``digits`` as one phrase (a comma after the digit positions in ``pauses``) with libespeak-ng:
    8 kHz audio and each digit's (start, end) sample. None when the library is missing or the word events do
    not match the digits."""
    lib = _espeak_lib()
    if lib is None:
        return None
    words = [DIGIT_WORDS[d] + ("," if i in pauses else "") for i, d in enumerate(digits)]
    text = " ".join(words).encode()
    accent, _, variant = voice.partition("+")
    name = {"en-gb": "en"}.get(accent, accent) + (f"+{variant}" if variant else "")  # the library's name for en-gb
    st, sr = _ESPEAK_LIB["state"], _ESPEAK_LIB["sr"]
    with _ESPEAK_LOCK:
        st["audio"].clear()
        st["words"].clear()
        if lib.espeak_SetVoiceByName(name.encode()) != 0:
            return None
        lib.espeak_SetParameter(1, int(rate), 0)  # espeakRATE (words per minute)
        lib.espeak_SetParameter(3, int(pitch), 0)  # espeakPITCH (0-99)
        lib.espeak_Synth(text, len(text) + 1, 0, 1, 0, 0, None, None)
        chunks, events = list(st["audio"]), list(st["words"])
    # the event's text position (1-based) names the word; the library sometimes adds events of its own
    pos = np.cumsum([0] + [len(w) + 1 for w in words[:-1]]) + 1
    first = {}
    for tp, smp in events:
        first.setdefault(tp, smp)
    if not chunks or any(int(q) not in first for q in pos):
        return None
    x = resample(np.concatenate(chunks), sr, SAMPLE_RATE)
    starts = [min(len(x) - 1, int(round(first[int(q)] * SAMPLE_RATE / sr))) for q in pos]
    if any(b <= a for a, b in zip(starts, starts[1:])):
        return None
    bounds = list(zip(starts, _word_ends(x, starts)))
    return Utterance(x, list(digits), bounds, f"espeak-{voice}")


def _random_fluent(rng: np.random.Generator, voice, rates: tuple[int, int], pitch, p_pause: float = 0.0):
    """A random 2-7 digit string spoken fluently at a random rate in ``rates``; ``voice(rng)`` and ``pitch(rng)``
    pick the voice and the pitch (in this order, after the digits and pauses, so a seed gives the same strings)."""
    digits = [int(d) for d in rng.integers(0, 10, size=int(rng.integers(2, 8)))]
    pauses = [i for i in range(len(digits) - 1) if rng.random() < p_pause] if p_pause else []
    v = voice(rng)
    return espeak_fluent(digits, v, int(rng.integers(*rates)), pitch(rng), pauses)


def fluent_phrases(
    cache: Path | None = None,
    seed: int = 0,
    n: int = 2000,
    voices: Sequence | None = None,
    rates: tuple[int, int] = (130, 300),
    progress=None,
) -> list[Utterance]:
    """``n`` fluent digit strings (2-7 digits, about one in five gaps a comma pause) in the training voices
    (accent x variant, random rate and pitch), cached as .npz; empty without libespeak-ng."""
    if _espeak_lib() is None:
        return []
    combos = list(voices) if voices else [f"{a}+{v}" for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]
    key = hashlib.sha1(f"{seed}-{n}-{combos}-{rates}".encode()).hexdigest()[:10]
    from explorer.core.paths import cache_dir

    f = (Path(cache) if cache else cache_dir()) / f"transducer_fluent_{key}.npz"
    if f.exists():
        z = np.load(f, allow_pickle=False)
        cut, dcut = z["offsets"], z["digit_offsets"]
        audio = z["audio"].astype(np.float32) / 32767.0
        return [
            Utterance(
                audio[cut[i] : cut[i + 1]],
                [int(d) for d in z["digits"][dcut[i] : dcut[i + 1]]],
                [tuple(int(v) for v in b) for b in z["bounds"][dcut[i] : dcut[i + 1]]],
                "espeak-fluent",
            )
            for i in range(len(cut) - 1)
        ]
    rng = np.random.default_rng(seed)
    out: list[Utterance] = []
    for _ in range(3 * n):
        if len(out) >= n:
            break
        u = _random_fluent(
            rng, lambda r: combos[int(r.integers(len(combos)))], rates, lambda r: int(r.integers(20, 80)), p_pause=0.2
        )
        if u is not None:
            u.speaker = "espeak-fluent"
            out.append(u)
        if progress:
            progress(len(out) / n, "synthesizing fluent espeak-ng digit strings")
    if not out:
        return out
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_name(f.stem + ".part.npz")  # written whole, then renamed: no half-written cache
    np.savez(
        tmp,
        audio=np.concatenate([np.clip(u.audio, -1, 1) * 32767 for u in out]).astype(np.int16),
        offsets=np.cumsum([0] + [len(u.audio) for u in out]),
        digits=np.concatenate([u.digits for u in out]),
        bounds=np.concatenate([u.bounds for u in out]),
        digit_offsets=np.cumsum([0] + [len(u.digits) for u in out]),
    )
    tmp.replace(f)
    return out


def fluent_test_phrases(n_per_voice: int = 10, seed: int = 4321) -> list[Utterance]:
    """Fluent digit strings in the held-out demo voices (never used for training), 2-7 digits, rates 140-260,
    with the demo files' silences, level and light noise."""
    out = []
    for vi, (accent, variant, _, pitch) in enumerate(DEMO_VOICES):
        rng = np.random.default_rng([seed, vi])
        got = 0
        for _ in range(3 * n_per_voice):
            u = _random_fluent(rng, lambda r, v=f"{accent}+{variant}": v, (140, 260), lambda r, p=pitch: p)
            if u is not None:
                u = fluent_utterance(rng, u, DEMO_AUG)
                u.speaker = f"{accent}-{variant}-fluent"
                out.append(u)
                got += 1
            if got == n_per_voice:
                break
    return out


# ------------------------------------------------------------------------ other real voices (Debian packages)
# Human recordings of the ten digits, one take each, shipped by Debian packages (8 kHz):
#   asterisk-core-sounds-en-wav: Allison Smith's Asterisk PBX prompts (CC-BY-SA 3.0, Digium);
#   saytime: the talking clock's voice (Jef Poskanzer; BSD-style licence).
EXTRA_VOICES = {
    "allison": ("/usr/share/asterisk/sounds/en_US_f_Allison/digits", "{d}.wav"),
    "saytime": ("/usr/share/saytime", "{d}.au"),
}


def extra_voice_clips() -> list[Clip]:
    """The digits of every installed EXTRA_VOICES voice (speaker names ``allison``, ``saytime``)."""
    import soundfile as sf

    clips = []
    for name, (folder, pattern) in EXTRA_VOICES.items():
        files = [Path(folder) / pattern.format(d=d) for d in range(10)]
        if not all(f.is_file() for f in files):
            continue
        for d, f in enumerate(files):
            try:
                x, sr = sf.read(str(f), dtype="float32", always_2d=False)
            except Exception:  # noqa: BLE001 - a damaged package file only loses that voice's digit
                continue
            clips.append(Clip(_trim(resample(to_mono_float(x), sr, SAMPLE_RATE)), d, name, d))
    return clips


# ------------------------------------------------------------------------------------ flite and festival
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")


# More voices (``--more-voices``), from Debian's contrib/non-free sections (apt-get install mbrola-us1 mbrola-us2
# mbrola-us3 mbrola-en1 libttspico-utils rhvoice rhvoice-english): MBROLA diphone voices (recorded human diphones,
# spoken through espeak-ng), SVOX Pico (en-US, en-GB) and RHVoice's English voices (statistical voices trained on
# recordings of real speakers; its slt is the speaker flite and festival already have, so it is left out).
MBROLA_VOICES = ("us1", "us2", "us3", "en1")
PICO_VOICES = ("en-US", "en-GB")
RHVOICE_VOICES = ("alan", "bdl", "clb", "evgeniy-eng", "lyubov")


def more_voices() -> list[tuple[str, str]]:
    """(engine, voice) pairs of the optional MBROLA, Pico and RHVoice voices installed here."""
    out = []
    if shutil.which("espeak-ng") and shutil.which("mbrola"):
        out += [("mbrola", v) for v in MBROLA_VOICES if Path(f"/usr/share/mbrola/{v}").exists()]
    if shutil.which("pico2wave"):
        out += [("pico", v) for v in PICO_VOICES]
    if shutil.which("RHVoice-test"):
        out += [("rhvoice", v) for v in RHVOICE_VOICES if Path(f"/usr/share/RHVoice/voices/{v}").is_dir()]
    return out


def tts_voices() -> list[tuple[str, str]]:
    """(engine, voice) pairs that can be synthesized here: Debian's flite and festival voices."""
    out = []
    if shutil.which("flite"):
        out += [("flite", v) for v in FLITE_VOICES]
    if shutil.which("text2wave"):
        root = Path("/usr/share/festival/voices")
        have = {p.name for d in (root.iterdir() if root.is_dir() else []) if d.is_dir() for p in d.iterdir()}
        out += [("festival", v) for v in FESTIVAL_VOICES if v in have]
    return out


def tts_say(text: str, engine: str, voice: str, stretch: float = 1.0, f0: int | None = None) -> np.ndarray:
    """Synthesize with flite (duration stretch, mean pitch) or festival's text2wave -> mono float32 at 8 kHz."""
    import tempfile

    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "x.wav"
        if engine == "flite":
            cmd = ["flite", "-voice", voice, "-t", text, "-o", str(out), "--setf", f"duration_stretch={stretch:.3f}"]
            if f0:
                cmd += ["--setf", f"int_f0_target_mean={int(f0)}"]
            subprocess.run(cmd, capture_output=True, check=True, timeout=30)
        elif engine == "mbrola":  # espeak-ng drives the diphone voice; pitch 0-99 from the mean f0
            pitch = int(np.clip(20 + (f0 - 80) / 180 * 60, 10, 90)) if f0 else 50
            subprocess.run(
                [
                    "espeak-ng",
                    "-v",
                    f"mb-{voice}",
                    "-s",
                    str(int(160 / stretch)),
                    "-p",
                    str(pitch),
                    "-w",
                    str(out),
                    text,
                ],
                capture_output=True,
                check=True,
                timeout=30,
            )
        elif engine == "pico":  # SSML speed and pitch in percent
            pitch = int(np.clip(100 * f0 / 170, 70, 140)) if f0 else 100
            ssml = f"<speed level='{int(100 / stretch)}'><pitch level='{pitch}'>{text}</pitch></speed>"
            subprocess.run(
                ["pico2wave", "-l", voice, "-w", str(out), ssml], capture_output=True, check=True, timeout=30
            )
        elif engine == "rhvoice":  # rate in percent; its pitch setting barely moves these voices
            subprocess.run(
                ["RHVoice-test", "-p", voice, "-r", str(int(100 / stretch)), "-o", str(out)],
                input=text.encode(),
                capture_output=True,
                check=True,
                timeout=30,
            )
        else:
            scm = f"(voice_{voice})(Parameter.set 'Duration_Stretch {stretch:.3f})"
            subprocess.run(
                ["text2wave", "-eval", scm, "-o", str(out)],
                input=text.encode(),
                capture_output=True,
                check=True,
                timeout=60,
            )
        x, sr = sf.read(str(out), dtype="float32", always_2d=False)
    return resample(to_mono_float(x), sr, SAMPLE_RATE)


def tts_clips(
    cache: Path | None = None,
    seed: int = 0,
    n_flite: int = 16,
    n_festival: int = 6,
    progress=None,
    voices: Sequence[tuple[str, str]] | None = None,
) -> list[Clip]:
    """Isolated digits from flite (5 voices; random speaking rate and mean pitch 80-260 Hz) and festival
    (3 voices; random rate), one pseudo-speaker per voice, cached as .npz. Empty when neither is installed.
    ``voices`` (e.g. ``more_voices()``) replaces that list: ``n_festival`` digits of each for festival,
    ``n_flite`` for the other engines, with a random mean pitch where the engine has one."""
    voices = list(tts_voices() if voices is None else voices)
    if not voices:
        return []

    def make() -> list[Clip]:
        rng = np.random.default_rng([seed, 17])
        jobs = [
            (e, v, d) for e, v in voices for d in range(10) for _ in range(n_festival if e == "festival" else n_flite)
        ]
        clips = []
        for e, v, d in jobs:
            stretch = float(rng.uniform(0.8, 1.3))
            f0 = int(rng.integers(80, 261)) if e in ("flite", "mbrola", "pico") else None
            clips.append(Clip(_trim(tts_say(DIGIT_WORDS[d], e, v, stretch, f0)), d, f"{e}-{v}", len(clips)))
            if progress:
                progress(len(clips) / len(jobs), f"synthesizing {e} digits")
        return clips

    key = hashlib.sha1(f"{seed}-{n_flite}-{n_festival}-{voices}".encode()).hexdigest()[:10]
    return _cached_clips("tts", key, make, cache)


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


def group_by_speaker_digit(clips: Sequence[Clip], partial: Sequence[str] = ()) -> dict[str, dict[int, list[Clip]]]:
    """{speaker: {digit: clips}} for the speakers with all ten digits, and for those named in ``partial`` with
    whatever digits they have."""
    out: dict[str, dict[int, list[Clip]]] = {}
    for c in clips:
        out.setdefault(c.speaker, {}).setdefault(c.digit, []).append(c)
    keep = set(partial)
    return {s: g for s, g in out.items() if len(g) == 10 or s in keep}


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
                    _trim(espeak_say(DIGIT_WORDS[d], f"{accent}+{variant}", rate, pitch)),
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
