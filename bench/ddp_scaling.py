"""One process against two under torchrun (DDP, gloo on CPU): samples per second and loss per sample seen.

    python -m bench.ddp_scaling --data DIR [--dataset jsb] [--epochs 4] [--procs 1,2] [--threads 1] [--json FILE]

Trains the SRNN (paper sizes, smoothing + Resq) with ``python -m torch.distributed.run --standalone
--nproc_per_node N -m explorer train srnn`` for each N, the same seed and the same global batch of 16 streams
(each rank takes 16/N of them), one thread per process. Prints, per N: training samples (chunks of 100 steps)
per second over the epochs' training time (validation excluded: rank 0 alone runs it), and the train/valid ELBO
per step after each epoch, i.e. after the same number of samples seen. The ratio of samples per second is what
the second process buys; the ELBO columns should agree within noise.

``--quick``: a tiny SRNN (d=z=a=8, MLPs of 16) for one epoch on a synthetic data set of 32 training chunks (no
--data needed), 1 and 2 processes: a check that the DDP path runs, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench._util import ROOT, add_quick
from bench._util import run as run_main

QUICK_SIZES = ["--d-dim", "8", "--z-dim", "8", "--a-dim", "8", "--hidden", "16"]


def run(procs: int, args, tmp: Path) -> dict:
    from explorer.core.training import read_resume

    out = tmp / f"srnn_{procs}.safetensors"
    env = dict(
        os.environ, PYTHONPATH=str(ROOT), NIPS_EXPLORER_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads)
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(procs),
        "-m",
        "explorer",
        "--device",
        "cpu",
        "train",
        "srnn",
        "--dataset",
        args.dataset,
        "--data",
        args.data,
        "--epochs",
        str(args.epochs),
        "--iwae-samples",
        "0",
        "--threads",
        str(args.threads),
        "--out",
        str(out),
        "--seed",
        str(args.seed),
    ] + (QUICK_SIZES if args.quick else [])
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"{procs} process(es) failed:\n{r.stderr[-3000:]}")
    state = read_resume(tmp / f"srnn_{procs}.resume.safetensors")
    history, rec = state["user"]["history"], state["training"]
    train_s = sum(h["epoch_train_s"] for h in history)
    return {
        "procs": procs,
        "samples": rec["samples"],
        "train_s": round(train_s, 1),
        "samples_per_s": round(rec["samples"] / train_s, 2),
        "ranks_in_sync": rec.get("ranks_in_sync"),
        "train_elbo": [round(h["train_elbo_per_step"], 4) for h in history],
        "valid_elbo": [round(h["valid_elbo_per_step"], 4) for h in history],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="folder with the SRNN authors' npz files (required without --quick)")
    ap.add_argument("--dataset", default="jsb")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--procs", default="1,2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--json", default=None)
    add_quick(ap, "a tiny SRNN, one epoch on synthetic data, 1 and 2 processes")
    args = ap.parse_args(argv)
    if not args.data and not args.quick:
        ap.error("--data is required (or --quick: synthetic data)")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        if args.quick:
            from explorer.papers.srnn.data import write_synthetic

            args.epochs = 1
            args.data = args.data or str(write_synthetic(d, args.dataset).parent)
        for n in [int(x) for x in args.procs.split(",")]:
            rows.append(run(n, args, Path(d)))
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["samples_per_s"]
    for r in rows:
        r["speedup"] = round(r["samples_per_s"] / base, 2)
    print(f"\n{'procs':>5} {'samples/s':>10} {'speedup':>8}  valid ELBO per epoch")
    for r in rows:
        print(f"{r['procs']:>5} {r['samples_per_s']:>10} {r['speedup']:>8}  {r['valid_elbo']}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "dataset": args.dataset,
                    "epochs": args.epochs,
                    "threads_per_process": args.threads,
                    "cores": os.cpu_count(),
                    "rows": rows,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    run_main(main)
