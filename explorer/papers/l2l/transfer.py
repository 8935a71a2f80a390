"""Transfer as a user meets it: ``LearnedOptimizer`` as a plain ``torch.optim`` optimizer on real data it never saw.

For each data set (Fashion-MNIST, scikit-learn's digits and breast cancer, wine; see :mod:`.data`) a small sigmoid
MLP (``nn.Sequential(Linear(d, 20), Sigmoid(), Linear(20, classes))``, PyTorch's default initialisation drawn from
the run's seed) is trained for 100 steps on minibatches of 128 (drawn with replacement) by the learned optimizer or
by a ``torch.optim`` baseline. Protocol (the fair one of :mod:`.evaluate`): the data set is split in two, a tuning
split (Fashion-MNIST: 10,000 of its training images; the small sets: a fixed random half) on which every
baseline's learning rate is chosen (log grid widened at its edges) and, when several checkpoints are offered, the
learned optimizer's, separately for each metric; and an evaluation split (Fashion-MNIST: its test set; the small
sets: the other half) with other seeds, on which both metrics are reported: the final loss (cross-entropy on the
whole split after the last step) and the minibatch loss averaged over the steps, mean and standard error over
the runs. Tabular features are standardised with the tuning split's statistics; digits' pixels are divided by 16.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from explorer.core.errors import UserError

from .catalog import LR_GRID
from .optimizer_runs import (
    BASELINES,
    METRIC_LABELS,
    METRICS,
    OPTIMIZER_LABELS,
    make_baseline,
    metric_scores,
    span,
    tune_rates,
)
from .problems import EVAL_SEED_BASE, TUNE_SEED_BASE

TRANSFER_SETS = ("fashion", "digits", "breast-cancer", "wine")
SPLIT_SEED = 2016
HIDDEN, STEPS, BATCH = 20, 100, 128


def transfer_missing(name: str) -> str | None:
    """Why data set ``name`` cannot be used here (one line), or None."""
    from .data import fashion_available, small_set_missing

    if name == "fashion":
        if fashion_available("train") and fashion_available("test"):
            return None
        return "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)"
    return small_set_missing(name)


def load_transfer_set(name: str) -> dict[str, Any]:
    """{"tune": (x, y), "eval": (x, y), "classes": k, "note": str}: float32 features, int64 labels."""
    from .data import SMALL_SETS, load_fashion, load_small_set

    why = transfer_missing(name)
    if why is not None:
        raise UserError(why)
    if name == "fashion":
        tune, ev = load_fashion("train"), load_fashion("test")
        note = "Fashion-MNIST: tuning on 10,000 training images, evaluation on the 10,000 test images"
        return {"tune": tune, "eval": ev, "classes": 10, "note": note}
    x, y, is_image = load_small_set(name)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    half = len(y) // 2
    ti, ei = order[:half], order[half:]
    if is_image:
        x = x / 16.0
    else:
        mu, sd = x[ti].mean(0), x[ti].std(0)
        x = (x - mu) / np.where(sd > 0, sd, 1.0)

    def part(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(x[idx].astype(np.float32)), torch.from_numpy(y[idx].copy())

    note = f"{SMALL_SETS[name]}; tuning on a random half ({half}), evaluation on the other ({len(y) - half})"
    return {"tune": part(ti), "eval": part(ei), "classes": int(y.max()) + 1, "note": note}


def make_mlp(d: int, classes: int, seed: int, hidden: int = HIDDEN) -> nn.Module:
    """The small sigmoid MLP, its default-style initialisation (uniform +-1/sqrt(fan_in)) drawn from ``seed``."""
    g = torch.Generator().manual_seed(int(seed) % (2**63))
    model = nn.Sequential(nn.Linear(d, hidden), nn.Sigmoid(), nn.Linear(hidden, classes))
    with torch.no_grad():
        for lin in (model[0], model[2]):
            bound = 1.0 / math.sqrt(lin.in_features)
            for p in (lin.weight, lin.bias):
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
    return model


def train_run(
    data: tuple[torch.Tensor, torch.Tensor],
    classes: int,
    make_opt: Any,
    seed: int,
    steps: int = STEPS,
    batch: int = BATCH,
    token: Any = None,
) -> dict[str, Any]:
    """Train a fresh MLP the ordinary way (zero_grad, backward, step). Returns final (whole-split loss after the
    last step) and avg (mean of the minibatch losses f_1..f_T, as in :class:`.optimizer_runs.Run`), +inf if it
    diverged."""
    x, y = data
    model = make_mlp(x.shape[1], classes, seed)
    opt = make_opt(model.parameters())
    g = torch.Generator().manual_seed((int(seed) + 7919) % (2**63))
    idx = torch.randint(0, len(y), (steps + 1, batch), generator=g)
    losses = []
    for t in range(steps):
        if token is not None:
            token.check()
        opt.zero_grad()
        loss = F.cross_entropy(model(x[idx[t]]), y[idx[t]])
        if not torch.isfinite(loss):
            return {"final": np.array([math.inf]), "avg": np.array([math.inf]), "diverged": True}
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        losses.append(float(F.cross_entropy(model(x[idx[steps]]), y[idx[steps]])))
        final = float(F.cross_entropy(model(x), y))
        acc = float((model(x).argmax(1) == y).float().mean())
    if not (math.isfinite(final) and all(math.isfinite(v) for v in losses)):
        return {"final": np.array([math.inf]), "avg": np.array([math.inf]), "diverged": True}
    return {"final": np.array([final]), "avg": np.array([float(np.mean(losses[1:]))]), "accuracy": acc}


def _stats(v: np.ndarray) -> dict[str, float]:
    v = np.asarray(v, np.float64)
    if not np.all(np.isfinite(v)):
        return {"mean": math.inf, "se": math.nan, "n": len(v), "diverged": int((~np.isfinite(v)).sum())}
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0
    return {"mean": float(v.mean()), "se": se, "n": len(v), "diverged": 0}


def evaluate_transfer_set(
    name: str,
    checkpoints: Sequence[str] | None = None,
    runs: int = 10,
    tune_runs: int = 5,
    kinds: Sequence[str] = BASELINES,
    grid: Sequence[float] = LR_GRID,
    steps: int = STEPS,
    progress: Any = None,
    token: Any = None,
) -> dict[str, Any]:
    """The fair comparison on one data set (see the module's docstring); one record per metric."""
    from explorer.core.paths import bundled

    from .infer import CHECKPOINTS
    from .learned_optimizer import LearnedOptimizer

    t0 = time.perf_counter()
    ds = load_transfer_set(name)
    k = ds["classes"]
    paths = [str(p) for p in (checkpoints or [bundled(CHECKPOINTS["mnist"])])]
    names = {p: p.replace("\\", "/").rsplit("/", 1)[-1] for p in paths}

    def maker(kind: str, sel: Any):
        if kind == "learned":
            return lambda params: LearnedOptimizer(params, checkpoint=sel)
        return lambda params: make_baseline(kind, params, float(sel))

    def runs_on(split: str, kind: str, sel: Any, n: int, base: int) -> list[dict[str, Any]]:
        return [train_run(ds[split], k, maker(kind, sel), base + i, steps=steps, token=token) for i in range(n)]

    tune = tune_rates(
        lambda kind, lr: metric_scores(runs_on("tune", kind, lr, tune_runs, TUNE_SEED_BASE)),
        kinds=kinds,
        grid=grid,
        token=token,
        progress=span(progress, 0.0, 0.5),
    )
    cand: dict[str, dict[str, float]] = {}
    if len(paths) > 1:
        for p in paths:
            cand[names[p]] = metric_scores(runs_on("tune", "learned", p, tune_runs, TUNE_SEED_BASE))
    chosen = {m: min(paths, key=lambda p, m=m: cand.get(names[p], {}).get(m, 0.0)) for m in METRICS}
    cache: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    out: dict[str, Any] = {}
    order = ["learned", *kinds]
    jobs = [(m, kind) for m in METRICS for kind in order]
    for j, (m, kind) in enumerate(jobs):
        sel = chosen[m] if kind == "learned" else tune["lr"][m][kind]
        if (kind, sel) not in cache:
            cache[(kind, sel)] = runs_on("eval", kind, sel, runs, EVAL_SEED_BASE)
        span(progress, 0.5, 1.0)((j + 1) / len(jobs), f"{name}: {kind} ({METRIC_LABELS[m]})")
        res = cache[(kind, sel)]
        vals = np.concatenate([r[m] for r in res])
        rec: dict[str, Any] = {"label": OPTIMIZER_LABELS[kind], **_stats(vals), "values": [float(v) for v in vals]}
        if kind == "learned":
            rec["checkpoint"] = names[sel]
        else:
            rec["lr"] = sel
            rec["lr_at_grid_edge"] = kind in tune["at_edge"][m]
        accs = [r["accuracy"] for r in res if "accuracy" in r]
        if accs:
            rec["accuracy_mean"] = float(np.mean(accs))
        out.setdefault(m, {"metric": METRIC_LABELS[m], "optimizers": {}})["optimizers"][kind] = rec
    for m in METRICS:
        opts = out[m]["optimizers"]
        best = min(kinds, key=lambda kk: (opts[kk]["mean"], kk))
        lv = np.array(opts["learned"]["values"])
        for ref, key in ((best, "best_baseline"), ("adam", "adam")):
            if ref not in opts:
                continue
            d = lv - np.array(opts[ref]["values"])
            ok = bool(np.all(np.isfinite(d)))
            out[m][f"learned_minus_{key}"] = {
                "mean": float(d.mean()) if ok else math.nan,
                "se": float(d.std(ddof=1) / math.sqrt(len(d))) if ok and len(d) > 1 else math.nan,
            }
            out[m][f"learned_at_most_{key}"] = bool(opts["learned"]["mean"] <= opts[ref]["mean"])
        out[m]["best_baseline"] = best
    return {
        "dataset": name,
        "note": ds["note"],
        "net": f"{ds['tune'][0].shape[1]}-{HIDDEN}-{k} sigmoid MLP, {steps} steps, minibatch {BATCH}",
        "runs": runs,
        "tune_runs": tune_runs,
        "metrics": out,
        "tuning": {
            "lr": tune["lr"],
            "scores": tune["scores"],
            "widened": tune["widened"],
            "at_edge": tune["at_edge"],
            "checkpoints": cand or {names[paths[0]]: "the only candidate"},
        },
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def evaluate_transfer(
    names: Sequence[str] = TRANSFER_SETS,
    checkpoints: Sequence[str] | None = None,
    runs: int = 10,
    tune_runs: int = 5,
    progress: Any = None,
    token: Any = None,
) -> dict[str, Any]:
    """:func:`evaluate_transfer_set` on each data set; an unavailable one is reported as skipped (one line why)."""
    out: dict[str, Any] = {"protocol": "fair", "transfer": {}}
    for i, name in enumerate(names):
        if name not in TRANSFER_SETS:
            raise UserError(f"unknown transfer data set {name!r} (choose from {', '.join(TRANSFER_SETS)})")
        why = transfer_missing(name)
        if why is not None:
            out["transfer"][name] = {"dataset": name, "skipped": why}
            continue
        sub = (lambda f, m, i=i: progress((i + f) / len(names), m)) if progress else None
        out["transfer"][name] = evaluate_transfer_set(
            name, checkpoints=checkpoints, runs=runs, tune_runs=tune_runs, progress=sub, token=token
        )
    return out


def format_transfer_table(results: dict[str, Any]) -> str:
    from .evaluate import optimizer_lines

    lines = []
    for name, res in results["transfer"].items():
        if "skipped" in res:
            lines.append(f"{name}: skipped ({res['skipped']})")
            continue
        lines.append(f"{name}: {res['net']}; {res['note']}; {res['runs']} runs")
        for rec in res["metrics"].values():
            lines.append(f"  {rec['metric']} (every optimizer selected by it on the tuning split):")
            lines += optimizer_lines(rec)
            if "learned_minus_adam" in rec:
                d = rec["learned_minus_adam"]
                lines.append(
                    f"    learned at most Adam: {'yes' if rec['learned_at_most_adam'] else 'no'} "
                    f"(paired difference {d['mean']:+.4g} ± {d['se']:.2g})"
                )
    return "\n".join(lines)
