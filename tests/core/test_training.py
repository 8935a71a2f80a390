"""The shared training core: budget, resume (a resumed run continues, bit for bit), signals, and DDP on 2 gloo
processes (both ranks end with identical weights)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import time

import pytest
import torch

from explorer.core import training as tc
from explorer.core.checkpoints import load_checkpoint
from explorer.core.errors import UserError


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.config = {"kind": "toy"}
        self.lin = torch.nn.Linear(4, 1)

    def forward(self, x):
        return self.lin(x)


def _train(tmp, steps, resume=None, world=None, minutes=None, batch=8, stop_after=None):
    """Fit y = sum(x) with noisy targets drawn from torch's global RNG (so RNG restore matters)."""
    world = world or tc.World(device=torch.device("cpu"))
    tc.seed_all(3)
    model = Toy()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    run = tc.Run(world, paper="toy", out=tmp / "toy.safetensors", minutes=minutes, steps=steps, seed=3)
    run.attach(model=model, optimizer=opt, scheduler=sched)
    user = run.resume(resume)
    losses = list(user.get("losses", []))
    run.state_fn = lambda: {"losses": losses, "best": float("-inf")}
    net = run.wrap(model)
    per = world.split_batch(batch)
    with run:
        while not run.done():
            x = torch.randn(batch, 4)[world.rank * per : (world.rank + 1) * per]
            y = x.sum(1, keepdim=True) + 0.1 * torch.randn(batch, 1)[world.rank * per : (world.rank + 1) * per]
            loss = ((net(x) - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if stop_after is not None and run.step_count + 1 >= stop_after:
                run._signal = True
            run.step(samples=batch)
    run.save_model(tmp / "toy.safetensors", model.state_dict(), model_config=model.config, metrics={})
    return model, run, losses


def test_resumed_run_continues_bit_for_bit(tmp_path):
    a, _, la = _train(tmp_path / "a", steps=6)
    _, r1, _ = _train(tmp_path / "b", steps=3)
    assert r1.stop_reason == "steps"
    resume = tc.resume_path_for(tmp_path / "b" / "toy.safetensors")
    assert resume.exists() and resume.name == "toy.resume.safetensors"
    b, r2, lb = _train(tmp_path / "b", steps=6, resume=tmp_path / "b" / "toy.safetensors")
    assert r2.step_count == 6 and r2.resumed_from == resume.name
    assert lb == la
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    rec = load_checkpoint(tmp_path / "b" / "toy.safetensors").meta.extra["training"]
    assert rec["world_size"] == 1 and rec["steps"] == 6 and rec["resumed_from"] == resume.name
    assert {"epochs", "wall_s", "samples"} <= set(rec)


def test_a_signal_saves_and_stops(tmp_path):
    _, run, losses = _train(tmp_path, steps=100, stop_after=4)
    assert run.stop_reason == "signal" and run.step_count == 4 and run.interrupted()
    ck = load_checkpoint(tc.resume_path_for(tmp_path / "toy.safetensors"))
    assert ck.meta.extra["resume"]["counters"]["step"] == 4


def test_signal_handler_is_installed_and_restored(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    run = tc.Run(tc.World(device=torch.device("cpu")), paper="toy", steps=5)
    with run:
        assert signal.getsignal(signal.SIGTERM) == run._on_signal
        os.kill(os.getpid(), signal.SIGTERM)
        run.step()
        assert run.stop_reason == "signal"
    assert signal.getsignal(signal.SIGTERM) == before


def test_time_budget_and_refusals(tmp_path):
    with pytest.raises(UserError):
        tc.Run(tc.World(device=torch.device("cpu")), paper="toy", minutes=0)
    run = tc.Run(tc.World(device=torch.device("cpu")), paper="toy", minutes=1e-6)
    with run:
        time.sleep(0.01)
        run.step()
    assert run.stop_reason == "time"
    with pytest.raises(UserError, match="does not split"):
        tc.World(world_size=2, device=torch.device("cpu")).split_batch(5)
    # a weights-only checkpoint is not a resume file
    m, _, _ = _train(tmp_path, steps=1)
    tc.resume_path_for(tmp_path / "toy.safetensors").unlink()
    with pytest.raises(UserError, match="no training state"):
        _train(tmp_path, steps=2, resume=tmp_path / "toy.safetensors")


def test_shared_options_parse():
    p = argparse.ArgumentParser()
    tc.add_training_options(p, steps=10, epochs=None, minutes=5)
    a = p.parse_args(["--steps", "3", "--max-minutes", "2", "--resume", "x.resume.safetensors", "--seed", "4"])
    assert (a.steps, a.minutes, a.resume, a.seed) == (3, 2.0, "x.resume.safetensors", 4)
    assert not hasattr(a, "epochs")
    with pytest.raises(SystemExit):
        p.parse_args(["--minutes", "0"])


# -------------------------------------------------------------------------------------------------- two processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, tmp: str) -> None:
    from pathlib import Path

    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": str(world_size),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(world_size),
        }
    )
    world = tc.init_world("cpu", threads=1)
    try:
        model, run, _ = _train(Path(tmp), steps=5, world=world)
        torch.save({k: v.clone() for k, v in model.state_dict().items()}, Path(tmp) / f"rank{rank}.pt")
        assert run.ranks_in_sync is True
    finally:
        world.close()


def test_two_gloo_processes_hold_identical_weights(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    w0 = torch.load(tmp_path / "rank0.pt")
    w1 = torch.load(tmp_path / "rank1.pt")
    for k in w0:
        assert torch.equal(w0[k], w1[k])
    rec = load_checkpoint(tmp_path / "toy.safetensors").meta.extra["training"]
    assert rec["world_size"] == 2 and rec["backend"] == "gloo" and rec["ranks_in_sync"] is True
    assert json.loads(json.dumps(rec))["steps"] == 5
    # the same data and global batch on one process reaches the same weights (up to float summation order)
    one, _, _ = _train(tmp_path / "one", steps=5)
    for k, v in one.state_dict().items():
        assert torch.allclose(v, w0[k], atol=1e-5)


def test_every_trainer_has_the_shared_options():
    """srnn, l2l, transducer, compression, shapes3d: one set of run options, from the core."""
    from explorer.cli import build_parser

    parser = build_parser()
    train = next(
        a
        for a in parser._subparsers._group_actions[0].choices["train"]._actions
        if isinstance(a, argparse._SubParsersAction)
    )
    trainers = {"srnn", "l2l", "transducer", "compression", "shapes3d"}
    assert trainers <= set(train.choices)
    for paper, sub in train.choices.items():
        if paper not in trainers:  # bptt: no model of its own (its `train` says where to go)
            continue
        opts = {o for a in sub._actions for o in a.option_strings}
        assert {"--minutes", "--resume", "--out", "--seed", "--device", "--threads"} <= opts, paper
        assert {"--steps", "--epochs"} & opts, paper
