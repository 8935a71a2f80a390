"""SRNN training step with and without ``--bptt-memory``: activation memory held between forward and backward,
and time per step.

    python -m bench.srnn_bptt_memory [--model srnn|gru] [--length 100] [--batch 16] [--budgets 1,0.5,0.2,0.1]
                                     [--repeats 5] [--threads 1] [--json FILE] [--quick]

The model is the paper's SRNN (smoothing + Resq, d=300, z=100, a=300, MLPs of 500) on random piano rolls of
``--length`` steps (the music benchmarks' chunks are 100 steps). Memory is counted exactly, not sampled: the bytes
of every tensor the step's autograd graph saves for backward (each storage once; parameters and inputs
excluded), plus what ``checkpointed_rnn`` stores for the two GRUs (its ``memory_probe``). "plain" is the trainer
without the option (cuDNN-style ``nn.GRU``); budget 1.0 is the same step-by-step GRU cell storing everything.
Time is the median wall time of a forward+backward over ``--repeats`` runs after a warm-up. ``--quick``: 20 steps,
batch 4, budget 0.5, one timed run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bench._util import add_quick, run


def saved_bytes_of_step(model, u, x, exclude):
    import torch

    from explorer.papers.bptt import memory_probe
    from explorer.papers.srnn.model import elbo_loss

    seen, total = set(), [0]
    skip = {t.untyped_storage().data_ptr() for t in exclude}

    def pack(t):
        if isinstance(t, torch.Tensor):
            ptr = t.untyped_storage().data_ptr()
            if ptr not in seen and ptr not in skip:
                seen.add(ptr)
                total[0] += t.untyped_storage().nbytes()
        return t

    with memory_probe() as calls, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss, _, _ = elbo_loss(model(u, x), None, 1.0)
    ckpt = sum(c.bytes_after_forward for c in calls)
    loss.backward()
    return total[0], ckpt


def main(argv=None) -> int:
    import torch

    from explorer.papers.srnn.model import build, elbo_loss

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--length", type=int, default=100)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--budgets", default="1,0.5,0.2,0.1")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--model", choices=("srnn", "gru"), default="srnn", help="SRNN (default) or the GRU baseline")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    add_quick(ap, "20 steps, batch 4, budget 0.5, one timed run")
    args = ap.parse_args(argv)
    if args.quick:
        args.length, args.batch, args.budgets, args.repeats = 20, 4, "0.5", 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build({"kind": args.model}).train()
    u = (torch.rand(args.batch, args.length, 88) < 0.05).float()
    x = (torch.rand(args.batch, args.length, 88) < 0.05).float()
    exclude = list(model.parameters()) + [u, x]
    rows = []
    for budget in [None] + [float(b) for b in args.budgets.split(",")]:
        model.bptt_memory = budget
        graph, ckpt = saved_bytes_of_step(model, u, x, exclude)
        times = []
        for _ in range(args.repeats + 1):
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            loss, _, _ = elbo_loss(model(u, x), None, 1.0)
            loss.backward()
            times.append(time.perf_counter() - t0)
        rows.append(
            {
                "budget": "plain" if budget is None else budget,
                "graph_mb": round(graph / 2**20, 2),
                "gru_stored_mb": round(ckpt / 2**20, 2),
                "total_mb": round((graph + ckpt) / 2**20, 2),
                "step_s": round(statistics.median(times[1:]), 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]
    print(f"\n{'budget':>7} {'activations MB':>15} {'of plain':>9} {'step s':>8} {'x plain':>8}")
    for r in rows:
        print(
            f"{r['budget']!s:>7} {r['total_mb']:>15} {r['total_mb'] / base['total_mb']:>9.2f} {r['step_s']:>8} "
            f"{r['step_s'] / base['step_s']:>8.2f}"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "model": args.model,
                    "length": args.length,
                    "batch": args.batch,
                    "threads": args.threads,
                    "rows": rows,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    run(main)
