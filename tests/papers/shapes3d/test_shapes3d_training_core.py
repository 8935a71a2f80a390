"""The shapes3d trainer on the shared training core: a resumed run continues (bit for bit), the checkpoint records
how it was trained, two torchrun processes on CPU end in sync, --minutes 0 is refused; the data stream's
sharding and the free-bits objective on the global batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer.core.checkpoints import load_checkpoint
from explorer.papers.shapes3d import data as D
from explorer.papers.shapes3d import model as M

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[3]
TINY = dict(steps=2, hidden=32, z_dim=4, patch=8, feat=32, ctx_dim=4)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("shapes3d_data")


def _cli(data_dir, *more):
    return [
        "--device",
        "cpu",
        "train",
        "shapes3d",
        "--n-train",
        "12",
        "--n-test",
        "5",
        "--data-dir",
        str(data_dir),
        "--batch",
        "4",
        "--draw-steps",
        "2",
        "--hidden",
        "32",
        *more,
    ]


class _SigintHalfway:
    """A stand-in for the terminal progress bar that sends SIGINT once the training run is half done."""

    def __init__(self, desc: str = "", total: int = 1000, disable=False) -> None:
        self.desc, self.sent = desc, False

    def __call__(self, fraction=None, message: str = "") -> None:
        if self.desc == "shapes3d train" and fraction is not None and fraction >= 0.5 and not self.sent:
            self.sent = True
            signal.raise_signal(signal.SIGINT)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def test_a_resumed_run_continues_bit_for_bit_and_records_its_training(tmp_path, data_dir, monkeypatch, capsys):
    from explorer.cli import main
    from explorer.core import progress

    straight = tmp_path / "straight.safetensors"
    assert main(_cli(data_dir, "--steps", "6", "--out", str(straight))) == 0
    # the same run, stopped by SIGINT after 3 of its 6 steps (mid-epoch: 11 shapes, batch 4), then resumed
    split = tmp_path / "split.safetensors"
    with monkeypatch.context() as mp:
        mp.setattr(progress, "TerminalProgress", _SigintHalfway)
        assert main(_cli(data_dir, "--steps", "6", "--out", str(split))) == 0
    assert "stopped (signal) at step 3" in capsys.readouterr().err
    resume = tmp_path / "split.resume.safetensors"
    half = load_checkpoint(split).meta.extra["training"]
    assert resume.exists() and half["steps"] == 3 and half["stop"] == "signal"
    assert main(_cli(data_dir, "--steps", "6", "--out", str(split), "--resume", str(resume))) == 0

    a, b = load_checkpoint(straight), load_checkpoint(split)
    assert a.state_dict.keys() == b.state_dict.keys()
    for k, v in a.state_dict.items():
        assert torch.equal(v, b.state_dict[k]), k
    assert a.meta.metrics["train_elbo"] == b.meta.metrics["train_elbo"]  # the smoothed ELBO was restored too
    ra, rb = a.meta.extra["training"], b.meta.extra["training"]
    for rec in (ra, rb):
        assert {"world_size", "steps", "epochs", "wall_s", "resumed_from", "samples"} <= set(rec)
        assert rec["world_size"] == 1 and rec["steps"] == 6 and rec["samples"] == 24 and rec["stop"] == "steps"
    assert ra["resumed_from"] is None and rb["resumed_from"] == resume.name
    assert "test_iou" in b.meta.metrics  # a finished run is evaluated


def _torchrun(tmp_path, data_dir, *more):
    out = tmp_path / "two.safetensors"
    env = dict(os.environ, PYTHONPATH=str(ROOT), NIPS_EXPLORER_THREADS="1")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "explorer",
            *_cli(data_dir, *more, "--out", str(out)),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return load_checkpoint(out).meta.extra["training"]


def test_two_torchrun_processes_on_cpu_end_in_sync(tmp_path, data_dir):
    rec = _torchrun(tmp_path, data_dir, "--steps", "2")
    assert rec["world_size"] == 2 and rec["backend"] == "gloo" and rec["ranks_in_sync"] is True
    assert rec["steps"] == 2 and rec["samples"] == 8  # the global batch: 2 x 2 per process


def test_two_processes_share_a_time_driven_schedule(tmp_path, data_dir):
    """When the wall-clock budget drives the learning-rate schedule, the processes (whose clocks differ a
    little) still apply the same learning rate at every step."""
    rec = _torchrun(tmp_path, data_dir, "--minutes", "0.02")
    assert rec["stop"] == "time" and rec["steps"] > 0 and rec["ranks_in_sync"] is True


def test_zero_minutes_is_refused_with_exit_2(tmp_path, data_dir):
    from explorer.cli import main

    assert main(_cli(data_dir, "--minutes", "0", "--out", str(tmp_path / "x.safetensors"))) == 2
    assert main(["train", "shapes3d", "--max-minutes", "0"]) == 2
    assert not (tmp_path / "x.safetensors").exists()


def test_batch_stream_shares_every_global_batch_and_resumes():
    rng = np.random.default_rng(0)
    views = D.ViewSet(
        rng.integers(0, 256, size=(11, len(M.TRAIN_CAMERAS), 32, 32), dtype=np.uint8),
        np.arange(11) % 5,
        list(D.PRIMITIVE_CLASSES),
        [list(c) for c in M.TRAIN_CAMERAS],
    )
    one = views.batches(4, np.random.default_rng(7))
    ranks = [views.batches(4, np.random.default_rng(7), rank=r, world_size=2) for r in range(2)]
    for _ in range(5):  # across epoch boundaries (2 batches of 4 in 11 shapes)
        full = next(one)
        parts = [next(s) for s in ranks]
        assert np.array_equal(np.concatenate([p["views"] for p in parts]), full["views"])
        assert np.array_equal(np.concatenate([p["labels"] for p in parts]), full["labels"])
    state = one.state_dict()
    again = views.batches(4, np.random.default_rng(123))
    again.load_state_dict(state)
    for _ in range(4):
        x, y = next(one), next(again)
        assert np.array_equal(x["views"], y["views"]) and np.array_equal(x["labels"], y["labels"])
    with pytest.raises(ValueError):
        views.batches(5, np.random.default_rng(0), rank=0, world_size=2)


def test_free_bits_on_the_global_batch_gives_one_process_gradients():
    """Two halves of a batch, each thresholding the KL averaged over both (what DDP processes do), average to
    the whole batch's gradient; thresholding each half's own KL would not."""
    from explorer.papers.shapes3d.train import batch_loss

    torch.manual_seed(0)
    model = M.build(dict(TINY))
    views = torch.rand(8, len(M.TRAIN_CAMERAS), 32, 32) ** 4
    halves = (views[:4], views[4:])
    params = [p for p in model.parameters()]

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]

    with torch.no_grad():
        stats = [
            torch.cat([t["kl"].mean(0), t["elbo"].view(1)])
            for t in (batch_loss(model, h, None, sample=False) for h in halves)
        ]
    glob = (stats[0] + stats[1]) / 2
    lo = min(float(stats[0][0]), float(stats[1][0]))
    free_bits = (lo + float(glob[0])) / 2  # the whole batch's step-0 KL is above, one half's below
    full = batch_loss(model, views, None, sample=False, free_bits=free_bits)
    g_full = grads(full["loss"])
    shared = [batch_loss(model, h, None, sample=False, free_bits=free_bits, global_mean=lambda t: glob) for h in halves]
    assert float(shared[0]["elbo"]) == pytest.approx(float(full["elbo"]), rel=1e-5)
    g_shared = [grads(t["loss"]) for t in shared]
    own = [grads(batch_loss(model, h, None, sample=False, free_bits=free_bits)["loss"]) for h in halves]
    for gf, g0, g1 in zip(g_full, *g_shared):
        assert torch.allclose(gf, (g0 + g1) / 2, atol=1e-6, rtol=1e-4)
    assert not all(torch.allclose(gf, (o0 + o1) / 2, atol=1e-6, rtol=1e-4) for gf, o0, o1 in zip(g_full, *own))
