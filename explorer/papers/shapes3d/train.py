"""Training from pictures only: the ELBO of the training cameras' pictures given the input view.

loss per shape = sum_k BernoulliNLL(view_k | project(canvas_T, camera_k)) + sum_t KL(q(z_t | view_0) || N(0, I))

The trainer receives a :class:`~.data.ViewSet` (pictures and class labels); volumes never reach it. The loop runs
on the shared training core (:mod:`explorer.core.training`): budget, resume, signals, and DDP under torchrun, where
each process takes its share of every global batch (:class:`~.data.BatchStream`) and the free-bits threshold is
applied to the KL averaged over the global batch, so that one and several processes optimise the same objective.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from explorer.core.tasks import CancelToken, ProgressFn

from .data import BatchStream, ViewSet
from .model import Shapes3D, image_nll, silhouettes

PRESETS: dict[str, dict[str, Any]] = {
    "primitives": {
        "file": "shapes3d_primitives.safetensors",
        "model": dict(steps=6, hidden=256, z_dim=16, patch=16, feat=256, ctx_dim=16, writer="mlp"),
        "train": dict(batch=32, lr=1e-3, time_limit_s=1200.0, kl_max=0.1),
        "n_train": 2000,
        "n_test": 250,
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
    "modelnet": {
        "file": "shapes3d_modelnet.safetensors",
        # The primitives architecture (so --init can start from it) with the full 3D spatial transformer writer:
        # each step's patch is rotated as well as scaled and shifted.
        "model": dict(
            steps=6, hidden=256, z_dim=16, patch=16, feat=256, ctx_dim=16, writer="mlp", writer_rotation=True
        ),
        "train": dict(batch=32, lr=1e-3, time_limit_s=1200.0, kl_max=0.1),
        "rig": "axes+diagonals",
    },
}


@dataclass
class TrainConfig:
    steps: int = 100000  # upper bound; the wall-clock limit usually ends training first
    time_limit_s: float = 1200.0
    batch: int = 32
    lr: float = 1e-3
    min_lr: float = 5e-5
    warmup: int = 50
    clip: float = 20.0
    class_dropout: float = 0.3  # fraction of shapes trained without their class (unconditional model)
    view_dropout: float = 0.25  # fraction trained without the picture as generative context (prior sampling)
    free_bits: float = 1.0  # nats per DRAW step below which the (batch-mean) KL is not penalised
    silhouette_weight: float = 1.0  # extra loss: max-projection silhouettes vs the pictures' silhouettes (2D only)
    kl_warmup: int = 1500  # KL weight rises linearly from 0 to kl_max over these steps (avoids posterior collapse)
    kl_max: float = 1.0  # final KL weight (1 = the ELBO; below 1 a beta-VAE: sharper reconstructions)
    logit_noise: float = 0.0  # optional Gaussian noise on the canvas logits before projecting (training
    # only); it slowed learning in our runs, the silhouette term is used instead
    augment: bool = True
    seed: int = 0
    log_every: int = 25
    val_every: int = 250
    checkpoint_every_s: float = 120.0  # on_checkpoint's period when fit() makes its own Run (else the Run's)


def batch_loss(
    model: Shapes3D,
    views: torch.Tensor,
    labels: torch.Tensor | None,
    sample: bool = True,
    kl_weight: float = 1.0,
    logit_noise: float = 0.0,
    view_mask: torch.Tensor | None = None,
    free_bits: float = 0.0,
    silhouette_weight: float = 0.0,
    global_mean: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """ELBO terms of a batch of pictures (B, K, H, W): nll (B,), kl (B, T), loss (scalar, nats per pixel;
    the KL scaled by ``kl_weight``, 1 = the ELBO), elbo (scalar, detached: mean over the batch).

    ``global_mean`` (distributed training): maps a detached vector of batch means to their means over every
    process's batch. The free-bits threshold then applies to the global batch-mean KL, and ``elbo`` is the
    global mean, as in one process with the whole batch (the loss's gradient, averaged by DDP, is the same)."""
    out = model(views[:, model.input_view], labels, sample=sample, view_mask=view_mask)
    logits = out["logits"]
    if logit_noise > 0:
        logits = logits + logit_noise * torch.randn_like(logits)
    pred = model.render(logits)
    nll = image_nll(pred, views)
    kl = out["kl"]
    elbo = -(nll + kl.sum(1)).detach().mean()
    kl_ref = None
    if global_mean is not None:
        stats = global_mean(torch.cat([kl.detach().mean(0), elbo.view(1)]))
        kl_ref, elbo = stats[:-1], stats[-1]
    if free_bits > 0:
        m = kl.mean(0)
        if kl_ref is None:
            kl_term = m.clamp(min=free_bits).sum()
        else:  # the clamp of the global mean: its value and (averaged over processes) its gradient
            kl_term = torch.where(kl_ref >= free_bits, m, torch.full_like(m, free_bits)).sum()
    else:
        kl_term = kl.sum(1).mean()
    loss = (nll.mean() + kl_weight * kl_term) / views[0].numel()
    if silhouette_weight > 0:
        # The pictures' silhouettes (any grey > 0 is the object) against the max-projection of the volume:
        # fog cannot reach 1 along a ray, so occupancies inside the visual hull become solid.
        sil = silhouettes(out["logits"], model.thetas)
        target = (views > 0.05).to(sil.dtype)
        loss = loss + silhouette_weight * image_nll(sil, target).mean() / views[0].numel()
    return {"loss": loss, "nll": nll, "kl": kl, "pred": pred, "logits": out["logits"], "elbo": elbo}


class Objective(torch.nn.Module):
    """One training step's whole differentiable loss as one module call (what DDP wraps: its parameters are
    the model's, and DDP needs exactly one forward per backward)."""

    def __init__(
        self, model: Shapes3D, config: TrainConfig, global_mean: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.global_mean = global_mean

    def forward(
        self, views: torch.Tensor, labels: torch.Tensor, view_mask: torch.Tensor, kl_weight: float
    ) -> dict[str, torch.Tensor]:
        c = self.config
        return batch_loss(
            self.model,
            views,
            labels,
            kl_weight=kl_weight,
            logit_noise=c.logit_noise,
            view_mask=view_mask,
            free_bits=c.free_bits,
            silhouette_weight=c.silhouette_weight,
            global_mean=self.global_mean,
        )


def _global_mean(world) -> Callable[[torch.Tensor], torch.Tensor] | None:
    if not world.distributed:
        return None
    import torch.distributed as dist

    def mean(t: torch.Tensor) -> torch.Tensor:
        x = t.detach().clone()
        if world.backend != "nccl":
            x = x.cpu()
        dist.all_reduce(x)
        return (x / world.world_size).to(t.device)

    return mean


@torch.no_grad()
def validate(model: Shapes3D, data: ViewSet, device, batch: int = 50, seed: int = 123) -> dict[str, float]:
    """Held-out ELBO (nats per shape, negative) and picture error from pictures only (no volumes)."""
    was = model.training
    model.eval()
    gen = torch.random.get_rng_state()
    torch.manual_seed(seed)
    tot_elbo, tot_err, n = 0.0, 0.0, 0
    for i in range(0, len(data), batch):
        v = torch.from_numpy(data.views[i : i + batch].astype(np.float32) / 255.0).to(device)
        terms = batch_loss(model, v, None, sample=True)
        tot_elbo += float(-(terms["nll"] + terms["kl"].sum(1)).sum())
        tot_err += float((terms["pred"] - v).abs().mean(dim=(1, 2, 3)).sum())
        n += len(v)
    torch.random.set_rng_state(gen)
    model.train(was)
    return {"val_elbo": tot_elbo / max(n, 1), "val_image_error": tot_err / max(n, 1)}


def fit(
    model: Shapes3D,
    data: ViewSet,
    device,
    config: TrainConfig,
    progress: ProgressFn | None = None,
    token: CancelToken | None = None,
    val: ViewSet | None = None,
    on_checkpoint: Callable[[Shapes3D, dict[str, Any]], None] | None = None,
    log: Callable[[str], None] | None = None,
    run: Any | None = None,
    resume: str | Any | None = None,
) -> dict[str, Any]:
    """Train ``model`` on the pictures of ``data`` (a ViewSet: no volumes). Returns a summary dict.

    ``run``: an :class:`explorer.core.training.Run` (budget, resume files, signals, DDP); without one, fit makes
    a one-process Run from ``config.steps``/``config.time_limit_s`` (no resume files). ``resume``: a resume file
    to continue from (model, Adam, every random stream, step counter, the data stream, the smoothed ELBO and
    the validation history). ``config.batch`` is the global batch; each process of ``run.world`` trains on its
    share. Seeds come from ``config.seed``; ``on_checkpoint(model, summary)`` is called every
    ``checkpoint_every`` and at the end, on the main process only (the caller saves).
    """
    from explorer.core.training import Run, World

    if not isinstance(data, ViewSet) or hasattr(data, "voxels"):
        raise TypeError("fit() trains from pictures only: pass a ViewSet (ShapeSet.training_views())")
    if run is None:
        dev = torch.device(device) if not isinstance(device, torch.device) else device
        run = Run(
            World(device=dev),
            paper="shapes3d",
            minutes=config.time_limit_s / 60.0,
            steps=config.steps,
            checkpoint_every_min=config.checkpoint_every_s / 60.0,
            progress=progress or (lambda f, m: None),
            token=token,
            seed=config.seed,
        )
    world = run.world
    device = world.device if world.device is not None else device
    world.split_batch(config.batch, "the batch")  # a UserError when it does not split evenly
    torch.manual_seed(world.rank_seed(config.seed))
    rng = np.random.default_rng(config.seed)  # the same on every process: each takes its share
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    batches = BatchStream(data, config.batch, rng, augment=config.augment, rank=world.rank, world_size=world.world_size)
    run.attach(model=model, optimizer=opt)
    user = run.resume(resume)
    summary: dict[str, Any] = {"config": asdict(config), "steps": run.step_count, "history": []}
    ema: float | None = None
    if user:
        batches.load_state_dict(user["stream"])
        ema = user.get("ema")
        summary.update(user.get("summary", {}))
        summary["config"] = asdict(config)
    run.state_fn = lambda: {
        "stream": batches.state_dict(),
        "ema": ema,
        "summary": {k: v for k, v in summary.items() if k != "config"},
    }
    net = run.wrap(Objective(model, config, _global_mean(world)))
    last_ckpt = time.monotonic()
    every_s = run.checkpoint_every_s
    msg = ""
    with run:
        while not run.done():
            if token is not None:
                token.check()
            step = run.step_count + 1
            frac = 0.0
            if run.max_steps:
                frac = step / run.max_steps
            if run.minutes:  # every process's own clock: agree on one value, else their weights drift apart
                frac = max(frac, world.mean(run.wall_s) / (60.0 * run.minutes))
            frac = min(1.0, frac)
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
            terms = net(views, labels, vmask, beta)
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            opt.step()
            elbo = float(terms["elbo"])
            ema = elbo if ema is None else 0.95 * ema + 0.05 * elbo
            summary["steps"] = step
            summary["train_elbo"] = ema
            elapsed = run.wall_s
            if step % config.log_every == 0:
                kl = float(terms["kl"].detach().sum(1).mean())
                msg = f"step {step} elbo {ema:.1f} kl {kl:.1f} beta {beta:.2f} lr {lr:.2g} {elapsed:.0f}s"
                if log and world.is_main:
                    log(msg)
            if val is not None and step % config.val_every == 0 and world.is_main:
                m = validate(model, val, device)
                summary.update(m)
                summary["history"].append({"step": step, "time_s": round(elapsed, 1), **m})
                if log:
                    log(f"val step {step}: elbo {m['val_elbo']:.1f} image error {m['val_image_error']:.4f}")
            summary["train_time_s"] = elapsed
            if on_checkpoint and world.is_main and time.monotonic() - last_ckpt > every_s:
                on_checkpoint(model, summary)
                last_ckpt = time.monotonic()
            run.step(samples=config.batch, message=msg)
    summary["stop"] = run.stop_reason
    if val is not None and world.is_main:
        summary.update(validate(model, val, device))
    summary["train_time_s"] = run.wall_s
    if progress:
        progress(1.0, f"done: {run.step_count} steps")
    if on_checkpoint and world.is_main:
        on_checkpoint(model, summary)
    model.eval()
    return summary
