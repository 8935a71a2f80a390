"""The voices this machine has besides the real corpus: speech synthesizers (espeak-ng, libespeak-ng for fluent
strings, flite, festival and the optional MBROLA, SVOX Pico and RHVoice) and the human digit recordings that
Debian packages ship. Each gives isolated digits (:class:`~.data.Clip`, one pseudo-speaker per voice) or fluent
digit strings with each digit's boundaries (:class:`~.data.Utterance`), cached as .npz in the cache folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .data import DIGIT_WORDS, TRIM_HOP, Clip, Utterance, loud_frames, trim
from .features import SAMPLE_RATE, resample, to_mono_float

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
                clips.append(Clip(trim(espeak_say(DIGIT_WORDS[d], f"{a}+{v}", rate, pitch)), d, "espeak", len(clips)))
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


def fluent_available() -> bool:
    """Whether libespeak-ng is installed (fluent digit strings can be synthesized)."""
    return _espeak_lib() is not None


def _word_ends(x: np.ndarray, starts: list[int], rel_db: float = -35.0) -> list[int]:
    """Each word ends at its last 10 ms frame above ``rel_db`` of the loudest frame, before the next word starts
    (a comma pause is not part of the word)."""
    hop = TRIM_HOP
    loud = loud_frames(x, rel_db)
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


def random_fluent(rng: np.random.Generator, voice, rates: tuple[int, int], pitch, p_pause: float = 0.0):
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
    if not fluent_available():
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
        u = random_fluent(
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
            clips.append(Clip(trim(resample(to_mono_float(x), sr, SAMPLE_RATE)), d, name, d))
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
            clips.append(Clip(trim(tts_say(DIGIT_WORDS[d], e, v, stretch, f0)), d, f"{e}-{v}", len(clips)))
            if progress:
                progress(len(clips) / len(jobs), f"synthesizing {e} digits")
        return clips

    key = hashlib.sha1(f"{seed}-{n_flite}-{n_festival}-{voices}".encode()).hexdigest()[:10]
    return _cached_clips("tts", key, make, cache)
