"""Enrollment on each leave-one-out fold: an unheard speaker read before and after adapting to ten of their clips.

    python -m bench.experiments.transducer_enroll --data FSDD [--run channel_30min] [--takes 1] [--first 0]
                                                  [--steps 600] [--quick]

For every FSDD speaker S, ``models/transducer_loso_<S>_<run>.safetensors`` (trained with S held out) is adapted
with ``adapt.adapt`` (the app's "Teach it my voice" and ``nips-explorer transducer-adapt``) on S's recordings with
indices first..first+takes-1 (one take of each digit for --takes 1; other --first values show how much the choice
of takes matters), cut and checked by the same code as a microphone
enrollment. Both models then decode the same 120 connected-digit utterances built from S's recordings 10-49 (never
the enrollment takes) and 60 fluent strings in three synthetic voices used nowhere in training. Prints digit error
rates before and after, the relative reduction, and the adaptation's wall time on one thread.
The leave-out checkpoints are not bundled (models/ holds what the app loads): re-make them with the commands in
bench/results/transducer_experiments.md, or take them from the git history (`git checkout ac1a0ab -- models/`)
into a folder given with --models. ``--quick``: 20 adaptation steps, 10 utterances; skips with one line when --data
or the checkpoints are absent.
"""

import argparse
import json
import time
from pathlib import Path

from bench._util import add_quick, run, skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="the FSDD recordings folder (required without --quick)")
    p.add_argument("--run", default="channel_30min", help="fold checkpoints' suffix after the speaker")
    p.add_argument("--speakers", default=None, help="comma-separated (default: all five FSDD speakers)")
    p.add_argument("--models", default="models", help="folder with the transducer_loso_* checkpoints")
    p.add_argument("--takes", type=int, default=1, help="enrollment recordings per digit (FSDD indices first..)")
    p.add_argument("--first", type=int, default=0, help="index of the first enrollment take (default 0)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--utts", type=int, default=120)
    add_quick(p, "20 adaptation steps, 10 utterances; skips when --data or the checkpoints are absent")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.utts = 20, min(args.utts, 10)
        if not args.data or not Path(args.data).is_dir():
            return skip("no FSDD folder given (--data): enrollment needs the speakers' recordings")
        if not any(Path(args.models).glob(f"transducer_loso_*_{args.run}.safetensors")):
            return skip(f"no transducer_loso_*_{args.run} checkpoints in {args.models} (not bundled; see --help)")
    elif not args.data:
        p.error("--data is required")
    import torch

    from explorer.core.checkpoints import load_model
    from explorer.papers.transducer import data as D
    from explorer.papers.transducer import testsets as T
    from explorer.papers.transducer.adapt import adapt, enrollment_clips
    from explorer.papers.transducer.evaluate import evaluate_utterances
    from explorer.papers.transducer.model import build

    torch.set_num_threads(1)
    if not (1 <= args.takes and 0 <= args.first and args.first + args.takes <= 10):
        raise SystemExit("--first/--takes: the takes must lie within recordings 0-9 (the test set uses 10-49)")

    rows = {}
    fluent = T.fluent_test_phrases(20)
    for spk in (args.speakers or ",".join(D.SPEAKERS)).split(","):
        f = Path(args.models) / f"transducer_loso_{spk}_{args.run}.safetensors"
        if not f.exists():
            continue
        model, meta = load_model(f, "transducer", build, "cpu")
        if spk not in (meta.data.get("holdout") or "").split(","):
            raise SystemExit(f"{f.name} was not trained with {spk} held out (holdout: {meta.data.get('holdout')})")
        test = T.test_utterances(D.load_fsdd(args.data, speakers=[spk], indices=range(10, 50)), args.utts)
        takes = D.load_fsdd(args.data, speakers=[spk], indices=range(args.first, args.first + args.takes))
        clips = enrollment_clips({d: [c.audio for c in takes if c.digit == d] for d in range(10)}, speaker=spk)
        t0 = time.perf_counter()
        new, hist = adapt(model, clips, "cpu", {"steps": args.steps} if args.steps else None)
        wall = time.perf_counter() - t0
        row = {
            "before": evaluate_utterances(model, test)["digit_error_rate"],
            "after": evaluate_utterances(new, test)["digit_error_rate"],
            "fluent_before": evaluate_utterances(model, fluent)["digit_error_rate"],
            "fluent_after": evaluate_utterances(new, fluent)["digit_error_rate"],
            "enroll_audio_s": hist["enrollment"]["audio_s"],
            "steps": hist["steps_done"],
            "adapt_s": round(wall, 1),
        }
        rows[spk] = row
        print(spk, json.dumps(row), flush=True)

    if not rows:
        raise SystemExit(f"no transducer_loso_* checkpoints in {args.models} (see this script's docstring)")
    print()
    print(
        f"| unheard speaker ({args.run} folds) | before | after enrolling {args.takes} take(s) of each digit "
        f"(recordings {args.first}-{args.first + args.takes - 1}) | "
        "fluent strings before / after | enrollment audio | adaptation (1 thread) |"
    )
    print("|---|---|---|---|---|---|")
    for spk, r in rows.items():
        print(
            f"| {spk} | {100 * r['before']:.1f}% | {100 * r['after']:.1f}% | {100 * r['fluent_before']:.1f}% / "
            f"{100 * r['fluent_after']:.1f}% | {r['enroll_audio_s']:.1f} s | {r['adapt_s']:.0f} s "
            f"({r['steps']} steps) |"
        )
    if rows:
        b = sum(r["before"] for r in rows.values()) / len(rows)
        a = sum(r["after"] for r in rows.values()) / len(rows)
        print(f"| mean | {100 * b:.1f}% | {100 * a:.1f}% | | | |")
        print(f"\nrelative reduction of the mean: {100 * (1 - a / b):.0f}%")
    return 0


if __name__ == "__main__":
    run(main)
