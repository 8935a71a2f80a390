"""Evaluation: digit error rate (edit distance / reference length), sequence accuracy, emission delay and
real-time factor, on generated connected-digit utterances or on a folder of WAV files."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .data import SPEAKERS, Utterance, load_fsdd, speaker_list
from .decode import decode_utterance
from .features import SAMPLE_RATE, read_audio
from .model import Transducer
from .testsets import test_utterances

log = logging.getLogger(__name__)
_REF_RE = re.compile(r"^\d+$")


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions that turn ``a`` into ``b``."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def score(pairs: Sequence[tuple]) -> dict:
    """pairs of (reference digits, hypothesis digits) -> error counts and rates. Nothing to score is an error
    (a rate of 0.0 over no digits would read as a perfect result)."""
    from explorer.core.errors import UserError

    if not pairs or not sum(len(r) for r, _ in pairs):
        raise UserError("nothing to score: no utterance with a digit reference")
    errs = sum(edit_distance(r, h) for r, h in pairs)
    n = sum(len(r) for r, _ in pairs)
    return {
        "utterances": len(pairs),
        "digits": n,
        "digit_errors": errs,
        "digit_error_rate": errs / max(1, n),
        "sequence_accuracy": sum(list(r) == list(h) for r, h in pairs) / max(1, len(pairs)),
    }


@torch.no_grad()
def evaluate_utterances(model: Transducer, utts: Sequence[Utterance], beam: int = 1, progress=None, token=None) -> dict:
    """Decode generated utterances; per-speaker rates, emission delays (correctly decoded utterances)."""
    pairs: list = []
    by_spk: dict[str, list] = {}
    delays: list[float] = []
    audio_s, dec_s = 0.0, 0.0
    W_s = model.block_frames(1) * model.frame_seconds if model.online else None
    for i, u in enumerate(utts):
        if token is not None:
            token.check()
        t0 = time.perf_counter()
        hyp, emissions, n_enc = decode_utterance(model, torch.from_numpy(u.audio), beam=beam)
        dec_s += time.perf_counter() - t0
        audio_s += len(u.audio) / SAMPLE_RATE
        pairs.append((u.digits, hyp))
        by_spk.setdefault(u.speaker, []).append((u.digits, hyp))
        if hyp == u.digits:
            for (_d, b), (_, end) in zip(emissions, u.bounds):
                # an online model emits when block b is complete; an offline one only after the whole utterance
                at = model.block_end_sample(b, n_enc) if model.online else len(u.audio)
                delays.append((at - end) / SAMPLE_RATE)
        if progress is not None:
            progress((i + 1) / len(utts), f"{i + 1}/{len(utts)} utterances")
    out = score(pairs)
    out["per_speaker"] = {s: score(p) for s, p in sorted(by_spk.items())}
    out["real_time_factor"] = dec_s / max(1e-9, audio_s)
    if delays:
        d = np.array(delays)
        out["emission_delay_s"] = {
            "mean": float(d.mean()),
            "median": float(np.median(d)),
            "p90": float(np.percentile(d, 90)),
            "max": float(d.max()),
            "min": float(d.min()),
            "n": int(len(d)),
        }
        if W_s:
            # one block of audio plus the analysis window of its last frame (25 ms)
            tol = W_s + model.logmel.cfg.win / SAMPLE_RATE
            out["emission_delay_s"]["within_one_block"] = float((d <= tol + 1e-9).mean())
            out["emission_delay_s"]["block_s"] = W_s
    return out


def reference_from_name(path: Path) -> list[int] | None:
    head = path.name.split("_", 1)[0]
    if head.lower().endswith(".wav"):
        head = head[:-4]
    return [int(c) for c in head] if _REF_RE.match(head) else None


@torch.no_grad()
def evaluate_dir(model: Transducer, folder, beam: int = 1, progress=None) -> dict:
    """Every *.wav in ``folder``: reference = file name before the first underscore (FSDD naming)."""
    from explorer.core.errors import UserError

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--audio-dir {folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".wav")
    if not files:
        raise UserError(f"--audio-dir {folder}: no .wav files there")
    return evaluate_files(model, files, beam=beam, progress=progress, what=f"--audio-dir {folder}")


@torch.no_grad()
def evaluate_files(model: Transducer, files: Sequence[Path], beam: int = 1, progress=None, what: str = "files") -> dict:
    """Decode each file as recorded (whole file, then the end-of-input silence), score it against the digits in
    its name; per-file problems are listed under "errors" and the rest still scored. Also counts the files that
    hold a digit and were given an empty transcript, and the error rate per speaker (the name's second field)."""
    from explorer.core.errors import UserError

    results, errors, pairs = [], [], []
    by_spk: dict[str, list] = {}
    audio_s, dec_s = 0.0, 0.0
    for i, f in enumerate(files):
        ref = reference_from_name(f)
        try:
            audio = read_audio(f)
        except UserError as exc:
            errors.append({"file": f.name, "error": str(exc)})
            continue
        t0 = time.perf_counter()
        try:
            hyp, _, _ = decode_utterance(model, torch.from_numpy(audio), beam=beam)
        except Exception as exc:  # noqa: BLE001 - one bad file is reported, the others are still scored
            log.warning("decoding %s failed", f, exc_info=True)
            errors.append({"file": f.name, "error": f"{f.name}: could not be decoded ({type(exc).__name__})"})
            continue
        dec_s += time.perf_counter() - t0
        audio_s += len(audio) / SAMPLE_RATE
        row = {
            "file": f.name,
            "hypothesis": "".join(map(str, hyp)),
            "reference": None if ref is None else "".join(map(str, ref)),
        }
        if ref is None:
            row["note"] = "no digit reference in the file name; not scored"
        else:
            row["errors"] = edit_distance(ref, hyp)
            pairs.append((ref, hyp))
            parts = f.stem.split("_")
            by_spk.setdefault(parts[1] if len(parts) > 2 else "", []).append((ref, hyp))
        results.append(row)
        if progress is not None:
            progress((i + 1) / len(files), f.name)
    if not results:
        raise UserError(f"{what}: none of the {len(files)} .wav files could be read (first: {errors[0]['error']})")
    s = score(pairs) if pairs else None
    return {
        "files": len(files),
        "scored": len(pairs),
        "digit_error_rate": s["digit_error_rate"] if s else None,
        "sequence_accuracy": s["sequence_accuracy"] if s else None,
        "empty_transcripts": sum(1 for r, h in pairs if r and not h),
        "per_speaker_digit_error_rate": {k: score(v)["digit_error_rate"] for k, v in sorted(by_spk.items())},
        "real_time_factor": dec_s / audio_s if audio_s else None,
        "results": results,
        "errors": errors,
    }


def main(args) -> int:
    """``nips-explorer eval transducer``: decode a folder of WAVs or generated FSDD test utterances."""
    from explorer.core.progress import TerminalProgress

    from .infer import load_checkpoints, set_threads

    set_threads(args.threads) if getattr(args, "threads", None) else torch.set_num_threads(1)
    model, meta, label = load_checkpoints(args.checkpoint)
    with TerminalProgress("decode", disable=None) as bar:
        if args.audio_dir:
            res = evaluate_dir(model, args.audio_dir, beam=args.beam, progress=bar)
        else:
            spk = speaker_list(args.speakers) or list(SPEAKERS)
            clips = load_fsdd(args.data, speakers=spk, indices=range(0, 5) if args.indices == "test" else None)
            res = evaluate_utterances(model, test_utterances(clips, args.utts), beam=args.beam, progress=bar)
    res["checkpoint"] = label
    if args.json:
        keys = ("files", "digit_error_rate", "sequence_accuracy", "real_time_factor")
        ordered = {k: res[k] for k in keys if k in res}
        ordered.update({k: v for k, v in res.items() if k not in ordered})
        print(json.dumps(ordered, indent=2))
    else:
        for r in res.get("results", []):
            print(
                f"{r['file']}: {r['hypothesis'] or '(nothing)'}"
                + (f"  (ref {r['reference']}, {r['errors']} errors)" if r.get("reference") else "")
            )
        for e in res.get("errors", []):
            print(f"ERROR {e['file']}: {e['error']}")
        der = res.get("digit_error_rate")
        print(f"digit error rate {der:.4f}" if der is not None else "digit error rate: n/a (no references)")
        if res.get("sequence_accuracy") is not None:
            print(f"sequence accuracy {res['sequence_accuracy']:.4f}")
        if res.get("real_time_factor") is not None:
            print(f"real-time factor {res['real_time_factor']:.4f}")
    return 0
