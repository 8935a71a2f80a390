"""Evaluation: the learned optimizer against the tuned baselines on held-out problems.

Two protocols. ``fair`` (:func:`evaluate_fair`): for each reported metric separately, every optimizer (each
baseline's learning rate over a log grid widened at its edges, the learned optimizer's checkpoint among the
candidates) is selected by that metric on tuning problems disjoint from the reported ones (other seeds, and for
images another data split), then both metrics are reported over >= 10 held-out runs. ``legacy`` (the original):
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

from .catalog import LR_GRID
from .optimizer_runs import (
    BASELINES,
    METRIC_LABELS,
    METRICS,
    OPTIMIZER_LABELS,
    STYLE_BASELINES,
    metric_scores,
    run_optimizer,
    span,
    tune_learning_rates,
    tune_rates,
)
from .problems import EVAL_SEED_BASE, PROBLEMS, STYLE_PROBLEMS, TUNE_SEED_BASE, make_problem


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


# ------------------------------------------------------------------------------------------ the fair protocol
def tuning_problems(name: str, device: Any, runs: int):
    """Problems on which rates and checkpoints are chosen, disjoint from the reported ones: tuning seeds, and for
    image problems the other data split (MNIST: the 4,000 meta-training images, never the 1,000 held-out ones;
    Fashion-MNIST: 10,000 of its training images, never its test set)."""
    if name == "quadratic":
        return [make_problem("quadratic", TUNE_SEED_BASE, device=device, batch=runs)]
    split = "train" if name in IMAGE_PROBLEMS else "tune" if name in STYLE_PROBLEMS else "test"
    return [make_problem(name, TUNE_SEED_BASE + i, split=split, device=device) for i in range(runs)]


IMAGE_PROBLEMS = ("mnist", "mnist-200steps", "mnist-40", "mnist-2layer", "mnist-relu", "fashion")
TUNING_NOTE = {
    "quadratic": "tuning: one batch of random quadratics from a tuning seed (reported: another seed)",
    "fashion": "tuning: 10,000 Fashion-MNIST training images, tuning seeds (reported: the test set, held-out seeds)",
}
for _style in ("style", "style-128", "style-newstyle"):
    TUNING_NOTE[_style] = "tuning: BSDS500 val_ photos (reported: its test_ photos), the same styles"
MNIST_TUNING_NOTE = "tuning: the 4,000 meta-training images, tuning seeds (reported: the 1,000 held-out images)"


def _stack_curves(curves: Sequence[np.ndarray]) -> np.ndarray:
    """Loss curves (T+1, n) side by side; a run that diverged stopped early: its missing steps are +inf."""
    n = max(len(c) for c in curves)
    return np.concatenate(
        [np.pad(np.asarray(c, np.float64), ((0, n - len(c)), (0, 0)), constant_values=np.inf) for c in curves], axis=1
    )


def _paired(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean and standard error of the paired difference a - b (same problems), +inf when either diverged."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if not np.all(np.isfinite(d)):
        return {"mean": math.nan, "se": math.nan}
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0
    return {"mean": float(d.mean()), "se": se}


RUN_CACHE_ENV = "NIPS_EXPLORER_L2L_RUN_CACHE"


def baseline_run(problem: Any, kind: str, lr: float, token: Any = None) -> dict[str, Any]:
    """``run_optimizer`` for a baseline; with ``$NIPS_EXPLORER_L2L_RUN_CACHE`` set (a folder), the results of
    problems that name themselves (``cache_key``: the neural-art and MLP ones, deterministic) are kept there, so that a
    re-evaluation with another learned checkpoint does not rerun the baselines' tuning. Off by default."""
    import os

    folder = os.environ.get(RUN_CACHE_ENV)
    key = getattr(problem, "cache_key", None)
    if not folder or not key:
        return run_optimizer(problem, kind, lr=lr, token=token)
    f = Path(folder) / f"{key}-{kind}-{lr!r}.npz"
    if f.is_file():
        with np.load(f) as z:
            out: dict[str, Any] = {"kind": kind, "lr": lr, **{k: z[k] for k in ("curve", "final", "avg")}}
            if bool(z["diverged"]):
                out["diverged"] = True
            return out
    res = run_optimizer(problem, kind, lr=lr, token=token)
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".tmp.npz")
    np.savez(tmp, curve=res["curve"], final=res["final"], avg=res["avg"], diverged=bool(res.get("diverged")))
    tmp.replace(f)
    return res


def evaluate_fair(
    name: str,
    candidates: dict[str, Any],
    device: Any,
    runs: int | None = None,
    tune_runs: int | None = None,
    grid: Sequence[float] = LR_GRID,
    kinds: Sequence[str] = BASELINES,
    progress: Any = None,
    token: Any = None,
) -> dict[str, Any]:
    """The fair protocol on problem ``name``: every optimizer is selected on the metric it is reported on.

    For each metric (final loss; loss averaged over steps): each baseline's learning rate is the best of a log
    grid (widened while the best sits at an edge) by THAT metric on the tuning problems
    (:func:`tuning_problems`: other seeds, other images); the learned optimizer's checkpoint, when there are
    several ``candidates`` ({name: net}), is chosen the same way. Then every selected optimizer runs on the
    held-out problems and the metric is reported as mean, standard error (over runs) and median, with the paired
    difference to the best baseline. Returns one record per metric, the tuning tables and mean curves.
    """
    t0 = time.perf_counter()
    info = PROBLEMS[name]
    n_tune = int(tune_runs or max(info.tune_runs, 5 if name != "quadratic" else 100))
    tune_probs = tuning_problems(name, device, n_tune)

    def score(kind: str, lr: float) -> dict[str, float]:
        return metric_scores([baseline_run(p, kind, lr, token) for p in tune_probs])

    tune = tune_rates(score, kinds=kinds, grid=grid, token=token, progress=span(progress, 0.0, 0.45))
    cand_scores: dict[str, dict[str, float]] = {}
    if len(candidates) > 1:
        for i, (cname, net) in enumerate(candidates.items()):
            cand_scores[cname] = metric_scores([run_optimizer(p, "learned", net=net, token=token) for p in tune_probs])
            span(progress, 0.45, 0.55)(((i + 1) / len(candidates)), f"tuning: checkpoint {cname}")
    chosen = {m: min(candidates, key=lambda c, m=m: cand_scores.get(c, {}).get(m, 0.0)) for m in METRICS}

    problems, n = eval_problems_for(name, device, runs)
    cache: dict[tuple[str, Any], list[dict[str, Any]]] = {}

    def held_out(kind: str, sel: Any) -> list[dict[str, Any]]:
        key = (kind, sel)
        if key not in cache:
            net = candidates[sel] if kind == "learned" else None
            lr = None if kind == "learned" else sel
            cache[key] = [
                run_optimizer(p, kind, net=net, token=token) if kind == "learned" else baseline_run(p, kind, lr, token)
                for p in problems
            ]
        return cache[key]

    order = ["learned", *kinds]
    jobs = [(m, k) for m in METRICS for k in order]
    per_metric: dict[str, Any] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    for j, (m, kind) in enumerate(jobs):
        sel = chosen[m] if kind == "learned" else tune["lr"][m][kind]
        res = held_out(kind, sel)
        span(progress, 0.55, 1.0)((j + 1) / len(jobs), f"{name}: {kind} ({METRIC_LABELS[m]})")
        vals = np.concatenate([np.atleast_1d(r[m]) for r in res])
        st = _stats(vals)
        rec: dict[str, Any] = {
            "label": OPTIMIZER_LABELS[kind],
            "mean": st["mean"],
            "se": st["se"],
            "median": st["median"],
            "n": st["n"],
            "diverged": st["diverged"],
            "values": [float(v) for v in vals],
        }
        if kind == "learned":
            rec["checkpoint"] = sel
        else:
            rec["lr"] = sel
            rec["lr_at_grid_edge"] = kind in tune["at_edge"][m]
        accs = [r["accuracy"] for r in res if "accuracy" in r]
        if accs:
            rec["accuracy_mean"] = float(np.mean(accs))
        per_metric.setdefault(m, {"optimizers": {}})["optimizers"][kind] = rec
        c = _stack_curves([r["curve"] for r in res])
        with np.errstate(invalid="ignore", over="ignore"):
            curves.setdefault(m, {})[kind] = [float(x) for x in np.mean(c, axis=1)]
    for m in METRICS:
        opts = per_metric[m]["optimizers"]
        best = min(kinds, key=lambda k: (opts[k]["mean"], k))
        learned = opts["learned"]
        per_metric[m].update(
            {
                "metric": METRIC_LABELS[m],
                "best_baseline": best,
                "learned_at_most_best_baseline": bool(learned["mean"] <= opts[best]["mean"]),
                "learned_minus_best_baseline": _paired(np.array(learned["values"]), np.array(opts[best]["values"])),
                "paired_win_rate_vs_best": float(np.mean(np.array(learned["values"]) < np.array(opts[best]["values"]))),
                "rank_of_learned": 1 + sum(opts[k]["mean"] < learned["mean"] for k in kinds),
            }
        )
    return {
        "protocol": "fair",
        "problem": name,
        "description": info.description,
        "runs": n,
        "tune_runs": n_tune,
        "tuning_data": TUNING_NOTE.get(name, MNIST_TUNING_NOTE if name in IMAGE_PROBLEMS else "tuning seeds"),
        "metrics": per_metric,
        "tuning": {
            "grid": list(grid),
            "lr": tune["lr"],
            "scores": tune["scores"],
            "widened": tune["widened"],
            "at_edge": tune["at_edge"],
            "checkpoints": cand_scores or {next(iter(candidates)): "the only candidate"},
        },
        "wall_s": round(time.perf_counter() - t0, 1),
        "curves": curves,
    }


def evaluate_fair_problems(
    names: Sequence[str],
    device: Any,
    checkpoints: Sequence[str] | None = None,
    runs: int | None = None,
    tune_runs: int | None = None,
    save: bool = False,
    curves_path: str | None = None,
    progress: Any = None,
    token: Any = None,
) -> dict[str, Any]:
    """:func:`evaluate_fair` on each problem. Candidates: ``checkpoints`` (all of them, for every problem) or else
    the bundled checkpoint of the problem's family. ``save`` stores the selections and results in the metrics of
    each problem's family checkpoint (``fair``), where the tab reads its rates."""
    from explorer.core.checkpoints import read_metadata, update_metrics
    from explorer.core.paths import bundled

    from .data import fashion_available
    from .infer import CHECKPOINTS, load_learned, training_problem

    out: dict[str, Any] = {"protocol": "fair", "problems": {}, "checkpoints": {}}
    all_curves: dict[str, Any] = {}
    loaded: dict[str, Any] = {}
    saved: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(names):
        if name not in PROBLEMS:
            raise UserError(f"unknown problem {name!r}")
        if name == "fashion" and not (fashion_available("test") and fashion_available("train")):
            out["problems"][name] = {
                "problem": name,
                "skipped": "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
            }
            continue
        paths = list(checkpoints or [str(bundled(CHECKPOINTS[PROBLEMS[name].family]))])
        cands: dict[str, Any] = {}
        for path in paths:
            if path not in loaded:
                if not Path(path).exists():
                    raise UserError(f"no learned optimizer at {path}; train one or pass --checkpoint")
                loaded[path] = load_learned(path, device)
                out["checkpoints"][Path(path).name] = training_problem(loaded[path][1])
            cands[Path(path).name] = loaded[path][0]
        sub = (lambda f, m, i=i: progress((i + f) / len(names), m)) if progress else None
        kinds = STYLE_BASELINES if name in STYLE_PROBLEMS else BASELINES
        res = evaluate_fair(name, cands, device, runs=runs, tune_runs=tune_runs, kinds=kinds, progress=sub, token=token)
        all_curves[name] = res.pop("curves")
        out["problems"][name] = res
        if save:
            home = paths[0] if checkpoints else str(bundled(CHECKPOINTS[PROBLEMS[name].family]))
            saved.setdefault(home, {})[name] = compact_fair(res)
    for path, evals in saved.items():
        meta = read_metadata(path)
        merged = dict((meta.metrics or {}).get("fair", {}))
        merged.update(evals)
        update_metrics(path, {"fair": merged})
    if curves_path:
        from explorer.core.validate import atomic_output

        with atomic_output(curves_path, "JSON file") as tmp:
            tmp.write_text(json.dumps(all_curves))
    return out


def compact_fair(res: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint keeps of a fair evaluation: per metric the selections and mean +- s.e."""

    def r6(v: Any) -> Any:
        return round(v, 6) if isinstance(v, float) and math.isfinite(v) else v

    out: dict[str, Any] = {"runs": res["runs"], "tune_runs": res["tune_runs"]}
    for m, rec in res["metrics"].items():
        out[m] = {
            "lr": {k: v["lr"] for k, v in rec["optimizers"].items() if "lr" in v},
            "checkpoint": rec["optimizers"]["learned"]["checkpoint"],
            "mean": {k: r6(v["mean"]) for k, v in rec["optimizers"].items()},
            "se": {k: r6(v["se"]) for k, v in rec["optimizers"].items()},
            "best_baseline": rec["best_baseline"],
            "learned_at_most_best_baseline": rec["learned_at_most_best_baseline"],
        }
    return out


def optimizer_lines(rec: dict[str, Any]) -> list[str]:
    """One line per optimizer of a metric's record: label, mean ± standard error, and what was selected."""
    lines = []
    for s in rec["optimizers"].values():
        sel = s.get("checkpoint") or f"lr {s['lr']:g}{' (grid edge)' if s.get('lr_at_grid_edge') else ''}"
        lines.append(f"    {s['label']:16s} {s['mean']:12.4g} ± {s['se']:<9.2g} {sel}")
    return lines


def format_fair_table(results: dict[str, Any]) -> str:
    lines = []
    for name, res in results["problems"].items():
        if "skipped" in res:
            lines.append(f"{name}: skipped ({res['skipped']})")
            continue
        lines.append(f"{name}: {res['runs']} held-out runs; {res['tuning_data']} ({res['tune_runs']} runs)")
        for rec in res["metrics"].values():
            lines.append(f"  {rec['metric']} (every optimizer selected by it):")
            lines += optimizer_lines(rec)
            d = rec["learned_minus_best_baseline"]
            lines.append(
                f"    learned at most the best baseline ({OPTIMIZER_LABELS[rec['best_baseline']]}): "
                f"{'yes' if rec['learned_at_most_best_baseline'] else 'no'}; paired difference "
                f"{d['mean']:+.4g} ± {d['se']:.2g}"
            )
    return "\n".join(lines)
