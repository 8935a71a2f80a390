"""Planner speed: the whole cost curve (every budget from 1 to saturation) for HSM/ISM/MSM, one schedule, and
MSM against the numpy DPs of the same recurrence.

    python -m bench.bptt_planner [--lengths 1000,2000,5000,10000] [--alpha 4.5] [--repeat 3]
                                 [--dp-max-t 2000] [--plain-max-t 2000] [--json] [--quick]

HSM and ISM use closed forms. MSM builds its table with ``msm_table`` (one windowed convolution per budget);
"numpy DP" is ``dp_table`` (row by row, every budget and split point vectorised, with the closed-form bounds
that prune split points: the implementation before ``msm_table``) and "plain DP" the same with no pruning. Both
DPs build the same table up to the same budget and the bench checks the three tables are equal. They are slow
(minutes at T=10000), so they run only up to --dp-max-t / --plain-max-t. Times: wall clock on one thread,
min-max over --repeat runs (the DPs once), and the process's CPU time (the dev machine is shared: wall time
there includes waiting for a core). ``--quick``: T = 200 and 500, one run, the DPs at T = 200.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread (numpy's BLAS is not used here anyway)

import numpy as np  # noqa: E402

from bench._util import add_quick, run  # noqa: E402
from explorer.papers.bptt.planner import POLICIES, Planner, dp_table, msm_table  # noqa: E402


def _timed(fn, repeat: int):
    """(result, [min, max] wall seconds, [min, max] CPU seconds of this process) over ``repeat`` runs."""
    times, cpu, out = [], [], None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return out, [round(min(times), 3), round(max(times), 3)], [round(min(cpu), 3), round(max(cpu), 3)]


def bench(length: int, alpha: float, repeat: int, dp_max_t: int, plain_max_t: int) -> dict:
    out = {"length": length, "alpha": alpha}
    for policy in POLICIES:

        def curve(policy=policy):
            P = Planner(length, policy, alpha, cache=False)  # a cold build every time
            return P, P.curve()

        (P, (bud, costs)), secs, cpu = _timed(curve, repeat)
        t0 = time.perf_counter()
        plan = P.plan(0.05 * P.full_memory)
        row = {
            "budgets": int(bud.size),
            "curve_seconds": secs,
            "curve_cpu_seconds": cpu,
            "plan5pct_seconds": round(time.perf_counter() - t0, 3),
            "cost_at_5pct": plan.cost,
            "actions": len(plan.schedule),
        }
        if policy == "msm":
            q, p, G = P.grid.q, P.grid.p, P._table.shape[1] - 1
            row.update(table_shape=list(P._table.shape), grid={"q": q, "p": p})
            fast = msm_table(length, G, q, p)
            for name, limit, prune in (("numpy_dp", dp_max_t, True), ("plain_dp", plain_max_t, False)):
                if length > limit:
                    row[name] = {"skipped": f"T > {limit}"}
                    continue
                t0 = time.perf_counter()
                ref = dp_table(length, G, q, p, "msm", prune=prune)
                row[name] = {
                    "seconds": round(time.perf_counter() - t0, 3),
                    "equal": bool(np.array_equal(np.minimum(ref[:, q:], 1 << 29), np.minimum(fast[:, q:], 1 << 29))),
                }
        out[policy] = row
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="1000,2000,5000,10000")
    ap.add_argument("--alpha", type=float, default=4.5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dp-max-t", type=int, default=2000, help="run the pruned numpy DP up to this T")
    ap.add_argument("--plain-max-t", type=int, default=2000, help="run the plain numpy DP up to this T")
    ap.add_argument("--json", action="store_true")
    add_quick(ap, "T = 200 and 500, one run, the DPs at T = 200")
    args = ap.parse_args(argv)
    if args.quick:
        args.lengths, args.repeat, args.dp_max_t, args.plain_max_t = "200,500", 1, 200, 200
    rows = [bench(int(t), args.alpha, args.repeat, args.dp_max_t, args.plain_max_t) for t in args.lengths.split(",")]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"alpha = {args.alpha}; curve = every budget from 1 to saturation (seconds, min-max of {args.repeat}); "
        f"plan = schedule at 5% memory"
    )
    print(
        f"{'T':>6} {'policy':6} {'budgets':>8} {'curve s':>13} {'(CPU s)':>13} {'plan s':>7} {'Q(5%)':>8}   "
        f"MSM table vs numpy DPs (wall s, x the curve's min)"
    )
    for r in rows:
        for p in POLICIES:
            d = r[p]
            lo, hi = d["curve_seconds"]
            clo, chi = d["curve_cpu_seconds"]
            extra = ""
            if p == "msm":
                parts = [f"table {d['table_shape'][0]}x{d['table_shape'][1]}"]
                for name, label in (("numpy_dp", "numpy DP"), ("plain_dp", "plain DP")):
                    e = d[name]
                    parts.append(
                        f"{label}: "
                        + (
                            e["skipped"]
                            if "skipped" in e
                            else f"{e['seconds']:.2f} s ({e['seconds'] / max(lo, 1e-9):.0f}x), "
                            f"{'same table' if e['equal'] else 'TABLES DIFFER'}"
                        )
                    )
                extra = "; ".join(parts)
            print(
                f"{r['length']:6} {p:6} {d['budgets']:8} {lo:6.3f}-{hi:<6.3f} ({clo:5.3f}-{chi:<5.3f}) "
                f"{d['plan5pct_seconds']:7.3f} "
                f"{d['cost_at_5pct']:8}   {extra}"
            )
    return 0


if __name__ == "__main__":
    run(main)
