"""One-shot CUDA check: every tab's default inference and every trainer, on the CPU and then on a device.

What it measures
----------------
* The environment: Python, torch and the CUDA/cuDNN it was built with, ``torch.cuda.is_available()``, each GPU's
  name, compute capability, memory and SM count, the driver (from nvidia-smi when present), the TF32 switches,
  CPU cores and torch threads, the app version and git commit.
* For every tab, the inference its default demo runs, on the bundled checkpoint and a bundled demo input,
  first on the CPU, then on the device: load time (the tab's loader), first call (warm-up: kernels, cuDNN
  autotuning, lazy allocations), median of a few steady-state calls, peak GPU memory
  (``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, weights included), and whether the
  device's output agrees with the CPU's (max |difference| of the arrays the tab draws, or the same decoded
  digits; each tolerance is printed with the number):

    srnn           ``infer.analyse`` (16 posterior paths + the particle filter) of the first bundled JSB test
                   piece with the main model and its companions (filtering, GRU), as the tab's analyse job
    srnn-continue  ``infer.continue_music`` (prime 32 frames, sample 64), the demo's continuation (sampled:
                   timing only, nothing to compare)
    l2l            the race on the tab's default problem (2-D quadratic, seed 0): the quadratic-trained LSTM
                   optimizer and SGD / RMSprop / Adam / NAG at their tuned rates, 100 steps each, as the tab's
                   race (l2l infer.race)
    l2l-mnist      the same race on the MNIST MLP with the bundled (MNIST-trained) optimizer: not the demo, but
                   the heaviest race the tab offers
    transducer     the demo utterance (first WAV of resources/transducer) streamed through the online
                   recogniser as fast as possible (``infer.stream_file``, pace 0), then the offline model
    compression    ``infer.Analysis`` of the sample photo (path.png): conv DRAW's rates and reconstructions for
                   every k (the JPEG / JPEG 2000 baselines run on the CPU in any case and are left out)
    shapes3d       ``infer.infer_volume`` of the first gallery picture (volume, re-projection, turntable)
    bptt           the tab's "Run on a real LSTM" (T=1000, hidden 256, batch 8, MSM at 5 % of full BPTT's
                   memory): full BPTT, the planned schedule through the executor, torch.utils.checkpoint
* For every trainer (srnn, l2l, transducer, compression, shapes3d): a small model on small data that ships with
  the repository or is generated here (synthetic piano rolls, random quadratics, synthetic tone "digits", crops
  of the bundled sample photos, the bundled shapes gallery's pictures): a warm-up step and a few timed steps of
  the trainer's own inner loop (its loss function, optimizer and gradient clipping; the l2l step is
  ``MetaTrainer.epoch``, one optimizee episode), per-step time on CPU and device, peak GPU memory, the losses
  (finite, and whether they fell), then the trainer's real ``fit`` for 1-2 steps on the device (no files
  written) to show that the whole loop runs there. ``--train-size app`` uses the bundled checkpoints' model
  configurations instead (the app's real sizes; slower on the CPU).

Everything ends in one markdown table (check, CPU time, device time, speed-up, peak GPU MB, agreement, status);
``--json FILE`` also writes all numbers (rewritten after every row, so a run cut short still leaves its rows).
Every check is wrapped: a failure is a row with its error (traceback on stderr), and the rest still run.
Agreement failures are marked MISMATCH, not errors. Note that on CUDA torch lets cuDNN use TF32 for convolutions
and RNNs by default (the switches are printed): differences of about 1e-3 relative are expected there.

How to run
----------
    python -m bench.cuda_check                       # CPU, then CUDA (exits 2 with one line without CUDA)
    python -m bench.cuda_check --quick               # the same, shorter; without CUDA: one line, exit status 0
    python -m bench.cuda_check --device cpu --quick  # everything on the CPU only (CPU vs CPU): a dry run
    python -m bench.cuda_check --json cuda.json      # also write the results as JSON
Options: ``--quick`` (one steady-state repeat instead of 3, 3 timed training steps instead of 6; without the
device, the environment and one line saying so, exit status 0, so that a smoke run passes on any machine), ``--only
srnn,bptt,train-l2l`` (a subset, by row-name prefix), ``--threads N`` (CPU threads; default as the app:
$NIPS_EXPLORER_THREADS or cores - 1), ``--train-size small|app``, ``--no-tf32`` (TF32 off, to tell its rounding
from a real disagreement), ``--max-minutes M`` (rows not started by then are reported as skipped; default 8).
Exit status: 0 when every row is ok, 1 when a row failed, disagreed or was skipped, 2 when the device is missing
(0 with --quick).

How long
--------
On a busy 2-core machine with one torch thread, ``--device cpu --quick`` took 70 s and ``--device cpu`` 100 s
(each check runs twice there, CPU and "device"); ``--train-size app`` adds about 20 s. With CUDA the CPU half is
the same (faster with more cores) plus the device half and the device's start-up: expect 1-3 minutes, well
under the 8-minute guard.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench._util import ROOT

torch = None  # imported in main() so that --help works without it


# ------------------------------------------------------------------------------------------------- timing helpers
def _sync(dev) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type == "mps":
        torch.mps.synchronize()


def _timed(fn: Callable[[], Any], dev) -> tuple[Any, float]:
    """(fn(), seconds), with the device synchronised before and after so queued kernels are counted."""
    _sync(dev)
    t0 = time.perf_counter()
    out = fn()
    _sync(dev)
    return out, time.perf_counter() - t0


def _reset_peak(dev) -> None:
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def _peak_mb(dev) -> float | None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        return torch.cuda.max_memory_allocated(dev) / 2**20
    return None


def _drain(gen) -> Any:
    """Run a generator job (as the app's task runner does) and return its return value."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def _maxabs(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


Agreement = tuple[bool, str, float]  # (within tolerance, text, value / tolerance)


def _check(name: str, value: float, tol: float, fmt: str = ".1e") -> Agreement:
    """A number against its tolerance: (ok, 'name value <= tol', value / tol)."""
    ok = bool(np.isfinite(value)) and value <= tol
    return ok, f"{name} {value:{fmt}} {'<=' if ok else '>'} {tol:g}", (value / tol if ok else math.inf)


def _flag(ok: bool, text: str) -> Agreement:
    return bool(ok), text, (0.0 if ok else math.inf)


def _models_dir() -> Path:
    from explorer.core.paths import models_dir

    return models_dir()


def _resources_dir() -> Path:
    from explorer.core.paths import resources_dir

    return resources_dir()


# ----------------------------------------------------------------------------------------------- check records
@dataclass
class TabCheck:
    """The default inference of one tab. ``load(dev)`` -> state; ``run(state, inp, dev)`` -> comparable output
    (numpy / plain values); ``compare(cpu_out, dev_out)`` -> [(ok, text, value/tol)]; ``details(out)`` -> extra
    numbers."""

    name: str
    what: str
    prepare: Callable[[], Any]
    load: Callable[[Any], Any]
    run: Callable[[Any, Any, Any], Any]
    compare: Callable[[Any, Any], list[Agreement]] | None
    details: Callable[[Any], dict[str, Any]] | None = None


@dataclass
class TrainCheck:
    """A trainer: ``setup(dev)`` -> ctx (model, optimizer, data on ``dev``, seeded alike on every device);
    ``step(ctx, i)`` -> loss (float); ``fit(dev)`` -> short text (the trainer's real fit for 1-2 steps)."""

    name: str
    what: str
    setup: Callable[[Any], Any]
    step: Callable[[Any, int], float]
    fit: Callable[[Any], str] | None = None
    deterministic: bool = False  # the same first loss is expected on every device


@dataclass
class Row:
    name: str
    kind: str
    what: str = ""
    cpu_s: float | None = None
    dev_s: float | None = None
    peak_mb: float | None = None
    agreement: str = ""  # every comparison, in full
    agree_short: str = ""  # for the table: the failures, or how many passed and the closest to its tolerance
    status: str = "ok"
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0

    def speedup(self) -> float | None:
        if self.cpu_s and self.dev_s:
            return self.cpu_s / self.dev_s
        return None


# ============================================================================================== the tabs' demos
# -- srnn ---------------------------------------------------------------------------------------------------------
SRNN_MAIN = "srnn_jsb_smooth_resq.safetensors"


def _srnn_prepare():
    from explorer.papers.srnn import data as D

    pieces = D.read_demo_pieces("jsb")
    if not pieces:
        raise FileNotFoundError("no bundled JSB pieces in resources/srnn")
    return pieces[0][1]


def _srnn_load(dev):
    from explorer.papers.srnn import infer

    main, _ = infer.load_model_file(_models_dir() / SRNN_MAIN, dev)
    models = {"smooth": main}
    for key, (m, _meta) in infer.load_companions("jsb", device=dev, skip=SRNN_MAIN).items():
        models.setdefault(key, m)
    return models


def _srnn_run(models, x, dev):
    from explorer.papers.srnn import infer

    out = {}
    for key, m in models.items():  # the analyse job: main model first, then the companions
        r = infer.analyse(m, x, samples=16, seed=0, device=dev)
        out[key] = {k: r[k] for k in ("probs", "elbo", "elbo_per_step", "pred_ll_per_step") if k in r}
    return out


def _srnn_compare(a, b):
    res = []
    for key in a:
        res.append(_check(f"{key} probs max abs diff", _maxabs(a[key]["probs"], b[key]["probs"]), 5e-3))
        res.append(_check(f"{key} ELBO/step rel diff", _rel(a[key]["elbo_per_step"], b[key]["elbo_per_step"]), 5e-3))
        if "pred_ll_per_step" in a[key]:  # particle filter: resampling can pick other particles on a near-tie
            res.append(
                _check(
                    f"{key} predictive ll/step rel diff",
                    _rel(a[key]["pred_ll_per_step"], b[key]["pred_ll_per_step"]),
                    2e-2,
                )
            )
    return res


def _srnn_details(out):
    return {
        k: {
            "elbo_per_step": round(v["elbo_per_step"], 4),
            "pred_ll_per_step": round(float(v.get("pred_ll_per_step", float("nan"))), 4),
        }
        for k, v in out.items()
    }


def _srnn_cont_load(dev):
    from explorer.papers.srnn import infer

    return infer.load_model_file(_models_dir() / SRNN_MAIN, dev)[0]


def _srnn_cont_run(model, x, dev):
    from explorer.papers.srnn import infer

    r = infer.continue_music(model, x, 32, 64, seed=1, temperature=1.0, device=dev)
    return {"generated": r["generated"], "notes_per_step": float(r["generated"].sum(1).mean())}


def _srnn_cont_compare(a, b):
    ok = a["generated"].shape == b["generated"].shape and set(np.unique(b["generated"])) <= {0.0, 1.0}
    return [
        _flag(
            ok,
            f"sampled with the device's RNG, not compared: {b['generated'].shape[0]} binary frames, "
            f"{b['notes_per_step']:.1f} notes/step (CPU {a['notes_per_step']:.1f})",
        )
    ]


# -- l2l ----------------------------------------------------------------------------------------------------------
def _l2l_load(dev):
    from explorer.papers.l2l import infer

    return infer.load_for_app(_models_dir() / "l2l_mnist.safetensors", dev)[0]


def _l2l_race(problem_name: str):
    def run(bundle, _inp, dev):
        """The tab's race (l2l infer.race, pace 0): every optimizer steps once per round on the same problem."""
        from explorer.papers.l2l.catalog import PROBLEMS
        from explorer.papers.l2l.infer import tuned_rates
        from explorer.papers.l2l.optimizer_runs import Run
        from explorer.papers.l2l.problems import make_problem

        net, meta = bundle.for_family(PROBLEMS[problem_name].family)
        entries = [("learned", "learned", None, net)] if net is not None else []
        rates = tuned_rates(meta, problem_name)
        entries += [(k, k, rates[k], None) for k in ("sgd", "rmsprop", "adam", "nag")]
        problem = make_problem(problem_name, 0, split="test", device=dev, batch=1)
        two_d = problem_name in ("quad2d", "valley2d", "rosenbrock")
        if two_d:
            problem.grid(160)
        runs = {key: Run(problem, kind, lr=lr, net=n, record_path=two_d) for key, kind, lr, n in entries}
        alive = set(runs)
        for _t in range(problem.steps):
            for key in list(alive):
                loss = float(runs[key].step().mean())
                if not math.isfinite(loss) or runs[key].diverged:
                    alive.discard(key)
        out = {}
        for key, r in runs.items():
            res = r.finish()
            out[key] = {"final": float(np.mean(res["final"])), "curve": res["curve"].mean(1)}
        return out

    return run


def _l2l_compare(a, b):
    res = []
    for key in a:
        fa, fb = a[key]["final"], b[key]["final"]
        if not (math.isfinite(fa) and math.isfinite(fb)):
            res.append(_flag(math.isfinite(fa) == math.isfinite(fb), f"{key} final loss {fa:.3g} vs CPU {fb:.3g}"))
            continue
        # losses near zero (2-D quadratics converge): compare on the scale of the starting loss
        scale = max(abs(float(a[key]["curve"][0])), 1e-12)
        res.append(
            _check(f"{key} loss curve max abs diff / f0", _maxabs(a[key]["curve"], b[key]["curve"]) / scale, 1e-2)
        )
    return res


def _l2l_details(out):
    return {k: round(v["final"], 6) for k, v in out.items()}


# -- transducer -----------------------------------------------------------------------------------------------
def _transducer_prepare():
    from explorer.papers.transducer.features import read_audio

    files = sorted((_resources_dir() / "transducer").glob("*.wav"))
    if not files:
        raise FileNotFoundError("no demo utterances in resources/transducer")
    return {"name": files[0].name, "audio": read_audio(files[0])}


def _transducer_load(dev):
    from explorer.papers.transducer import infer

    return infer.load_for_app(str(_models_dir() / "transducer_fsdd_online.safetensors"), dev)[0]


def _transducer_run(bundle, inp, dev):
    from explorer.papers.transducer.infer import stream_file

    s = _drain(stream_file(bundle, inp["audio"], pace=0.0))
    off = s.get("offline") or {}
    return {
        "online": "".join(map(str, s["digits"])),
        "offline": "".join(map(str, off.get("digits", []))),
        "rtf": s["rtf"],
        "audio_s": s["audio_s"],
        "reference": inp["name"].split("_", 1)[0],
    }


def _transducer_compare(a, b):
    res = []
    for key in ("online", "offline"):
        same = a[key] == b[key]
        res.append(_flag(same, f"{key} digits '{b[key]}' {'==' if same else '!='} CPU '{a[key]}'"))
    return res


def _transducer_details(out):
    return {
        "reference": out["reference"],
        "online": out["online"],
        "offline": out["offline"],
        "stream_rtf": round(out["rtf"], 4),
        "audio_s": round(out["audio_s"], 2),
    }


# -- compression ------------------------------------------------------------------------------------------------
def _compression_prepare():
    from explorer.papers.compression.data import fit_max_side, load_image

    img = load_image(_resources_dir() / "compression" / "path.png", channels=3)  # as the panel: 3 channels,
    return fit_max_side(img, 512)[0]  # at most 512 px


def _compression_load(dev):
    from explorer.papers.compression import infer

    return infer.load_for_app(_models_dir() / "compression_photos.safetensors", dev)[0]


def _compression_run(model, img, dev):
    from explorer.papers.compression.infer import Analysis

    with torch.no_grad():
        an = Analysis(model, img, dev)
    ks = sorted(an.recons)
    return {
        "kl_bits": an.kl_bits,
        "rate_bpp": an.rate_bpp,
        "recons": np.stack([an.recons[k] for k in ks]).astype(np.int16),
        "psnr_T": an.point(an.T)["psnr"],
        "bpp_T": float(an.rate_bpp[an.T]),
        "size": img.shape,
    }


def _compression_compare(a, b):
    rate = float(np.max(np.abs(a["kl_bits"] - b["kl_bits"]) / np.maximum(np.abs(a["kl_bits"]), 1.0)))
    diff = np.abs(a["recons"] - b["recons"])
    return [
        _check("KL bits rel diff", rate, 2e-2),
        _check("reconstructions max abs diff (grey levels)", float(diff.max()), 8, ".0f"),
        _check("reconstructions mean abs diff", float(diff.mean()), 0.25, ".3f"),
    ]


def _compression_details(out):
    return {"image": list(out["size"]), "bpp_all_k": round(out["bpp_T"], 4), "psnr_all_k": round(out["psnr_T"], 2)}


# -- shapes3d ---------------------------------------------------------------------------------------------------
def _shapes3d_prepare():
    from explorer.papers.shapes3d.infer import gallery_path, load_gallery

    g = load_gallery(gallery_path("primitives"))
    return {"image": g["views"][0, 0].astype(np.float32) / 255.0, "truth": g["voxels"][0], "name": g["names"][0]}


def _shapes3d_load(dev):
    from explorer.papers.shapes3d import infer

    return infer.load_for_app(str(_models_dir() / "shapes3d_primitives.safetensors"), dev)[0]


def _shapes3d_run(model, inp, dev):
    from explorer.papers.shapes3d.infer import infer_volume
    from explorer.papers.shapes3d.model import iou

    r = infer_volume(model, inp["image"], dev, label=None)
    return {
        "occupancy": r["occupancy"],
        "reprojection": r["reprojection"],
        "turntable": r["turntable"],
        "iou_truth": float(iou(r["occupancy"] > 0.5, inp["truth"])),
    }


def _shapes3d_compare(a, b):
    from explorer.papers.shapes3d.model import iou

    same = float(iou(a["occupancy"] > 0.5, b["occupancy"] > 0.5))
    return [
        _check("occupancy max abs diff", _maxabs(a["occupancy"], b["occupancy"]), 5e-2),
        _check("turntable pictures max abs diff", _maxabs(a["turntable"], b["turntable"]), 5e-2),
        _flag(same >= 0.98, f"IoU(CPU, device) {same:.4f} {'>=' if same >= 0.98 else '<'} 0.98"),
    ]


def _shapes3d_details(out):
    return {"iou_vs_truth": round(out["iou_truth"], 4)}


# -- bptt -------------------------------------------------------------------------------------------------------
BPTT = dict(kind="lstm", length=1000, hidden=256, policy="msm", fraction=0.05)


def _bptt_load(dev):
    """What run_real does before running: the problem on the device, alpha measured, the plan."""
    from explorer.papers.bptt.executor import make_problem, measure_alpha
    from explorer.papers.bptt.planner import Planner
    from explorer.papers.bptt.schedule import full_bptt_memory

    pb = make_problem(BPTT["kind"], BPTT["length"], hidden=BPTT["hidden"], batch=8, input_size=32, device=dev, seed=0)
    a = measure_alpha(pb)
    memory = max(1.0, BPTT["fraction"] * full_bptt_memory(BPTT["length"], a["alpha"]))
    plan = Planner(BPTT["length"], BPTT["policy"], a["alpha"]).plan(memory)
    return {"pb": pb, "alpha": a, "plan": plan}


def _bptt_run(state, _inp, dev):
    """The rest of the tab's run_real: full BPTT, the schedule, torch.utils.checkpoint at the same memory."""
    from explorer.papers.bptt.evaluate import _segments_for
    from explorer.papers.bptt.executor import full_bptt, max_abs_diff, run_schedule, uniform_checkpoint

    pb, a, plan = state["pb"], state["alpha"], state["plan"]
    ref = full_bptt(pb)
    res = run_schedule(pb, plan.schedule)
    S = _segments_for(res.peak_bytes, BPTT["length"], a["alpha"], a["state_bytes"])
    ck = uniform_checkpoint(pb, S)
    return {
        "grads": {k: v.detach().cpu().numpy() for k, v in res.grads.items()},
        "grad_diff": max_abs_diff(res, ref),
        "ck_grad_diff": max_abs_diff(ck, ref),
        "forward_steps": res.forward_steps,
        "cost": plan.cost,
        "peak_bytes": res.peak_bytes,
        "full_bytes": ref.peak_bytes,
        "cuda_peak_bytes": res.cuda_peak_bytes,
        "cuda_full_bytes": ref.cuda_peak_bytes,
        "seconds": res.seconds,
        "full_seconds": ref.seconds,
        "ck_seconds": ck.seconds,
    }


def _bptt_compare(a, b):
    g = max(_maxabs(a["grads"][k], b["grads"][k]) for k in a["grads"])
    return [
        _check("schedule grads max abs diff vs CPU", g, 1e-3),
        _check("schedule vs full BPTT on the device", b["grad_diff"], 1e-4),  # the tab's own criterion
        _check("checkpoint vs full BPTT on the device", b["ck_grad_diff"], 1e-4),
        _flag(
            b["forward_steps"] == b["cost"],
            f"forward steps {b['forward_steps']} == plan {b['cost']}"
            if b["forward_steps"] == b["cost"]
            else f"forward steps {b['forward_steps']} != plan {b['cost']}",
        ),
    ]


def _bptt_details(out):
    d = {k: out[k] for k in ("forward_steps", "cost", "peak_bytes", "full_bytes")}
    d.update({k: round(out[k], 4) for k in ("seconds", "full_seconds", "ck_seconds")})
    if out["cuda_peak_bytes"] is not None:
        d["cuda_schedule_MB"] = round(out["cuda_peak_bytes"] / 2**20, 2)
        d["cuda_full_bptt_MB"] = round(out["cuda_full_bytes"] / 2**20, 2)
    return d


TAB_CHECKS: list[TabCheck] = [
    TabCheck(
        "srnn",
        "analyse 1st JSB piece: main + companions, 16 paths",
        _srnn_prepare,
        _srnn_load,
        _srnn_run,
        _srnn_compare,
        _srnn_details,
    ),
    TabCheck(
        "srnn-continue",
        "continue_music: prime 32, sample 64",
        _srnn_prepare,
        _srnn_cont_load,
        _srnn_cont_run,
        _srnn_cont_compare,
    ),
    TabCheck(
        "l2l",
        "race on quad2d seed 0 (LSTM + 4 baselines, 100 steps)",
        lambda: None,
        _l2l_load,
        _l2l_race("quad2d"),
        _l2l_compare,
        _l2l_details,
    ),
    TabCheck(
        "l2l-mnist",
        "race on the MNIST MLP seed 0 (not the demo)",
        lambda: None,
        _l2l_load,
        _l2l_race("mnist"),
        _l2l_compare,
        _l2l_details,
    ),
    TabCheck(
        "transducer",
        "stream the 1st demo WAV (pace 0) + offline model",
        _transducer_prepare,
        _transducer_load,
        _transducer_run,
        _transducer_compare,
        _transducer_details,
    ),
    TabCheck(
        "compression",
        "conv DRAW Analysis of path.png, all k",
        _compression_prepare,
        _compression_load,
        _compression_run,
        _compression_compare,
        _compression_details,
    ),
    TabCheck(
        "shapes3d",
        "infer_volume of gallery picture 0",
        _shapes3d_prepare,
        _shapes3d_load,
        _shapes3d_run,
        _shapes3d_compare,
        _shapes3d_details,
    ),
    TabCheck(
        "bptt",
        "run_real: LSTM T=1000 h=256, MSM at 5 %",
        lambda: None,
        _bptt_load,
        _bptt_run,
        _bptt_compare,
        _bptt_details,
    ),
]


# ==================================================================================================== trainers
def _ckpt_config(name: str) -> dict[str, Any]:
    from explorer.core.checkpoints import read_metadata

    return dict(read_metadata(_models_dir() / name).model_config)


def _make_trainers(size: str) -> list[TrainCheck]:
    app = size == "app"

    # -- srnn: the authors' loop (16 streams of 100-step chunks, carried state, Adam lr 1e-3 eps 1e-4, grad norm 1
    #    then value 10); noise drawn on the CPU so the first loss is the same on every device
    def srnn_setup(dev):
        from explorer.papers.srnn import data as D
        from explorer.papers.srnn.model import build

        cfg = (
            _ckpt_config(SRNN_MAIN)
            if app
            else {"hidden": 64, "d_dim": 64, "z_dim": 8, "a_dim": 64, "inference": "smooth", "resq": True}
        )
        torch.manual_seed(0)
        model = build(cfg).to(dev).train()
        syn = D.synthetic(n_train=32, n_valid=2, n_test=1, t_chunk=100, t_test=10, seed=0)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-4)
        return {
            "model": model,
            "opt": opt,
            "u": syn["u_train"],
            "x": syn["x_train"],
            "dev": dev,
            "carry": model.initial_state(16, dev),
            "gen": torch.Generator().manual_seed(1),
        }

    def srnn_step(c, i):
        from explorer.papers.srnn.model import elbo_loss

        m, dev = c["model"], c["dev"]
        sl = slice((i % 2) * 16, (i % 2) * 16 + 16)
        if i % 2 == 0:
            c["carry"] = m.initial_state(16, dev)
        u = torch.from_numpy(c["u"][sl]).to(dev)
        x = torch.from_numpy(c["x"][sl]).to(dev)
        noise = torch.randn(16, 100, m.config["z_dim"], generator=c["gen"]).to(dev)
        out = m(u, x, state=c["carry"], noise=noise)
        c["carry"] = out["state"]
        loss, elbo, _ = elbo_loss(out, None, 1.0)
        c["opt"].zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        torch.nn.utils.clip_grad_value_(m.parameters(), 10.0)
        c["opt"].step()
        return float(loss.detach())

    def srnn_fit(dev):
        from explorer.papers.srnn import data as D
        from explorer.papers.srnn.model import build
        from explorer.papers.srnn.train import fit

        data = D.MusicData(name="jsb", **D.synthetic(n_train=32, n_valid=4, n_test=1, t_chunk=20, t_test=10))
        np.nan_to_num(data.u_test, copy=False)
        torch.manual_seed(0)
        s = fit(
            build({"hidden": 16, "d_dim": 12, "z_dim": 3, "a_dim": 8}),
            data,
            dev,
            {"epochs": 1, "checkpoint_every_s": 1e9},
            out_path=None,
        )
        v = s["best_valid_elbo_per_step"]
        if not math.isfinite(v):
            raise FloatingPointError(f"fit: validation ELBO {v}")
        return f"fit 1 epoch (2 steps) ok, valid ELBO/step {v:.2f}"

    # -- l2l: MetaTrainer.epoch = one optimizee episode (100 steps, truncations of 20, Adam on the LSTM), on
    #    random 10-D quadratics as the tab's "Meta-train live"
    def l2l_setup(dev):
        from explorer.papers.l2l.model import LSTMOptimizer
        from explorer.papers.l2l.train import MetaTrainer, make_train_data

        cfg = {"steps": 100, "unroll": 20, "meta_lr": 0.01, "batch": 128 if app else 32, "val_runs": 8, "seed": 1000}
        torch.manual_seed(0)
        net = LSTMOptimizer().to(dev)
        return {"trainer": MetaTrainer(net, make_train_data("quadratic", dev, cfg), dev, cfg)}

    def l2l_step(c, i):
        return float(c["trainer"].epoch(i))

    def l2l_fit(dev):
        from explorer.papers.l2l.model import LSTMOptimizer
        from explorer.papers.l2l.train import fit, make_train_data

        cfg = {
            "epochs": 2,
            "steps": 20,
            "unroll": 10,
            "meta_lr": 0.01,
            "batch": 8,
            "val_runs": 8,
            "val_every": 1,
            "seed": 0,
        }
        torch.manual_seed(0)
        h = fit(LSTMOptimizer(), make_train_data("quadratic", dev, cfg), dev, cfg)
        v = h["best"]["val_avg_loss"]
        if not math.isfinite(v):
            raise FloatingPointError(f"fit: validation loss {v}")
        return f"fit 2 episodes ok, val avg loss {v:.3g}"

    # -- transducer: boundary alignments, per-token NLL, Adam, grad norm 1 (fit's loop without the schedule);
    #    synthetic tone "digits" (no speech data needed); deterministic, so the first loss must agree
    def tone_clips(n_per_digit=3, seed=0):
        from explorer.papers.transducer.data import Clip

        rng = np.random.default_rng(seed)
        clips = []
        for d in range(10):
            for i in range(n_per_digit):
                t = np.arange(int(8000 * 0.3 * rng.uniform(0.9, 1.1))) / 8000
                f1, f2 = 300 + 250 * d, 500 + 180 * ((d * 3) % 10)
                a = np.sin(2 * np.pi * f1 * t) + 0.5 * np.sin(2 * np.pi * f2 * t)
                clips.append(Clip((0.3 * a * np.hanning(len(t))).astype(np.float32), d, "tones", i))
        return clips

    def transducer_data(seed=0):
        from explorer.papers.transducer.augment import Augment, UtteranceSource
        from explorer.papers.transducer.train import TrainData

        return TrainData(UtteranceSource(tone_clips(), Augment(min_digits=1, max_digits=4, p_noise=0.0)), seed=seed)

    def transducer_setup(dev):
        from explorer.papers.transducer import model as M
        from explorer.papers.transducer.train import set_normalization

        cfg = (
            _ckpt_config("transducer_fsdd_online.safetensors")
            if app
            else dict(enc_hidden=64, dec_hidden=64, embed=16, att_hidden=32, enc_layers=1, block=8, max_per_block=4)
        )
        torch.manual_seed(0)
        data = transducer_data()
        model = M.build(cfg)
        set_normalization(model, data, n=16)
        model.to(dev).train()
        return {
            "model": model,
            "data": data,
            "dev": dev,
            "batch": 16 if app else 8,
            "opt": torch.optim.Adam(model.parameters(), lr=2e-3),
        }

    def transducer_step(c, i):
        from explorer.papers.transducer.train import alignments_for

        m = c["model"]
        utts = c["data"].batch(c["batch"])
        x, lengths = m.features([torch.from_numpy(u.audio) for u in utts])
        x = x.to(c["dev"])
        enc, keys, enc_len, _ = m.encode(x, lengths)
        als, _ = alignments_for(m, utts, enc, keys, enc_len, "boundary")
        nll, n_tok = m.alignment_nll(enc, keys, enc_len, als)
        loss = nll / n_tok
        c["opt"].zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        c["opt"].step()
        return float(loss.detach())

    def transducer_fit(dev):
        from explorer.papers.transducer import model as M
        from explorer.papers.transducer.train import fit, set_normalization

        torch.manual_seed(0)
        data = transducer_data(seed=1)
        model = M.build(
            dict(enc_hidden=16, dec_hidden=16, embed=8, att_hidden=8, enc_layers=1, block=4, max_per_block=3)
        )
        set_normalization(model, data, n=4)
        h = fit(model, data, dev, dict(steps=2, batch=4, log_every=1, align="dp", dp_start=1))
        if not math.isfinite(h["final_loss"]):
            raise FloatingPointError(f"fit: loss {h['final_loss']}")
        return f"fit 2 steps (2nd with DP alignments) ok, loss {h['final_loss']:.3f}"

    # -- compression: ELBO in nats per sub-pixel (elbo_terms), Adam lr 2e-3 (constant), grad norm 1; crops of the
    #    bundled sample photos
    def compression_images():
        from explorer.papers.compression.data import load_image

        return [load_image(p, channels=3) for p in sorted((_resources_dir() / "compression").glob("*.png"))]

    def compression_setup(dev):
        from explorer.papers.compression.data import CropSampler
        from explorer.papers.compression.model import build

        cfg = (
            _ckpt_config("compression_photos.safetensors")
            if app
            else {
                "in_channels": 3,
                "hidden": 16,
                "z_channels": 4,
                "iterations": 4,
                "stride": 4,
                "kernel": 3,
                "read_channels": 16,
            }
        )
        torch.manual_seed(0)
        model = build(cfg).to(dev).train()
        return {
            "model": model,
            "sampler": CropSampler(compression_images(), 48 if app else 32),
            "rng": np.random.default_rng(0),
            "dev": dev,
            "batch": 8,
            "opt": torch.optim.Adam(model.parameters(), lr=2e-3),
        }

    def compression_step(c, i):
        from explorer.papers.compression.train import elbo_terms, to_tensor

        m = c["model"]
        x = to_tensor(c["sampler"].sample(c["batch"], c["rng"]), c["dev"])
        loss = elbo_terms(m, x)["loss"]
        c["opt"].zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        c["opt"].step()
        return float(loss.detach()) / math.log(2.0)

    def compression_fit(dev):
        from explorer.papers.compression.data import CropSampler
        from explorer.papers.compression.model import build
        from explorer.papers.compression.train import TrainConfig, TrainData, fit

        imgs = compression_images()
        data = TrainData(CropSampler(imgs, 16), CropSampler(imgs, 16).sample(4, np.random.default_rng(1)))
        torch.manual_seed(0)
        model = build({"in_channels": 3, "hidden": 8, "z_channels": 2, "iterations": 3, "stride": 4, "kernel": 3})
        r = fit(
            model, data, dev, TrainConfig(steps=2, time_limit_s=600, batch=4, warmup=1, log_every=1, val_every=1000)
        )
        v = r["final"]["val_bits_per_dim"]
        if not math.isfinite(v):
            raise FloatingPointError(f"fit: validation bits/dim {v}")
        return f"fit 2 steps ok, val {v:.2f} bits/dim"

    # -- shapes3d: fit's loop (class and view dropout, KL warm-up, free bits, silhouette term), Adam lr 1e-3
    #    (constant), grad norm 20; the bundled gallery's pictures (20 shapes, the 5 axis cameras)
    def shapes3d_views():
        from explorer.papers.shapes3d.data import ViewSet
        from explorer.papers.shapes3d.infer import gallery_path, load_gallery
        from explorer.papers.shapes3d.model import TRAIN_CAMERAS

        g = load_gallery(gallery_path("primitives"))
        return ViewSet(
            views=g["views"],
            labels=g["labels"].astype(np.int64),
            class_names=list(g["class_names"]),
            cameras=[list(c) for c in TRAIN_CAMERAS],
        )

    def shapes3d_setup(dev):
        from explorer.papers.shapes3d.model import TRAIN_CAMERAS, build
        from explorer.papers.shapes3d.train import TrainConfig

        vs = shapes3d_views()
        if app:  # the app's network; the gallery holds the axis cameras' pictures only
            cfg = _ckpt_config("shapes3d_primitives.safetensors")
            cfg["cameras"] = [list(c) for c in TRAIN_CAMERAS]
        else:
            cfg = dict(steps=3, hidden=64, z_dim=8, patch=8, feat=64, ctx_dim=8, class_names=vs.class_names)
        torch.manual_seed(0)
        model = build(cfg).to(dev).train()
        return {
            "model": model,
            "dev": dev,
            "cfg": TrainConfig(),
            "batches": vs.batches(16 if app else 8, np.random.default_rng(0)),
            "opt": torch.optim.Adam(model.parameters(), lr=1e-3),
        }

    def shapes3d_step(c, i):
        from explorer.papers.shapes3d.train import batch_loss

        m, dev, cfg = c["model"], c["dev"], c["cfg"]
        b = next(c["batches"])
        views = torch.from_numpy(b["views"]).to(dev)
        labels = torch.from_numpy(b["labels"]).to(dev)
        drop = torch.rand(len(labels), device=dev) < cfg.class_dropout
        labels = torch.where(drop, torch.full_like(labels, m.n_classes), labels)
        vmask = (torch.rand(len(labels), device=dev) >= cfg.view_dropout).float()
        beta = cfg.kl_max * min(1.0, (i + 1) / cfg.kl_warmup)
        terms = batch_loss(
            m,
            views,
            labels,
            kl_weight=beta,
            logit_noise=cfg.logit_noise,
            view_mask=vmask,
            free_bits=cfg.free_bits,
            silhouette_weight=cfg.silhouette_weight,
        )
        c["opt"].zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.clip)
        c["opt"].step()
        return float(terms["loss"].detach())

    def shapes3d_fit(dev):
        from explorer.papers.shapes3d.model import build
        from explorer.papers.shapes3d.train import TrainConfig, fit

        vs = shapes3d_views()
        torch.manual_seed(0)
        model = build(dict(steps=2, hidden=32, z_dim=4, patch=8, feat=32, ctx_dim=4, class_names=vs.class_names))
        s = fit(model, vs, dev, TrainConfig(steps=2, batch=4, log_every=1), val=vs)
        if not math.isfinite(s["train_elbo"]):
            raise FloatingPointError(f"fit: ELBO {s['train_elbo']}")
        return f"fit 2 steps + validation ok, ELBO {s['train_elbo']:.0f}"

    sz = "app-size" if app else "small"
    return [
        TrainCheck(
            "train-srnn",
            f"{sz} SRNN, batch 16 x 100 steps, synthetic rolls",
            srnn_setup,
            srnn_step,
            srnn_fit,
            deterministic=True,
        ),
        TrainCheck(
            "train-l2l",
            f"MetaTrainer.epoch, {128 if app else 32} quadratics x 100 steps",
            l2l_setup,
            l2l_step,
            l2l_fit,
            deterministic=True,
        ),
        TrainCheck(
            "train-transducer",
            f"{sz} transducer, batch {16 if app else 8} synthetic tone digits",
            transducer_setup,
            transducer_step,
            transducer_fit,
            deterministic=True,
        ),
        TrainCheck(
            "train-compression",
            f"{sz} conv DRAW, 8 crops of {48 if app else 32} px of the sample photos",
            compression_setup,
            compression_step,
            compression_fit,
        ),
        TrainCheck(
            "train-shapes3d",
            f"{sz} model, batch {16 if app else 8} gallery pictures (5 views)",
            shapes3d_setup,
            shapes3d_step,
            shapes3d_fit,
        ),
    ]


# ===================================================================================================== runners
def run_tab(check: TabCheck, devices, repeats: int, row: Row) -> None:
    inp = check.prepare()
    outs = {}
    for label, dev in devices:
        _reset_peak(dev)
        try:
            state, t_load = _timed(partial(check.load, dev), dev)
            call = partial(check.run, state, inp, dev)
            out, t_first = _timed(call, dev)
            times = [_timed(call, dev)[1] for _ in range(repeats)]
        except Exception as exc:
            raise RuntimeError(f"on {label}: {type(exc).__name__}: {exc}") from exc
        med = statistics.median(times)
        peak = _peak_mb(dev)
        outs[label] = out
        row.details[label] = {
            "load_s": round(t_load, 4),
            "first_s": round(t_first, 4),
            "median_s": round(med, 4),
            "repeats": [round(t, 4) for t in times],
        }
        if peak is not None:
            row.details[label]["peak_gpu_mb"] = round(peak, 1)
        if check.details is not None:
            row.details[label]["result"] = check.details(out)
        if label == "cpu":
            row.cpu_s = med
        else:
            row.dev_s, row.peak_mb = med, peak
        del state, call
        _reset_peak(dev)
    if check.compare is not None:
        _agree(row, check.compare(outs["cpu"], outs["device"]))


def _agree(row: Row, results: list[Agreement], extra: str = "") -> None:
    row.agreement = "; ".join(t for _, t, _ in results) + (f"; {extra}" if extra else "")
    bad = [t for ok, t, _ in results if not ok]
    if bad:
        row.status = "MISMATCH"
        row.agree_short = "; ".join(bad)
    elif len(results) <= 2:
        row.agree_short = "; ".join(t for _, t, _ in results)
    else:
        worst = max(results, key=lambda r: r[2])
        row.agree_short = f"{len(results)}/{len(results)} within tolerance, closest: {worst[1]}"
    if extra:
        row.agree_short += f"; {extra}"


def run_trainer(check: TrainCheck, devices, steps: int, row: Row) -> None:
    firsts = {}
    for label, dev in devices:
        _reset_peak(dev)
        try:
            ctx = check.setup(dev)
            first, t_warm = _timed(partial(check.step, ctx, 0), dev)
            losses, times = [first], []
            for i in range(1, steps + 1):
                loss, t = _timed(partial(check.step, ctx, i), dev)
                losses.append(loss)
                times.append(t)
            peak = _peak_mb(dev)
            del ctx
            _reset_peak(dev)
            fit_text, t_fit = _timed(partial(check.fit, dev), dev) if check.fit is not None else ("", 0.0)
        except Exception as exc:
            raise RuntimeError(f"on {label}: {type(exc).__name__}: {exc}") from exc
        med = statistics.median(times)
        finite = all(math.isfinite(v) for v in losses)
        fell = losses[-1] < losses[0]
        firsts[label] = losses[0]
        row.details[label] = {
            "warmup_step_s": round(t_warm, 4),
            "median_step_s": round(med, 4),
            "steps_s": [round(t, 4) for t in times],
            "losses": [round(v, 5) for v in losses],
            "finite": finite,
            "fell": fell,
            "fit": fit_text,
            "fit_s": round(t_fit, 3),
        }
        if peak is not None:
            row.details[label]["peak_gpu_mb"] = round(peak, 1)
        if label == "cpu":
            row.cpu_s = med
        else:
            row.dev_s, row.peak_mb = med, peak
        if not finite:
            row.status = "MISMATCH"
    d = row.details["device"]
    results = [
        _flag(
            d["finite"],
            f"losses {'finite' if d['finite'] else 'NOT FINITE'}, "
            f"{d['losses'][0]:.4g} -> {d['losses'][-1]:.4g} " + ("(fell)" if d["fell"] else "(did not fall)"),
        )
    ]
    if check.deterministic:
        results.append(_check("1st loss rel diff vs CPU", _rel(firsts["cpu"], firsts["device"]), 1e-3))
    else:
        results.append(
            _flag(
                True,
                f"1st loss {firsts['device']:.4g} vs CPU {firsts['cpu']:.4g} (latents sampled "
                "with the device's RNG: not compared)",
            )
        )
    _agree(row, results, "fit() ok" if check.fit is not None else "")
    row.agreement = "; ".join(t for _, t, _ in results) + (f"; {d['fit']}" if d["fit"] else "")


# ====================================================================================================== report
def _fmt_s(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1000:.1f} ms" if v < 1.0 else f"{v:.2f} s"


def markdown_table(rows: list[Row], dev_label: str) -> str:
    lines = [
        f"| check | CPU | {dev_label} | speed-up | peak GPU MB | agreement | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sp = r.speedup()
        status = r.status if r.error is None else f"ERROR: {r.error}"
        agreement = (r.agree_short or r.agreement).replace("|", "/")
        lines.append(
            f"| {r.name} | {_fmt_s(r.cpu_s)} | {_fmt_s(r.dev_s)} | {f'{sp:.2f}x' if sp else '-'} | "
            f"{f'{r.peak_mb:.0f}' if r.peak_mb is not None else '-'} | {agreement} | "
            f"{status.replace('|', '/')} |"
        )
    return "\n".join(lines)


def environment(dev, threads: int) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda_build": torch.version.cuda,
        "torch_threads": threads,
        "cuda_available": torch.cuda.is_available(),
        "device": str(dev),
    }
    try:
        import explorer

        env["explorer"] = explorer.__version__
    except Exception:  # noqa: BLE001
        pass
    try:
        env["git"] = (
            subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
    except Exception:  # noqa: BLE001
        env["git"] = None
    try:
        env["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception:  # noqa: BLE001
        env["cudnn"] = None
    if torch.cuda.is_available():
        env["gpus"] = []
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            env["gpus"].append(
                {
                    "index": i,
                    "name": p.name,
                    "capability": f"{p.major}.{p.minor}",
                    "memory_GiB": round(p.total_memory / 2**30, 1),
                    "multiprocessors": p.multi_processor_count,
                }
            )
        env["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        env["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
        env["float32_matmul_precision"] = torch.get_float32_matmul_precision()
        env["cudnn_benchmark"] = torch.backends.cudnn.benchmark
        fp = getattr(torch.backends.cuda.matmul, "fp32_precision", None)
        if fp is not None:
            env["fp32_precision_matmul_cudnn"] = [fp, getattr(torch.backends.cudnn, "fp32_precision", None)]
        try:
            env["driver"] = (
                subprocess.run(
                    ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                    capture_output=True,
                    text=True,
                    timeout=20,
                ).stdout.strip()
                or None
            )
        except Exception:  # noqa: BLE001
            env["driver"] = None
    return env


def print_environment(env: dict[str, Any]) -> None:
    print("## Environment")
    print(
        f"- python {env['python']} on {env['platform']}, {env['cpu_cores']} CPU cores, torch threads "
        f"{env['torch_threads']}"
    )
    print(f"- nips-explorer {env.get('explorer', '?')} (git {env.get('git') or '?'})")
    print(
        f"- torch {env['torch']}, built with CUDA {env['torch_cuda_build'] or 'none'}, cuDNN "
        f"{env.get('cudnn') or 'none'}; torch.cuda.is_available() = {env['cuda_available']}"
    )
    for g in env.get("gpus", []):
        print(
            f"- GPU {g['index']}: {g['name']}, capability {g['capability']}, {g['memory_GiB']} GiB, "
            f"{g['multiprocessors']} SMs"
        )
    if env.get("gpus"):
        print(
            f"- driver {env.get('driver') or '?'}; TF32 matmul {env['tf32_matmul']}, TF32 cuDNN "
            f"{env['tf32_cudnn']}, float32 matmul precision {env['float32_matmul_precision']}, cudnn.benchmark "
            f"{env['cudnn_benchmark']}"
        )
    init = env.get("device_init_s")
    print(
        f"- device under test: {env['device']}"
        + (f" (first use {init:.2f} s)" if init and env["device"] != "cpu" else "")
        + ("; TF32 switched off (--no-tf32)" if env.get("no_tf32") else "")
    )
    sys.stdout.flush()


def _write_json(path: str | None, env, rows: list[Row], args, total_s: float, done: bool) -> None:
    if not path:
        return
    from dataclasses import asdict

    doc = {
        "environment": env,
        "args": vars(args),
        "finished": done,
        "total_s": round(total_s, 1),
        "rows": [dict(asdict(r), speedup=r.speedup()) for r in rows],
    }
    tmp = Path(path).with_suffix(Path(path).suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--device", default="cuda", help="device to compare with the CPU: cuda (default), cuda:N, cpu (a dry run), mps"
    )
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON (rewritten after every row)")
    ap.add_argument("--quick", action="store_true", help="one steady-state repeat, 3 timed training steps")
    ap.add_argument("--only", default="", help="comma-separated row-name prefixes (e.g. srnn,bptt,train-l2l)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: as the app)")
    ap.add_argument(
        "--train-size",
        choices=("small", "app"),
        default="small",
        help="trainer model sizes: small (default) or the bundled checkpoints' configurations",
    )
    ap.add_argument("--max-minutes", type=float, default=8.0, help="start no new row after this (default 8)")
    ap.add_argument(
        "--no-tf32",
        action="store_true",
        help="switch TF32 off for matmuls and cuDNN (to tell TF32 rounding from real disagreements)",
    )
    args = ap.parse_args(argv)

    global torch
    import torch as _torch

    torch = _torch
    t_start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(max(1, args.threads))
        threads = torch.get_num_threads()
    else:
        from explorer.core.devices import configure_threads

        threads = configure_threads(for_gui=True)

    wanted = args.device.strip().lower()
    if args.no_tf32:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    env = environment(torch.device("cpu") if wanted == "cpu" else wanted, threads)
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        print_environment(env)
        print(
            f"cuda_check: CUDA is not available here (torch {torch.__version__}, built with CUDA "
            f"{torch.version.cuda or 'none'}); run with --device cpu for the CPU-only checks"
            + ("; nothing checked (--quick: exit status 0)" if args.quick else ""),
            file=sys.stdout if args.quick else sys.stderr,
        )
        return 0 if args.quick else 2
    try:
        dev = torch.device(wanted)
        t0 = time.perf_counter()
        x = torch.ones(8, device=dev)
        if float((x * 2).sum().item()) != 16.0:
            raise RuntimeError("wrong result from a test computation")
        _sync(dev)
        env["device_init_s"] = round(time.perf_counter() - t0, 3)
    except Exception as exc:  # noqa: BLE001 - a broken driver, a wrong index, ...
        print_environment(env)
        print(
            f"cuda_check: device '{args.device}' does not work: {type(exc).__name__}: {str(exc)[:200]}", file=sys.stderr
        )
        return 2
    env["device"] = str(dev)
    env["no_tf32"] = bool(args.no_tf32)
    print_environment(env)

    cpu = torch.device("cpu")
    devices = [("cpu", cpu), ("device", dev)]
    repeats = 1 if args.quick else 3
    steps = 3 if args.quick else 6
    only = [s.strip() for s in args.only.split(",") if s.strip()]

    def selected(name: str) -> bool:
        return not only or any(name == o or name.startswith(o) for o in only)

    plan: list[tuple[str, Any]] = [("tab", c) for c in TAB_CHECKS if selected(c.name)]
    plan += [("trainer", c) for c in _make_trainers(args.train_size) if selected(c.name)]
    print(
        f"\n## Checks ({len(plan)}; CPU then {dev}; {repeats} steady-state repeat(s), {steps} timed training "
        f"steps after a warm-up step)"
    )
    rows: list[Row] = []
    for kind, check in plan:
        row = Row(check.name, kind, check.what)
        rows.append(row)
        elapsed = time.perf_counter() - t_start
        if elapsed > args.max_minutes * 60:
            row.status, row.error = "skipped", f"time limit ({args.max_minutes:g} min) reached"
            print(f"[{row.name}] skipped: time limit", flush=True)
            continue
        t0 = time.perf_counter()
        torch.manual_seed(0)
        try:
            if kind == "tab":
                run_tab(check, devices, repeats, row)
            else:
                run_trainer(check, devices, steps, row)
        except Exception as exc:  # noqa: BLE001 - one failure is one row
            cause = exc.__cause__ or exc
            row.status = "ERROR"
            row.error = (
                f"{exc}"[:300]
                if isinstance(exc, RuntimeError) and exc.__cause__
                else f"{type(exc).__name__}: {exc}"[:300]
            )
            traceback.print_exception(type(cause), cause, cause.__traceback__, file=sys.stderr)
        row.wall_s = round(time.perf_counter() - t0, 2)
        _describe(row)
        _write_json(args.json, env, rows, args, time.perf_counter() - t_start, False)

    total = time.perf_counter() - t_start
    print(f"\n## Results ({dev}, {'quick' if args.quick else 'full'}, {total:.0f} s in all)\n")
    print(markdown_table(rows, str(dev)))
    print(
        "\nCPU and device columns: median steady-state time of one call of the tab's inference (after a "
        "warm-up call), or median time of one training step; peak GPU MB: torch.cuda.max_memory_allocated over "
        "the device phase (weights and data included). Per-row load and first-call times are printed above (the "
        "CPU pass's loads include the first read of each file from disk)."
    )
    _write_json(args.json, env, rows, args, total, True)
    bad = [r for r in rows if r.status != "ok"]
    return 1 if bad else 0


def _describe(row: Row) -> None:
    """One progress block per row: what ran, and per device its load / first / median or step times."""
    head = f"[{row.name}] {row.what} ({row.wall_s:.1f} s)"
    print(head, flush=True)
    for label in ("cpu", "device"):
        d = row.details.get(label)
        if not d:
            continue
        if "load_s" in d:
            txt = f"load {_fmt_s(d['load_s'])}, first call {_fmt_s(d['first_s'])}, median {_fmt_s(d['median_s'])}"
        else:
            txt = (
                f"warm-up step {_fmt_s(d['warmup_step_s'])}, median step {_fmt_s(d['median_step_s'])}, losses "
                + " ".join(f"{v:.4g}" for v in d["losses"])
                + f"; {d['fit']} ({_fmt_s(d['fit_s'])})"
            )
        if "peak_gpu_mb" in d:
            txt += f", peak GPU {d['peak_gpu_mb']:.0f} MB"
        if "result" in d:
            txt += f"; {json.dumps(d['result'])}"
        print(f"    {label:6s} {txt}", flush=True)
    if row.agreement:
        print(f"    agree  {row.agreement}", flush=True)
    if row.error:
        print(f"    ERROR  {row.error} (traceback on stderr)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
