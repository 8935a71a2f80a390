"""Training of convolutional DRAW by the ELBO (discretized logistic likelihood + sum of KL_t)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from explorer.core.tasks import CancelToken, ProgressFn
from .model import LN2, ConvDRAW, to_model_range


@dataclass
class TrainConfig:
    steps: int = 100000           # upper bound; the wall-clock limit usually ends training first
    time_limit_s: float = 1500.0
    batch: int = 16
    lr: float = 2e-3
    min_lr: float = 1e-4
    warmup: int = 100
    clip: float = 1.0
    seed: int = 0
    log_every: int = 50
    val_every: int = 400
    checkpoint_every_s: float = 120.0


@dataclass
class TrainData:
    sampler: Any                    # .sample(n, rng) -> uint8 (N, H, W, C)
    val: np.ndarray                 # fixed uint8 (N, H, W, C) held-out batch
    description: Dict[str, Any] = field(default_factory=dict)


def to_tensor(batch: np.ndarray, device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)
    return to_model_range(t).to(device)


def elbo_terms(model: ConvDRAW, x: torch.Tensor) -> Dict[str, torch.Tensor]:
    out = model(x)
    dims = x[0].numel()
    pixels = x.shape[-1] * x.shape[-2]
    kl, nll = out["kl"], out["nll"]
    loss = (kl.sum(1) + nll).mean() / dims           # nats per sub-pixel
    return {"loss": loss, "kl": kl, "nll": nll, "dims": dims, "pixels": pixels}


@torch.no_grad()
def validate(model: ConvDRAW, val: np.ndarray, device, batch: int = 32, seed: int = 1234) -> Dict[str, Any]:
    """Held-out ELBO in bits/dim and the KL of each iteration in bits per pixel (sampled latents)."""
    was_training = model.training
    model.eval()
    g = torch.random.get_rng_state()
    torch.manual_seed(seed)
    tot, kls, n = 0.0, None, 0
    for i in range(0, len(val), batch):
        x = to_tensor(val[i:i + batch], device)
        t = elbo_terms(model, x)
        tot += float((t["kl"].sum(1) + t["nll"]).sum()) / t["dims"]
        k = t["kl"].sum(0) / t["pixels"]
        kls = k if kls is None else kls + k
        n += x.shape[0]
    torch.random.set_rng_state(g)
    model.train(was_training)
    kl_bpp = (kls / n / LN2).tolist()
    return {"val_bits_per_dim": tot / n / LN2, "val_kl_bpp_per_iteration": [round(v, 5) for v in kl_bpp],
            "val_kl_bpp_total": float(sum(kl_bpp))}


def lr_at(cfg: TrainConfig, frac: float, step: int) -> float:
    warm = min(1.0, (step + 1) / max(1, cfg.warmup))
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
    return warm * (cfg.min_lr + (cfg.lr - cfg.min_lr) * cos)


def fit(model: ConvDRAW, data: TrainData, device, config: TrainConfig,
        progress: Optional[ProgressFn] = None, token: Optional[CancelToken] = None,
        on_checkpoint: Optional[Callable[[ConvDRAW, Dict[str, Any]], None]] = None,
        is_main: bool = True) -> Dict[str, Any]:
    """Train ``model`` on ``data`` until config.steps or config.time_limit_s, whichever comes first.
    The learning rate follows a cosine over the larger of the step and time fractions. Returns history.
    ``on_checkpoint(model, info)`` is called (rank 0 only) every ``checkpoint_every_s`` and at the end."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    t0 = last_ckpt = time.time()
    history: List[Dict[str, Any]] = []
    vals: List[Dict[str, Any]] = []
    run_loss, run_n, step = 0.0, 0, 0
    info: Dict[str, Any] = {}
    for step in range(config.steps):
        if token is not None:
            token.check()
        elapsed = time.time() - t0
        frac = max(step / config.steps, elapsed / config.time_limit_s)
        if frac >= 1.0:
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(config, frac, step)
        x = to_tensor(data.sampler.sample(config.batch, rng), device)
        terms = elbo_terms(model, x)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        opt.step()
        bpd = float(terms["loss"].detach()) / LN2
        if not math.isfinite(bpd):
            raise FloatingPointError(f"training diverged at step {step} (loss {bpd})")
        run_loss += bpd
        run_n += 1
        if (step + 1) % config.log_every == 0:
            kl_bpp = float(terms["kl"].detach().sum(1).mean()) / terms["pixels"] / LN2
            rec = {"step": step + 1, "time_s": round(time.time() - t0, 1), "train_bits_per_dim": run_loss / run_n,
                   "train_kl_bpp": kl_bpp, "lr": opt.param_groups[0]["lr"]}
            history.append(rec)
            run_loss, run_n = 0.0, 0
            if progress is not None:
                progress(frac, f"step {step + 1} {rec['train_bits_per_dim']:.3f} bits/dim, KL {kl_bpp:.3f} bpp")
        if (step + 1) % config.val_every == 0:
            v = validate(model, data.val, device)
            v["step"] = step + 1
            vals.append(v)
            if progress is not None:
                progress(frac, f"step {step + 1} held-out {v['val_bits_per_dim']:.3f} bits/dim")
        if is_main and on_checkpoint is not None and time.time() - last_ckpt > config.checkpoint_every_s:
            info = {"steps": step + 1, "train_wall_s": round(time.time() - t0, 1)}
            on_checkpoint(model, info)
            last_ckpt = time.time()
    v = validate(model, data.val, device)
    v["step"] = step + 1
    vals.append(v)
    info = {"steps": step + 1, "train_wall_s": round(time.time() - t0, 1), **v}
    if is_main and on_checkpoint is not None:
        on_checkpoint(model, info)
    if progress is not None:
        progress(1.0, f"done: {step + 1} steps, held-out {v['val_bits_per_dim']:.3f} bits/dim")
    model.eval()
    return {"history": history, "validation": vals, "final": info}


# ----- data set up for the CLI ------------------------------------------------------------------------------
PRESETS: Dict[str, Dict[str, Any]] = {
    "photos": {"model": {"in_channels": 3, "hidden": 32, "z_channels": 8, "iterations": 8, "stride": 4,
                         "kernel": 3, "read_channels": 32},
               "train": {"batch": 8, "crop": 48, "time_limit_s": 1500.0},
               "file": "compression_photos.safetensors"},
    "fashion": {"model": {"in_channels": 1, "hidden": 32, "z_channels": 4, "iterations": 8, "stride": 2,
                          "kernel": 3, "read_channels": 16},
                "train": {"batch": 12, "crop": 28, "time_limit_s": 420.0},
                "file": "compression_fashion.safetensors"},
}


def make_data(dataset: str, crop: int, seed: int = 0, val_count: int = 64) -> TrainData:
    from . import data as D

    rng = np.random.default_rng(seed + 99)
    if dataset == "photos":
        train_files, hold_files = D.split_photos()
        train_imgs = D.load_photo_set(train_files)
        hold_imgs = D.load_photo_set(hold_files)
        sampler = D.CropSampler(list(train_imgs.values()), crop)
        val = D.CropSampler(list(hold_imgs.values()), crop).sample(val_count, rng)
        desc = {"name": "photos (Debian wallpapers)", "train_photos": sorted(train_files),
                "holdout_photos": sorted(hold_files), "scale": f"short side {D.PHOTO_SHORT_SIDE} px",
                "crop": crop, "packages": ["plasma-workspace-wallpapers", "mate-backgrounds"]}
        return TrainData(sampler, val, desc)
    if dataset == "fashion":
        tr, te = D.fashion_mnist()
        val = te[rng.choice(len(te), size=max(val_count, 256), replace=False)]
        return TrainData(D.ArraySampler(tr), val, {"name": "Fashion-MNIST", "train": int(len(tr)),
                                                   "validation": "256 test images",
                                                   "packages": ["dataset-fashion-mnist"]})
    from explorer.core.errors import UserError

    raise UserError(f"unknown dataset '{dataset}' (choose photos or fashion)")
