"""Meta-training the LSTM optimizer: truncated unrolls, summed optimizee losses, Adam on the LSTM's weights.

One *epoch* (episode) = one fresh draw of optimizees (a batch of ``batch`` quadratics, or ``batch`` MNIST MLPs on
the meta-training images; default 128 and 1) run for ``steps`` steps, cut into truncations of ``unroll`` steps.
Each truncation is one *meta-step*: the meta-loss Σ_{t in truncation} f_t(θ_t) (mean over the batched instances)
is back-propagated into the LSTM's weights, Adam takes one step, and θ and the LSTM states are detached
(truncated BPTT). The optimizee gradient ∇_t enters the LSTM as a constant input: no second derivatives
(``second_derivatives=True`` keeps them, for comparison only).

The loop runs on the shared training core (:mod:`explorer.core.training`): time/step/epoch budget, resume files,
signals, and DDP under ``torchrun``. On N processes every meta-step still covers the same ``batch`` optimizees:
each process takes ``batch / N`` of them (the quadratics: its slice of the batch drawn from the episode's seed,
so the processes together hold exactly the one-process batch; MNIST: its share of the episode's per-MLP seeds),
and DDP averages the meta-gradients, which is the gradient of the mean over the whole batch. Validation and
checkpoints are rank 0's. A resume file holds, besides the LSTM, Adam and the counters, the history, the best
weights and every process's optimizees in flight (θ, LSTM states, position in the episode): a resumed run
continues mid-episode.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .model import LSTMOptimizer, State, detach_state
from .optimizer_runs import learned_step, run_optimizer
from .problems import MIX_VARIANTS, TRAIN_SEED_BASE, ConcatProblem, Problem, make_problem

DEFAULT_TRAIN: dict[str, dict[str, Any]] = {
    "quadratic": {
        "epochs": 2000,
        "steps": 100,
        "unroll": 20,
        "meta_lr": 0.003,
        "batch": 128,
        "val_every": 50,
        "val_runs": 128,
        "select": "avg",
        "seed": 0,
        "time_limit_s": 0,
        "clip": 0.0,
    },
    "mnist": {
        "epochs": 400,
        "steps": 100,
        "unroll": 20,
        "meta_lr": 0.003,
        "batch": 1,
        "val_every": 20,
        "val_runs": 3,
        "select": "avg",
        "seed": 0,
        "time_limit_s": 0,
        "clip": 0.0,
    },
    # neural art (paper sec. 3.4: 128 steps, unrolls of 32, one style): 100 steps, unrolls of 20 (5 meta-steps
    # per photo), one 64x64 meta-training photo per episode; validation on 3 fixed meta-training photos
    "style": {
        "epochs": 100_000,
        "steps": 100,
        "unroll": 20,
        "meta_lr": 0.003,
        "batch": 1,
        "val_every": 10,
        "val_runs": 3,
        "select": "final",
        "seed": 0,
        "time_limit_s": 0,
        "clip": 1.0,
    },
}

DEFAULT_TRAIN["mnist-mix"] = dict(DEFAULT_TRAIN["mnist"], select="final")

# what must not change between a run and its resumption (the optimizees drawn and how they are cut)
RESUME_KEYS = ("problem", "batch", "steps", "unroll", "seed", "weighting", "p")
# the gradient preprocessing's p per problem where it is not the paper's 10: a style run's pixel gradients fall
# from about 1e-4 to 1e-6 and below, under e^-10, where the log channel is constant and the LSTM cannot scale its
# steps to them; e^-16 = 1.1e-7 lies under nearly all of them
DEFAULT_P: dict[str, float] = {"style": 16.0}


def unroll(
    net: LSTMOptimizer,
    problem: Problem,
    theta: torch.Tensor,
    state: State,
    t0: int,
    length: int,
    second_derivatives: bool = False,
    weight: Callable[[int], float] | None = None,
):
    """Unroll ``length`` optimizer steps from θ_{t0}. Returns (meta_loss, θ_{t0+length}, state, losses).

    meta_loss = Σ_{t=t0+1}^{t0+length} w_t mean_i f_t(θ_t)_i carries the graph to the LSTM's weights through the
    updates θ_{t+1} = θ_t + m(∇_t). ∇_t is computed by autograd but detached before it enters the LSTM, unless
    ``second_derivatives``. w_t = 1 (the paper's objective) unless ``weight`` gives w_t.
    """
    th = theta
    if not th.requires_grad:
        th = th.detach().requires_grad_(True)
    meta_loss = th.new_zeros(())
    losses: list[float] = []
    for k in range(length):
        loss = problem.loss(th, t0 + k)
        if k > 0:
            meta_loss = meta_loss + (weight(t0 + k) if weight else 1.0) * loss.mean()
        losses.append(float(loss.detach().mean()))
        (grad,) = torch.autograd.grad(loss.sum(), th, retain_graph=True, create_graph=second_derivatives)
        if not second_derivatives:
            grad = grad.detach()
        upd, state = net(grad, state)
        th = th + upd
    end_loss = problem.loss(th, t0 + length)
    meta_loss = meta_loss + (weight(t0 + length) if weight else 1.0) * end_loss.mean()
    return meta_loss, th, state, losses


class UnrollLoss(nn.Module):
    """One truncation's whole differentiable meta-loss as a single forward: the module DDP wraps (its parameters
    are the LSTM's), so that every backward follows exactly one forward of the wrapped module."""

    def __init__(self, net: LSTMOptimizer, weight: Callable[[int], float] | None = None) -> None:
        super().__init__()
        self.net = net
        self.weight = weight

    def forward(self, problem: Problem, theta: torch.Tensor, state: State, t0: int, length: int):
        return unroll(self.net, problem, theta, state, t0, length, weight=self.weight)


def rescale_preprocessing(net: LSTMOptimizer, p: float) -> None:
    """Give ``net`` the preprocessing constant ``p`` and scale its first layer's log-magnitude input weights by
    p / p_old, so that a gradient above both thresholds (|g| >= e^-min(p, p_old)) gives the same update as before."""
    if net.preprocess and p != net.p:
        with torch.no_grad():
            net.cells[0].weight_ih[:, 0] *= float(p) / net.p
    net.p = float(p)


def step_weight(config: dict[str, Any]) -> Callable[[int], float] | None:
    """The meta-loss weight of step t: None (w_t = 1, the paper's sum of losses) for ``weighting`` "uniform";
    "ramp": w_t = 2t/T, rising linearly over the T = ``steps`` of a run (mean 1), so the meta-objective leans to
    the loss late in the run, the one a final-loss comparison reports; "final": w_T = T and 0 before, the loss
    after the last step alone (what a final-loss comparison reports), best with ``unroll`` = ``steps`` (one
    truncation per run, so the meta-gradient sees the whole run; shorter truncations but the last get none)."""
    kind = str(config.get("weighting") or "uniform")
    total = max(1, int(config["steps"]))
    if kind == "uniform":
        return None
    if kind == "ramp":
        return lambda t: 2.0 * t / total
    if kind == "final":
        return lambda t: float(total) if t >= total else 0.0
    raise ValueError(f"unknown weighting {kind!r}")


@dataclass
class TrainData:
    """What meta-training draws from: ``sample(k) -> Problem`` (this process's optimizees of episode k) and
    fixed validation problems. ``batch``: optimizees per meta-step over all processes."""

    sample: Callable[[int], Problem]
    val: list[Problem] = field(default_factory=list)
    name: str = ""
    batch: int = 1
    geometric: bool = False  # validation: geometric mean over the problems (else the arithmetic mean)


def make_train_data(problem: str, device: Any, config: dict[str, Any], world: Any = None) -> TrainData:
    """Training problems from the meta-training distribution (MNIST: the 4,000 'train' images only).

    ``world`` (a :class:`explorer.core.training.World`): this process's share of every episode's ``batch``
    optimizees (``batch`` must split evenly over the processes). Episode k's optimizees are the same whatever
    the number of processes: quadratics from seed base+k (the processes slice the one batch), MNIST MLP j of
    episode k from seed base + k·batch + j (with batch 1, as before: base + k).
    """
    seed = int(config.get("seed", 0))
    base = TRAIN_SEED_BASE + seed * 10_000_000
    batch = int(config.get("batch") or (128 if problem == "quadratic" else 1))
    per = world.split_batch(batch) if world is not None else batch
    # validation runs as long as the runs the optimizer is measured on, when it meta-trains on longer ones
    val_steps = int(config.get("val_steps") or config["steps"])
    lo = (world.rank if world is not None else 0) * per
    hi = lo + per
    if problem == "quadratic":

        def sample(k: int) -> Problem:
            q = make_problem("quadratic", base + k, device=device, batch=batch, steps=config["steps"])
            return q if per == batch else q.select(lo, hi)

        val = [
            make_problem(
                "quadratic",
                base + 9_000_000,
                device=device,
                batch=int(config.get("val_runs", 128)),
                steps=val_steps,
            )
        ]
    elif problem in ("mnist", "mnist-mix", "style"):
        stride = 37 if problem == "style" else 1  # validation seeds (as the bundled checkpoints were selected)
        # mnist-mix: episode k's nets read MNIST at MIX_VARIANTS[k % 4]'s resolution; validation: val_runs at each
        # resolution, scored by the geometric mean (each resolution counts alike, not the one with the largest loss)
        kinds = MIX_VARIANTS if problem == "mnist-mix" else (problem,)

        def sample(k: int) -> Problem:
            kind = kinds[k % len(kinds)]
            parts = [
                make_problem(kind, base + k * batch + j, split="train", device=device, steps=config["steps"])
                for j in range(lo, hi)
            ]
            return parts[0] if len(parts) == 1 else ConcatProblem(parts)

        val = [
            make_problem(kind, base + 9_000_000 + stride * i, split="train", device=device, steps=val_steps)
            for kind in dict.fromkeys(kinds)
            for i in range(int(config.get("val_runs", 3)))
        ]
    else:
        raise ValueError(f"meta-training supports 'quadratic', 'mnist', 'mnist-mix' and 'style', not {problem!r}")
    return TrainData(sample=sample, val=val, name=problem, batch=batch, geometric=problem == "mnist-mix")


@dataclass
class Episode:
    """The optimizees in flight: episode ``k``'s problem, θ and the LSTM states after ``t0`` steps."""

    k: int
    problem: Problem
    theta: torch.Tensor
    state: State
    t0: int = 0
    total: float = 0.0  # Σ of the meta-steps' meta-loss per unrolled step so far
    n: int = 0  # meta-steps taken in this episode
    abandoned: bool = False

    def snapshot(self) -> dict[str, Any]:
        """What a resume file keeps of it (the problem itself is redrawn from its seed)."""
        return {
            "k": self.k,
            "t0": self.t0,
            "total": self.total,
            "n": self.n,
            "theta": self.theta.detach().to("cpu").clone(),
            "state": [[h.detach().to("cpu").clone(), c.detach().to("cpu").clone()] for h, c in self.state],
        }


class MetaTrainer:
    """Holds the meta-optimizer; ``epoch(k)`` runs one optimizee episode and returns its mean meta-loss.

    Step by step: ``start(k)``, then ``meta_step()`` until ``finished``, then ``end_episode()``. ``world``
    (optional): the processes agree on the meta-loss (its mean over all of them) and so on skipping."""

    def __init__(
        self, net: LSTMOptimizer, data: TrainData, device: Any, config: dict[str, Any], world: Any = None
    ) -> None:
        self.net, self.data, self.device, self.config = net, data, device, config
        self.opt = torch.optim.Adam(net.parameters(), lr=float(config["meta_lr"]))
        self.skipped = 0
        self.world = world
        self.weight = step_weight(config)
        self.loss_fn: nn.Module = UnrollLoss(net, self.weight)  # its DDP wrapper in a multi-process run
        self.episode: Episode | None = None

    def start(self, k: int) -> Episode:
        problem = self.data.sample(k)
        theta = problem.init_params()
        state = self.net.initial_state(theta.numel(), device=theta.device)
        self.episode = Episode(k=k, problem=problem, theta=theta, state=state)
        return self.episode

    def restore(self, snap: dict[str, Any]) -> Episode:
        """Continue the episode a resume file stopped in."""
        ep = self.start(int(snap["k"]))
        ref = ep.theta
        ep.theta = snap["theta"].to(device=ref.device, dtype=ref.dtype)
        ep.state = [(h.to(ref.device), c.to(ref.device)) for h, c in snap["state"]]
        ep.t0, ep.total, ep.n = int(snap["t0"]), float(snap["total"]), int(snap["n"])
        return ep

    @property
    def finished(self) -> bool:
        ep = self.episode
        return ep is None or ep.abandoned or ep.t0 >= int(self.config["steps"])

    def skip_silent(self) -> bool:
        """Run the episode's truncations whose meta-loss weights are all zero (``weighting`` "final": all but the
        last) forward only: no graph, no Adam step on a zero meta-gradient. False when θ stopped being finite."""
        cfg, ep = self.config, self.episode
        weight, total, size = self.weight, int(cfg["steps"]), int(cfg["unroll"])
        while weight is not None and ep.t0 + size < total and not any(weight(ep.t0 + k) for k in range(1, size + 1)):
            th, state = ep.theta, ep.state
            for k in range(size):
                _, th, state = learned_step(self.net, ep.problem, th, state, ep.t0 + k)
            ep.theta, ep.state, ep.t0 = th, detach_state(state), ep.t0 + size
            finite = bool(torch.isfinite(th).all())
            if self.world is not None:
                finite = self.world.mean(float(finite)) == 1.0
            if not finite:
                self.skipped += 1
                ep.abandoned = True
                return False
        return True

    def meta_step(self) -> float | None:
        """One truncation of the current episode: unroll, meta-gradient, one Adam step. Returns the meta-loss per
        unrolled step (mean over every process's optimizees), or None when it was not finite (on any process):
        then the episode is abandoned and the weights are untouched."""
        cfg, ep = self.config, self.episode
        if not self.skip_silent():
            return None
        length = min(int(cfg["unroll"]), int(cfg["steps"]) - ep.t0)
        self.net.train()
        meta_loss, theta, state, _ = self.loss_fn(ep.problem, ep.theta, ep.state, ep.t0, length)
        value = float(meta_loss.detach())
        if self.world is not None:
            value = self.world.mean(value)  # one collective: the logged mean, and a NaN anywhere is seen by all
        if not math.isfinite(value):
            self.skipped += 1
            ep.abandoned = True  # abandon these optimizees; the weights are untouched
            return None
        self.opt.zero_grad(set_to_none=True)
        meta_loss.backward()
        if float(cfg.get("clip") or 0) > 0:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), float(cfg["clip"]))
        self.opt.step()
        ep.theta = theta.detach()
        ep.state = detach_state(state)
        ep.t0 += length
        ep.total += value / length
        ep.n += 1
        return value / length

    def end_episode(self) -> float:
        """The finished episode's mean meta-loss per step (over the meta-steps it took)."""
        ep, self.episode = self.episode, None
        return ep.total / max(ep.n, 1) if ep is not None else 0.0

    def epoch(self, k: int, token: Any = None) -> float:
        self.start(k)
        while not self.finished:
            if token is not None:
                token.check()
            self.meta_step()
        return self.end_episode()


def validate(
    net: LSTMOptimizer, problems: list[Problem], token: Any = None, geometric: bool = False
) -> dict[str, float]:
    """Run the learned optimizer (no meta-gradient) on fixed problems: mean final and mean-over-steps loss
    (``geometric``: their geometric means, for problems whose losses differ in scale)."""
    net.eval()
    finals, avgs = [], []
    for p in problems:
        r = run_optimizer(p, "learned", net=net, token=token)
        finals.append(r["final"])
        avgs.append(r["avg"])
    fs, avs = np.concatenate(finals), np.concatenate(avgs)
    if geometric:
        with np.errstate(divide="ignore", invalid="ignore"):
            f, a = float(np.exp(np.mean(np.log(fs)))), float(np.exp(np.mean(np.log(avs))))
    else:
        f, a = float(np.mean(fs)), float(np.mean(avs))
    return {"val_final_loss": f if math.isfinite(f) else math.inf, "val_avg_loss": a if math.isfinite(a) else math.inf}


def steps_per_epoch(config: dict[str, Any]) -> int:
    if str(config.get("weighting")) == "final":
        return 1  # the truncations before the last are run forward only (MetaTrainer.skip_silent)
    return max(1, math.ceil(int(config["steps"]) / int(config["unroll"])))


def fit(
    model: LSTMOptimizer,
    data: TrainData,
    device: Any,
    config: dict[str, Any],
    progress: Any = None,
    token: Any = None,
    on_checkpoint: Callable[[LSTMOptimizer, dict[str, Any]], None] | None = None,
    rank: int = 0,
    *,
    run: Any = None,
    resume: Any = None,
) -> dict[str, Any]:
    """Meta-train ``model`` in place; keeps the weights with the best validation loss: averaged over the steps
    (``config["select"] == "avg"``, the meta-training objective) or after the last step (``"final"``).

    ``config``: epochs, steps, unroll, meta_lr, val_every, val_runs, select, time_limit_s (0 = none), clip, seed,
    batch.
    ``run``: a fresh :class:`explorer.core.training.Run` (budget, resume file, processes); without one, a
    one-process run of ``config["epochs"]`` episodes (and ``time_limit_s``) that writes no files. ``resume``: a
    resume file to continue. ``on_checkpoint(best_model, history)`` is called (rank 0 only) whenever validation
    improves. Returns the history: per-episode meta-loss, validation records, wall time and the best validation.
    """
    from explorer.core.errors import UserError
    from explorer.core.training import Run, World

    if run is None:
        torch.manual_seed(int(config.get("seed", 0)))
        limit = float(config.get("time_limit_s") or 0)
        run = Run(
            World(device=torch.device(device)),
            paper="l2l",
            epochs=int(config["epochs"]),
            minutes=limit / 60.0 if limit > 0 else None,
            progress=progress,
            token=token,
            seed=int(config.get("seed", 0)),
        )
    world = run.world
    model.to(device)
    trainer = MetaTrainer(model, data, device, config, world=world)
    run.steps_per_epoch = steps_per_epoch(config)
    max_epochs = run.max_epochs
    val_every = int(config.get("val_every", 50))
    select = str(config.get("select", "avg"))
    if select not in ("avg", "final"):
        raise UserError(f"select must be 'avg' or 'final', not {select!r}")
    sel_key = f"val_{select}_loss"
    keyed = {k: (data.name if k == "problem" else config.get(k)) for k in RESUME_KEYS}
    keyed["batch"] = data.batch
    keyed["p"] = float(model.p)

    run.attach(model=model, optimizer=trainer.opt)
    user = run.resume(resume)
    hist: dict[str, Any] = user.get("history") or {"meta_loss": [], "val": [], "best": None, "epochs_done": 0}
    hist.setdefault("val", [])
    hist.setdefault("meta_loss", [])
    best_state = None
    if user:
        was = user.get("config") or {}
        diff = [k for k in RESUME_KEYS if k in was and was[k] != keyed[k]]
        if diff:
            raise UserError(
                "the resume file was written with other options: "
                + ", ".join(f"{k} {was[k]} (now {keyed[k]})" for k in diff)
                + "; resume with the same ones"
            )
        trainer.skipped = int(user.get("skipped", 0))
        if world.is_main and user.get("best_state"):
            best_state = {k: t.to(device) for k, t in user["best_state"].items()}
        eps = user.get("episodes")
        if eps:
            mine = eps[world.rank] if len(eps) == world.world_size else None
            if mine is not None and int(mine["k"]) == run.epoch:
                trainer.restore(mine)
            elif any(e is not None for e in eps):
                run.info(f"note: the episode in flight (written by {len(eps)} process(es)) starts over")

    def state() -> dict[str, Any]:
        # called on every process whenever the core writes a resume file (periodically, at a stop): each one's
        # optimizees in flight are gathered, so that a resumed run continues in the middle of an episode
        ep = trainer.episode
        snap = ep.snapshot() if ep is not None and not trainer.finished else None
        return {
            "history": hist,
            "best_state": best_state,
            "skipped": trainer.skipped,
            "episodes": world.gather_objects(snap),
            "config": keyed,
        }

    run.state_fn = state

    def do_val(step: int) -> None:
        nonlocal best_state
        v = validate(model, data.val, token, geometric=data.geometric)
        v.update(epoch=run.epoch, step=step, wall_s=round(run.wall_s, 1))
        hist["val"].append(v)
        if hist["best"] is None or v[sel_key] < hist["best"][sel_key]:
            hist["best"] = v
            best_state = {k2: t.detach().clone() for k2, t in model.state_dict().items()}
            if on_checkpoint is not None:
                on_checkpoint(model, hist)

    def val_due() -> bool:
        return world.is_main and run.epoch > 0 and (run.epoch % val_every == 0 or run.epoch == max_epochs)

    trainer.loss_fn = run.wrap(trainer.loss_fn)
    with run:
        if world.is_main and not hist["val"]:
            do_val(0)
        elif trainer.episode is None and val_due() and hist["val"][-1].get("epoch") != run.epoch:
            do_val(run.step_count)  # a resume file written at an episode end, before its validation
        while not run.done():
            if trainer.episode is None:
                trainer.start(run.epoch)
            value = trainer.meta_step()  # None: not finite anywhere, nothing stepped, the episode abandoned
            ended = trainer.finished
            if ended:
                hist["meta_loss"].append(trainer.end_episode())
                run.end_epoch()
                hist["epochs_done"] = run.epoch
            if value is not None:
                best = hist["best"][sel_key] if hist["best"] else float("nan")
                run.step(
                    samples=data.batch,
                    message=f"epoch {run.epoch + (not ended)} meta-loss {value:.4g} best val {best:.4g}",
                )
            if ended and val_due():
                do_val(run.step_count)
    # stopped between validations (time, signal, --steps): validate the weights it stopped with, for the
    # checkpoint only; the resume file, written on leaving the block above, goes on as if this had not happened
    if world.is_main and (not hist["val"] or hist["val"][-1].get("step") != run.step_count):
        do_val(run.step_count)
    hist["wall_s"] = round(run.wall_s, 1)
    hist["skipped_episodes"] = trainer.skipped
    hist["stop"] = run.stop_reason
    hist["steps"] = run.step_count
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return hist


def train_problem(
    problem: str,
    device: Any,
    config: dict[str, Any],
    out: Any,
    progress: Any = None,
    token: Any = None,
    model_config: dict[str, Any] | None = None,
    init: str | None = None,
    *,
    world: Any = None,
    resume: Any = None,
    minutes: float | None = None,
    steps: int | None = None,
    checkpoint_every: float | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Build a fresh LSTM optimizer, meta-train it on ``problem`` and save the best weights to ``out``.

    The checkpoint is rewritten whenever validation improves (periodic checkpoints), and once at the end with
    the full history (rank 0 only; with the ``training`` record). ``world``: this process's place in a
    (torchrun) job, default one process on ``device``. ``resume``: continue from a resume file. ``minutes``
    (default ``config["time_limit_s"]``), ``steps`` (meta-steps) and ``config["epochs"]`` bound the run; the
    resume file ``<out>.resume.safetensors`` is written at the end and every ``checkpoint_every`` minutes.
    Returns the history.
    """
    from explorer.core.training import Run, World, seed_all

    from .data import dataset_note
    from .model import DEFAULT_CONFIG, build

    if world is None:
        world = World(device=torch.device(device))
    cfg = dict(DEFAULT_CONFIG)
    cfg.update({"p": DEFAULT_P[problem]} if problem in DEFAULT_P else {})
    cfg.update(model_config or {})
    seed_all(int(config.get("seed", 0)))  # the same on every process: identical initial weights
    net = build(cfg)
    prior: dict[str, Any] = {}
    if init:
        from .infer import load_learned  # style checkpoints carry the feature network: checked and split off

        net, init_meta = load_learned(init, device="cpu")
        rescale_preprocessing(net, float(cfg["p"]))  # a checkpoint of another p keeps its steps (see there)
        net.train()
        for q in net.parameters():
            q.requires_grad_(True)
        prior = {
            "epochs": int((init_meta.metrics or {}).get("epochs") or 0),
            "train_wall_s": float((init_meta.metrics or {}).get("train_wall_s") or 0.0),
            "history": (init_meta.extra or {}).get("history") or {},
        }
        # continue the run's own seed stream past the optimizees it has already seen
        config = dict(config)
        config["seed"] = int(config.get("seed", 0)) + 1
    data = make_train_data(problem, world.device, config, world)
    if minutes is None and float(config.get("time_limit_s") or 0) > 0:
        minutes = float(config["time_limit_s"]) / 60.0
    extra_run = {"checkpoint_every_min": checkpoint_every} if checkpoint_every else {}
    run = Run(
        world,
        paper="l2l",
        out=out,
        minutes=minutes,
        steps=steps,
        epochs=int(config["epochs"]),
        steps_per_epoch=steps_per_epoch(config),
        log=log,
        progress=progress,
        progress_desc=f"meta-train {problem}",
        token=token,
        seed=int(config.get("seed", 0)),
        **extra_run,
    )

    family = "mnist" if problem == "mnist-mix" else problem  # what the app and LearnedOptimizer look it up by

    def save(model: LSTMOptimizer, hist: dict[str, Any], final: bool = False) -> None:
        best = hist.get("best") or {}
        metrics = {
            "headline": "val_final_loss",
            "val_final_loss": best.get("val_final_loss"),
            "val_avg_loss": best.get("val_avg_loss"),
            "best_epoch": best.get("epoch"),
            "epochs": hist.get("epochs_done", 0) + prior.get("epochs", 0),
            "train_wall_s": round(run.wall_s + prior.get("train_wall_s", 0.0), 1),
            "finished": final,
        }
        ph = prior.get("history") or {}
        ml = [v for v in ph.get("meta_loss", []) for _ in range(int(ph.get("stride") or 1))] + hist.get("meta_loss", [])
        stride = max(1, len(ml) // 400)
        state = dict(model.state_dict())
        note = dataset_note("mnist") if problem.startswith("mnist") else "random 10-D quadratics ||Wθ−y||²"
        if problem == "mnist-mix":
            note += "; half the nets on 28x28 images, a quarter each on 14x14 and 7x7 (average-pooled)"
        if problem == "style":
            from .style import checkpoint_extras

            feats, note = checkpoint_extras()
            state.update(feats)  # the fixed random feature network travels with the optimizer
        run.save_model(
            out,
            state,
            model_config={**model.config(), "problem": family},
            metrics=metrics,
            data={"name": note, "problem": family, "meta_training": problem, "batch": data.batch},
            extra={
                "train_config": dict(config),
                "continued_from": prior.get("epochs") or None,
                "history": {
                    "meta_loss": [round(float(v), 5) for v in ml[::stride]],
                    "stride": stride,
                    "val": hist.get("val", []),
                },
            },
        )

    hist = fit(net, data, world.device, config, token=token, on_checkpoint=save, run=run, resume=resume)
    save(net, hist, final=True)
    hist["resume_file"] = str(run.resume_file) if run.resume_file else None
    return hist
