"""Training loop for SRNN and the GRU baseline (headless).

As in the authors' code: batches of 16 consecutive training chunks (the files' 16 truncated-BPTT streams), the
hidden state carried from one batch to the next, Adam (lr 1e-3, eps 1e-4), gradient norm constrained to 1 then
clipped elementwise at 10, the KL weight annealed linearly from 0.2 to 1, and an exponential learning-rate decay
(factor 1/1.2 per epoch) after a constant phase. The authors use 20 annealing and 20 constant epochs out of 50;
we keep those fractions (40 %) of whatever number of epochs is asked for.

``fit`` takes the model, data, device and a config dict, and writes the best-on-validation checkpoint plus a
resume file; it could run under DDP (seed and stream partition are arguments; only rank 0 writes).
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch

from explorer.core.checkpoints import load_checkpoint, save_checkpoint
from explorer.core.errors import UserError

from .data import STREAMS, MusicData
from .model import count_parameters, elbo_loss

PAPER_ID = "srnn"

DEFAULT_TRAIN: Dict[str, Any] = {
    "epochs": 50,
    "lr": 1e-3,
    "adam_eps": 1e-4,
    "lr_decay": 1.2,
    "no_decay_frac": 0.4,     # constant-lr phase (20 of 50 epochs in the authors' code)
    "kl_start": 0.2,
    "kl_frac": 0.4,           # KL annealing phase (20 of 50 epochs)
    "max_grad_norm": 1.0,
    "clip_gradients": 10.0,
    "batch_size": STREAMS,
    "carry_state": True,
    "seed": 123,
    "max_minutes": None,      # stop early (after the current batch) when the wall time is spent
    "checkpoint_every_s": 120,
    "valid_samples_seed": 7,
    "keep_resume": False,     # keep the resume file after a finished run (to extend it later)
    "rank": 0,
    "world_size": 1,
}


def train_config(**overrides) -> Dict[str, Any]:
    cfg = dict(DEFAULT_TRAIN)
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return cfg


def kl_weight(cfg: Dict[str, Any], it: int, iters_per_epoch: int) -> float:
    """Linear from kl_start to 1 over the first kl_frac of the iterations, then 1 (per batch, as the authors)."""
    n = max(1, int(round(cfg["kl_frac"] * cfg["epochs"] * iters_per_epoch)))
    if it >= n:
        return 1.0
    return float(cfg["kl_start"] + (1.0 - cfg["kl_start"]) * it / n)


def lr_at(cfg: Dict[str, Any], epoch: int) -> float:
    no_decay = int(round(cfg["no_decay_frac"] * cfg["epochs"]))
    if epoch < no_decay:
        return cfg["lr"]
    return cfg["lr"] * (1.0 / cfg["lr_decay"]) ** (epoch - no_decay + 1)


def _stream_batches(n: int, batch: int):
    """Index arrays of the consecutive batches [k*b, (k+1)*b): chunk j+b continues chunk j in the files."""
    return [np.arange(k * batch, (k + 1) * batch) for k in range(n // batch)]


@torch.no_grad()
def validate(model, u: np.ndarray, x: np.ndarray, device, batch: int = 64, seed: int = 7) -> Dict[str, float]:
    """Mean over chunks of the per-step ELBO (one fixed-seed sample), zero initial state."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    elbos, lls, kls = [], [], []
    zdim = model.config.get("z_dim", 1)
    for i in range(0, len(u), batch):
        ub = torch.from_numpy(u[i:i + batch]).to(device)
        xb = torch.from_numpy(x[i:i + batch]).to(device)
        kw = {}
        if model.config["kind"] == "srnn":
            kw["noise"] = torch.randn(ub.shape[0], ub.shape[1], zdim, generator=gen).to(device)
        out = model(ub, xb, **kw)
        ll, kl = out["ll"].mean(1), out["kl"].mean(1)
        elbos.append((ll - kl).cpu())
        lls.append(ll.cpu())
        kls.append(kl.cpu())
    model.train()
    return {"elbo_per_step": float(torch.cat(elbos).mean()), "ll_per_step": float(torch.cat(lls).mean()),
            "kl_per_step": float(torch.cat(kls).mean())}


def _opt_tensors(opt: torch.optim.Optimizer) -> Dict[str, torch.Tensor]:
    sd = opt.state_dict()
    out = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            t = v if isinstance(v, torch.Tensor) else torch.tensor(float(v))
            out[f"opt.{idx}.{k}"] = t.reshape(-1) if t.dim() == 0 else t
    return out


def _load_opt(opt: torch.optim.Optimizer, tensors: Dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: Dict[int, Dict[str, Any]] = {}
    for name, t in tensors.items():
        _, idx, k = name.split(".", 2)
        state.setdefault(int(idx), {})[k] = t.reshape(()) if k == "step" else t
    sd["state"] = state
    opt.load_state_dict(sd)


def save_resume(path: Path, model, opt, state, meta: Dict[str, Any]) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update(_opt_tensors(opt))
    if state is not None:
        for i, s in enumerate(state):
            tensors[f"carry.{i}"] = s
    save_checkpoint(path, tensors, paper=PAPER_ID, model_config=model.config, metrics={},
                    data={"resume": True}, extra={"resume": meta})


def load_resume(path: Path, model, opt):
    ck = load_checkpoint(path, expected_paper=PAPER_ID)
    meta = ck.meta.extra.get("resume") or {}
    if ck.meta.model_config != model.config:
        raise UserError(f"{path.name}: the resume file is for another model configuration; delete it or change "
                        "the options")
    model.load_state_dict({k[6:]: v for k, v in ck.state_dict.items() if k.startswith("model.")})
    _load_opt(opt, {k: v for k, v in ck.state_dict.items() if k.startswith("opt.")})
    carry = [v for k, v in sorted(ck.state_dict.items()) if k.startswith("carry.")]
    return meta, (tuple(carry) if carry else None)


def fit(model, data: MusicData, device, config: Dict[str, Any], out_path=None, progress: Optional[Callable] = None,
        token=None, log: Optional[Callable[[str], None]] = None, data_info: Optional[Dict[str, Any]] = None,
        resume: bool = True) -> Dict[str, Any]:
    """Train ``model`` on ``data``; keep the best-on-validation weights in ``out_path``.

    Returns a summary dict (best validation ELBO per step, epochs run, wall time, history).
    """
    cfg = train_config(**config)
    log = log or (lambda s: None)
    rank, world = int(cfg["rank"]), int(cfg["world_size"])
    torch.manual_seed(cfg["seed"] + rank)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], eps=cfg["adam_eps"])
    out_path = Path(out_path) if out_path else None
    resume_path = out_path.with_name(out_path.stem + ".resume.safetensors") if out_path else None

    B = int(cfg["batch_size"])
    batches = _stream_batches(len(data.x_train), B)[rank::world]
    if not batches:
        raise UserError(f"the training set has {len(data.x_train)} chunks, fewer than one batch of {B}")
    n_iter = len(batches)
    start_epoch, best, history, carry, it = 0, -math.inf, [], None, 0
    elapsed_before = 0.0
    if resume and resume_path is not None and resume_path.exists():
        meta, _ = load_resume(resume_path, model, opt)
        start_epoch = int(meta.get("epoch", 0))
        best = float(meta.get("best", -math.inf))
        history = list(meta.get("history", []))
        it = int(meta.get("iteration", start_epoch * n_iter))
        elapsed_before = float(meta.get("elapsed_s", 0.0))
        log(f"resumed from {resume_path.name} at epoch {start_epoch} (best valid {best:.4f})")

    t0 = time.time()
    last_save = time.time()
    total_iters = cfg["epochs"] * n_iter
    limit_s = None if not cfg.get("max_minutes") else float(cfg["max_minutes"]) * 60.0
    stopped_early = False
    epoch = start_epoch
    for epoch in range(start_epoch, cfg["epochs"]):
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, epoch)
        # the authors reset the carried state at the start of every epoch
        carry = model.initial_state(B, device) if cfg["carry_state"] else None
        tr_elbo, tr_kl = [], []
        for bi, idx in enumerate(batches):
            if token is not None:
                token.check()
            u = torch.from_numpy(data.u_train[idx]).to(device)
            x = torch.from_numpy(data.x_train[idx]).to(device)
            beta = kl_weight(cfg, it, n_iter)
            out = model(u, x, state=carry if cfg["carry_state"] else None)
            if cfg["carry_state"]:
                carry = out["state"]
            loss, elbo, kl = elbo_loss(out, None, beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["max_grad_norm"])
            torch.nn.utils.clip_grad_value_(model.parameters(), cfg["clip_gradients"])
            opt.step()
            it += 1
            tr_elbo.append(elbo)
            tr_kl.append(kl)
            if progress is not None:
                progress(it / total_iters, f"epoch {epoch + 1}/{cfg['epochs']} elbo {np.mean(tr_elbo):.3f} "
                                           f"kl {np.mean(tr_kl):.3f} beta {beta:.2f}")
            if limit_s is not None and elapsed_before + time.time() - t0 > limit_s:
                stopped_early = True
                break
        if stopped_early and bi < n_iter - 1:
            log(f"time limit reached in epoch {epoch + 1}; partial epoch not validated")
            break
        val = validate(model, data.u_valid, data.x_valid, device, seed=cfg["valid_samples_seed"])
        rec = {"epoch": epoch + 1, "train_elbo_per_step": float(np.mean(tr_elbo)), "train_kl": float(np.mean(tr_kl)),
               "valid_elbo_per_step": val["elbo_per_step"], "valid_kl_per_step": val["kl_per_step"],
               "lr": lr_at(cfg, epoch), "kl_weight": beta,
               "wall_s": round(elapsed_before + time.time() - t0, 1)}
        history.append(rec)
        improved = val["elbo_per_step"] > best
        if improved:
            best = val["elbo_per_step"]
        log(json.dumps(rec) + ("  *best*" if improved else ""))
        if rank == 0 and out_path is not None:
            if improved:
                save_checkpoint(out_path, model.state_dict(), paper=PAPER_ID, model_config=model.config,
                                metrics={"headline": "valid_elbo_per_step", "valid_elbo_per_step": best,
                                         "best_epoch": epoch + 1, "parameters": count_parameters(model)},
                                data=data_info or data.describe(),
                                extra={"train_config": cfg, "history": history})
            if time.time() - last_save > cfg["checkpoint_every_s"] or epoch + 1 == cfg["epochs"] or stopped_early:
                save_resume(resume_path, model, opt, carry,
                            {"epoch": epoch + 1, "best": best, "history": history, "iteration": it,
                             "elapsed_s": elapsed_before + time.time() - t0})
                last_save = time.time()
        if stopped_early:
            break
    wall = elapsed_before + time.time() - t0
    if (rank == 0 and resume_path is not None and not stopped_early and not cfg["keep_resume"]
            and resume_path.exists()):
        resume_path.unlink()  # finished: nothing to resume
    return {"best_valid_elbo_per_step": best, "epochs_run": len(history), "wall_s": round(wall, 1),
            "stopped_early": stopped_early, "history": history, "resume_file": str(resume_path) if resume_path else None}
