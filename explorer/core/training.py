"""One training core for every paper: options, world, budget, resume, checkpoints, DDP (headless, no Qt).

Each trainer keeps its own step (what a batch is and what the loss is) and hands the rest to a :class:`Run`:

    world = init_world(args.device, args.threads)          # one process, or one rank of a torchrun job
    seed_all(args.seed)                                      # the same on every rank: identical initial weights
    model = build(...).to(world.device)
    opt = torch.optim.Adam(model.parameters())
    run = Run(world, paper="srnn", out=out, minutes=args.minutes, steps=args.steps, log=print)
    run.attach(model=model, optimizer=opt)                    # what a resume file holds, with the RNG and counters
    user = run.resume(args.resume)                           # {} for a fresh run; restores everything else
    net = run.wrap(model)                                     # DistributedDataParallel under torchrun
    with run:                                                 # SIGINT/SIGTERM: save a resume file and stop
        while not run.done():
            loss = net(batch_for(world.rank)).mean(); opt.zero_grad(); loss.backward(); opt.step()
            run.step(samples=global_batch, message=f"loss {loss.item():.3f}")
    run.save_model(out, model.state_dict(), model_config=..., metrics=...)

Distributed runs: ``torchrun --nproc_per_node N -m explorer train ...`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``;
:func:`init_world` then joins the process group (NCCL on CUDA, gloo on CPU). Every rank computes on its own shard
of the data (:meth:`World.shard`, :meth:`World.split_batch`), DDP averages the gradients, and rank 0 alone logs,
draws the progress bar and writes files. Stopping (time budget, signal) is agreed by all ranks at every step, so
no rank waits for a collective the others have left.

A resume file (``<out>.resume.safetensors``, written atomically every few minutes, at a time limit and on
SIGINT/SIGTERM) holds the model, the optimiser's and scheduler's state, every rank's RNG state, the step, epoch
and sample counters, the wall time so far, and whatever the trainer adds (best score, history, carried state):
``--resume FILE`` continues the run where it stopped, it does not restart it.

Every checkpoint written through :meth:`Run.save_model` records how it was trained in the metadata key
``training`` (JSON): world_size, steps, epochs, samples, wall_s, resumed_from, device, stop reason, and whether
all ranks held identical weights at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError

log = logging.getLogger(__name__)

RESUME_SUFFIX = ".resume.safetensors"
TRAINING_KEY = "training"
RESUME_KEY = "resume"
_CKPT_EVERY_DEFAULT_MIN = 5.0


# ----------------------------------------------------------------------------------------------------------- options
def add_training_options(
    parser: argparse.ArgumentParser,
    *,
    steps: int | None = None,
    epochs: int | None = None,
    minutes: float | None = None,
    seed: int = 0,
    out_help: str = "checkpoint to write",
) -> None:
    """The options every trainer shares: --minutes, --steps and/or --epochs, --resume, --out, --seed, --device,
    --threads, --checkpoint-every. Pass ``steps=``/``epochs=`` (their defaults) for the counters the trainer has;
    ``None`` leaves that option out."""
    from .validate import MINUTES, POSITIVE_INT, SEED, THREADS

    g = parser.add_argument_group("training run (shared by every trainer)")
    g.add_argument(
        "--minutes",
        type=MINUTES,
        default=minutes,
        metavar="M",
        help="wall-clock budget in minutes; the run stops after the current step, saves a resume file "
        f"and keeps its best checkpoint (default {minutes if minutes else 'none'})",
    )
    g.add_argument("--max-minutes", dest="minutes", type=MINUTES, help=argparse.SUPPRESS)  # its old name (srnn)
    if steps is not None:
        g.add_argument(
            "--steps",
            type=POSITIVE_INT,
            default=steps,
            metavar="N",
            help=f"optimisation steps in all (a resumed run counts the steps already done; default {steps})",
        )
    if epochs is not None:
        g.add_argument(
            "--epochs",
            type=POSITIVE_INT,
            default=epochs,
            metavar="N",
            help=f"passes over the training data in all (default {epochs})",
        )
    g.add_argument(
        "--resume",
        metavar="CKPT",
        default=None,
        help="continue a run from its resume file (<out>.resume.safetensors; the checkpoint next to it "
        "is accepted too): model, optimiser, scheduler, RNG and counters",
    )
    g.add_argument("--out", metavar="FILE", default=None, help=out_help)
    g.add_argument("--seed", type=SEED, default=seed, help=f"random seed (default {seed})")
    g.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda", "mps"),
        default=argparse.SUPPRESS,
        help="where to train (default: the global --device, auto)",
    )
    g.add_argument(
        "--threads",
        type=THREADS,
        default=None,
        help="torch CPU threads per process (default: all cores, shared among torchrun's processes)",
    )
    g.add_argument(
        "--checkpoint-every",
        type=MINUTES,
        default=_CKPT_EVERY_DEFAULT_MIN,
        metavar="M",
        help=f"minutes between resume files (default {_CKPT_EVERY_DEFAULT_MIN:g})",
    )


def resume_path_for(out: os.PathLike | str) -> Path:
    """The resume file that goes with checkpoint ``out``: ``x.safetensors`` -> ``x.resume.safetensors``."""
    p = Path(out)
    name = p.name[: -len(".safetensors")] if p.name.endswith(".safetensors") else p.stem
    if name.endswith(".resume"):
        return p
    return p.with_name(name + RESUME_SUFFIX)


def is_resume_file(path: os.PathLike | str) -> bool:
    return Path(path).name.endswith(RESUME_SUFFIX)


# ------------------------------------------------------------------------------------------------------------- world
@dataclass
class World:
    """Where this process trains: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: Any = None
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence) -> Sequence:
        """This rank's share of ``items``: every world_size-th item from its rank."""
        return items[self.rank :: self.world_size]

    def split_batch(self, batch: int, what: str = "--batch") -> int:
        """The per-rank batch that keeps the global batch at ``batch`` (same loss per sample on any world size)."""
        if batch % self.world_size:
            raise UserError(
                f"{what} {batch} does not split evenly over {self.world_size} processes; "
                f"use a multiple of {self.world_size}"
            )
        return batch // self.world_size

    def rank_seed(self, seed: int) -> int:
        """A seed for this rank's own random stream (data, noise); rank 0 of a single process keeps ``seed``."""
        return int(seed) + 1_000_003 * self.rank

    # collectives (no-ops in one process; every rank must call them alike)
    def any_each(self, flags: Sequence[bool]) -> list[bool]:
        """For each flag: is it set on any rank?"""
        if not self.distributed:
            return [bool(f) for f in flags]
        import torch
        import torch.distributed as dist

        t = torch.tensor([1.0 if f else 0.0 for f in flags], device=self._coll_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v > 0) for v in t.tolist()]

    def any(self, flag: bool) -> bool:
        return self.any_each([flag])[0]

    def max_each(self, values: Sequence[float]) -> list[float]:
        """For each value: its largest over the ranks."""
        if not self.distributed:
            return [float(v) for v in values]
        import torch
        import torch.distributed as dist

        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self._coll_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    def mean(self, value: float) -> float:
        if not self.distributed:
            return float(value)
        import torch
        import torch.distributed as dist

        t = torch.tensor([float(value)], dtype=torch.float64, device=self._coll_device())
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def gather_objects(self, obj: Any) -> list[Any]:
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def _coll_device(self):
        return self.device if self.backend == "nccl" else "cpu"

    def close(self) -> None:
        """Leave the process group, all ranks together (a barrier first: a rank tearing gloo down while another
        still talks to it can abort the process). Call it when training is over, before work that rank 0 does
        alone (test evaluations), so that the others do not wait for it. Safe to call twice."""
        if self.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                try:
                    dist.barrier()
                finally:
                    dist.destroy_process_group()

    def describe(self) -> str:
        where = str(self.device)
        return where if not self.distributed else f"{self.world_size} processes ({self.backend}), {where} each"


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def init_world(device: str = "auto", threads: int | None = None) -> World:
    """This process's :class:`World`. Under torchrun (``WORLD_SIZE`` > 1) join the process group: NCCL with one
    GPU per local rank when CUDA is chosen, gloo on CPU. Sets torch's CPU threads: ``threads``, or the machine's
    cores shared among the local processes."""
    import torch

    from .devices import choose_device

    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world = max(1, _env_int("LOCAL_WORLD_SIZE", world_size))
    dev = choose_device(device or "auto")
    backend = None
    if world_size > 1:
        import torch.distributed as dist

        if dev.type == "cuda":
            n = torch.cuda.device_count()
            if local_rank >= n:
                raise UserError(
                    f"{local_world} processes on this machine but only {n} GPU(s); "
                    "use --nproc_per_node at most the number of GPUs"
                )
            dev = torch.device("cuda", local_rank)
            torch.cuda.set_device(dev)
            backend = "nccl"
        else:
            if dev.type != "cpu":
                log.info("device %s is not supported for distributed training here; using the CPU", dev)
            dev = torch.device("cpu")
            backend = "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
    if threads:
        torch.set_num_threads(int(threads))
    elif os.environ.get("NIPS_EXPLORER_THREADS"):
        torch.set_num_threads(max(1, int(os.environ["NIPS_EXPLORER_THREADS"])))
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    return World(rank=rank, world_size=world_size, local_rank=local_rank, device=dev, backend=backend)


def seed_all(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) alike on every rank, so that models start identical."""
    import numpy as np
    import torch

    random.seed(int(seed))
    np.random.seed(int(seed) % (2**32))
    torch.manual_seed(int(seed))


# ---------------------------------------------------------------------------------------------- state (de)serialise
def _rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    st: dict[str, Any] = {"torch": torch.get_rng_state().tolist(), "python": _jsonable(random.getstate())}
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    st["numpy"] = [kind, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return st


def _set_rng_state(st: Mapping[str, Any]) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(torch.tensor(st["torch"], dtype=torch.uint8))
    random.setstate(_tupled(st["python"]))
    kind, keys, pos, has_gauss, cached = st["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in st and torch.cuda.is_available():
        states = [torch.tensor(s, dtype=torch.uint8) for s in st["cuda"]]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def _jsonable(x: Any) -> Any:
    if isinstance(x, tuple):
        return {"__tuple__": [_jsonable(v) for v in x]}
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    return x


def _tupled(x: Any) -> Any:
    if isinstance(x, dict) and "__tuple__" in x:
        return tuple(_tupled(v) for v in x["__tuple__"])
    if isinstance(x, list):
        return [_tupled(v) for v in x]
    return x


def _split_state(prefix: str, state: Any, tensors: dict[str, Any]) -> Any:
    """Replace every tensor inside ``state`` (dicts/lists of tensors and JSON values) by a reference to an entry
    of ``tensors``; returns the JSON skeleton."""
    import torch

    if isinstance(state, torch.Tensor):
        key = prefix
        t = state.detach()
        tensors[key] = t.reshape(1) if t.dim() == 0 else t
        return {"__tensor__": key, "scalar": t.dim() == 0, "device": str(t.device)}
    if isinstance(state, Mapping):
        return {"__dict__": [[_key_json(k), _split_state(f"{prefix}.{k}", v, tensors)] for k, v in state.items()]}
    if isinstance(state, (list, tuple)):
        return {
            "__list__": [_split_state(f"{prefix}.{i}", v, tensors) for i, v in enumerate(state)],
            "tuple": isinstance(state, tuple),
        }
    if isinstance(state, float) and not math.isfinite(state):
        return {"__float__": repr(state)}
    try:
        json.dumps(state)
    except (TypeError, ValueError):
        raise UserError(
            f"training state {prefix} holds a {type(state).__name__}, which a resume file cannot store"
        ) from None
    return state


def _key_json(k: Any) -> Any:
    return k if isinstance(k, (str, int)) else str(k)


def _join_state(skel: Any, tensors: Mapping[str, Any]) -> Any:
    if isinstance(skel, dict):
        if "__tensor__" in skel:
            t = tensors[skel["__tensor__"]]
            return t.reshape(()) if skel.get("scalar") else t
        if "__dict__" in skel:
            return {k: _join_state(v, tensors) for k, v in skel["__dict__"]}
        if "__list__" in skel:
            vals = [_join_state(v, tensors) for v in skel["__list__"]]
            return tuple(vals) if skel.get("tuple") else vals
        if "__float__" in skel:
            return float(skel["__float__"])
    return skel


def _weights_digest(module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()


def read_resume(path: os.PathLike | str) -> dict[str, Any]:
    """A resume file's contents without a run: ``{"user": trainer state, "counters": ..., "training": record}``."""
    from .checkpoints import load_checkpoint

    ck = load_checkpoint(path)
    meta = ck.meta.extra.get(RESUME_KEY)
    if not isinstance(meta, dict):
        raise UserError(f"{Path(path).name} is not a resume file (no training state in it)")
    return {
        "user": _join_state(meta.get("user", {}), ck.state_dict),
        "counters": meta.get("counters", {}),
        "training": ck.meta.extra.get(TRAINING_KEY) or {},
    }


def unwrap(module):
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return getattr(module, "module", module)


# --------------------------------------------------------------------------------------------------------------- run
class Run:
    """One training run: budget (minutes, steps, epochs), counters, resume files, signals, progress, DDP."""

    def __init__(
        self,
        world: World,
        *,
        paper: str,
        out: os.PathLike | str | None = None,
        minutes: float | None = None,
        steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        checkpoint_every_min: float = _CKPT_EVERY_DEFAULT_MIN,
        log: Callable[[str], None] | None = None,
        progress: Callable[..., None] | None = None,
        progress_desc: str = "",
        token: Any = None,
        seed: int = 0,
    ) -> None:
        if minutes is not None and not minutes > 0:
            raise UserError("--minutes must be a positive number of minutes")
        self.world = world
        self.paper = paper
        self.out = Path(out) if out else None
        self.resume_file = resume_path_for(self.out) if self.out else None
        self.minutes = minutes
        self.max_steps = steps
        self.max_epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.checkpoint_every_s = max(1.0, 60.0 * float(checkpoint_every_min or _CKPT_EVERY_DEFAULT_MIN))
        self._log = log if world.is_main else None
        self._progress_given = progress
        self._progress_desc = progress_desc or paper
        self._progress: Callable[..., None] | None = None
        self._bar: Any = None  # a TerminalProgress on the main rank while the run is open
        self.token = token
        self.seed = int(seed)
        self.step_count = 0
        self.epoch = 0
        self.samples = 0
        self.wall_before = 0.0
        self.resumed_from: str | None = None
        self.stop_reason: str | None = None
        self.ranks_in_sync: bool | None = None
        self.state_fn: Callable[[], dict[str, Any]] | None = None
        self._objects: dict[str, Any] = {}
        self._t0 = time.monotonic()
        self._last_save = time.monotonic()
        self._signal = False
        self._signal_at = 0.0
        self._agreed_wall = 0.0
        self._old_handlers: dict[int, Any] = {}

    # ------------------------------------------------------------------ setup
    def attach(self, **objects: Any) -> None:
        """Register what a resume file holds: modules (``model=``), optimisers, schedulers, any object with
        ``state_dict()``/``load_state_dict()``."""
        for name, obj in objects.items():
            if obj is not None:
                self._objects[name] = unwrap(obj)

    def wrap(self, module, **ddp_kwargs):
        """``module`` in DistributedDataParallel when this is a multi-process run (the module itself otherwise).
        Call it after :meth:`resume`, so that every rank starts from the same resumed weights."""
        if not self.world.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel as DDP

        if self.world.device.type == "cuda":
            ddp_kwargs.setdefault("device_ids", [self.world.device.index])
        return DDP(module, **ddp_kwargs)

    def info(self, msg: str) -> None:
        if self._log is not None:
            self._log(msg)

    # ------------------------------------------------------------------ budget
    @property
    def wall_s(self) -> float:
        return self.wall_before + (time.monotonic() - self._t0)

    def fraction(self) -> float:
        """How much of the budget is spent, 0..1: the largest of steps, epochs and time. In a multi-process run
        the time is the one the ranks agreed at the last :meth:`step`, so every rank gets the same value."""
        f = 0.0
        if self.max_steps:
            f = max(f, self.step_count / self.max_steps)
        if self.max_epochs:
            per = self.steps_per_epoch
            done = self.epoch + ((self.step_count % per) / per if per else 0.0)
            f = max(f, done / self.max_epochs)
        if self.minutes:
            wall = self._agreed_wall if self.world.distributed else self.wall_s
            f = max(f, wall / (60.0 * self.minutes))
        return min(1.0, f)

    def done(self) -> bool:
        """True once the run should stop: its steps or epochs are done, or :meth:`step` found the time budget
        spent or a signal (agreed by every rank there). Sets :attr:`stop_reason`. No collective: cheap to call."""
        if self.stop_reason is None:
            if self.max_steps is not None and self.step_count >= self.max_steps:
                self.stop_reason = "steps"
            elif self.max_epochs is not None and self.epoch >= self.max_epochs:
                self.stop_reason = "epochs"
        return self.stop_reason is not None

    def interrupted(self) -> bool:
        """True when the run stopped before its steps/epochs were done (time budget or signal)."""
        return self.stop_reason in ("time", "signal")

    def step(self, samples: int = 0, message: str = "") -> bool:
        """Count one optimisation step over ``samples`` samples (all ranks together); draw progress; write a
        periodic resume file; returns :meth:`done`. Every rank calls it once per step: the ranks agree here (one
        small all-reduce) on stopping and on saving."""
        if self.token is not None:
            self.token.check()
        self.step_count += 1
        self.samples += int(samples)
        if self._progress is not None:
            self._progress(self.fraction(), message)
        flags = [
            self._signal,
            self.minutes is not None and self.wall_s >= 60.0 * self.minutes,
            time.monotonic() - self._last_save >= self.checkpoint_every_s,
        ]
        if self.world.distributed:
            # one small all-reduce: the flags, and the slowest rank's wall time, so that fraction() (and any
            # schedule built on it) is the same number on every rank
            agreed = self.world.max_each([float(f) for f in flags] + [self.wall_s])
            flags = [v > 0 for v in agreed[:3]]
            self._agreed_wall = agreed[3]
        sig, out_of_time, save = flags
        if sig:
            self.stop_reason = "signal"
        elif out_of_time:
            self.stop_reason = "time"
        if save and self.stop_reason is None and not self.done():
            self.save_resume()
        return self.done()

    def end_epoch(self) -> None:
        self.epoch += 1

    # ------------------------------------------------------------------ resume files
    def save_resume(self, path: os.PathLike | str | None = None) -> Path | None:
        """Write the resume file (rank 0; every rank takes part in gathering the RNG states)."""
        self._last_save = time.monotonic()
        rngs = self.world.gather_objects(_rng_state())
        # every rank calls state_fn (it may gather per-rank state, e.g. carried hidden states); rank 0 writes
        user_state = self.state_fn() if self.state_fn else {}
        target = Path(path) if path else self.resume_file
        if target is None or not self.world.is_main:
            return None
        from .checkpoints import save_checkpoint

        tensors: dict[str, Any] = {}
        objects = {}
        for name, obj in self._objects.items():
            objects[name] = _split_state(name, obj.state_dict(), tensors)
        user = _split_state("user", user_state, tensors)
        meta = {
            "objects": objects,
            "user": user,
            "rng": rngs,
            "counters": self._counters(),
            "world_size": self.world.world_size,
            "seed": self.seed,
        }
        model = self._objects.get("model")
        config = getattr(model, "config", {}) if model is not None else {}
        config = config() if callable(config) else config
        save_checkpoint(
            target,
            tensors,
            paper=self.paper,
            model_config=config if isinstance(config, dict) else {},
            metrics={},
            data={"resume": True},
            extra={RESUME_KEY: meta, TRAINING_KEY: self.record()},
        )
        return target

    def _counters(self) -> dict[str, Any]:
        return {"step": self.step_count, "epoch": self.epoch, "samples": self.samples, "wall_s": round(self.wall_s, 3)}

    def resume(self, path: os.PathLike | str | None) -> dict[str, Any]:
        """Restore a run from ``path`` (a resume file, or a checkpoint with its resume file beside it); returns
        the trainer's own state (``{}`` when ``path`` is None). Every rank reads the same file."""
        if not path:
            if self.resume_file is not None and self.resume_file.exists():
                self.info(
                    f"note: {self.resume_file.name} exists and will be replaced by this new run "
                    f"(--resume {self.resume_file} continues it instead)"
                )
            return {}
        from .checkpoints import load_checkpoint

        p = Path(path)
        if not is_resume_file(p):
            cand = resume_path_for(p)
            if cand.exists():
                p = cand
            elif p.exists():
                raise UserError(
                    f"{p.name} holds weights but no training state; resume from the "
                    f"{resume_path_for(p).name} that its run wrote"
                )
        ck = load_checkpoint(p, expected_paper=self.paper)
        meta = ck.meta.extra.get(RESUME_KEY)
        if not isinstance(meta, dict) or "objects" not in meta:
            raise UserError(f"{p.name} is not a resume file (no training state in it)")
        tensors = ck.state_dict
        for name, obj in self._objects.items():
            if name not in meta["objects"]:
                raise UserError(f"{p.name} has no {name} state; it was written by another trainer")
            state = _join_state(meta["objects"][name], tensors)
            try:
                obj.load_state_dict(state)
            except (RuntimeError, ValueError, KeyError) as exc:
                raise UserError(f"{p.name}: the {name} in it does not fit this run's options ({_short(exc)})") from exc
        c = meta.get("counters", {})
        self.step_count = int(c.get("step", 0))
        self.epoch = int(c.get("epoch", 0))
        self.samples = int(c.get("samples", 0))
        self.wall_before = float(c.get("wall_s", 0.0))
        self._agreed_wall = self.wall_before
        self._t0 = time.monotonic()
        rngs = meta.get("rng") or []
        if len(rngs) == self.world.world_size:
            _set_rng_state(rngs[self.world.rank])
        else:
            seed_all(self.seed + 7919 * self.step_count + self.world.rank)
            self.info(
                f"note: {p.name} was written by {len(rngs)} process(es), this run has "
                f"{self.world.world_size}; random streams are reseeded"
            )
        self.resumed_from = p.name
        self.info(
            f"resumed from {p.name}: step {self.step_count}, epoch {self.epoch}, "
            f"{self.wall_before / 60:.1f} min trained so far"
        )
        return _join_state(meta.get("user", {}), tensors) or {}

    # ------------------------------------------------------------------ checkpoints
    def record(self) -> dict[str, Any]:
        """The ``training`` metadata: how this checkpoint was trained."""
        import torch

        from .. import __version__

        rec = {
            "world_size": self.world.world_size,
            "backend": self.world.backend,
            "device": str(self.world.device),
            "steps": self.step_count,
            "epochs": self.epoch,
            "samples": self.samples,
            "wall_s": round(self.wall_s, 1),
            "resumed_from": self.resumed_from,
            "seed": self.seed,
            "stop": self.stop_reason,
            "minutes": self.minutes,
            "max_steps": self.max_steps,
            "max_epochs": self.max_epochs,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "explorer_version": __version__,
        }
        if self.ranks_in_sync is not None:
            rec["ranks_in_sync"] = self.ranks_in_sync
        return rec

    def save_model(
        self,
        path: os.PathLike | str,
        state_dict: Mapping[str, Any],
        *,
        model_config: Mapping[str, Any],
        metrics: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Path | None:
        """Write a model checkpoint with the ``training`` record (rank 0 only; others return None)."""
        if not self.world.is_main:
            return None
        from .checkpoints import save_checkpoint

        ex = dict(extra or {})
        ex[TRAINING_KEY] = self.record()
        return save_checkpoint(
            path, state_dict, paper=self.paper, model_config=model_config, metrics=metrics, data=data, extra=ex
        )

    def check_ranks_in_sync(self, module) -> bool:
        """Compare a digest of ``module``'s weights across ranks (True in one process)."""
        digests = self.world.gather_objects(_weights_digest(unwrap(module)))
        self.ranks_in_sync = len(set(digests)) == 1
        if not self.ranks_in_sync:
            self.info("warning: the processes ended with different weights")
        return self.ranks_in_sync

    # ------------------------------------------------------------------ context
    def __enter__(self) -> Run:
        if self.world.is_main:
            if self._progress_given is not None:
                self._progress = self._progress_given
            elif self._log is not None:
                from .progress import TerminalProgress

                self._bar = TerminalProgress(self._progress_desc)
                self._progress = self._bar
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._old_handlers[sig] = signal.signal(sig, self._on_signal)
                except (ValueError, OSError):  # pragma: no cover - not allowed here
                    pass
        self._t0 = time.monotonic()
        self._last_save = time.monotonic()
        return self

    def _on_signal(self, signum, frame) -> None:
        if self._signal:
            # a second Ctrl+C, a moment after the first, stops at once; under torchrun a worker gets the
            # terminal's SIGINT and then torchrun's SIGTERM together: that is still one request to save and stop
            if signum == signal.SIGINT and time.monotonic() - self._signal_at > 1.0:
                raise KeyboardInterrupt
            return
        self._signal = True
        self._signal_at = time.monotonic()
        if self.world.is_main:
            import sys

            print(
                f"\n{signal.Signals(signum).name}: saving a resume file after this step "
                "(press Ctrl+C again to stop at once)",
                file=sys.stderr,
                flush=True,
            )

    def __exit__(self, exc_type, exc, tb) -> None:
        for sig, h in self._old_handlers.items():
            try:
                signal.signal(sig, h)
            except (ValueError, OSError):  # pragma: no cover
                pass
        self._old_handlers.clear()
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._progress = None
        if exc_type is None:
            if self.stop_reason is None:
                self.stop_reason = "end"
            model = self._objects.get("model")
            if model is not None and self.world.distributed:
                self.check_ranks_in_sync(model)
            if self.resume_file is not None:
                self.save_resume()
                if self.world.is_main and self.interrupted():
                    self.info(
                        f"stopped ({self.stop_reason}) at step {self.step_count}; continue with "
                        f"--resume {self.resume_file}"
                    )


def _short(exc: BaseException) -> str:
    s = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return s[:160]
