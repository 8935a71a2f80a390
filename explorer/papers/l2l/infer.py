"""Loading learned optimizers for the app, the CLI and the torch.optim-like API."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from explorer.core.checkpoints import CheckpointMeta, load_model, read_metadata
from explorer.core.errors import CheckpointError
from explorer.core.paths import bundled

PAPER = "l2l"
CHECKPOINTS = {
    "quadratic": "l2l_quadratic.safetensors",
    "mnist": "l2l_mnist.safetensors",
    "style": "l2l_style.safetensors",
}


def _build(config: dict[str, Any]):
    from .model import build

    return build(config)


def load_learned(path: str | Path | None = None, device: Any = "cpu", problem: str = "mnist"):
    """(LSTMOptimizer, CheckpointMeta) from ``path`` (default: the bundled checkpoint trained on ``problem``)."""
    from .model import DEFAULT_CONFIG

    p = Path(path) if path is not None else bundled(CHECKPOINTS[problem])
    if path is None and not p.exists():
        raise CheckpointError(f"the bundled learned optimizer {p.name} is missing from {p.parent}")
    if p.suffix.lower() == ".safetensors" and p.is_file() and training_problem(read_metadata(p)) == "style":
        net, meta = _load_style(p, device)
    else:
        net, meta = load_model(p, PAPER, _build, device=device, default_config=dict(DEFAULT_CONFIG))
    for q in net.parameters():
        q.requires_grad_(False)
    return net, meta


def _load_style(p: Path, device: Any):
    """A style checkpoint: the LSTM plus the feature network's tensors (checked against the bundled ones)."""
    from explorer.core.checkpoints import check_finite, check_state_dict, load_checkpoint

    from .style import split_checkpoint

    ckpt = load_checkpoint(p, expected_paper=PAPER)
    state = split_checkpoint(ckpt.state_dict, ckpt.meta.name)
    net = _build(ckpt.meta.model_config or {})
    check_state_dict(net, state, ckpt.meta.name)
    check_finite(state, ckpt.meta.name)
    net.load_state_dict(state, strict=True)
    return net.to(device).eval(), ckpt.meta


def training_problem(meta: CheckpointMeta) -> str:
    """The problem family a checkpoint was meta-trained on ('quadratic' or 'mnist'; 'unknown' if not recorded)."""
    prob = (meta.model_config or {}).get("problem") or (meta.data or {}).get("problem")
    return str(prob) if prob else "unknown"


@dataclass
class L2LBundle:
    """What the tab works with: learned optimizers by training problem, and their metadata."""

    nets: dict[str, Any] = field(default_factory=dict)
    metas: dict[str, CheckpointMeta] = field(default_factory=dict)

    def for_family(self, family: str) -> tuple[Any, CheckpointMeta | None]:
        """The net meta-trained on ``family``, else any loaded one (it still runs: it is coordinatewise)."""
        if family in self.nets:
            return self.nets[family], self.metas[family]
        for k in self.nets:
            return self.nets[k], self.metas[k]
        return None, None


def load_for_app(path: str | Path, device: Any = "cpu") -> tuple[L2LBundle, CheckpointMeta]:
    """SPEC.loader: load ``path`` and the other bundled checkpoint (if present) into one bundle."""
    net, meta = load_learned(path, device)
    bundle = L2LBundle()
    fam = training_problem(meta)
    bundle.nets[fam], bundle.metas[fam] = net, meta
    for other, fname in CHECKPOINTS.items():
        if other in bundle.nets:
            continue
        p = bundled(fname)
        if p.exists() and p.resolve() != Path(path).resolve():
            try:
                n2, m2 = load_learned(p, device)
            except CheckpointError:
                continue
            bundle.nets[training_problem(m2)] = n2
            bundle.metas[training_problem(m2)] = m2
    return bundle, meta


def tuned_rates(meta: CheckpointMeta | None, problem: str, metric: str | None = None) -> dict[str, float]:
    """Baseline learning rates for ``problem``: see :func:`rates_and_source`."""
    return rates_and_source(meta, problem, metric)[0]


def rates_and_source(
    meta: CheckpointMeta | None, problem: str, metric: str | None = None
) -> tuple[dict[str, float], str]:
    """(baseline learning rates, where they come from) for ``problem``.

    ``metric`` ("final" or "avg"): the fair protocol's rates chosen by that metric on tuning problems, from the
    checkpoint (`eval --protocol fair --save`) or else the catalog's table. ``metric=None``: the original protocol
    (`eval --save`'s rates, the 2-D table, the fallback table), as before.
    """
    from .catalog import FAIR_LR, FALLBACK_LR, PROBLEMS, TUNED_LR_2D

    label = {"final": "final loss", "avg": "loss averaged over steps"}
    if metric is not None:
        fair = ((meta.metrics or {}).get("fair") or {}).get(problem) if meta is not None else None
        if isinstance(fair, dict) and isinstance(fair.get(metric), dict) and fair[metric].get("lr"):
            rates = {k: float(v) for k, v in fair[metric]["lr"].items()}
            return rates, f"rate chosen for {label[metric]} on tuning problems (fair protocol, {meta.name})"
        if problem in FAIR_LR:
            return dict(FAIR_LR[problem][metric]), f"rate chosen for {label[metric]} on tuning problems (fair protocol)"
    if problem in TUNED_LR_2D:
        return dict(TUNED_LR_2D[problem]), "rate grid-searched on separate seeds (bench/experiments/l2l_tune2d.py)"
    if meta is not None:
        ev = (meta.metrics or {}).get("eval", {}).get(problem)
        if isinstance(ev, dict) and isinstance(ev.get("tuned_lr"), dict):
            return {k: float(v) for k, v in ev["tuned_lr"].items()}, "rate tuned by `eval` on separate problems"
    fam = PROBLEMS[problem].family if problem in PROBLEMS else "quadratic"
    return dict(FALLBACK_LR[fam]), "default rate (run `eval l2l --protocol fair --save` to tune for this problem)"


def fair_summary(meta: CheckpointMeta | None, problem: str, metric: str) -> str | None:
    """One line of the checkpoint's fair held-out result for ``problem`` and ``metric`` (None if not stored)."""
    fair = ((meta.metrics or {}).get("fair") or {}).get(problem) if meta is not None else None
    rec = fair.get(metric) if isinstance(fair, dict) else None
    if not isinstance(rec, dict) or "mean" not in rec:
        return None
    mean, se, best = rec["mean"], rec.get("se", {}), rec.get("best_baseline")
    if "learned" not in mean or best not in mean:
        return None
    verdict = "at most" if rec.get("learned_at_most_best_baseline") else "above"
    return (
        f"held-out ({fair.get('runs', '?')} runs): LSTM {mean['learned']:.4g} ± {se.get('learned', 0):.2g}, "
        f"{verdict} the best tuned baseline ({best} {mean[best]:.4g} ± {se.get(best, 0):.2g})"
    )


def describe_checkpoint(meta: CheckpointMeta | None) -> str:
    if meta is None:
        return "no learned optimizer loaded"
    m = meta.metrics or {}
    bits = [f"{meta.name}: meta-trained on {training_problem(meta)}"]
    if "epochs" in m:
        bits.append(f"{m['epochs']} optimizee runs")
    if "train_wall_s" in m:
        bits.append(f"{m['train_wall_s'] / 60:.1f} min")
    return ", ".join(bits)


def read_meta(path: str | Path) -> CheckpointMeta:
    return read_metadata(path)


# -- the tab's jobs (generators the panel runs in workers; ``device`` is filled by the panel's runner) ----------
TWO_D = ("quad2d", "valley2d", "rosenbrock")  # problems drawn on a contour map with the optimizers' paths
# a racer whose loss exceeds this many times its first loss (or is not finite) has diverged: it leaves the race,
# and the loss axis is fitted to the others (one diverging curve otherwise stretched it to 1e12)
DIVERGE_FACTOR = 1e4


def race(
    problem_name: str,
    seed: int,
    entries: list[tuple[str, str, float | None, Any]],
    pace: float,
    device: Any = "cpu",
    token: Any = None,
    contours: Callable[[Any], tuple[Any, list]] | None = None,
):
    """Generator: step every optimizer once per round on the same held-out problem; yields ('grid', ...) and
    ('points', ...) for a 2-D problem, then ('step', t, losses, points) per round, ('diverged', key, t) when a
    racer leaves, and Progress. ``entries``: (key, kind, lr, net); ``pace``: seconds to wait between rounds;
    ``contours(Z) -> (log10 Z, contour polylines)`` traces the 2-D map (no lines without it).
    Returns {key: summary}."""
    import math

    import numpy as np

    from explorer.core.tasks import CancelToken, Progress

    from .optimizer_runs import Run
    from .problems import make_problem

    token = token if token is not None else CancelToken()
    problem = make_problem(problem_name, int(seed), split="test", device=device, batch=1)
    two_d = problem_name in TWO_D
    if two_d:
        xs, ys, Z = problem.grid(160)
        logz, lines = contours(Z) if contours is not None else (np.log10(np.maximum(Z, 1e-8)), [])
        yield ("grid", xs, ys, logz, problem.start.tolist(), problem.optimum, lines)
    runs = {key: Run(problem, kind, lr=lr, net=net, record_path=two_d) for key, kind, lr, net in entries}
    if two_d:
        yield ("points", {k: r.path[-1].tolist() for k, r in runs.items()})
    alive = set(runs)
    first: dict[str, float] = {}
    diverged_at: dict[str, int] = {}
    steps = problem.steps
    for t in range(steps):
        token.check()
        losses: dict[str, float] = {}
        points: dict[str, list[float]] = {}
        for key in sorted(alive):
            run = runs[key]
            loss = float(run.step().mean())
            ref = first.setdefault(key, abs(loss) if math.isfinite(loss) else math.inf)
            if not math.isfinite(loss) or run.diverged or loss > DIVERGE_FACTOR * max(ref, 1e-12):
                alive.discard(key)
                diverged_at[key] = t
                yield ("diverged", key, t)
                continue
            losses[key] = loss
            if two_d:
                points[key] = run.path[-1].tolist()
        yield ("step", t, losses, points)
        yield Progress((t + 1) / steps, f"step {t + 1}/{steps}")
        if pace > 0 and token.wait(pace):
            token.check()
    out: dict[str, Any] = {}
    for key, run in runs.items():
        res = run.finish()
        final = float(np.mean(res["final"]))
        avg = float(np.mean(res["avg"]))
        diverged = key not in alive or not math.isfinite(final)
        out[key] = {
            "final": final if not diverged else math.inf,
            "avg": avg if not diverged else math.inf,
            "diverged": diverged,
            "diverged_at": diverged_at.get(key),
            "accuracy": res.get("accuracy"),
            "lr": run.lr,
        }
    return out


def meta_train(epochs: int, seed: int, device: Any = "cpu", token: Any = None):
    """Generator: meta-train a fresh LSTM optimizer on batches of 32 random 10-D quadratics; yields ('meta', run,
    meta-loss) and Progress per run; returns {"net", "epochs", "wall_s"}."""
    import time

    import torch

    from explorer.core.tasks import CancelToken, Progress

    from .model import LSTMOptimizer
    from .train import MetaTrainer, make_train_data

    token = token if token is not None else CancelToken()
    torch.manual_seed(seed)
    cfg = {"steps": 100, "unroll": 20, "meta_lr": 0.01, "batch": 32, "val_runs": 32, "seed": 1000 + int(seed)}
    net = LSTMOptimizer().to(device)
    data = make_train_data("quadratic", device, cfg)
    trainer = MetaTrainer(net, data, device, cfg)
    t0 = time.perf_counter()
    for k in range(epochs):
        token.check()
        ml = trainer.epoch(k, token)
        yield ("meta", k + 1, ml)
        yield Progress((k + 1) / epochs, f"meta-training: run {k + 1}/{epochs}, meta-loss {ml:.3g}")
    net.eval()
    for q in net.parameters():
        q.requires_grad_(False)
    return {"net": net, "epochs": epochs, "wall_s": time.perf_counter() - t0}


# -- neural art (issue 28): the learned optimizer and tuned Adam styling the same photo side by side ----------
STYLE_ADAM_LR = 0.03  # used only when neither the checkpoint nor the catalog has a tuned rate (see catalog.FAIR_LR)


def style_adam_rate(meta: CheckpointMeta | None, problem: str = "style") -> tuple[float, str]:
    """(Adam's learning rate, where it comes from) for the neural-art race: the fair protocol's rate for the final
    loss on the tuning photos (checkpoint, else the catalog), else the fallback."""
    from .catalog import FAIR_LR

    fair = ((meta.metrics or {}).get("fair") or {}).get(problem) if meta is not None else None
    if isinstance(fair, dict) and isinstance(fair.get("final"), dict) and "adam" in (fair["final"].get("lr") or {}):
        return float(fair["final"]["lr"]["adam"]), f"tuned on separate photos (fair protocol, {meta.name})"
    if problem in FAIR_LR:
        return float(FAIR_LR[problem]["final"]["adam"]), "tuned on separate photos (fair protocol)"
    return STYLE_ADAM_LR, "default rate (not tuned)"


def style_race(
    content: tuple[str, str],
    style: str,
    size: int,
    steps: int,
    net: Any,
    adam_lr: float,
    every: int = 5,
    device: Any = "cpu",
    token: Any = None,
):
    """Generator: style one photo with the learned optimizer (``net``; None: Adam alone) and with Adam from the
    same start. ``content``: ("bundled", name) or ("file", path). Yields ('images', content, style) once (uint8
    (S, S, 3) arrays), ('step', t, {key: loss}) per step, ('pictures', t, {key: uint8 image}) every ``every``
    steps and at the end, and Progress. Returns {key: {"final", "diverged"}}."""
    import math

    from explorer.core.tasks import CancelToken, Progress

    from .optimizer_runs import Run
    from .style import StyleProblem
    from .style_data import open_content, style_image, tab_photo_path

    token = token if token is not None else CancelToken()
    kind, value = content
    path = tab_photo_path(value) if kind == "bundled" else value
    c = open_content(path, size).to(device)
    s = style_image(style, size).to(device)
    problem = StyleProblem(c, s, steps=steps, name="style")
    yield ("images", problem.picture(problem.init_params()), problem.picture(s.reshape(-1)))
    runs = {"adam": Run(problem, "adam", lr=adam_lr)}
    if net is not None:
        runs = {"learned": Run(problem, "learned", net=net), **runs}
    alive = set(runs)
    for t in range(steps):
        token.check()
        losses = {}
        for key in sorted(alive):
            loss = float(runs[key].step().mean())
            if not math.isfinite(loss):
                alive.discard(key)
                continue
            losses[key] = loss
        yield ("step", t, losses)
        if (t + 1) % every == 0 or t + 1 == steps:
            yield ("pictures", t + 1, {k: problem.picture(runs[k].theta) for k in runs})
        yield Progress((t + 1) / steps, f"step {t + 1}/{steps}")
    out = {}
    for key, run in runs.items():
        res = run.finish()
        final = float(res["final"][0])
        out[key] = {"final": final if key in alive else math.inf, "diverged": key not in alive}
    return out
