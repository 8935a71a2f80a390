"""Voices the model never heard, as a visitor gives them: one table per checkpoint.

    python -m bench.transducer_real_voices --more-data ../shared/data/digits --checkpoint A.safetensors \
        [--checkpoint B.safetensors ...] [--speakers-from A.safetensors] [--json out.json] [--quick]

Rows, each on the speakers the checkpoint's training held out (read from its metadata, `more_test_speakers`, or from
``--speakers-from`` so that several checkpoints are scored on one set):
* isolated digits as recorded: every clip of those speakers decoded whole (then the end-of-input silence);
  digit error rate over clips and the mean over speakers, and the clips left with an empty transcript;
* the same clips trimmed tight to the word (no silence before or after it);
* connected digits: utterances joined from the clips of the held-out speakers that have all ten digits;
* input faults on the bundled demo utterances: -40 dB, clipping, a DC offset, mains hum;
* an open microphone with nobody speaking: 16 s each of room noise, breathing, clicks, hum, silence: digits emitted
  (should be none).

``--quick``: the bundled checkpoint (unless --checkpoint is given), three bundled demos with the input faults and
4 s of each open-microphone case; the held-out voices only when --more-data is given (then 2 speakers, 10
connected utterances).
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from bench._util import add_quick, run
from explorer.core.checkpoints import load_model, read_metadata
from explorer.core.paths import resources_dir
from explorer.papers.transducer import data as D
from explorer.papers.transducer import testsets as T
from explorer.papers.transducer.decode import decode_utterance
from explorer.papers.transducer.evaluate import edit_distance, evaluate_files, evaluate_utterances, reference_from_name
from explorer.papers.transducer.features import read_audio
from explorer.papers.transducer.model import build

FAULTS = {
    "-40 dB": lambda x: x * 0.01,
    "clipped (x8)": lambda x: np.clip(x * 8, -1, 1),
    "DC offset +0.2": lambda x: np.clip(x + 0.2, -1, 1),
    "hum 50 Hz, -30 dBFS": lambda x: x + 0.03 * np.sin(2 * np.pi * 50 * np.arange(len(x)) / 8000),
}


def digits(model, x):
    return decode_utterance(model, torch.from_numpy(np.asarray(x, np.float32)))[0]


def rate(pairs):
    n = sum(len(r) for r, _ in pairs)
    return sum(edit_distance(r, h) for r, h in pairs) / max(1, n)


def collections(more, speakers):
    """{collection (the first folder under a --more-data folder): [held-out speakers]}"""
    out = {}
    keep = set(speakers)
    for d in more:
        for f in Path(d).rglob("*.wav"):
            m = D.DIGIT_FILE_RE.match(f.name)
            if m and m.group(2) in keep:
                rel = f.relative_to(d).parts
                out.setdefault(rel[0] if len(rel) > 1 else Path(d).name, set()).add(m.group(2))
    return {k: sorted(v) for k, v in sorted(out.items())}


def bench_voices(model, more, speakers, utts: int):
    keep = set(speakers)
    files = sorted(
        f
        for d in more
        for f in Path(d).rglob("*.wav")
        if D.DIGIT_FILE_RE.match(f.name) and f.name.split("_")[1] in keep
    )
    iso = evaluate_files(model, files)
    per = iso["per_speaker_digit_error_rate"]
    clips, _ = D.load_digit_folders(more, only_speakers=keep)
    tight_pairs = [([c.digit], digits(model, D.trim(c.audio, -35.0, pad=0))) for c in clips]
    full = D.group_by_speaker_digit(clips)
    conn = (
        evaluate_utterances(model, T.test_utterances([c for c in clips if c.speaker in full], utts)) if full else None
    )
    return {
        "speakers": len(keep),
        "clips": iso["scored"],
        "isolated_as_recorded": iso["digit_error_rate"],
        "isolated_speaker_mean": float(np.mean(list(per.values()))),
        "empty_transcripts": iso["empty_transcripts"],
        "isolated_tight": rate(tight_pairs),
        "connected": None if conn is None else conn["digit_error_rate"],
        "connected_speakers": sorted(full),
    }


def bench(path: Path, more, speakers, utts: int, quick: bool = False):
    model, meta = load_model(path, "transducer", build)
    groups = collections(more, speakers)
    demos = sorted((resources_dir() / "transducer").glob("*.wav"))[: 3 if quick else None]
    faults = {}
    for name, f in FAULTS.items():
        faults[name] = rate([(reference_from_name(p), digits(model, f(read_audio(p)))) for p in demos])
    cases = T.open_microphone_cases(seconds=4.0) if quick else T.open_microphone_cases()
    silent = {k: len(digits(model, v)) for k, v in cases.items()}
    return {
        "checkpoint": path.name,
        "collections": {k: bench_voices(model, more, v, utts) for k, v in groups.items()},
        "demos_with_faults": faults,
        "nonspeech_digits": silent,
        "seen_fsdd": meta.metrics.get("digit_error_rate"),
        "fluent": meta.metrics.get("fluent_digit_error_rate"),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--more-data", action="append", default=[], help="required without --quick")
    p.add_argument("--checkpoint", action="append", default=[], help="required without --quick")
    p.add_argument("--speakers-from", default=None, help="take the held-out speakers from this checkpoint")
    p.add_argument("--utts", type=int, default=120, help="connected-digit utterances per full speaker")
    p.add_argument("--json", default=None)
    add_quick(p, "the bundled model, 3 demos, 4 s per open-microphone case, held-out voices only with --more-data")
    args = p.parse_args(argv)
    if not args.quick and not (args.more_data and args.checkpoint):
        p.error("--more-data and --checkpoint are required (or --quick: the bundled model and demos)")
    torch.set_num_threads(1)
    if args.quick:
        from explorer.core.paths import bundled

        args.checkpoint = args.checkpoint or [str(bundled("transducer_fsdd_online.safetensors"))]
        args.utts = min(args.utts, 10)
    src = args.speakers_from or args.checkpoint[0]
    speakers = read_metadata(src).data.get("more_test_speakers") or []
    if not speakers:
        raise SystemExit(f"{src}: no held-out --more-data speakers in its metadata; give --speakers-from")
    if args.quick:
        speakers = speakers[:2]
        if not args.more_data:
            print("held-out voices: no --more-data folder given, only the bundled demos and synthetic signals")
    rows = [bench(Path(c), args.more_data, speakers, args.utts, args.quick) for c in args.checkpoint]
    print(f"held-out speakers: {len(speakers)} (from {Path(src).name})")
    print(
        "| checkpoint | collection | speakers / clips | isolated as recorded (clips; speaker mean) | empty | "
        "isolated, trimmed tight | connected |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        for name, c in r["collections"].items():
            print(
                f"| {r['checkpoint']} | {name} | {c['speakers']} / {c['clips']} | "
                f"{100 * c['isolated_as_recorded']:.1f}%; {100 * c['isolated_speaker_mean']:.1f}% | "
                f"{c['empty_transcripts']} | {100 * c['isolated_tight']:.1f}% | "
                + (
                    f"{100 * c['connected']:.1f}% ({', '.join(c['connected_speakers'])})"
                    if c["connected"] is not None
                    else "-"
                )
                + " |"
            )
    print()
    print(
        "| checkpoint | demos at -40 dB / clipped / DC offset / hum | open microphone, nobody speaking: digits "
        f"in 6 x {4 if args.quick else 16} s | seen FSDD speakers | fluent strings, unheard synthetic voices |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        f = r["demos_with_faults"]

        def pct(v):
            return "-" if v is None else f"{100 * v:.1f}%"

        print(
            f"| {r['checkpoint']} | "
            + " / ".join(f"{100 * v:.0f}%" for v in f.values())
            + f" | {sum(r['nonspeech_digits'].values())} | {pct(r['seen_fsdd'])} | {pct(r['fluent'])} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    run(main)
