"""Evaluation: the learned optimizer against the tuned baselines on held-out problems.

For each problem: (1) tune each baseline's learning rate on separate tuning problems
(:func:`~explorer.papers.l2l.optimizer_runs.tune_learning_rates`), (2) run the learned optimizer and the tuned
baselines on the same held-out problems (fixed seeds; MNIST optimizees train on the 1,000 images never used in
meta-training), (3) report per optimizer the mean and standard error of the final loss (full held-out image set
for MNIST) and of the loss averaged over all steps.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from explorer.core.errors import UserError

from .optimizer_runs import BASELINES, OPTIMIZER_LABELS, run_optimizer, tune_learning_rates
from .problems import EVAL_SEED_BASE, PROBLEMS, make_problem


def _stats(values: np.ndarray) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    n = len(v)
    if not finite.all():
        return {
            "mean": math.inf,
            "se": math.nan,
            "median": float(np.median(v)),
            "n": n,
            "diverged": int((~finite).sum()),
        }
    return {
        "mean": float(v.mean()),
        "se": float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0,
        "median": float(np.median(v)),
        "n": n,
        "diverged": 0,
    }


def eval_problems_for(name: str, device: Any, runs: int | None = None):
    info = PROBLEMS[name]
    n = runs or info.eval_runs
    if name == "quadratic":
        return [make_problem("quadratic", EVAL_SEED_BASE, device=device, batch=n)], n
    return [make_problem(name, EVAL_SEED_BASE + i, split="test", device=device) for i in range(n)], n


def evaluate_problem(
    name: str,
    net: Any,
    device: Any,
    runs: int | None = None,
    tune_runs: int | None = None,
    tuned: dict[str, float] | None = None,
    progress: Any = None,
    token: Any = None,
    kinds: Sequence[str] = BASELINES,
) -> dict[str, Any]:
    """Run learned + tuned baselines on problem ``name``; returns the summary (and mean curves)."""
    t0 = time.perf_counter()
    tune = None
    if tuned is None:
        tune = tune_learning_rates(
            name,
            device=device,
            runs=tune_runs,
            kinds=kinds,
            token=token,
            progress=(lambda f, m: progress(0.5 * f, m)) if progress else None,
        )
        tuned = tune["lr"]
    problems, n = eval_problems_for(name, device, runs)
    finals: dict[str, list[np.ndarray]] = {}
    avgs: dict[str, list[np.ndarray]] = {}
    curves: dict[str, list[np.ndarray]] = {}
    accs: dict[str, list[float]] = {}
    order = ["learned", *kinds]
    total, done = len(order) * len(problems), 0
    for kind in order:
        for p in problems:
            r = run_optimizer(p, kind, lr=tuned.get(kind), net=net if kind == "learned" else None, token=token)
            finals.setdefault(kind, []).append(r["final"])
            avgs.setdefault(kind, []).append(r["avg"])
            curves.setdefault(kind, []).append(r["curve"])
            if "accuracy" in r:
                accs.setdefault(kind, []).append(r["accuracy"])
            done += 1
            if progress is not None:
                progress(0.5 + 0.5 * done / total if tune is not None else done / total, f"{name}: {kind}")
    summary: dict[str, Any] = {}
    mean_curves: dict[str, list[float]] = {}
    for kind in order:
        f = np.concatenate(finals[kind])
        a = np.concatenate(avgs[kind])
        c = np.concatenate(curves[kind], axis=1)  # (T+1, instances)
        fs, as_ = _stats(f), _stats(a)
        summary[kind] = {
            "label": OPTIMIZER_LABELS[kind],
            "lr": tuned.get(kind),
            "final_mean": fs["mean"],
            "final_se": fs["se"],
            "final_median": fs["median"],
            "avg_mean": as_["mean"],
            "avg_se": as_["se"],
            "log10_mean_final": math.log10(fs["mean"]) if 0 < fs["mean"] < math.inf else None,
            "diverged": fs["diverged"],
        }
        if kind in accs:
            summary[kind]["accuracy_mean"] = float(np.mean(accs[kind]))
        with np.errstate(invalid="ignore", over="ignore"):
            mean_curves[kind] = [float(x) for x in np.mean(c, axis=1)]
    learned_f = np.concatenate(finals["learned"])
    verdict = {}
    for kind in kinds:
        other = np.concatenate(finals[kind])
        verdict[kind] = {
            "learned_lower_mean_final": bool(summary["learned"]["final_mean"] < summary[kind]["final_mean"]),
            "learned_lower_mean_avg": bool(summary["learned"]["avg_mean"] < summary[kind]["avg_mean"]),
            "paired_win_rate": float(np.mean(learned_f < other)),
        }
    beats_all = all(v["learned_lower_mean_final"] for v in verdict.values())
    return {
        "problem": name,
        "description": PROBLEMS[name].description,
        "runs": n,
        "tuned_lr": dict(tuned),
        "tuning": {k: v for k, v in (tune or {}).items() if k != "lr"},
        "optimizers": summary,
        "versus": verdict,
        "learned_beats_all_baselines_final": beats_all,
        "wall_s": round(time.perf_counter() - t0, 1),
        "curves": mean_curves,
    }


def evaluate_problems(
    names: Sequence[str],
    device: Any,
    checkpoint: str | None = None,
    runs: int | None = None,
    tune_runs: int | None = None,
    save: bool = False,
    curves_path: str | None = None,
    progress: Any = None,
    token: Any = None,
) -> dict[str, Any]:
    """Evaluate each problem with the learned optimizer of its family (or ``checkpoint`` for all)."""
    from explorer.core.checkpoints import read_metadata, update_metrics
    from explorer.core.paths import bundled

    from .data import fashion_available
    from .infer import CHECKPOINTS, load_learned, training_problem

    out: dict[str, Any] = {"problems": {}, "checkpoints": {}}
    all_curves: dict[str, Any] = {}
    loaded: dict[str, Any] = {}
    for i, name in enumerate(names):
        if name not in PROBLEMS:
            raise UserError(f"unknown problem {name!r}")
        if name == "fashion" and not fashion_available():
            out["problems"][name] = {
                "problem": name,
                "skipped": "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
            }
            continue
        fam = PROBLEMS[name].family
        path = checkpoint or str(bundled(CHECKPOINTS[fam]))
        if path not in loaded:
            if not Path(path).exists():
                raise UserError(
                    f"no learned optimizer at {path}; train one with `nips-explorer train l2l "
                    f"--problem {fam}` or pass --checkpoint"
                )
            loaded[path] = load_learned(path, device)
        net, meta = loaded[path]
        sub = (lambda f, m, i=i: progress((i + f) / len(names), m)) if progress else None
        res = evaluate_problem(name, net, device, runs=runs, tune_runs=tune_runs, progress=sub, token=token)
        res["checkpoint"] = Path(path).name
        res["meta_trained_on"] = training_problem(meta)
        all_curves[name] = res.pop("curves")
        out["problems"][name] = res
        out["checkpoints"][Path(path).name] = training_problem(meta)
    if save:
        by_path: dict[str, dict[str, Any]] = {}
        for name, res in out["problems"].items():
            if "skipped" in res:
                continue
            fam = PROBLEMS[name].family
            path = checkpoint or str(bundled(CHECKPOINTS[fam]))
            by_path.setdefault(path, {})[name] = _compact(res)
        for path, evals in by_path.items():
            meta = read_metadata(path)
            merged = dict((meta.metrics or {}).get("eval", {}))
            merged.update(evals)
            metrics: dict[str, Any] = {"eval": merged}
            home = training_problem(meta)
            if home in merged:
                opt = merged[home]["optimizers"]
                metrics.update(
                    {
                        "headline": "final_loss",
                        "final_loss": opt["learned"]["final_mean"],
                        "final_loss_best_baseline": min(v["final_mean"] for k, v in opt.items() if k != "learned"),
                    }
                )
            update_metrics(path, metrics)
    if curves_path:
        from explorer.core.validate import atomic_output

        with atomic_output(curves_path, "JSON file") as tmp:
            tmp.write_text(json.dumps(all_curves))
    return out


def _compact(res: dict[str, Any]) -> dict[str, Any]:
    """What goes into a checkpoint's metrics: means, errors, rates; no curves or tuning tables."""
    return {
        "runs": res["runs"],
        "tuned_lr": res["tuned_lr"],
        "optimizers": {
            k: {
                kk: (round(vv, 6) if isinstance(vv, float) and math.isfinite(vv) else vv)
                for kk, vv in v.items()
                if kk in ("final_mean", "final_se", "avg_mean", "avg_se", "accuracy_mean", "diverged")
            }
            for k, v in res["optimizers"].items()
        },
        "learned_beats_all_baselines_final": res["learned_beats_all_baselines_final"],
    }


def format_table(results: dict[str, Any]) -> str:
    lines = []
    for name, res in results["problems"].items():
        if "skipped" in res:
            lines.append(f"{name}: skipped ({res['skipped']})")
            continue
        lines.append(f"{name} ({res['runs']} runs, learned optimizer from {res['checkpoint']}):")
        lines.append(f"  {'optimizer':16s} {'lr':>8s} {'final loss':>22s} {'loss averaged over steps':>26s}")
        for _kind, s in res["optimizers"].items():
            lr = "-" if s["lr"] is None else f"{s['lr']:g}"
            lines.append(
                f"  {s['label']:16s} {lr:>8s} {s['final_mean']:12.4g} ± {s['final_se']:<8.2g}"
                f" {s['avg_mean']:14.4g} ± {s['avg_se']:<8.2g}"
            )
        lines.append(
            f"  learned beats every tuned baseline (mean final loss): "
            f"{'yes' if res['learned_beats_all_baselines_final'] else 'no'}"
        )
    return "\n".join(lines)
