"""Leave-one-speaker-out table: each fold's models on the speaker they never heard, alone and as an ensemble.

    python -m bench.experiments.transducer_loso --data FSDD --runs fluent_30min,fluent_30min_seed1 [--utts 120]

For every FSDD speaker S and every run name R, ``models/transducer_loso_<S>_<R>.safetensors`` is used when it
exists (each was trained with ``--holdout S``; the script checks that the checkpoint's metadata says so). Each model
decodes the same 120 connected-digit utterances built from all 500 of S's recordings (the train command's held-out
set), then the fold's models decode them together as one ensemble (mean of their next-token probabilities, in
lockstep, streaming as one model). Prints digit error rates per fold, the mean of the single models, the ensemble's
rate, and the ensemble's real-time factor on one thread.
The leave-out checkpoints are not bundled (models/ holds what the app loads): re-make them with the commands in
bench/results/transducer_experiments.md, or take them from the git history (`git checkout ac1a0ab -- models/`)
into a folder given with --models. ``--quick``: 10 utterances per speaker; skips with one line when --data or the
checkpoints are absent.
"""

import argparse
import json
from pathlib import Path

from bench._util import add_quick, skip
from bench._util import run as run_main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="the FSDD recordings folder (required without --quick)")
    p.add_argument("--runs", default=None, help="comma-separated run names (file suffixes after the speaker)")
    p.add_argument("--speakers", default=None, help="comma-separated (default: all five FSDD speakers)")
    p.add_argument("--models", default="models", help="folder with the transducer_loso_* checkpoints")
    p.add_argument("--utts", type=int, default=120)
    add_quick(p, "10 utterances per speaker; skips when --data or the checkpoints are absent")
    args = p.parse_args(argv)
    if args.quick:
        args.utts = min(args.utts, 10)
        if not args.data or not Path(args.data).is_dir():
            return skip("no FSDD folder given (--data): the leave-one-out table needs the recordings")
        if not any(Path(args.models).glob("transducer_loso_*.safetensors")):
            return skip(f"no transducer_loso_* checkpoints in {args.models} (they are not bundled; see --help)")
        args.runs = args.runs or "fluent_30min,channel_30min"
    elif not (args.data and args.runs):
        p.error("--data and --runs are required")
    import torch

    from explorer.core.checkpoints import load_model
    from explorer.papers.transducer import data as D
    from explorer.papers.transducer import testsets as T
    from explorer.papers.transducer.evaluate import evaluate_utterances
    from explorer.papers.transducer.model import Ensemble, build

    torch.set_num_threads(1)
    runs = args.runs.split(",")

    rows = {}
    for spk in (args.speakers or ",".join(D.SPEAKERS)).split(","):
        members = []
        for run in runs:
            f = Path(args.models) / f"transducer_loso_{spk}_{run}.safetensors"
            if not f.exists():
                continue
            m, meta = load_model(f, "transducer", build, "cpu")
            held = (meta.data.get("holdout") or "").split(",")
            if spk not in held:
                raise SystemExit(f"{f.name} was not trained with {spk} held out (holdout: {meta.data.get('holdout')})")
            members.append((run, m))
        if not members:
            continue
        utts = T.test_utterances(D.load_fsdd(args.data, speakers=[spk]), args.utts)
        row = {run: evaluate_utterances(m, utts)["digit_error_rate"] for run, m in members}
        if len(members) > 1:
            ev = evaluate_utterances(Ensemble([m for _, m in members]).eval(), utts)
            row["ensemble"] = ev["digit_error_rate"]
            row["ensemble_rtf"] = ev["real_time_factor"]
        rows[spk] = row
        print(spk, " ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)

    if not rows:
        raise SystemExit(f"no transducer_loso_* checkpoints in {args.models} (see this script's docstring)")
    print()
    print("| speaker | " + " | ".join(runs) + " | single mean | ensemble |")
    singles_all, ens_all = [], []
    for spk, row in rows.items():
        singles = [row[r] for r in runs if r in row]
        singles_all.append(sum(singles) / len(singles))
        if "ensemble" in row:
            ens_all.append(row["ensemble"])
        cells = [f"{100 * row[r]:.1f}%" if r in row else "" for r in runs]
        print(
            f"| {spk} | "
            + " | ".join(cells)
            + f" | {100 * singles_all[-1]:.1f}% | "
            + (f"{100 * row['ensemble']:.1f}%" if "ensemble" in row else "")
            + " |"
        )
    if singles_all:
        print(
            f"mean over folds: single models {100 * sum(singles_all) / len(singles_all):.1f}%"
            + (f", ensembles {100 * sum(ens_all) / len(ens_all):.1f}% ({len(ens_all)} folds)" if ens_all else "")
        )
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    run_main(main)
