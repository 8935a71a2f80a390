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
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import SPEC
from . import data as D
from . import voices as V
from .align import best_alignments, boundary_alignment
from .augment import Augment, UtteranceSource
from .data import Utterance
from .model import Transducer
from .testsets import fluent_test_phrases, test_utterances

PAPER = SPEC.id

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
    per = [model.logmel(torch.from_numpy(u.audio)[None])[0] for u in utts]
    feats = torch.cat(per)
    model.feat_mean.copy_(feats.mean(0))
    model.feat_std.copy_(feats.std(0).clamp(min=1e-3))
    if model.cfg["norm"] == "pcen":  # PCEN's own spread
        model.feat_std.copy_(torch.cat([model.pcen(f) for f in per]).std(0).clamp(min=1e-3))


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
    res = best_alignments(model, enc.detach(), keys.detach(), enc_len, [u.digits for u in utts])
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
            paper=PAPER,
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


# ---------------------------------------------------------------- the command: nips-explorer train transducer
def main(args) -> int:
    """``nips-explorer train transducer``: gather the voices, train, evaluate on the held-out sets, save."""
    from explorer.core.errors import UserError
    from explorer.core.training import init_world

    held = [s.strip() for s in args.holdout.lower().split(",") if s.strip()]
    for s in held:
        if s not in D.SPEAKERS:
            raise UserError(f"--holdout {s}: not an FSDD speaker (one of {', '.join(D.SPEAKERS)})")
    train_spk = [s for s in D.SPEAKERS if s not in held]
    if not train_spk:
        raise UserError("--holdout: at least one FSDD speaker must stay in training")
    resume_cfg = resume_config(args.resume) if args.resume else None
    world = init_world(getattr(args, "device", "auto"), args.threads)
    try:
        return _run(args, world, held, train_spk, resume_cfg)
    finally:
        world.close()


def resume_config(path) -> dict:
    """The model config recorded in the resume file ``path`` (or the one beside checkpoint ``path``), read before
    any data is loaded: a resumed run rebuilds the model it continues, whatever the architecture options say."""
    from explorer.core.checkpoints import read_metadata
    from explorer.core.errors import UserError
    from explorer.core.training import is_resume_file, resume_path_for

    p = Path(path)
    if not is_resume_file(p) and resume_path_for(p).exists():
        p = resume_path_for(p)
    meta = read_metadata(p)
    if meta.paper != PAPER:
        raise UserError(f"--resume {p.name}: a {meta.paper or 'unknown'} file, not a transducer run")
    return dict(meta.model_config or {})


def _run(args, world, held, train_spk, resume_cfg) -> int:
    from explorer.core.checkpoints import load_model
    from explorer.core.errors import UserError
    from explorer.core.paths import training_output
    from explorer.core.progress import TerminalProgress
    from explorer.core.training import Run, seed_all

    from .model import DEFAULT_CONFIG, OFFLINE_CONFIG, build

    is_main = world.is_main

    def say(msg: str) -> None:  # rank 0 alone talks
        if is_main:
            print(msg, file=sys.stderr)

    def bar(desc: str) -> TerminalProgress:
        return TerminalProgress(desc, disable=not is_main)

    world.split_batch(args.batch)
    seed_all(args.seed)
    holdout = ",".join(held)
    t_start = time.perf_counter()
    if not is_main:
        world.barrier()  # rank 0 synthesizes the voices and fills the caches first; the others then read them
    clips = D.load_fsdd(args.data, speakers=train_spk, indices=range(5, 50))
    n_fsdd = len(clips)
    n_other = {"espeak": 0, "tts": 0, "extra": 0, "more": 0}
    more_voices = []
    if args.espeak_weight > 0:
        voices = [("espeak", "espeak-ng", V.espeak_available(), V.espeak_clips)]
        if not args.no_tts:
            voices.append(("tts", "flite/festival", bool(V.tts_voices()), V.tts_clips))
        if args.more_voices:
            more_voices = V.more_voices()
            voices.append(
                (
                    "more",
                    "MBROLA/Pico/RHVoice",
                    bool(more_voices),
                    lambda progress: V.tts_clips(voices=more_voices, progress=progress),
                )
            )
        for key, label, available, load in voices:
            if not available:
                say(f"{label} not found: no {label} voices")
                continue
            with bar(f"{label} digits") as b:
                more = load(progress=b)
            clips += more
            n_other[key] = len(more)
        if not args.no_extra_voices:
            extra = V.extra_voice_clips()
            clips += extra
            n_other["extra"] = len(extra)
    other_weight = args.espeak_weight if sum(n_other.values()) else 0.0
    more_train, more_test, more_skipped, n_more = [], [], [], 0
    if args.more_data:
        with bar("more real voices") as b:
            more_clips, more_skipped = D.load_digit_folders(args.more_data, progress=b)
        names = sorted({c.speaker for c in more_clips})
        more_train, more_test = D.split_speakers(names, args.more_test_share)
        for s in D.speaker_list(args.more_holdout):
            if s not in names:
                raise UserError(f"--more-holdout {s}: no such speaker in --more-data")
            if s in more_train:
                more_train.remove(s)
                more_test.append(s)
        train_set = set(more_train)
        more_clips = [c for c in more_clips if c.speaker in train_set]
        n_more = len(more_clips)
        clips += more_clips
        say(
            f"more real voices: {len(more_train)} speakers ({n_more} clips) train, {len(more_test)} held out; "
            f"{len(more_skipped)} files skipped"
        )
    fluent = []
    if args.fluent_weight > 0:
        with bar("fluent digit strings") as b:
            fluent = V.fluent_phrases(n=args.fluent_phrases, progress=b)
        if not fluent:
            say("libespeak-ng not found: no fluent digit strings")
    if is_main:
        world.barrier()
    aug = Augment(
        p_channel=args.channel,
        p_formant=args.formant,
        p_crop=args.crop,
        p_tight=args.tight,
        p_robust=args.robust,
        **({"speed": (0.85, 1.15)} if args.augment else {}),
    )
    source = UtteranceSource(
        clips,
        aug,
        espeak_weight=other_weight,
        fluent=fluent,
        fluent_weight=args.fluent_weight,
        more=more_train,
        more_weight=args.more_weight if more_train else 0.0,
        nonspeech_weight=args.nonspeech,
    )
    data = TrainData(source, seed=args.seed, rank=world.rank)  # each rank its own utterance stream
    if resume_cfg:  # the weights, normalisation included, come from the resume file
        model = build(resume_cfg)
    elif args.init:
        model, meta = load_model(args.init, PAPER, build, "cpu")
        if not isinstance(model, Transducer):
            raise UserError(f"--init {meta.name}: an ensemble trains no further; --init one of its members")
    else:
        cfg = dict(OFFLINE_CONFIG if args.offline else DEFAULT_CONFIG)
        cfg.update(enc_hidden=args.hidden, dec_hidden=args.hidden, attention=args.attention)
        cfg.update(block=args.block, max_per_block=args.max_per_block if args.block > 0 else 10, norm=args.norm)
        for key in ("ceps", "dropout", "frontend"):
            if getattr(args, key) is not None:
                cfg[key] = getattr(args, key)
        model = build(cfg)
        set_normalization(model, data)  # rank 0's is used: DDP hands its buffers to every rank
    out = (
        Path(args.out)
        if args.out
        else training_output("transducer_offline.safetensors" if args.offline else SPEC.default_checkpoint)
    )
    data_meta = {
        "name": "FSDD connected digits" + (f" (leave out {holdout})" if holdout else ""),
        "train_speakers": train_spk,
        "train_indices": "5-49",
        "fsdd_clips": n_fsdd,
        "espeak_clips": n_other["espeak"],
        "tts_clips": n_other["tts"],
        "tts_voices": sorted({c.speaker for c in clips if c.speaker.startswith(("flite-", "festival-"))}),
        "more_voices": sorted({f"{e}-{v}" for e, v in more_voices} & {c.speaker for c in clips}),
        "extra_voices": sorted({c.speaker for c in clips if c.speaker in V.EXTRA_VOICES}),
        "espeak_weight": other_weight,
        "fluent_phrases": len(fluent),
        "fluent_weight": source.fluent_weight,
        "holdout": holdout or None,
        "channel_shelf_share": args.channel,
        "formant_warp_share": args.formant,
        "clip_crop_share": args.crop,
        "tight_share": args.tight,
        "nonspeech_share": args.nonspeech,
        "input_fault_share": args.robust,
        "more_data": [Path(d).name for d in args.more_data],
        "more_train_speakers": len(more_train),
        "more_clips": n_more,
        "more_weight": args.more_weight if more_train else 0.0,
        "more_test_speakers": sorted(more_test),
        "more_files_skipped": len(more_skipped),
    }
    tcfg = dict(
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        minutes=args.minutes,
        align=args.align,
        dp_start=args.dp_start,
        augment=bool(args.augment),
        ema=args.ema,
    )
    run = Run(
        world,
        paper=PAPER,
        out=out,
        minutes=args.minutes,
        steps=args.steps,
        checkpoint_every_min=args.checkpoint_every,
        log=say,
        progress_desc="train transducer",
        seed=args.seed,
    )

    def save(m, info, metrics=None):
        run.save_model(
            out,
            m.state_dict(),
            model_config=m.cfg,
            metrics=metrics or {"headline": "train_loss", "train_loss": info.get("loss"), "step": info.get("step")},
            data=data_meta,
            extra={"train": tcfg},
        )

    say(
        f"training on {world.describe()}: {args.batch} utterances per step"
        + (f" ({args.batch // world.world_size} per process)" if world.distributed else "")
    )
    hist = fit(model, data, world.device, tcfg, on_checkpoint=save, run=run, resume=args.resume)
    train_wall = time.perf_counter() - t_start
    world.close()  # the processes are done together; rank 0 evaluates and writes alone
    if not is_main:
        return 0
    model.to("cpu").eval()
    if hist["stop"] == "signal":  # stopped by Ctrl+C / SIGTERM: the weights so far, no evaluation
        save(model, {"step": hist["steps_done"], "loss": hist["final_loss"]})
        print(
            json.dumps(
                {
                    "checkpoint": str(out),
                    "stopped": "signal",
                    "train_steps": hist["steps_done"],
                    "resume": str(run.resume_file),
                },
                indent=2,
            )
        )
        return 0
    metrics = {
        "headline": "digit_error_rate",
        "train_steps": hist["steps_done"],
        "train_wall_s": round(train_wall, 1),
        "train_final_loss": hist["final_loss"],
        "dp_moved_final": hist.get("dp_moved_final"),
    }
    last = hist.get("last_iterate")  # --ema: the same test sets are read by the last iterate too
    if last is not None:
        metrics["ema_decay"] = args.ema
    metrics.update(heldout_metrics(model, args, train_spk, held, more_test, last_iterate=last))
    save(model, {}, metrics)
    print(json.dumps({"checkpoint": str(out), **metrics}, indent=2))
    return 0


def heldout_metrics(model, args, train_spk, held, more_test, last_iterate=None) -> dict:
    """What every trained model (and every ensemble) is scored on, rank 0 alone: FSDD test recordings (indices 0-4)
    of the training speakers and all recordings of a held-out one (``args.eval_utts`` utterances each, twice as
    many for a held-out speaker), fluent strings in the held-out demo voices, and the held-out --more-data
    speakers (:func:`unheard_metrics`). ``last_iterate``: a state dict read on the same test sets too (--ema)."""
    from explorer.core.progress import TerminalProgress

    from .evaluate import evaluate_utterances

    holdout = ",".join(held)
    test = D.load_fsdd(args.data, speakers=train_spk, indices=range(0, 5))
    utts = test_utterances(test, args.eval_utts)
    for s in held:
        utts += test_utterances(D.load_fsdd(args.data, speakers=[s]), args.eval_utts * 2)
    fluent_test = fluent_test_phrases(args.eval_utts // 3) if args.eval_utts >= 3 else []
    with TerminalProgress("evaluate") as b:
        ev = evaluate_utterances(model, utts, progress=b)
        ev_fluent = evaluate_utterances(model, fluent_test) if fluent_test else None
    metrics: dict = {"real_time_factor": ev["real_time_factor"], "emission_delay_s": ev.get("emission_delay_s")}
    per = ev["per_speaker"]
    scored = [per[s] for s in (held or per)]
    metrics["digit_errors"] = sum(h["digit_errors"] for h in scored)  # the headline rate's counts
    metrics["digits"] = sum(h["digits"] for h in scored)
    if held:
        metrics["digit_error_rate"] = metrics["digit_errors"] / max(1, metrics["digits"])
        metrics["sequence_accuracy"] = sum(h["sequence_accuracy"] * h["utterances"] for h in scored) / max(
            1, sum(h["utterances"] for h in scored)
        )
        metrics["heldout_speaker"] = holdout
    else:
        metrics["digit_error_rate"] = ev["digit_error_rate"]
        metrics["sequence_accuracy"] = ev["sequence_accuracy"]
    metrics["per_speaker_digit_error_rate"] = {s: v["digit_error_rate"] for s, v in per.items()}
    if last_iterate is not None:
        kept = {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(last_iterate)
        with TerminalProgress("evaluate last iterate") as b:
            ev_last = evaluate_utterances(model, utts, progress=b)
        model.load_state_dict(kept)
        metrics["last_iterate_per_speaker_digit_error_rate"] = {
            s: v["digit_error_rate"] for s, v in ev_last["per_speaker"].items()
        }
    if more_test:
        metrics.update(unheard_metrics(model, args, more_test))
    if ev_fluent:
        metrics["fluent_digit_error_rate"] = ev_fluent["digit_error_rate"]
        metrics["fluent_eval_set"] = (
            f"{len(fluent_test)} fluent digit strings (libespeak-ng, rates 140-260 wpm) in the 3 held-out demo voices"
        )
    metrics["eval_set"] = f"{args.eval_utts} generated utterances per training speaker from FSDD test indices 0-4" + (
        f"; {2 * args.eval_utts} from all recordings of held-out {holdout}" if holdout else ""
    )
    return metrics


def unheard_metrics(model, args, speakers) -> dict:
    """The held-out --more-data speakers: every clip decoded as recorded (isolated digits), and connected digits
    joined from the clips of those with all ten digits."""
    from explorer.core.progress import TerminalProgress

    from .evaluate import evaluate_files, evaluate_utterances

    keep = set(speakers)
    files = sorted(
        f
        for d in args.more_data
        for f in Path(d).expanduser().rglob("*.wav")
        if D.DIGIT_FILE_RE.match(f.name) and f.name.split("_")[1] in keep
    )
    with TerminalProgress("unheard voices, isolated digits") as bar:
        iso = evaluate_files(model, files, progress=bar, what="held-out --more-data speakers")
    per = iso["per_speaker_digit_error_rate"]
    out = {
        "unheard_isolated_digit_error_rate": iso["digit_error_rate"],
        "unheard_isolated": {
            "files": iso["files"],
            "scored": iso["scored"],
            "speakers": len(keep),
            "speaker_mean_digit_error_rate": sum(per.values()) / max(1, len(per)),
            "per_speaker": per,
            "empty_transcripts": iso["empty_transcripts"],
            "wrong_clips": sum(1 for r in iso["results"] if r.get("errors")),
            "digit_errors": sum(r.get("errors", 0) for r in iso["results"]),
            "unreadable": len(iso["errors"]),
            "set": "every clip of the held-out --more-data speakers, as recorded",
        },
    }
    clips, _ = D.load_digit_folders(args.more_data, only_speakers=keep)
    full = D.group_by_speaker_digit(clips)
    if full:
        utts = test_utterances([c for c in clips if c.speaker in full], args.eval_utts * 2)
        with TerminalProgress("unheard voices, connected digits") as bar:
            ev = evaluate_utterances(model, utts, progress=bar)
        out["unheard_connected_digit_error_rate"] = ev["digit_error_rate"]
        out["unheard_connected"] = {
            "speakers": sorted(full),
            "utterances": len(utts),
            "per_speaker": {s: v["digit_error_rate"] for s, v in ev["per_speaker"].items()},
            "digit_errors": sum(v["digit_errors"] for v in ev["per_speaker"].values()),
            "digits": sum(v["digits"] for v in ev["per_speaker"].values()),
        }
    return out


def ensemble_main(args) -> int:
    """``nips-explorer transducer-ensemble``: write several trained models as one checkpoint that decodes with
    their ensemble (:class:`~.model.Ensemble`), scored on the same held-out sets as a trained model. The members
    must hold out the same speakers, or the ensemble would have no held-out set."""
    from explorer.core.checkpoints import load_model, save_checkpoint
    from explorer.core.errors import UserError

    from .infer import PAPER, ensemble_of, set_threads
    from .model import Ensemble, build

    set_threads(args.threads)
    out = Path(args.out)
    if out.suffix.lower() != ".safetensors":
        raise UserError(f"--out {out}: write the ensemble as a .safetensors file")
    if len(args.checkpoint) < 2:
        raise UserError("an ensemble needs at least two --checkpoint files")
    loaded = [load_model(Path(p), PAPER, build, "cpu") for p in args.checkpoint]
    for model, meta in loaded:
        if isinstance(model, Ensemble):
            raise UserError(f"{meta.name} is already an ensemble: give its members' checkpoints instead")
    first = loaded[0][1]
    for _, meta in loaded[1:]:
        for key in ("train_speakers", "holdout", "more_test_speakers"):
            if meta.data.get(key) != first.data.get(key):
                raise UserError(
                    f"{meta.name} and {first.name} hold out different speakers ({key}): their ensemble would "
                    "have no common held-out set"
                )
    ens = ensemble_of([m for m, _ in loaded])
    held = D.speaker_list(first.data.get("holdout"))
    train_spk = list(first.data.get("train_speakers") or [s for s in D.SPEAKERS if s not in held])
    more_test = list(first.data.get("more_test_speakers") or []) if args.more_data else []
    names = [meta.name for _, meta in loaded]
    metrics = {"headline": "digit_error_rate", "members": names}
    metrics.update(heldout_metrics(ens, args, train_spk, held, more_test))
    data = dict(first.data)
    data["name"] = f"{first.data.get('name', 'Neural Transducer')} (ensemble of {len(names)} runs)"
    data["members"] = [
        {"checkpoint": meta.name, "init": meta.data.get("init"), "train": meta.extra.get("train")} for _, meta in loaded
    ]
    save_checkpoint(
        out,
        ens.state_dict(),
        paper=PAPER,
        model_config={"ensemble": [dict(m.cfg) for m, _ in loaded]},
        metrics=metrics,
        data=data,
    )
    print(json.dumps({"checkpoint": str(out), **metrics}, indent=2))
    return 0
