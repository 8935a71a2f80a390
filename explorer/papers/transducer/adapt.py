"""Enrollment: adapt a trained transducer to one new voice from one recording of each digit.

A voice the model has never heard is read with 6-20% digit errors (leave-one-speaker-out, README): four real
training voices are too few for every way of saying a digit. Dictation software of the 1990s asked a new user to
read a few prompts; this does the same with the ten digits. The model is fine-tuned with the paper's own training
loop (``train.fit``) on connected-digit utterances joined from the enrollment clips (random order, gaps, gain,
speed and noise, exactly as in training), mixed with the synthetic voices and fluent strings it was trained on, so
that it keeps reading other voices. ``bench/experiments/transducer_enroll.py`` measures it on each leave-one-out
fold: the unheard speaker's error before and after enrollment, on recordings that are not the enrollment takes.

Plain PyTorch/NumPy: the enrollment dialog cuts each take with :func:`take_from_recording` and runs
:func:`adapt_for_app` in a worker; the ``transducer-adapt`` command (:func:`main`) runs :func:`adapt` in a terminal.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from explorer.core.validate import atomic_output

from .augment import Augment, UtteranceSource
from .data import DIGIT_WORDS, Clip, trim
from .features import SAMPLE_RATE, read_audio, resample
from .model import Transducer
from .train import TrainData, fit
from .voices import espeak_clips, extra_voice_clips, fluent_phrases, tts_clips

ENROLLED = "enrolled"
ADAPT_DEFAULTS: dict = dict(
    steps=600, batch=16, lr=1e-3, lr_final=1e-4, synthetic_weight=0.2, fluent_weight=0.15, seed=0, minutes=None
)
MIN_S, MAX_S = 0.12, 3.0  # a spoken digit, after its silence is trimmed
MIN_PEAK = 10 ** (-45 / 20)  # quieter than -45 dBFS at its loudest: nothing was said


def spoken_part(x: np.ndarray, digit: int, label: str) -> np.ndarray:
    """The recording cut to its loud part; a clear message when it holds no word."""
    from explorer.core.errors import UserError

    x = np.asarray(x, dtype=np.float32).reshape(-1)
    if x.size == 0 or not np.all(np.isfinite(x)) or float(np.abs(x).max()) < MIN_PEAK:
        raise UserError(f"{label}: the recording of {digit} ({DIGIT_WORDS[digit]}) is silent; record it again")
    y = trim(x, rel_db=-35.0)
    if len(y) < MIN_S * SAMPLE_RATE:
        raise UserError(f"{label}: the recording of {digit} is too short ({len(y) / SAMPLE_RATE:.2f} s of sound)")
    if len(y) > MAX_S * SAMPLE_RATE:
        raise UserError(
            f"{label}: the recording of {digit} has {len(y) / SAMPLE_RATE:.1f} s of sound; say only the "
            f"one word ({DIGIT_WORDS[digit]}) in a quiet room"
        )
    return y


def take_from_recording(audio: np.ndarray, sample_rate: int, digit: int, label: str) -> np.ndarray:
    """A microphone take of ``digit`` (any rate) -> its spoken part at 8 kHz; UserError when it holds no word."""
    return spoken_part(resample(np.asarray(audio, np.float32), sample_rate), digit, label)


def enrollment_clips(
    recordings: Mapping[int, Sequence[np.ndarray]], speaker: str = ENROLLED, label: str = "enrollment"
) -> list[Clip]:
    """``{digit: [audio at 8 kHz, ...]}`` for all ten digits -> trimmed clips of one speaker."""
    from explorer.core.errors import UserError

    missing = [d for d in range(10) if not recordings.get(d)]
    if missing:
        raise UserError(
            f"{label}: no recording of {', '.join(str(d) for d in missing)}; enrollment needs one "
            "recording of each digit 0-9"
        )
    return clips_of({d: [spoken_part(x, d, label) for x in recordings[d]] for d in range(10)}, speaker)


def clips_of(takes: Mapping[int, Sequence[np.ndarray]], speaker: str = ENROLLED) -> list[Clip]:
    """Takes already cut and checked by :func:`spoken_part` -> clips of one speaker (nothing is cut again)."""
    return [Clip(x, d, speaker, i) for d in sorted(takes) for i, x in enumerate(takes[d])]


def read_enrollment_dir(folder) -> list[Clip]:
    """Recordings named like FSDD's (``3_anyname.wav``: the digit before the first underscore), any sample rate."""
    from explorer.core.errors import UserError

    p = Path(folder).expanduser()
    if not p.is_dir():
        raise UserError(f"{folder}: no such folder")
    from .evaluate import reference_from_name

    recs: dict[int, list[np.ndarray]] = {}
    for f in sorted(p.iterdir()):
        ref = reference_from_name(f)  # the digits before the first underscore, as eval reads them
        if f.suffix.lower() not in (".wav", ".flac", ".ogg") or ref is None or len(ref) != 1:
            continue
        recs.setdefault(ref[0], []).append(read_audio(f))
    if not recs:
        raise UserError(f"{p}: no recordings named like 3_you_0.wav (the digit, an underscore, anything)")
    return enrollment_clips(recs, label=p.name)


def save_recordings(clips: Sequence[Clip], folder) -> list[Path]:
    """Write clips as ``<digit>_<speaker>_<i>.wav`` (8 kHz, 16 bit) so an enrollment can be repeated or shared."""
    import soundfile as sf

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for c in clips:
        f = out / f"{c.digit}_{c.speaker}_{c.index}.wav"
        with atomic_output(f, "WAV file") as tmp:
            sf.write(str(tmp), np.clip(c.audio, -1, 1), SAMPLE_RATE, subtype="PCM_16", format="WAV")
        files.append(f)
    return files


def adaptation_source(clips: Sequence[Clip], config: dict, progress: Callable | None = None) -> UtteranceSource:
    """Utterances of the enrolled voice, mixed with whatever synthetic voices this machine has (none is needed)."""
    others: list[Clip] = []
    fluent = []
    if config["synthetic_weight"] > 0:
        others = espeak_clips(progress=progress) + tts_clips(progress=progress) + extra_voice_clips()
    if config["fluent_weight"] > 0:
        fluent = fluent_phrases(progress=progress)
    speakers = sorted({c.speaker for c in clips})
    return UtteranceSource(
        list(clips) + others,
        Augment(),
        espeak_weight=config["synthetic_weight"] if others else 0.0,
        fluent=fluent,
        fluent_weight=config["fluent_weight"],
        real=speakers,
    )


def adapt(
    model: Transducer,
    clips: Sequence[Clip],
    device,
    config: dict | None = None,
    progress: Callable | None = None,
    token=None,
) -> tuple:
    """Fine-tune a copy of ``model`` on ``clips`` of one new voice; returns ``(adapted model, history)``.

    ``model`` itself is left untouched (the app keeps it to fall back on); of an ensemble, the first member is
    adapted."""
    from .model import Ensemble

    cfg = dict(ADAPT_DEFAULTS)
    cfg.update(config or {})
    source = adaptation_source(clips, cfg, progress)
    if isinstance(model, Ensemble):
        # an ensemble's first member is adapted alone: as quick as one model, and the voice's own takes gain far
        # more than a second member does (docs/transducer.md)
        model = model.members[0]
    new = copy.deepcopy(model)  # fit() moves it to the device
    tcfg = {k: cfg[k] for k in ("steps", "batch", "lr", "lr_final", "seed", "minutes")}
    tcfg.update(log_every=max(1, int(cfg["steps"]) // 20), checkpoint_every=10**9)
    hist = fit(new, TrainData(source, seed=cfg["seed"]), device, tcfg, progress=progress, token=token)
    new.to("cpu").eval()
    enrolled = sorted({c.speaker for c in clips})
    hist["enrollment"] = {
        "clips": len(clips),
        "speakers": enrolled,
        "audio_s": round(sum(len(c.audio) for c in clips) / SAMPLE_RATE, 2),
        "other_voices": len(source.speakers) - len(enrolled),
        "fluent_phrases": len(source.fluent),
        "config": cfg,
    }
    return new, hist


def adapt_for_app(base: Transducer, clips: Sequence[Clip], device, config: dict, progress=None, token=None):
    """The enrollment dialog's job: :func:`adapt`, then the adapted model on ``device`` and warmed up (its first
    live stream runs at its steady speed). Returns ``(model, history)``."""
    from .infer import warm_up

    new, hist = adapt(base, clips, device, config, progress=progress, token=token)
    new = new.to(device)
    warm_up(new)
    return new, hist


def warm_imports() -> None:
    """Import what a take and an adaptation need (the resampler's scipy.signal, the training code) in a worker,
    before the first take from a 48 kHz microphone or the first adaptation would import it on the GUI thread."""
    import scipy.signal  # noqa: F401

    from . import train  # noqa: F401


def adapted_meta(base_meta, model: Transducer, hist: dict):
    """Metadata of an adapted model: what it was adapted from and on what; no held-out score exists for one
    enrolled voice, and the headline says so instead of showing a training loss as if it were one."""
    from explorer.core.checkpoints import FORMAT_VERSION, CheckpointMeta

    from .infer import PAPER

    e = hist["enrollment"]
    metrics = {
        "headline": "adapted",
        "adapted": "(no error rate for this voice)",
        "train_loss": hist["final_loss"],
        "train_steps": hist["steps_done"],
        "train_wall_s": round(hist["wall_s"], 1),
        "note": "adapted to one enrolled voice; its error rate on that voice is not measured here "
        "(bench/experiments/transducer_enroll.py measures enrollment on FSDD's leave-one-out folds)",
    }
    data = {
        "name": f"{base_meta.name} adapted to one voice ({e['clips']} takes)",
        "base_checkpoint": base_meta.name,
        "base_data": base_meta.data.get("name"),
        "enrollment_clips": e["clips"],
        "enrollment_audio_s": e["audio_s"],
        "other_voices": e["other_voices"],
        "fluent_phrases": e["fluent_phrases"],
    }
    return CheckpointMeta(
        paper=PAPER,
        format_version=FORMAT_VERSION,
        model_config=dict(model.cfg),
        metrics=metrics,
        data=data,
        extra={"adapt": {k: v for k, v in e["config"].items() if v is not None}},
    )


def save_adapted(path, model: Transducer, base_meta, hist: dict) -> Path:
    from explorer.core.checkpoints import save_checkpoint

    m = adapted_meta(base_meta, model, hist)
    return save_checkpoint(
        path,
        model.state_dict(),
        paper=m.paper,
        model_config=m.model_config,
        metrics=m.metrics,
        data=m.data,
        extra=m.extra,
    )


def main(args) -> int:
    """``nips-explorer transducer-adapt``: adapt a checkpoint to the recordings in ``--enroll`` and save it."""
    from explorer.core.devices import choose_device
    from explorer.core.errors import UserError
    from explorer.core.progress import TerminalProgress

    from .infer import load_checkpoints, set_threads

    set_threads(args.threads)
    out = Path(args.out)
    if out.suffix.lower() != ".safetensors":
        raise UserError(f"--out {out}: write the adapted model as a .safetensors file")
    model, meta, _ = load_checkpoints(args.checkpoint)
    if not model.online:
        raise UserError(f"{meta.name} is the offline variant: enrollment adapts an online (streaming) model")
    clips = read_enrollment_dir(args.enroll)
    cfg = {
        "steps": args.steps,
        "lr": args.lr,
        "synthetic_weight": args.synth_weight,
        "fluent_weight": args.fluent_weight,
    }
    with TerminalProgress("adapt to the enrolled voice") as bar:
        new, hist = adapt(model, clips, choose_device(args.device), cfg, progress=bar)
    save_adapted(out, new, meta, hist)
    e = hist["enrollment"]
    print(
        f"adapted {meta.name} to {e['clips']} recordings ({e['audio_s']:.1f} s of speech) in "
        f"{hist['wall_s']:.0f} s ({hist['steps_done']} steps): {out}"
    )
    return 0
