"""Training from pictures only: the ELBO of the training cameras' pictures given the input view.

loss per shape = sum_k BernoulliNLL(view_k | project(canvas_T, camera_k)) + sum_t KL(q(z_t | view_0) || N(0, I))

The trainer receives a :class:`~.data.ViewSet` (pictures and class labels); volumes never reach it.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch

from explorer.core.tasks import CancelToken, ProgressFn
from .data import ViewSet
from .model import Shapes3D, image_nll, silhouettes

PRESETS: Dict[str, Dict[str, Any]] = {
    "primitives": {
        "file": "shapes3d_primitives.safetensors",
        "model": dict(steps=6, hidden=256, z_dim=16, patch=16, feat=256, ctx_dim=16, writer="mlp"),
        "train": dict(batch=32, lr=1e-3, time_limit_s=1200.0, kl_max=0.1),
        "n_train": 2000, "n_test": 250,
        # Pictures from the 5 axis cameras and the 4 level diagonals (model.RIGS); the axis rig alone left
        # turned boxes and cones as fat as their axis-view hulls.
        "rig": "axes+diagonals",
    },
    "furniture": {
        "file": "shapes3d_furniture.safetensors",
        # The primitives architecture, so that training can start from the primitives model (--init).
        "model": dict(steps=6, hidden=256, z_dim=16, patch=16, feat=256, ctx_dim=16, writer="mlp"),
        "train": dict(batch=32, lr=1e-3, time_limit_s=1200.0, kl_max=0.1),
        # 184 training models overfit within minutes: their pictures under 4 random yaws each.
        "train_copies": 4,
        "rig": "axes+diagonals",
    },
}


@dataclass
class TrainConfig:
    steps: int = 100000            # upper bound; the wall-clock limit usually ends training first
    time_limit_s: float = 1200.0
    batch: int = 32
    lr: float = 1e-3
    min_lr: float = 5e-5
    warmup: int = 50
    clip: float = 20.0
    class_dropout: float = 0.3     # fraction of shapes trained without their class (unconditional model)
    view_dropout: float = 0.25     # fraction trained without the picture as generative context (prior sampling)
    free_bits: float = 1.0         # nats per DRAW step below which the (batch-mean) KL is not penalised
    silhouette_weight: float = 1.0 # extra loss: max-projection silhouettes vs the pictures' silhouettes (2D only)
    kl_warmup: int = 1500          # KL weight rises linearly from 0 to kl_max over these steps (avoids posterior collapse)
    kl_max: float = 1.0            # final KL weight (1 = the ELBO; below 1 a beta-VAE: sharper reconstructions)
    logit_noise: float = 0.0       # optional Gaussian noise on the canvas logits before projecting (training
                                   # only); it slowed learning in our runs, the silhouette term is used instead
    augment: bool = True
    seed: int = 0
    log_every: int = 25
    val_every: int = 250
    checkpoint_every_s: float = 120.0


def batch_loss(model: Shapes3D, views: torch.Tensor, labels: Optional[torch.Tensor],
               sample: bool = True, kl_weight: float = 1.0, logit_noise: float = 0.0,
               view_mask: Optional[torch.Tensor] = None, free_bits: float = 0.0,
               silhouette_weight: float = 0.0) -> Dict[str, torch.Tensor]:
    """ELBO terms of a batch of pictures (B, K, H, W): nll (B,), kl (B, T), loss (scalar, nats per pixel;
    the KL scaled by ``kl_weight``, 1 = the ELBO)."""
    out = model(views[:, model.input_view], labels, sample=sample, view_mask=view_mask)
    logits = out["logits"]
    if logit_noise > 0:
        logits = logits + logit_noise * torch.randn_like(logits)
    pred = model.render(logits)
    nll = image_nll(pred, views)
    kl = out["kl"]
    kl_term = kl.mean(0).clamp(min=free_bits).sum() if free_bits > 0 else kl.sum(1).mean()
    loss = (nll.mean() + kl_weight * kl_term) / views[0].numel()
    if silhouette_weight > 0:
        # The pictures' silhouettes (any grey > 0 is the object) against the max-projection of the volume:
        # fog cannot reach 1 along a ray, so occupancies inside the visual hull become solid.
        sil = silhouettes(out["logits"], model.thetas)
        target = (views > 0.05).to(sil.dtype)
        loss = loss + silhouette_weight * image_nll(sil, target).mean() / views[0].numel()
    return {"loss": loss, "nll": nll, "kl": kl, "pred": pred, "logits": out["logits"]}


@torch.no_grad()
def validate(model: Shapes3D, data: ViewSet, device, batch: int = 50, seed: int = 123) -> Dict[str, float]:
    """Held-out ELBO (nats per shape, negative) and picture error from pictures only (no volumes)."""
    was = model.training
    model.eval()
    gen = torch.random.get_rng_state()
    torch.manual_seed(seed)
    tot_elbo, tot_err, n = 0.0, 0.0, 0
    for i in range(0, len(data), batch):
        v = torch.from_numpy(data.views[i:i + batch].astype(np.float32) / 255.0).to(device)
        terms = batch_loss(model, v, None, sample=True)
        tot_elbo += float(-(terms["nll"] + terms["kl"].sum(1)).sum())
        tot_err += float((terms["pred"] - v).abs().mean(dim=(1, 2, 3)).sum())
        n += len(v)
    torch.random.set_rng_state(gen)
    model.train(was)
    return {"val_elbo": tot_elbo / max(n, 1), "val_image_error": tot_err / max(n, 1)}


def fit(model: Shapes3D, data: ViewSet, device, config: TrainConfig, progress: Optional[ProgressFn] = None,
        token: Optional[CancelToken] = None, val: Optional[ViewSet] = None,
        on_checkpoint: Optional[Callable[[Shapes3D, Dict[str, Any]], None]] = None,
        log: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Train ``model`` on the pictures of ``data`` (a ViewSet: no volumes). Returns a summary dict.

    Seeds come from ``config.seed``; ``on_checkpoint(model, summary)`` is called every
    ``checkpoint_every_s`` seconds and at the end (the caller saves; rank-0 only under DDP).
    """
    if not isinstance(data, ViewSet) or hasattr(data, "voxels"):
        raise TypeError("fit() trains from pictures only: pass a ViewSet (ShapeSet.training_views())")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    batches = data.batches(config.batch, rng, augment=config.augment)
    start = time.monotonic()
    last_ckpt = start
    summary: Dict[str, Any] = {"config": asdict(config), "steps": 0, "history": []}
    ema = None
    step = 0
    for step in range(1, config.steps + 1):
        if token is not None:
            token.check()
        elapsed = time.monotonic() - start
        frac = min(1.0, max(step / config.steps, elapsed / config.time_limit_s))
        lr = config.lr * min(1.0, step / config.warmup)
        lr = config.min_lr + (lr - config.min_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))
        for g in opt.param_groups:
            g["lr"] = lr
        b = next(batches)
        views = torch.from_numpy(b["views"]).to(device)
        labels = torch.from_numpy(b["labels"]).to(device)
        drop = torch.rand(len(labels), device=device) < config.class_dropout
        labels = torch.where(drop, torch.full_like(labels, model.n_classes), labels)
        beta = config.kl_max * (min(1.0, step / config.kl_warmup) if config.kl_warmup > 0 else 1.0)
        vmask = (torch.rand(len(labels), device=device) >= config.view_dropout).float()
        terms = batch_loss(model, views, labels, kl_weight=beta, logit_noise=config.logit_noise,
                           view_mask=vmask, free_bits=config.free_bits,
                           silhouette_weight=config.silhouette_weight)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        opt.step()
        elbo = float(-(terms["nll"] + terms["kl"].sum(1)).detach().mean())
        ema = elbo if ema is None else 0.95 * ema + 0.05 * elbo
        summary["steps"] = step
        summary["train_elbo"] = ema
        if step % config.log_every == 0:
            kl = float(terms["kl"].detach().sum(1).mean())
            msg = f"step {step} elbo {ema:.1f} kl {kl:.1f} beta {beta:.2f} lr {lr:.2g} {elapsed:.0f}s"
            if progress:
                progress(frac, msg)
            if log:
                log(msg)
        if val is not None and step % config.val_every == 0:
            m = validate(model, val, device)
            summary.update(m)
            summary["history"].append({"step": step, "time_s": round(elapsed, 1), **m})
            if log:
                log(f"val step {step}: elbo {m['val_elbo']:.1f} image error {m['val_image_error']:.4f}")
        summary["train_time_s"] = time.monotonic() - start
        if on_checkpoint and time.monotonic() - last_ckpt > config.checkpoint_every_s:
            on_checkpoint(model, summary)
            last_ckpt = time.monotonic()
        if elapsed > config.time_limit_s:
            break
    if val is not None:
        summary.update(validate(model, val, device))
    summary["train_time_s"] = time.monotonic() - start
    if progress:
        progress(1.0, f"done: {step} steps")
    if on_checkpoint:
        on_checkpoint(model, summary)
    model.eval()
    return summary
