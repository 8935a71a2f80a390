"""Meta-training the LSTM optimizer: truncated unrolls, summed optimizee losses, Adam on the LSTM's weights.

One *epoch* = one fresh optimizee (a batch of quadratics, or one MNIST MLP on the meta-training images) run for
``steps`` steps, cut into truncations of ``unroll`` steps. After each truncation the meta-loss
Σ_{t in truncation} f_t(θ_t) (mean over batched instances) is back-propagated into the LSTM's weights, Adam takes
one step, and θ and the LSTM states are detached (truncated BPTT). The optimizee gradient ∇_t enters the LSTM
as a constant input: no second derivatives (``second_derivatives=True`` keeps them, for comparison only).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from .model import LSTMOptimizer, State, detach_state
from .optimizers import run_optimizer
from .problems import TRAIN_SEED_BASE, Problem, make_problem

DEFAULT_TRAIN: Dict[str, Dict[str, Any]] = {
    "quadratic": {"epochs": 2000, "steps": 100, "unroll": 20, "meta_lr": 0.003, "batch": 128, "val_every": 50,
                  "val_runs": 128, "seed": 0, "time_limit_s": 0, "clip": 0.0},
    "mnist": {"epochs": 400, "steps": 100, "unroll": 20, "meta_lr": 0.003, "batch": 1, "val_every": 20,
              "val_runs": 3, "seed": 0, "time_limit_s": 0, "clip": 0.0},
}


def unroll(net: LSTMOptimizer, problem: Problem, theta: torch.Tensor, state: State, t0: int, length: int,
           second_derivatives: bool = False):
    """Unroll ``length`` optimizer steps from θ_{t0}. Returns (meta_loss, θ_{t0+length}, state, losses).

    meta_loss = Σ_{t=t0+1}^{t0+length} mean_i f_t(θ_t)_i carries the graph to the LSTM's weights through the
    updates θ_{t+1} = θ_t + m(∇_t). ∇_t is computed by autograd but detached before it enters the LSTM, unless
    ``second_derivatives``.
    """
    th = theta
    if not th.requires_grad:
        th = th.detach().requires_grad_(True)
    meta_loss = th.new_zeros(())
    losses: List[float] = []
    for k in range(length):
        loss = problem.loss(th, t0 + k)
        if k > 0:
            meta_loss = meta_loss + loss.mean()
        losses.append(float(loss.detach().mean()))
        (grad,) = torch.autograd.grad(loss.sum(), th, retain_graph=True, create_graph=second_derivatives)
        if not second_derivatives:
            grad = grad.detach()
        upd, state = net(grad, state)
        th = th + upd
    end_loss = problem.loss(th, t0 + length)
    meta_loss = meta_loss + end_loss.mean()
    return meta_loss, th, state, losses


@dataclass
class TrainData:
    """What meta-training draws from: ``sample(seed) -> Problem`` and fixed validation problems."""

    sample: Callable[[int], Problem]
    val: List[Problem] = field(default_factory=list)
    name: str = ""


def make_train_data(problem: str, device: Any, config: Dict[str, Any]) -> TrainData:
    """Training problems from the meta-training distribution (MNIST: the 4,000 'train' images only)."""
    seed = int(config.get("seed", 0))
    base = TRAIN_SEED_BASE + seed * 10_000_000
    if problem == "quadratic":
        batch = int(config.get("batch", 128))

        def sample(k: int) -> Problem:
            return make_problem("quadratic", base + k, device=device, batch=batch, steps=config["steps"])

        val = [make_problem("quadratic", base + 9_000_000, device=device, batch=int(config.get("val_runs", 128)),
                            steps=config["steps"])]
    elif problem == "mnist":

        def sample(k: int) -> Problem:
            return make_problem("mnist", base + k, split="train", device=device, steps=config["steps"])

        val = [make_problem("mnist", base + 9_000_000 + i, split="train", device=device, steps=config["steps"])
               for i in range(int(config.get("val_runs", 3)))]
    else:
        raise ValueError(f"meta-training supports 'quadratic' and 'mnist', not {problem!r}")
    return TrainData(sample=sample, val=val, name=problem)


class MetaTrainer:
    """Holds the meta-optimizer; ``epoch(k)`` runs one optimizee episode and returns its mean meta-loss."""

    def __init__(self, net: LSTMOptimizer, data: TrainData, device: Any, config: Dict[str, Any]) -> None:
        self.net, self.data, self.device, self.config = net, data, device, config
        self.opt = torch.optim.Adam(net.parameters(), lr=float(config["meta_lr"]))
        self.skipped = 0

    def epoch(self, k: int, token: Any = None) -> float:
        cfg = self.config
        problem = self.data.sample(k)
        theta = problem.init_params()
        state = self.net.initial_state(theta.numel(), device=theta.device)
        steps, length = int(cfg["steps"]), int(cfg["unroll"])
        total, n = 0.0, 0
        self.net.train()
        for t0 in range(0, steps, length):
            if token is not None:
                token.check()
            meta_loss, theta, state, _ = unroll(self.net, problem, theta, state, t0, min(length, steps - t0))
            if not torch.isfinite(meta_loss):
                self.skipped += 1
                break  # abandon this optimizee; the weights are untouched
            self.opt.zero_grad(set_to_none=True)
            meta_loss.backward()
            if float(cfg.get("clip") or 0) > 0:
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), float(cfg["clip"]))
            self.opt.step()
            theta = theta.detach()
            state = detach_state(state)
            total += float(meta_loss.detach()) / min(length, steps - t0)
            n += 1
        return total / max(n, 1)


def validate(net: LSTMOptimizer, problems: List[Problem], token: Any = None) -> Dict[str, float]:
    """Run the learned optimizer (no meta-gradient) on fixed problems: mean final and mean-over-steps loss."""
    net.eval()
    finals, avgs = [], []
    for p in problems:
        r = run_optimizer(p, "learned", net=net, token=token)
        finals.append(r["final"])
        avgs.append(r["avg"])
    f, a = float(np.mean(np.concatenate(finals))), float(np.mean(np.concatenate(avgs)))
    return {"val_final_loss": f if math.isfinite(f) else math.inf, "val_avg_loss": a if math.isfinite(a) else math.inf}


def fit(model: LSTMOptimizer, data: TrainData, device: Any, config: Dict[str, Any], progress: Any = None,
        token: Any = None, on_checkpoint: Optional[Callable[[LSTMOptimizer, Dict[str, Any]], None]] = None,
        rank: int = 0) -> Dict[str, Any]:
    """Meta-train ``model`` in place; keeps the weights with the best validation mean-over-steps loss.

    ``config``: epochs, steps, unroll, meta_lr, val_every, time_limit_s (0 = none), clip, seed.
    ``on_checkpoint(best_model_state, history)`` is called (rank 0 only) whenever validation improves.
    Returns the history: per-epoch meta-loss, validation records, wall time and the best validation.
    """
    torch.manual_seed(int(config.get("seed", 0)))
    model.to(device)
    trainer = MetaTrainer(model, data, device, config)
    epochs, val_every = int(config["epochs"]), int(config.get("val_every", 50))
    limit = float(config.get("time_limit_s") or 0)
    start = time.perf_counter()
    hist: Dict[str, Any] = {"meta_loss": [], "val": [], "best": None, "epochs_done": 0}
    best_state = None

    def do_val(k: int) -> None:
        nonlocal best_state
        v = validate(model, data.val, token)
        v["epoch"] = k
        v["wall_s"] = round(time.perf_counter() - start, 1)
        hist["val"].append(v)
        if hist["best"] is None or v["val_avg_loss"] < hist["best"]["val_avg_loss"]:
            hist["best"] = v
            best_state = {k2: t.detach().clone() for k2, t in model.state_dict().items()}
            if on_checkpoint is not None and rank == 0:
                on_checkpoint(model, hist)

    do_val(0)
    for k in range(epochs):
        if token is not None:
            token.check()
        ml = trainer.epoch(k, token)
        hist["meta_loss"].append(ml)
        hist["epochs_done"] = k + 1
        elapsed = time.perf_counter() - start
        last = (k + 1 == epochs) or (limit > 0 and elapsed >= limit)
        if (k + 1) % val_every == 0 or last:
            do_val(k + 1)
        if progress is not None:
            frac = (k + 1) / epochs
            if limit > 0:
                frac = max(frac, elapsed / limit)
            best = hist["best"]["val_avg_loss"] if hist["best"] else float("nan")
            progress(min(frac, 1.0), f"epoch {k + 1} meta-loss {ml:.4g} best val {best:.4g}")
        if last:
            break
    hist["wall_s"] = round(time.perf_counter() - start, 1)
    hist["skipped_episodes"] = trainer.skipped
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return hist


def train_problem(problem: str, device: Any, config: Dict[str, Any], out: Any, progress: Any = None,
                  token: Any = None, model_config: Optional[Dict[str, Any]] = None,
                  init: Optional[str] = None) -> Dict[str, Any]:
    """Build a fresh LSTM optimizer, meta-train it on ``problem`` and save the best weights to ``out``.

    The checkpoint is rewritten whenever validation improves (periodic checkpoints), and once at the end with
    the full history. Returns the history.
    """
    from explorer.core.checkpoints import save_checkpoint

    from .data import dataset_note
    from .model import DEFAULT_CONFIG, build

    cfg = dict(DEFAULT_CONFIG)
    cfg.update(model_config or {})
    torch.manual_seed(int(config.get("seed", 0)))
    net = build(cfg)
    prior: Dict[str, Any] = {}
    if init:
        from explorer.core.checkpoints import load_model

        net, init_meta = load_model(init, "l2l", build, device="cpu")
        prior = {"epochs": int((init_meta.metrics or {}).get("epochs") or 0),
                 "train_wall_s": float((init_meta.metrics or {}).get("train_wall_s") or 0.0),
                 "history": (init_meta.extra or {}).get("history") or {}}
        # continue the run's own seed stream past the optimizees it has already seen
        config = dict(config)
        config["seed"] = int(config.get("seed", 0)) + 1
    data = make_train_data(problem, device, config)
    t_start = time.perf_counter()

    def save(model: LSTMOptimizer, hist: Dict[str, Any], final: bool = False) -> None:
        best = hist.get("best") or {}
        metrics = {
            "headline": "val_final_loss",
            "val_final_loss": best.get("val_final_loss"),
            "val_avg_loss": best.get("val_avg_loss"),
            "best_epoch": best.get("epoch"),
            "epochs": hist.get("epochs_done", 0) + prior.get("epochs", 0),
            "train_wall_s": round(time.perf_counter() - t_start + prior.get("train_wall_s", 0.0), 1),
            "finished": final,
        }
        ph = prior.get("history") or {}
        ml = [v for v in ph.get("meta_loss", []) for _ in range(int(ph.get("stride") or 1))] + hist.get("meta_loss", [])
        stride = max(1, len(ml) // 400)
        save_checkpoint(
            out, model.state_dict(), paper="l2l", model_config={**model.config(), "problem": problem},
            metrics=metrics,
            data={"name": dataset_note("mnist") if problem == "mnist" else "random 10-D quadratics ||Wθ−y||²",
                  "problem": problem},
            extra={"train_config": dict(config), "continued_from": prior.get("epochs") or None,
                   "history": {"meta_loss": [round(float(v), 5) for v in ml[::stride]], "stride": stride,
                               "val": hist.get("val", [])}},
        )

    hist = fit(net, data, device, config, progress=progress, token=token, on_checkpoint=save)
    save(net, hist, final=True)
    return hist
