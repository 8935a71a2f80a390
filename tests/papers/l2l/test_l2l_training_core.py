"""The l2l trainer on the shared training core: a resumed run continues bit for bit (also from the middle of an
optimizee episode, and after a SIGINT), the checkpoint records how it was trained, two torchrun processes on CPU
agree with each other and with one process, and a zero time budget is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from explorer.core.checkpoints import load_checkpoint
from explorer.core.errors import UserError
from explorer.core.training import World, resume_path_for
from explorer.papers.l2l.train import make_train_data, train_problem

REPO = Path(__file__).resolve().parents[3]

# 20-step optimizees cut into unrolls of 5: 4 meta-steps per episode, 8 quadratics per meta-step
TINY = {
    "epochs": 50,
    "steps": 20,
    "unroll": 5,
    "meta_lr": 0.01,
    "batch": 8,
    "val_every": 1,
    "val_runs": 8,
    "seed": 0,
    "time_limit_s": 0,
    "clip": 0.0,
}


def _train(out, steps, resume=None, interrupt_at=None):
    calls = []

    def progress(frac, msg):  # called once per meta-step, inside the run's signal handling
        calls.append(frac)
        if len(calls) == interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)

    return train_problem("quadratic", "cpu", dict(TINY), out, steps=steps, resume=resume, progress=progress)


def _same_file(a, b, skip=()):
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert sorted(ca.state_dict) == sorted(cb.state_dict)
    differ = [k for k in ca.state_dict if k not in skip and not torch.equal(ca.state_dict[k], cb.state_dict[k])]
    assert not differ, differ
    return ca, cb


def test_resume_continues_bit_for_bit_from_mid_episode_and_after_sigint(tmp_path):
    straight = _train(tmp_path / "a.safetensors", steps=7)  # 1 episode and 3/4 of the next
    assert straight["steps"] == 7 and straight["epochs_done"] == 1 and straight["stop"] == "steps"

    first = _train(tmp_path / "b.safetensors", steps=7, interrupt_at=3)  # Ctrl+C during meta-step 3
    assert first["stop"] == "signal" and first["steps"] == 3
    resume = resume_path_for(tmp_path / "b.safetensors")
    assert resume.exists()
    inflight = load_checkpoint(resume).meta.extra["resume"]
    assert inflight["counters"]["step"] == 3 and inflight["counters"]["epoch"] == 0
    second = _train(tmp_path / "b.safetensors", steps=7, resume=resume)
    assert second["steps"] == 7 and second["meta_loss"] == straight["meta_loss"]

    # the resume files: LSTM, Adam, history, best weights, the optimizees in flight (θ and LSTM states)
    ra, _ = _same_file(tmp_path / "a.resume.safetensors", resume)
    assert any(k.startswith("user.episodes.0.state") for k in ra.state_dict)
    assert any(k.startswith("optimizer.") for k in ra.state_dict)
    # the checkpoints: the same best weights and validation history (the stop's own validation is not carried)
    ca, cb = _same_file(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    strip = [[(v["step"], v["val_avg_loss"]) for v in c.meta.extra["history"]["val"]] for c in (ca, cb)]
    assert strip[0] == strip[1] and [s for s, _ in strip[0]] == [0, 4, 7]

    # (b) how it was trained
    rec = cb.meta.extra["training"]
    assert {"world_size", "steps", "epochs", "wall_s", "resumed_from", "samples"} <= set(rec)
    assert rec["world_size"] == 1 and rec["steps"] == 7 and rec["epochs"] == 1 and rec["samples"] == 7 * 8
    assert rec["resumed_from"] == resume.name and ca.meta.extra["training"]["resumed_from"] is None


def test_a_crash_after_a_periodic_resume_file_at_an_episode_end_loses_nothing(tmp_path, monkeypatch):
    """The core writes its periodic resume file inside run.step, before the episode's validation: a resumed run
    validates first, and then matches the straight one."""
    from explorer.core import training as core
    from explorer.papers.l2l import train as l2l_train

    straight = _train(tmp_path / "a.safetensors", steps=7)
    orig_step, orig_validate = core.Run.step, l2l_train.validate

    def step(self, *args, **kwargs):
        if self.step_count + 1 == 4:  # the end of the first episode: a periodic resume file falls here
            self._last_save = -1e9
        return orig_step(self, *args, **kwargs)

    calls = []

    def validate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the first episode's validation: the process dies here
            raise RuntimeError("killed")
        return orig_validate(*args, **kwargs)

    monkeypatch.setattr(core.Run, "step", step)
    monkeypatch.setattr(l2l_train, "validate", validate)
    with pytest.raises(RuntimeError, match="killed"):
        _train(tmp_path / "b.safetensors", steps=7)
    monkeypatch.undo()
    resume = resume_path_for(tmp_path / "b.safetensors")
    assert core.read_resume(resume)["counters"]["step"] == 4
    again = _train(tmp_path / "b.safetensors", steps=7, resume=resume)
    assert [(v["step"], v["val_avg_loss"]) for v in again["val"]] == [
        (v["step"], v["val_avg_loss"]) for v in straight["val"]
    ]
    _same_file(tmp_path / "a.resume.safetensors", resume)
    _same_file(tmp_path / "a.safetensors", tmp_path / "b.safetensors")


def test_resume_refuses_other_data_options(tmp_path):
    _train(tmp_path / "a.safetensors", steps=2)
    cfg = dict(TINY, batch=4)
    with pytest.raises(UserError, match="batch 8"):
        train_problem(
            "quadratic",
            "cpu",
            cfg,
            tmp_path / "a.safetensors",
            steps=4,
            resume=resume_path_for(tmp_path / "a.safetensors"),
        )


def test_the_processes_split_each_batch_of_optimizees():
    whole = make_train_data("quadratic", "cpu", TINY).sample(3)
    halves = [make_train_data("quadratic", "cpu", TINY, World(rank=r, world_size=2)).sample(3) for r in (0, 1)]
    assert [h.n_instances for h in halves] == [4, 4]
    assert torch.equal(torch.cat([h.W for h in halves]), whole.W)
    assert torch.equal(torch.cat([h.init_params() for h in halves]), whole.init_params())
    with pytest.raises(UserError, match="does not split evenly"):
        make_train_data("quadratic", "cpu", dict(TINY, batch=7), World(rank=0, world_size=2))
    # MNIST: batch MLPs per meta-step, per-MLP seeds, a rank's share side by side as one problem
    mn = make_train_data("mnist", "cpu", dict(TINY, batch=2, val_runs=1), World(rank=1, world_size=2)).sample(0)
    one = make_train_data("mnist", "cpu", dict(TINY, batch=1, val_runs=1)).sample(1)  # seed base + 0·2 + 1
    assert torch.equal(mn.init_params(), one.init_params())
    two = make_train_data("mnist", "cpu", dict(TINY, batch=2, val_runs=1)).sample(0)
    assert two.n_instances == 2 and two.loss(two.init_params(), 0).shape == (2,)


def test_mnist_mix_turns_through_three_resolutions_and_validates_on_each_alike():
    data = make_train_data("mnist-mix", "cpu", dict(TINY, batch=1, val_runs=2))
    inputs = [data.sample(k).shapes[0][0] for k in range(5)]
    assert inputs == [784, 196, 784, 49, 784]
    assert sorted(p.shapes[0][0] for p in data.val) == [49, 49, 196, 196, 784, 784]
    # the same seeds as plain MNIST at full resolution: episode 0 is the net `--problem mnist` starts with
    plain = make_train_data("mnist", "cpu", dict(TINY, batch=1)).sample(0)
    assert torch.equal(data.sample(0).init_params(), plain.init_params())


def test_mlp_problems_name_themselves_for_the_baselines_cache():
    from explorer.papers.l2l.problems import make_problem

    a, b = make_problem("mnist", 3, split="train"), make_problem("mnist", 3, split="test")
    assert a.cache_key and b.cache_key and a.cache_key != b.cache_key
    assert make_problem("mnist", 3, split="train").cache_key == a.cache_key
    assert make_problem("mnist-7px", 3).cache_key != make_problem("mnist", 3).cache_key
    assert make_problem("mnist-7px", 3).x.shape[1] == 49


def test_a_mix_checkpoint_is_an_mnist_optimizer_to_the_app(tmp_path):
    from explorer.papers.l2l.infer import training_problem

    cfg = dict(TINY, epochs=1, batch=1, val_runs=1, steps=10, unroll=5)
    out = tmp_path / "mix.safetensors"
    train_problem("mnist-mix", "cpu", cfg, str(out))
    meta = load_checkpoint(out).meta
    assert training_problem(meta) == "mnist"
    assert meta.data["meta_training"] == "mnist-mix" and "7x7" in meta.data["name"]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["NIPS_EXPLORER_THREADS"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    return env


TRAIN_ARGS = [
    "train",
    "l2l",
    "--problem",
    "quadratic",
    "--batch",
    "8",
    "--unroll",
    "10",
    "--val-every",
    "1",
    "--epochs",
    "1",
]


def _cli(args, out, procs=1):
    launch = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)] if procs > 1 else []
    r = subprocess.run(
        [sys.executable, *launch, "-m", "explorer", "--device", "cpu", *TRAIN_ARGS, *args, "--out", str(out)],
        env=_env(),
        cwd=out.parent,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_two_processes_on_cpu_agree_with_each_other_and_with_one(tmp_path):
    out2 = tmp_path / "two.safetensors"
    _cli(["--steps", "2"], out2, procs=2)
    ck = load_checkpoint(out2)
    rec = ck.meta.extra["training"]
    assert rec["world_size"] == 2 and rec["ranks_in_sync"] is True and rec["backend"] == "gloo"
    assert rec["steps"] == 2 and rec["samples"] == 2 * 8 and ck.meta.data["batch"] == 8
    # stopped in the middle of an episode: both processes' optimizees are in the resume file; continue there
    assert {
        k.split(".")[2] for k in load_checkpoint(resume_path_for(out2)).state_dict if k.startswith("user.episodes.")
    } == {"0", "1"}
    r = _cli(["--steps", "3", "--resume", str(resume_path_for(out2))], out2, procs=2)
    assert "resumed from two.resume.safetensors: step 2" in r.stdout and "starts over" not in r.stdout
    rec = load_checkpoint(out2).meta.extra["training"]
    assert rec["steps"] == 3 and rec["ranks_in_sync"] is True and rec["resumed_from"] == "two.resume.safetensors"

    out1 = tmp_path / "one.safetensors"
    _cli(["--steps", "3"], out1)
    # the same 8 quadratics per meta-step (4 on each process): the same weights up to summation order
    one = load_checkpoint(resume_path_for(out1)).state_dict
    two = load_checkpoint(resume_path_for(out2)).state_dict
    for k, v in one.items():
        if k.startswith("model."):
            assert torch.allclose(v, two[k], rtol=1e-4, atol=1e-5), k


def test_zero_minutes_is_refused(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "explorer",
            "--device",
            "cpu",
            "train",
            "l2l",
            "--minutes",
            "0",
            "--out",
            str(tmp_path / "x.safetensors"),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "--minutes" in r.stderr
    assert not (tmp_path / "x.safetensors").exists()


@pytest.mark.parametrize("select", ["avg", "final"])
def test_the_kept_weights_are_the_best_by_the_selected_metric(tmp_path, select):
    cfg = dict(TINY, select=select)
    hist = train_problem("quadratic", "cpu", cfg, tmp_path / "s.safetensors", steps=12)
    key = f"val_{select}_loss"
    assert len(hist["val"]) >= 2
    assert hist["best"][key] == min(v[key] for v in hist["val"])
    with pytest.raises(UserError, match="select"):
        train_problem("quadratic", "cpu", dict(TINY, select="median"), tmp_path / "x.safetensors", steps=1)
