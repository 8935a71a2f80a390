"""Training: one loop, ``fit(model, data, device, config, progress, token)``; no globals.

Targets are block alignments: at first those given by the known digit ends ("boundary"), then, with
``align="dp"``, the model's own approximately best alignments (paper Sec. 3.5). Because every training utterance
is generated fresh, there is nothing to cache: each batch is aligned with the current parameters just before the
update (the paper refreshed a cache every 100-300 sequences; this is the limit of that schedule).

The loop runs on the shared training core (:class:`explorer.core.training.Run`): ``train transducer`` hands
``fit`` its run (budget, resume file, signals, DDP under torchrun); the app's enrollment and the tests call ``fit``
without one and get a private single-process run. Under torchrun every rank draws its own utterance stream
(``TrainData.rank``) for ``batch / world_size`` utterances per step, and the loss is normalised by the tokens of
the whole global batch, so that the averaged gradient is the one of a single process reading all of it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .data import Utterance, UtteranceSource
from .model import Transducer, boundary_alignment

TRAIN_DEFAULTS: dict = dict(
    steps=3000,
    batch=24,
    lr=2e-3,
    lr_final=1e-4,
    clip=1.0,
    seed=0,
    align="boundary",
    dp_start=0,
    minutes=None,
    checkpoint_every=250,
    log_every=25,
    augment=False,
    vtlp=(0.88, 1.12),
    eq_std=(1.0, 0.6, 0.4, 0.3),
    freq_masks=2,
    freq_mask_max=6,
    time_masks=2,
    time_mask_max=8,
    ema=0.0,
)


@dataclass
class TrainData:
    source: UtteranceSource
    seed: int = 0
    rank: int = 0  # for data-parallel runs: each rank draws its own stream

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng([self.seed, self.rank])

    def batch(self, n: int) -> list[Utterance]:
        return self.source.batch(self.rng, n)


@torch.no_grad()
def set_normalization(model: Transducer, data: TrainData, n: int = 150) -> None:
    """Global per-mel mean/std from ``n`` training utterances (stored as buffers in the checkpoint)."""
    utts = data.batch(n)
    feats = torch.cat([model.logmel(torch.from_numpy(u.audio)[None])[0] for u in utts])
    model.feat_mean.copy_(feats.mean(0))
    model.feat_std.copy_(feats.std(0).clamp(min=1e-3))


def augmented_features(model: Transducer, utts: list[Utterance], rng: np.random.Generator, cfg: dict):
    """Training features with speaker and channel augmentation, for voices never heard in training:

    * VTLP: each utterance's spectrum warped by a random factor (vocal tract length);
    * channel colouring: a smooth random log-gain curve over the mel bands (microphone, room);
    * SpecAugment: a few mel bands and short runs of frames masked (set to the normalised mean).
    The audio's known digit boundaries are unchanged, so the boundary alignments still hold."""
    feats = []
    n_mels = model.cfg["n_mels"]
    mel_pos = (torch.arange(n_mels, dtype=torch.float32) + 0.5) / n_mels
    eq_std = np.asarray(cfg["eq_std"], dtype=np.float64)
    basis = torch.cos(math.pi * torch.arange(len(eq_std), dtype=torch.float32)[:, None] * mel_pos[None])
    for u in utts:
        a = model.with_flush(torch.from_numpy(u.audio).to(model.feat_mean.device))
        f = model.logmel(a[None], warp=float(rng.uniform(*cfg["vtlp"])))[0]
        curve = torch.tensor(rng.normal(0.0, eq_std), dtype=torch.float32) @ basis
        feats.append(f + curve.to(f.device))
    x, lengths = model.pad_normalize(feats)
    for i in range(x.shape[0]):
        for _ in range(cfg["freq_masks"]):
            w = int(rng.integers(0, cfg["freq_mask_max"] + 1))
            f0 = int(rng.integers(0, n_mels - w + 1))
            x[i, :, f0 : f0 + w] = 0.0
        T = int(lengths[i])
        for _ in range(cfg["time_masks"]):
            w = int(rng.integers(0, cfg["time_mask_max"] + 1))
            if T > w:
                t0 = int(rng.integers(0, T - w + 1))
                x[i, t0 : t0 + w] = 0.0
    return x, lengths


class _WeightAverage:
    """Exponential moving average of the parameters (buffers are copied as they are). Averaging weights along
    the end of training finds flatter minima, which generalise better to data unlike the training set (here:
    voices never heard); the decay's warm-up, min(decay, (1 + n) / (10 + n)), lets early steps count less."""

    def __init__(self, model: Transducer, decay: float) -> None:
        self.decay, self.n = decay, 0
        self.params = {k: p.detach().clone() for k, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: Transducer) -> None:
        self.n += 1
        d = min(self.decay, (1 + self.n) / (10 + self.n))
        for k, p in model.named_parameters():
            self.params[k].mul_(d).add_(p.detach(), alpha=1.0 - d)

    @torch.no_grad()
    def copy_to(self, model: Transducer) -> None:
        for k, p in model.named_parameters():
            p.copy_(self.params[k])


def alignments_for(model: Transducer, utts: list[Utterance], enc, keys, enc_len, mode: str):
    base = [boundary_alignment([e for _, e in u.bounds], u.digits, int(n), model) for u, n in zip(utts, enc_len)]
    if mode != "dp":
        return base, {}
    res = model.best_alignments(enc.detach(), keys.detach(), enc_len, [u.digits for u in utts])
    out, moved, total, shift = [], 0, 0, 0
    for b_al, r in zip(base, res):
        if r is None:
            out.append(b_al)
            continue
        al = r[0]
        out.append(al)
        bb = [b for b, ds in enumerate(b_al) for _ in ds]
        db = [b for b, ds in enumerate(al) for _ in ds]
        moved += sum(x != y for x, y in zip(bb, db))
        shift += sum(y - x for x, y in zip(bb, db))
        total += len(bb)
    return out, {"dp_moved": moved / max(1, total), "dp_shift_blocks": shift / max(1, total)}


class AlignedLoss(torch.nn.Module):
    """The differentiable part of one step as one module (what DDP wraps: one forward per backward): encode,
    align with the current weights (no gradient; the DP search or the digit boundaries), and the summed
    -log p(alignment). Its parameters are the model's."""

    def __init__(self, model: Transducer) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, utts: list[Utterance], mode: str):
        lengths = lengths.cpu()  # DDP moves tensor inputs to the GPU; the lengths are read on the host
        enc, keys, enc_len, _ = self.model.encode(x, lengths)
        als, stats = alignments_for(self.model, utts, enc, keys, enc_len, mode)
        nll, n_tok = self.model.alignment_nll(enc, keys, enc_len, als)
        return nll, n_tok, stats


def _rng_states(data: TrainData, aug_rng: np.random.Generator) -> dict[str, Any]:
    return {"data": data.rng.bit_generator.state, "aug": aug_rng.bit_generator.state}


def fit(
    model: Transducer,
    data: TrainData,
    device,
    config: dict,
    progress: Callable | None = None,
    token=None,
    on_checkpoint: Callable[[Transducer, dict], None] | None = None,
    run=None,
    resume: str | None = None,
) -> dict:
    """Train ``model`` on ``data``; returns a history dict. Stops at ``steps`` or after ``minutes``.

    ``config["batch"]`` is the global batch: each of the run's ``world_size`` processes draws its share.
    ``run``: a :class:`explorer.core.training.Run` (the CLI's: its budget, resume file, signals, progress bar and
    DDP; ``device`` is then its world's); without one, a private single-process run with ``config``'s steps and
    minutes, ``progress`` and ``token``. ``resume``: a resume file to continue (weights, Adam, step, RNGs of
    torch and of every rank's utterance and augmentation streams, the weight average, the history)."""
    from explorer.core.training import Run, World

    cfg = dict(TRAIN_DEFAULTS)
    cfg.update(config or {})
    steps = int(cfg["steps"])
    own = run is None
    if own:
        run = Run(
            World(device=torch.device(device)),
            paper="transducer",
            minutes=cfg["minutes"] or None,
            steps=steps,
            token=token,
            seed=cfg["seed"],
        )
    world = run.world
    device = world.device
    per_rank = world.split_batch(int(cfg["batch"]))
    torch.manual_seed(cfg["seed"])
    aug_rng = np.random.default_rng([cfg["seed"], 7919, data.rank])
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    hist: dict = {"loss": [], "step_s": [], "dp_moved": []}
    ema, dp_ema = None, None
    avg = _WeightAverage(model, float(cfg["ema"])) if cfg["ema"] else None

    run.attach(model=model, optimizer=opt)
    # the core calls state_fn on every rank when it saves: each rank's data streams are gathered then
    run.state_fn = lambda: {
        "loss_ema": ema,
        "dp_ema": dp_ema,
        "hist": hist,
        "rank_rngs": world.gather_objects(_rng_states(data, aug_rng)),
        "avg": None if avg is None else {"n": avg.n, "params": avg.params},
    }
    user = run.resume(resume)
    if user:
        ema, dp_ema = user.get("loss_ema"), user.get("dp_ema")
        hist = {k: list(v) for k, v in user.get("hist", hist).items()}
        if avg is not None and user.get("avg"):
            avg.n = int(user["avg"]["n"])
            avg.params = {k: v.to(device) for k, v in user["avg"]["params"].items()}
        saved = user.get("rank_rngs") or []
        if len(saved) == world.world_size:
            data.rng.bit_generator.state = saved[world.rank]["data"]
            aug_rng.bit_generator.state = saved[world.rank]["aug"]
        else:  # another number of processes wrote it: fresh streams, distinct from the ones already used
            data.rng = np.random.default_rng([data.seed, data.rank, run.step_count])
            aug_rng = np.random.default_rng([cfg["seed"], 7919, data.rank, run.step_count])
    net = run.wrap(AlignedLoss(model))

    with contextlib.nullcontext() if own else run:
        while not run.done():
            if token is not None:
                token.check()
            step = run.step_count + 1
            # cosine decay over the budget: the share of the steps this step completes, or of the time spent
            frac = max(step / steps, run.fraction())
            lr = cfg["lr_final"] + 0.5 * (cfg["lr"] - cfg["lr_final"]) * (1 + math.cos(math.pi * min(1.0, frac)))
            for g in opt.param_groups:
                g["lr"] = lr
            ts = time.perf_counter()
            utts = data.batch(per_rank)
            if cfg["augment"]:
                x, lengths = augmented_features(model, utts, aug_rng, cfg)
            else:
                x, lengths = model.features([torch.from_numpy(u.audio) for u in utts])
            x = x.to(device)
            mode = cfg["align"] if step > cfg["dp_start"] else "boundary"
            nll, n_tok, stats = net(x, lengths, utts, mode)
            if world.distributed:  # normalise by the global batch's tokens: DDP's mean is then sum(nll) / sum(n)
                loss = nll * (world.world_size / (world.mean(n_tok) * world.world_size))
            else:
                loss = nll / n_tok
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip"])
            opt.step()
            if avg is not None:
                avg.update(model)
            v = world.mean(float(loss.detach()))
            ema = v if ema is None else 0.98 * ema + 0.02 * v
            if stats:
                dp_ema = stats["dp_moved"] if dp_ema is None else 0.95 * dp_ema + 0.05 * stats["dp_moved"]
            hist["step_s"].append(time.perf_counter() - ts)
            if step % cfg["log_every"] == 0 or step == 1:
                hist["loss"].append((step, ema))
                if dp_ema is not None:
                    hist["dp_moved"].append((step, dp_ema))
            msg = f"step {step} loss {ema:.3f} lr {lr:.1e}" + (f" dp-moved {dp_ema:.2f}" if dp_ema is not None else "")
            if on_checkpoint is not None and world.is_main and step % cfg["checkpoint_every"] == 0:
                model.eval()
                on_checkpoint(model, {"step": step, "loss": ema})
                model.train()
            run.step(samples=per_rank * world.world_size, message=msg)
            if own and progress is not None:
                progress(run.fraction(), msg)
    model.eval()
    if avg is not None:  # the averaged weights become the model; the last iterate is kept for comparison
        hist["last_iterate"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        avg.copy_to(model)
    hist["steps_done"] = run.step_count
    hist["wall_s"] = run.wall_s
    hist["final_loss"] = ema
    hist["dp_moved_final"] = dp_ema
    hist["stop"] = run.stop_reason
    return hist
