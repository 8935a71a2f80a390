"""Planner speed: the whole cost curve (every budget from 1 to saturation) for HSM/ISM/MSM, and one schedule.

    python bench/bptt_planner.py [--lengths 100,1000,10000] [--alpha 4.5] [--json]

HSM and ISM use closed forms; MSM builds its (pruned, cut) DP table. MSM is skipped above --msm-max-t.
"""
from __future__ import annotations

import argparse
import json
import time

from explorer.papers.bptt.planner import POLICIES, Planner


def bench(length: int, alpha: float, msm_max_t: int) -> dict:
    out = {"length": length, "alpha": alpha}
    for policy in POLICIES:
        if policy == "msm" and length > msm_max_t:
            out[policy] = {"skipped": f"T > {msm_max_t}"}
            continue
        t0 = time.perf_counter()
        P = Planner(length, policy, alpha)
        if policy == "msm":
            P.build()
        bud, costs = P.curve()
        t1 = time.perf_counter()
        plan = P.plan(0.05 * P.full_memory)
        t2 = time.perf_counter()
        row = {"budgets": int(bud.size), "curve_seconds": round(t1 - t0, 4), "plan5pct_seconds": round(t2 - t1, 4),
               "cost_at_5pct": plan.cost, "actions": len(plan.schedule)}
        if policy == "msm":
            row["table_shape"] = list(P._table.shape)
            row["budget_cells"] = int(round(P.saturation * P.grid.q))
        out[policy] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lengths", default="100,1000,2000,10000")
    ap.add_argument("--alpha", type=float, default=4.5)
    ap.add_argument("--msm-max-t", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [bench(int(t), args.alpha, args.msm_max_t) for t in args.lengths.split(",")]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"alpha = {args.alpha}; curve = every budget from 1 to saturation; plan = schedule at 5% memory")
    print(f"{'T':>6} {'policy':6} {'budgets':>8} {'curve s':>9} {'plan s':>8} {'Q(5%)':>8}")
    for r in rows:
        for p in POLICIES:
            d = r[p]
            if "skipped" in d:
                print(f"{r['length']:6} {p:6} skipped ({d['skipped']})")
                continue
            print(f"{r['length']:6} {p:6} {d['budgets']:8} {d['curve_seconds']:9.3f} {d['plan5pct_seconds']:8.3f} "
                  f"{d['cost_at_5pct']:8}")


if __name__ == "__main__":
    main()
