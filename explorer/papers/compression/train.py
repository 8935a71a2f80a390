"""Training of convolutional DRAW by the ELBO (discretized logistic likelihood + sum of KL_t), on the shared
training core (:mod:`explorer.core.training`): budget, resume, signals and DDP under torchrun.

Data in a multi-process run: every rank draws its own random crops (its own stream, seeded from the seed, its
rank and the step: nothing to carry in a resume file), the Fashion-MNIST array is split between the ranks, and
the global batch stays ``config.batch`` (``batch / world_size`` per rank), so the loss per sample seen is the same
on any number of processes. Rank 0 alone validates, logs and writes checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from explorer.core.tasks import CancelToken, ProgressFn

from .baselines import psnr_from_mse
from .model import LN2, ConvDRAW, to_model_range


@dataclass
class TrainConfig:
    steps: int = 100000  # upper bound; the wall-clock limit usually ends training first
    time_limit_s: float = 1500.0
    batch: int = 16  # the global batch (all processes together)
    lr: float = 2e-3
    min_lr: float = 1e-4
    warmup: int = 100
    clip: float = 1.0
    seed: int = 0
    log_every: int = 50
    val_every: int = 400
    progressive: float = 0.0  # weight of the mean likelihood of the intermediate canvases (0: the plain ELBO)
    rate_weight: float = 1.0  # beta: the loss weighs the latents' code length by this (1: the ELBO)
    distortion: str = "logistic"  # "mse": rate + lmbda * squared error (a rate-distortion loss), not the ELBO
    lmbda: float = 0.005  # "mse": weight of the mean squared error on the 0..255 scale, per bit per pixel


@dataclass
class TrainData:
    sampler: Any  # .sample(n, rng) -> uint8 (N, H, W, C)
    val: np.ndarray  # fixed uint8 (N, H, W, C) held-out batch
    description: dict[str, Any] = field(default_factory=dict)


def to_tensor(batch: np.ndarray, device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)
    return to_model_range(t).to(device)


def squared_error_255(x: torch.Tensor, canvas: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image on the 0..255 scale (x and canvas in [-1, 1]; the canvas as decoded, clamped)."""
    return ((canvas.clamp(-1.0, 1.0) - x) * 127.5).pow(2).flatten(1).mean(1)


def elbo_terms(
    model: ConvDRAW,
    x: torch.Tensor,
    progressive: float = 0.0,
    rate_weight: float = 1.0,
    distortion: str = "logistic",
    lmbda: float = 0.005,
) -> dict[str, torch.Tensor]:
    """The negative ELBO in nats per sub-pixel (``elbo``) and the training loss.

    ``distortion`` "logistic": the ELBO with the code length weighed by ``rate_weight`` (a rate-distortion
    Lagrangian; 1: the ELBO), plus, with ``progressive`` > 0, that weight times the mean negative log-likelihood
    of x under the canvases of iterations 1..T-1: it asks every prefix of iterations to be a good picture, which
    is what a lossy code that stops after k iterations shows.

    "mse": what PSNR measures. loss = rate_weight * bits per pixel + lmbda * mean squared error (0..255 scale) of
    the final canvas, plus ``progressive`` times lmbda times the mean squared error of the canvases of iterations
    1..T-1; the likelihood's scale head is trained on the side (its gradient does not reach the mean), so the
    ELBO stays a calibrated number to report."""
    mse = distortion == "mse"
    out = model(x, progressive=progressive > 0, detach_scale=mse)
    dims = x[0].numel()
    pixels = x.shape[-1] * x.shape[-2]
    kl, nll = out["kl"], out["nll"]
    elbo = (kl.sum(1) + nll).mean() / dims  # nats per sub-pixel
    sq = squared_error_255(x, out["canvas"])
    if mse:
        rate = kl.sum(1) / pixels / LN2  # bits per pixel
        loss = (rate_weight * rate + lmbda * sq).mean() + nll.mean() / dims
        if progressive > 0 and out["canvases"]:
            loss = loss + progressive * lmbda * torch.stack([squared_error_255(x, c) for c in out["canvases"]]).mean()
    else:
        loss = elbo if rate_weight == 1.0 else (rate_weight * kl.sum(1) + nll).mean() / dims
        if progressive > 0 and out["nll_steps"].shape[1]:
            loss = loss + progressive * out["nll_steps"].mean() / dims
    return {"elbo": elbo, "loss": loss, "kl": kl, "nll": nll, "dims": dims, "pixels": pixels, "mse": sq}


@torch.no_grad()
def validate(model: ConvDRAW, val: np.ndarray, device, batch: int = 32, seed: int = 1234) -> dict[str, Any]:
    """Held-out ELBO in bits/dim and the KL of each iteration in bits per pixel (sampled latents). The latents'
    noise comes from its own seed; the caller's random streams (CPU and GPU) are left as they were."""
    was_training = model.training
    model.eval()
    dev = torch.device(device)
    gpus = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    tot, kls, n, sq = 0.0, None, 0, 0.0
    with torch.random.fork_rng(devices=gpus):
        torch.manual_seed(seed)
        for i in range(0, len(val), batch):
            x = to_tensor(val[i : i + batch], device)
            t = elbo_terms(model, x)
            tot += float((t["kl"].sum(1) + t["nll"]).sum()) / t["dims"]
            k = t["kl"].sum(0) / t["pixels"]
            kls = k if kls is None else kls + k
            sq += float(t["mse"].sum())
            n += x.shape[0]
    model.train(was_training)
    kl_bpp = (kls / n / LN2).tolist()
    return {
        "val_bits_per_dim": tot / n / LN2,
        "val_kl_bpp_per_iteration": [round(v, 5) for v in kl_bpp],
        "val_kl_bpp_total": float(sum(kl_bpp)),
        # the final canvas with the training latents (noisy, not rounded), PSNR of the mean squared error
        "val_psnr": round(psnr_from_mse(sq / n), 3),
    }


def lr_at(cfg: TrainConfig, frac: float, step: int) -> float:
    warm = min(1.0, (step + 1) / max(1, cfg.warmup))
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
    return warm * (cfg.min_lr + (cfg.lr - cfg.min_lr) * cos)


def step_rng(seed: int, rank: int, step: int) -> np.random.Generator:
    """The crops of one step on one rank: a stream of its own, so a resumed run draws what it would have drawn."""
    return np.random.default_rng([int(seed), int(rank), int(step)])


def _agree(world, frac: float, bad: bool):
    """The same schedule fraction on every rank (the largest; elapsed time differs a little between processes),
    and whether any rank's last loss was not finite. One small all-reduce; nothing in one process."""
    if not world.distributed:
        return frac, bad
    import torch.distributed as dist

    where = world.device if world.backend == "nccl" else "cpu"
    t = torch.tensor([float(frac), 1.0 if bad else 0.0], dtype=torch.float64, device=where)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t[0]), bool(t[1] > 0)


def fit(
    model: ConvDRAW,
    data: TrainData,
    device,
    config: TrainConfig,
    progress: ProgressFn | None = None,
    token: CancelToken | None = None,
    on_checkpoint: Callable[[ConvDRAW, dict[str, Any]], None] | None = None,
    run=None,
    resume: str | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` on ``data``; returns {"history", "validation", "final"}.

    ``run`` (a :class:`explorer.core.training.Run`, as the CLI makes it) sets the budget, the world and the resume
    file; without it a one-process run of ``config.steps`` steps or ``config.time_limit_s`` seconds, whichever
    comes first, is made here. ``resume``: a resume file to continue from. The learning rate follows a cosine
    over the fraction of the budget spent (the larger of steps and time). ``on_checkpoint(model, info)`` is called
    on rank 0 after every validation (every ``val_every`` steps) and at the end, after the run has closed (so
    the ``training`` record of the last checkpoint is complete). ``options``: what the run was started with
    (model config and data options), kept in the resume file and checked when resuming."""
    from explorer.core.errors import UserError
    from explorer.core.training import Run, World

    if run is None:
        world = World(device=torch.device(device))
        run = Run(
            world,
            paper="compression",
            minutes=config.time_limit_s / 60.0,
            steps=config.steps,
            progress=progress,
            token=token,
            seed=config.seed,
        )
    world = run.world
    device = world.device
    torch.manual_seed(world.rank_seed(config.seed))  # the latents' noise: a stream of each rank's own
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    per_rank = world.split_batch(config.batch)
    history: list[dict[str, Any]] = []
    vals: list[dict[str, Any]] = []
    acc = {"loss": 0.0, "n": 0}
    started = dict(options or {})
    run.attach(model=model, optimizer=opt)
    run.state_fn = lambda: {"history": history, "validation": vals, "running": dict(acc), "options": started}
    user = run.resume(resume)
    if user:
        before = user.get("options") or {}
        diff = sorted(k for k in set(before) | set(started) if before.get(k) != started.get(k))
        if diff:
            was = ", ".join(f"{k}={before.get(k)!r}" for k in diff)
            raise UserError(
                f"--resume: this run's options differ from the run that wrote {run.resumed_from} "
                f"({was}); resume with the same options"
            )
        history.extend(user.get("history") or [])
        vals.extend(user.get("validation") or [])
        acc.update(user.get("running") or {})
    net = run.wrap(model)
    msg, bad = "", False
    with run:
        while not run.done():
            frac, bad = _agree(world, run.fraction(), bad)
            step = run.step_count
            if bad:
                raise FloatingPointError(f"training diverged at step {step} (loss not finite)")
            for group in opt.param_groups:
                group["lr"] = lr_at(config, frac, step)
            x = to_tensor(data.sampler.sample(per_rank, step_rng(config.seed, world.rank, step)), device)
            terms = elbo_terms(net, x, config.progressive, config.rate_weight, config.distortion, config.lmbda)
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            opt.step()
            bpd = float(terms["elbo"].detach()) / LN2
            bad = not math.isfinite(bpd)
            if bad and not world.distributed:
                raise FloatingPointError(f"training diverged at step {step} (loss {bpd})")
            acc["loss"] += bpd
            acc["n"] += 1
            if (step + 1) % config.log_every == 0:
                kl_bpp = float(terms["kl"].detach().sum(1).mean()) / terms["pixels"] / LN2
                train_bpd = world.mean(acc["loss"] / acc["n"])
                kl_bpp = world.mean(kl_bpp)
                rec = {
                    "step": step + 1,
                    "time_s": round(run.wall_s, 1),
                    "train_bits_per_dim": train_bpd,
                    "train_kl_bpp": kl_bpp,
                    "lr": opt.param_groups[0]["lr"],
                }
                history.append(rec)
                acc.update(loss=0.0, n=0)
                msg = f"step {step + 1} {train_bpd:.3f} bits/dim, KL {kl_bpp:.3f} bpp"
                if config.distortion == "mse":
                    psnr = world.mean(psnr_from_mse(float(terms["mse"].detach().mean())))
                    rec["train_psnr"] = round(psnr, 3)
                    msg += f", {psnr:.2f} dB"
            if (step + 1) % config.val_every == 0 and world.is_main:
                v = validate(model, data.val, device)
                v["step"] = step + 1
                vals.append(v)
                msg = f"step {step + 1} held-out {v['val_bits_per_dim']:.3f} bits/dim, {v['val_psnr']:.2f} dB"
                if on_checkpoint is not None:
                    on_checkpoint(model, {"steps": step + 1, "train_wall_s": round(run.wall_s, 1), **v})
            run.step(samples=config.batch, message=msg)
    if world.distributed and world.any(bad):
        raise FloatingPointError(f"training diverged at step {run.step_count} (loss not finite)")
    model.eval()
    info: dict[str, Any] = {"steps": run.step_count, "train_wall_s": round(run.wall_s, 1), "stop": run.stop_reason}
    if world.is_main:
        v = validate(model, data.val, device)
        v["step"] = run.step_count
        vals.append(v)
        info.update(v)
        if on_checkpoint is not None:
            on_checkpoint(model, info)
        if progress is not None:
            progress(1.0, f"done: {run.step_count} steps, held-out {v['val_bits_per_dim']:.3f} bits/dim")
    return {"history": history, "validation": vals, "final": info}


# ----- data set up for the CLI ------------------------------------------------------------------------------
PRESETS: dict[str, dict[str, Any]] = {
    "photos": {
        "model": {
            "in_channels": 3,
            "hidden": 32,
            "z_channels": 8,
            "iterations": 8,
            "stride": 4,
            "kernel": 3,
            "read_channels": 32,
        },
        "train": {"batch": 8, "crop": 48, "time_limit_s": 1500.0},
        "file": "compression_photos.safetensors",
    },
    "fashion": {
        "model": {
            "in_channels": 1,
            "hidden": 32,
            "z_channels": 4,
            "iterations": 8,
            "stride": 2,
            "kernel": 3,
            "read_channels": 16,
        },
        "train": {"batch": 12, "crop": 28, "time_limit_s": 420.0},
        "file": "compression_fashion.safetensors",
    },
}


def make_data(
    dataset: str,
    crop: int,
    seed: int = 0,
    val_count: int = 64,
    *,
    folder: str | None = None,
    val_fraction: float = 0.1,
    exclude: Sequence[str] = (),
    short_side: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    log: Callable[[str], None] | None = None,
) -> TrainData:
    """The training sampler and the fixed held-out batch. ``folder``: a folder of photos (searched recursively)
    instead of the installed wallpapers; a deterministic part of its files, chosen by a hash of their names, is
    held out (:func:`data.split_by_name_hash`). ``rank``/``world_size``: the Fashion-MNIST training array is
    split between the processes (photo crops are drawn from every photo on every rank, from streams of their
    own)."""
    from . import data as D

    rng = np.random.default_rng(seed + 99)
    side = D.PHOTO_SHORT_SIDE if short_side is None else short_side
    if folder is not None:
        if dataset != "photos":
            from explorer.core.errors import UserError

            raise UserError("--data is a folder of photos for the colour model; leave out --dataset fashion")
        files, excluded = D.folder_images(folder, exclude)
        train_files, hold_files, rule = D.split_by_name_hash(files, folder, val_fraction)
        train_imgs, bad_train = D.load_folder_set(train_files, folder, side, log=log)
        hold_imgs, bad_hold = D.load_folder_set(hold_files, folder, side, log=log)
        if not train_imgs or not hold_imgs:
            from explorer.core.errors import UserError

            raise UserError(
                f"{folder}: {len(train_imgs)} readable training and {len(hold_imgs)} held-out images; "
                "need at least one of each"
            )
        sampler = D.CropSampler(list(train_imgs.values()), crop)
        val = D.CropSampler(list(hold_imgs.values()), crop, what="held-out").sample(val_count, rng)
        desc = {
            "name": f"photos ({Path(folder).name}/, {len(train_imgs)} trained on, {len(hold_imgs)} held out)",
            "folder": str(folder),
            "files": len(files),
            "train_files": len(train_imgs),
            "holdout_files": len(hold_imgs),
            "holdout_rule": rule,
            "holdout_photos": sorted(hold_imgs),
            "excluded": {"patterns": list(exclude), "files": len(excluded)},
            "unreadable": sorted(bad_train + bad_hold),
            "scale": f"short side {side} px" if side else "as found",
            "crop": crop,
            "validation": f"{val_count} crops of the held-out photos (seed {seed + 99})",
        }
        return TrainData(sampler, val, desc)
    if dataset == "photos":
        train_files, hold_files = D.split_photos()
        train_imgs = D.load_photo_set(train_files, side)
        hold_imgs = D.load_photo_set(hold_files, side)
        sampler = D.CropSampler(list(train_imgs.values()), crop)
        val = D.CropSampler(list(hold_imgs.values()), crop, what="held-out").sample(val_count, rng)
        desc = {
            "name": "photos (Debian wallpapers)",
            "train_photos": sorted(train_files),
            "holdout_photos": sorted(hold_files),
            "scale": f"short side {side} px",
            "crop": crop,
            "packages": ["plasma-workspace-wallpapers", "mate-backgrounds"],
        }
        return TrainData(sampler, val, desc)
    if dataset == "fashion":
        tr, te = D.fashion_mnist()
        val = te[rng.choice(len(te), size=max(val_count, 256), replace=False)]
        return TrainData(
            D.ArraySampler(tr[rank::world_size]),
            val,
            {
                "name": "Fashion-MNIST",
                "train": int(len(tr)),
                "validation": "256 test images",
                "packages": ["dataset-fashion-mnist"],
            },
        )
    from explorer.core.errors import UserError

    raise UserError(f"unknown dataset '{dataset}' (choose photos or fashion)")
