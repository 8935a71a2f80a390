"""Training loop for SRNN and the GRU baseline (headless).

As in the authors' code: batches of 16 consecutive training chunks (the files' 16 truncated-BPTT streams), the
hidden state carried from one batch to the next, Adam (lr 1e-3, eps 1e-4), gradient norm constrained to 1 then
clipped elementwise at 10, the KL weight annealed linearly from 0.2 to 1, and an exponential learning-rate decay
(factor 1/1.2 per epoch) after a constant phase. The authors use 20 annealing and 20 constant epochs out of 50;
we keep those fractions (40 %) of whatever number of epochs is asked for.

``fit`` takes the model, data, device and a config dict, and writes the best-on-validation checkpoint plus a
resume file, through the shared training core (``explorer.core.training``: budget, resume, signals, DDP).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from explorer.core.errors import UserError

from .data import STREAMS, MusicData
from .model import count_parameters, elbo_loss

PAPER_ID = "srnn"

DEFAULT_TRAIN: dict[str, Any] = {
    "epochs": 50,
    "lr": 1e-3,
    "adam_eps": 1e-4,
    "lr_decay": 1.2,
    "no_decay_frac": 0.4,  # constant-lr phase (20 of 50 epochs in the authors' code)
    "kl_start": 0.2,
    "kl_frac": 0.4,  # KL annealing phase (20 of 50 epochs)
    "max_grad_norm": 1.0,
    "clip_gradients": 10.0,
    "batch_size": STREAMS,
    "carry_state": True,
    "seed": 123,
    "max_minutes": None,  # stop early (after the current batch) when the wall time is spent
    "valid_samples_seed": 7,
    "bptt_memory": None,  # BPTT memory budget of the GRUs (fraction of full BPTT's), None: plain nn.GRU
}


def train_config(**overrides) -> dict[str, Any]:
    cfg = dict(DEFAULT_TRAIN)
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return cfg


def kl_weight(cfg: dict[str, Any], it: int, iters_per_epoch: int) -> float:
    """Linear from kl_start to 1 over the first kl_frac of the iterations, then 1 (per batch, as the authors)."""
    n = max(1, int(round(cfg["kl_frac"] * cfg["epochs"] * iters_per_epoch)))
    if it >= n:
        return 1.0
    return float(cfg["kl_start"] + (1.0 - cfg["kl_start"]) * it / n)


def lr_at(cfg: dict[str, Any], epoch: int) -> float:
    no_decay = int(round(cfg["no_decay_frac"] * cfg["epochs"]))
    if epoch < no_decay:
        return cfg["lr"]
    return cfg["lr"] * (1.0 / cfg["lr_decay"]) ** (epoch - no_decay + 1)


def _stream_batches(n: int, batch: int):
    """Index arrays of the consecutive batches [k*b, (k+1)*b): chunk j+b continues chunk j in the files."""
    return [np.arange(k * batch, (k + 1) * batch) for k in range(n // batch)]


@torch.no_grad()
def validate(model, u: np.ndarray, x: np.ndarray, device, batch: int = 64, seed: int = 7) -> dict[str, float]:
    """Mean over chunks of the per-step ELBO (one fixed-seed sample), zero initial state."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    elbos, lls, kls = [], [], []
    zdim = model.config.get("z_dim", 1)
    for i in range(0, len(u), batch):
        ub = torch.from_numpy(u[i : i + batch]).to(device)
        xb = torch.from_numpy(x[i : i + batch]).to(device)
        kw = {}
        if model.config["kind"] == "srnn":
            kw["noise"] = torch.randn(ub.shape[0], ub.shape[1], zdim, generator=gen).to(device)
        out = model(ub, xb, **kw)
        ll, kl = out["ll"].mean(1), out["kl"].mean(1)
        elbos.append((ll - kl).cpu())
        lls.append(ll.cpu())
        kls.append(kl.cpu())
    model.train()
    return {
        "elbo_per_step": float(torch.cat(elbos).mean()),
        "ll_per_step": float(torch.cat(lls).mean()),
        "kl_per_step": float(torch.cat(kls).mean()),
    }


def _carry_to_full(parts, world_size: int):
    """Per-rank carried states (rank r holds streams r, r+W, ...) -> one state over all B streams."""
    if not parts or parts[0] is None:
        return None
    out = []
    for i in range(len(parts[0])):
        pieces = [p[i] for p in parts]
        full = torch.empty((sum(t.shape[0] for t in pieces),) + tuple(pieces[0].shape[1:]), dtype=pieces[0].dtype)
        for r, t in enumerate(pieces):
            full[r::world_size] = t
        out.append(full)
    return tuple(out)


def fit(
    model,
    data: MusicData,
    device,
    config: dict[str, Any],
    out_path=None,
    progress: Callable | None = None,
    token=None,
    log: Callable[[str], None] | None = None,
    data_info: dict[str, Any] | None = None,
    resume=None,
    world=None,
    minutes: float | None = None,
    checkpoint_every_min: float = 5.0,
) -> dict[str, Any]:
    """Train ``model`` on ``data`` with the shared training core; keep the best-on-validation weights in
    ``out_path`` and a resume file beside it (``<out>.resume.safetensors``).

    ``resume``: a resume file (or the checkpoint next to it) to continue from. ``world``: the
    :class:`~explorer.core.training.World` of a torchrun job (default: this process alone on ``device``). Each
    rank takes its share of the 16 streams of every batch (the global batch, and so the loss per chunk seen, are
    the same on any number of processes); rank 0 validates and writes.

    Returns a summary dict (best validation ELBO per step, epochs run, wall time, history, the run's record).
    """
    from explorer.core.training import Run, World

    cfg = train_config(**config)
    log = log or (lambda s: None)
    world = world or World(device=torch.device(device))
    device = world.device
    torch.manual_seed(world.rank_seed(int(cfg["seed"])))
    model.to(device).train()
    model.bptt_memory = cfg.get("bptt_memory")
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], eps=cfg["adam_eps"])
    out_path = Path(out_path) if out_path else None

    B = int(cfg["batch_size"])
    per_rank = world.split_batch(B, "the batch of streams")
    batches = [idx[world.rank :: world.world_size] for idx in _stream_batches(len(data.x_train), B)]
    if not batches:
        raise UserError(f"the training set has {len(data.x_train)} chunks, fewer than one batch of {B}")
    n_iter = len(batches)
    minutes = minutes if minutes is not None else cfg.get("max_minutes")
    run = Run(
        world,
        paper=PAPER_ID,
        out=out_path,
        minutes=minutes,
        epochs=int(cfg["epochs"]),
        steps_per_epoch=n_iter,
        checkpoint_every_min=checkpoint_every_min,
        log=log,
        progress=progress,
        token=token,
        seed=int(cfg["seed"]),
        progress_desc="srnn",
    )
    run.attach(model=model, optimizer=opt)
    st: dict[str, Any] = {"best": -math.inf, "history": [], "carry": None, "tr_elbo": [], "tr_kl": []}

    def state() -> dict[str, Any]:
        carry = st["carry"]
        parts = world.gather_objects(None if carry is None else tuple(t.detach().cpu() for t in carry))
        return {
            "best": st["best"],
            "history": st["history"],
            "tr_elbo": st["tr_elbo"],
            "tr_kl": st["tr_kl"],
            "carry": _carry_to_full(parts, world.world_size),
            "train_config": {k: v for k, v in cfg.items() if k != "max_minutes"},
        }

    run.state_fn = state
    user = run.resume(resume)
    if user:
        old = user.get("train_config", {})
        for k in ("batch_size", "carry_state"):
            if k in old and old[k] != cfg[k]:
                raise UserError(f"the resume file was trained with {k}={old[k]}, this run asks {cfg[k]}")
        st.update({k: user[k] for k in ("best", "history", "tr_elbo", "tr_kl") if k in user})
        full = user.get("carry")
        st["carry"] = None if full is None else tuple(t[world.rank :: world.world_size].to(device) for t in full)
    net = run.wrap(model)

    it = run.step_count
    start_epoch, start_batch = run.epoch, run.step_count - run.epoch * n_iter
    with run:
        for epoch in range(start_epoch, cfg["epochs"]):
            if run.done():
                break
            for g in opt.param_groups:
                g["lr"] = lr_at(cfg, epoch)
            first = start_batch if epoch == start_epoch else 0
            if first == 0:
                # the authors reset the carried state at the start of every epoch
                st["carry"] = model.initial_state(per_rank, device) if cfg["carry_state"] else None
                st["tr_elbo"], st["tr_kl"] = [], []
            beta = kl_weight(cfg, it, n_iter)
            t_epoch = time.perf_counter()
            bi = n_iter - 1  # (a resume file written after the epoch's last batch: go on to its validation)
            for bi in range(first, n_iter):
                idx = batches[bi]
                u = torch.from_numpy(data.u_train[idx]).to(device)
                x = torch.from_numpy(data.x_train[idx]).to(device)
                beta = kl_weight(cfg, it, n_iter)
                out = net(u, x, state=st["carry"] if cfg["carry_state"] else None)
                if cfg["carry_state"]:
                    st["carry"] = out["state"]
                loss, elbo, kl = elbo_loss(out, None, beta)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["max_grad_norm"])
                torch.nn.utils.clip_grad_value_(model.parameters(), cfg["clip_gradients"])
                opt.step()
                it += 1
                st["tr_elbo"].append(world.mean(elbo) if world.distributed else elbo)
                st["tr_kl"].append(world.mean(kl) if world.distributed else kl)
                if run.step(
                    samples=B,
                    message=f"epoch {epoch + 1}/{cfg['epochs']} elbo {np.mean(st['tr_elbo']):.3f} "
                    f"kl {np.mean(st['tr_kl']):.3f} beta {beta:.2f}",
                ):
                    break
            if bi < n_iter - 1:  # stopped inside the epoch (time or signal): the resume file continues it
                log(f"stopped in epoch {epoch + 1} after batch {bi + 1}/{n_iter}; not validated")
                break
            epoch_train_s = time.perf_counter() - t_epoch
            run.end_epoch()
            if not world.is_main:
                continue
            val = validate(model, data.u_valid, data.x_valid, device, seed=cfg["valid_samples_seed"])
            rec = {
                "epoch": epoch + 1,
                "train_elbo_per_step": float(np.mean(st["tr_elbo"])),
                "train_kl": float(np.mean(st["tr_kl"])),
                "valid_elbo_per_step": val["elbo_per_step"],
                "valid_kl_per_step": val["kl_per_step"],
                "lr": lr_at(cfg, epoch),
                "kl_weight": beta,
                "epoch_train_s": round(epoch_train_s, 2),
                "wall_s": round(run.wall_s, 1),
            }
            st["history"].append(rec)
            improved = val["elbo_per_step"] > st["best"]
            if improved:
                st["best"] = val["elbo_per_step"]
            log(json.dumps(rec) + ("  *best*" if improved else ""))
            if improved and out_path is not None:
                run.save_model(
                    out_path,
                    model.state_dict(),
                    model_config=model.config,
                    metrics={
                        "headline": "valid_elbo_per_step",
                        "valid_elbo_per_step": st["best"],
                        "best_epoch": epoch + 1,
                        "parameters": count_parameters(model),
                    },
                    data=data_info or data.describe(),
                    extra={
                        "train_config": {k: v for k, v in cfg.items() if k != "max_minutes"},
                        "history": st["history"],
                    },
                )
    best = world.broadcast_object(st["best"]) if world.distributed else st["best"]
    history = world.broadcast_object(st["history"]) if world.distributed else st["history"]
    return {
        "best_valid_elbo_per_step": best,
        "epochs_run": run.epoch,
        "wall_s": round(run.wall_s, 1),
        "stopped_early": run.interrupted(),
        "stop": run.stop_reason,
        "history": history,
        "training": run.record(),
        "resume_file": str(run.resume_file) if run.resume_file else None,
    }
