"""Running optimizers on problems: the learned LSTM optimizer and the hand-designed baselines.

Baselines are PyTorch's own ``torch.optim`` classes on one leaf tensor (the flat θ), with Torch7-``optim``-like
defaults except the learning rate, which is tuned by a grid search on separate tuning problems:

* SGD, RMSprop (α = 0.99, ε = 1e-8), Adam (β = 0.9, 0.999, ε = 1e-8), NAG (SGD with Nesterov momentum 0.9).
* L-BFGS (the neural-art problems only): ``torch.optim.LBFGS`` with history 10, no line search and one iteration
  per step, so that every optimizer gets exactly one loss and gradient evaluation per step.

A :class:`Run` steps one optimizer on one problem explicitly, so the panel can race several of them step by
step; :func:`run_optimizer` runs one to the end. Loss curves have T+1 entries: curve[t] = f_t(θ_t) per instance.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from .problems import PROBLEMS, TUNE_SEED_BASE, Problem, make_problem

BASELINES = ("sgd", "rmsprop", "adam", "nag")
STYLE_BASELINES = (*BASELINES, "lbfgs")  # the neural-art comparison adds L-BFGS (issue 28)
OPTIMIZER_LABELS = {
    "learned": "LSTM (learned)",
    "sgd": "SGD",
    "rmsprop": "RMSprop",
    "adam": "Adam",
    "nag": "NAG",
    "lbfgs": "L-BFGS",
}
from .catalog import FALLBACK_LR, LR_GRID, TUNED_LR_2D  # noqa: E402,F401  (re-exported)


def make_baseline(kind: str, params: Iterable[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if kind == "nag":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.99, eps=1e-8)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    if kind == "lbfgs":  # one gradient evaluation per step (no line search, one iteration): steps = evaluations
        return torch.optim.LBFGS(params, lr=lr, max_iter=1, history_size=10, line_search_fn=None)
    raise ValueError(f"unknown optimizer {kind!r}")


def learned_step(net: Any, problem: Problem, theta: torch.Tensor, state: Any, t: int):
    """One step of the learned optimizer with no graph to its weights: f_t(θ), its gradient, θ + m(∇).
    Returns (the per-instance losses f_t(θ_t), θ_{t+1}, the new LSTM state)."""
    th = theta.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = problem.loss(th, t)
        (grad,) = torch.autograd.grad(loss.sum(), th)
    with torch.no_grad():
        upd, state = net(grad, state)
    return loss, th.detach() + upd, state


class Run:
    """One optimizer on one problem. ``step()`` evaluates f_t(θ_t), records it and moves to θ_{t+1}."""

    def __init__(
        self, problem: Problem, kind: str, lr: float | None = None, net: Any = None, record_path: bool = False
    ) -> None:
        self.problem, self.kind, self.lr, self.net = problem, kind, lr, net
        self.t = 0
        self.curve: list[torch.Tensor] = []
        self.path: list[np.ndarray] | None = [] if record_path else None
        theta = problem.init_params()
        if kind == "learned":
            if net is None:
                raise ValueError("the learned optimizer needs its network")
            self.theta = theta
            self.state = net.initial_state(theta.numel(), device=theta.device)
        else:
            self.theta = theta.requires_grad_(True)
            self.opt = make_baseline(kind, [self.theta], float(lr))
        self._record_point()

    def _record_point(self) -> None:
        if self.path is not None:
            self.path.append(self.theta.detach().cpu().numpy().copy())

    @property
    def diverged(self) -> bool:
        return bool(self.curve) and not bool(torch.isfinite(self.curve[-1]).all())

    def step(self) -> torch.Tensor:
        """One optimisation step; returns the per-instance losses f_t(θ_t) (detached)."""
        t = self.t
        if self.kind == "learned":
            loss, self.theta, self.state = learned_step(self.net, self.problem, self.theta, self.state, t)
        elif self.kind == "lbfgs":
            seen: list[torch.Tensor] = []

            def closure() -> torch.Tensor:
                self.opt.zero_grad(set_to_none=True)
                with torch.enable_grad():
                    value = self.problem.loss(self.theta, t)
                    total = value.sum()
                    total.backward()
                seen.append(value.detach())
                return total.detach()

            self.opt.step(closure)
            loss = seen[0]
        else:
            self.opt.zero_grad(set_to_none=True)
            with torch.enable_grad():
                loss = self.problem.loss(self.theta, t)
                loss.sum().backward()
            self.opt.step()
        self.t += 1
        out = loss.detach()
        self.curve.append(out)
        self._record_point()
        return out

    def finish(self) -> dict[str, Any]:
        """After the steps: append f_T(θ_T) to the curve and compute the full-data final loss per instance."""
        with torch.no_grad():
            th = self.theta.detach()
            last = self.problem.loss(th, self.t)
            final = self.problem.final_loss(th)
        curve = torch.stack(self.curve + [last]).cpu().numpy().astype(np.float64)  # (T+1, n_inst)
        out = {
            "kind": self.kind,
            "lr": self.lr,
            "curve": curve,
            "final": final.cpu().numpy().astype(np.float64),
            "avg": curve[1:].mean(axis=0),
        }
        if self.path is not None:
            out["path"] = np.stack(self.path)
        if hasattr(self.problem, "accuracy"):
            out["accuracy"] = self.problem.accuracy(th)
        return out


def run_optimizer(
    problem: Problem,
    kind: str,
    lr: float | None = None,
    net: Any = None,
    steps: int | None = None,
    record_path: bool = False,
    token: Any = None,
) -> dict[str, Any]:
    run = Run(problem, kind, lr=lr, net=net, record_path=record_path)
    for _ in range(steps or problem.steps):
        if token is not None:
            token.check()
        run.step()
        if run.diverged:
            break
    res = run.finish()
    if run.diverged or not np.all(np.isfinite(res["final"])):
        res["final"] = np.full_like(res["final"], np.inf)
        res["avg"] = np.full_like(res["avg"], np.inf)
        res["diverged"] = True
    return res


def _score(values: np.ndarray) -> float:
    v = float(np.mean(values))
    return v if math.isfinite(v) else math.inf


def tune_learning_rates(
    problem_name: str,
    device: Any = "cpu",
    grid: Sequence[float] = LR_GRID,
    kinds: Sequence[str] = BASELINES,
    runs: int | None = None,
    token: Any = None,
    progress: Any = None,
) -> dict[str, Any]:
    """The original protocol's tuning (``eval --protocol legacy``): a fixed grid, criterion mean final loss.

    Tuning problems: seeds disjoint from eval and training, on the same (held-out) images as the evaluation.
    A diverged run counts as +inf. Returns ``{"lr": {kind: best}, "scores": {kind: {lr: score}}, "runs": n,
    "grid": [...]}``. The fair protocol uses :func:`tune_rates` instead.
    """
    info = PROBLEMS[problem_name]
    n = runs or info.tune_runs
    if problem_name == "quadratic":
        problems = [make_problem("quadratic", TUNE_SEED_BASE, device=device, batch=n)]
    else:
        problems = [make_problem(problem_name, TUNE_SEED_BASE + i, split="test", device=device) for i in range(n)]
    best: dict[str, float] = {}
    scores: dict[str, dict[str, float]] = {}
    total, done = len(kinds) * len(grid), 0
    for kind in kinds:
        scores[kind] = {}
        for lr in grid:
            finals = []
            for p in problems:
                finals.append(run_optimizer(p, kind, lr=lr, token=token)["final"])
            s = _score(np.concatenate(finals))
            scores[kind][repr(lr)] = s
            done += 1
            if progress is not None:
                progress(done / total, f"tuning {kind} lr={lr:g}")
        best[kind] = float(min(grid, key=lambda lr: scores[kind][repr(lr)]))
    return {"lr": best, "scores": scores, "runs": n, "grid": list(grid), "criterion": "mean final loss"}


# ------------------------------------------------------------------------------------------ the fair protocol
METRICS = ("final", "avg")
METRIC_LABELS = {"final": "final loss", "avg": "loss averaged over steps"}
LR_MIN, LR_MAX = 1e-8, 1e4  # how far a grid is ever widened


def next_rate(lr: float, up: bool) -> float:
    """The neighbour of ``lr`` on the 1-3-10 log grid (…, 1e-3, 3e-3, 1e-2, …), above or below it."""
    e = math.floor(math.log10(lr) + 1e-9)
    m = lr / 10.0**e
    if abs(m - 1.0) < 1e-6:
        return float(f"{3 * 10.0**e:.3g}") if up else float(f"{3 * 10.0 ** (e - 1):.3g}")
    if abs(m - 3.0) < 1e-6:
        return float(f"{10.0 ** (e + 1):.3g}") if up else float(f"{10.0**e:.3g}")
    return float(f"{lr * math.sqrt(10.0) if up else lr / math.sqrt(10.0):.3g}")


def tune_rates(
    score: Any,
    kinds: Sequence[str] = BASELINES,
    grid: Sequence[float] = LR_GRID,
    metrics: Sequence[str] = METRICS,
    widen: bool = True,
    token: Any = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Pick each optimizer's learning rate separately for every metric, on tuning problems only.

    ``score(kind, lr) -> {metric: value}``: the mean of each metric over the tuning runs (+inf when any run
    diverged). For each kind and metric the best rate is the grid's argmin; when it sits at an edge of the
    grid (and ``widen``), the grid is extended past that edge one 1-3-10 step at a time until it does not (or
    it reaches ``LR_MIN``/``LR_MAX``). Returns ``{"lr": {metric: {kind: best}}, "scores": {kind: {repr(lr):
    {metric: value}}}, "widened": {kind: [added rates]}, "at_edge": {metric: [kinds whose best is still at an
    edge]}}``.
    """
    scores: dict[str, dict[str, dict[str, float]]] = {}
    widened: dict[str, list[float]] = {}
    best: dict[str, dict[str, float]] = {m: {} for m in metrics}
    at_edge: dict[str, list[str]] = {m: [] for m in metrics}
    total = len(kinds) * len(grid)
    done = 0
    for kind in kinds:
        table: dict[float, dict[str, float]] = {}
        added: list[float] = []

        def measure(lr: float, kind: str = kind, table: dict = table) -> None:
            nonlocal done
            if token is not None:
                token.check()
            table[lr] = {m: float(v) for m, v in score(kind, lr).items()}
            done += 1
            if progress is not None:
                progress(min(1.0, done / total), f"tuning {kind} lr={lr:g}")

        for lr in grid:
            measure(float(lr))
        while widen:
            lrs = sorted(table)
            new = set()
            for m in metrics:
                b = min(lrs, key=lambda lr, m=m: (table[lr][m], lr))
                if not math.isfinite(table[b][m]):
                    continue  # every rate diverged: nothing to widen towards
                if b == lrs[0] and b > LR_MIN:
                    new.add(next_rate(b, up=False))
                elif b == lrs[-1] and b < LR_MAX:
                    new.add(next_rate(b, up=True))
            new -= set(table)
            if not new:
                break
            for lr in sorted(new):
                measure(lr)
                added.append(lr)
        lrs = sorted(table)
        for m in metrics:
            b = min(lrs, key=lambda lr, m=m: (table[lr][m], lr))
            best[m][kind] = b
            if len(lrs) > 1 and b in (lrs[0], lrs[-1]):
                at_edge[m].append(kind)
        scores[kind] = {repr(lr): table[lr] for lr in lrs}
        widened[kind] = added
    return {"lr": best, "scores": scores, "widened": widened, "at_edge": at_edge, "grid": list(grid)}


def metric_scores(results: Sequence[dict[str, Any]], metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """Mean of each metric over ``run_optimizer`` results (one +inf, i.e. one divergence, makes it +inf)."""
    return {m: _score(np.concatenate([np.atleast_1d(r[m]) for r in results])) for m in metrics}


def span(progress: Any, a: float, b: float) -> Any:
    """A progress callback mapping [0, 1] onto [a, b] of ``progress`` (a no-op when there is none)."""
    if progress is None:
        return lambda f, m: None
    return lambda f, m: progress(a + (b - a) * f, m)
