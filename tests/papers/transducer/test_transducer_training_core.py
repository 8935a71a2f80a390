"""``train transducer`` on the shared training core: a resumed run continues bit for bit (weights, Adam, the weight
average, torch's and the utterance/augmentation streams' RNG), the checkpoint records how it was trained, two
torchrun processes end with identical weights, and a zero budget is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from explorer.cli import main
from explorer.core.checkpoints import load_checkpoint, read_metadata

from .helpers import write_fake_fsdd

REPO = Path(__file__).resolve().parents[3]
# every piece of state a resume must bring back: dropout (torch RNG), SpecAugment/VTLP (augmentation stream),
# the DP alignments after step 1, the weight average
TINY_RUN = [
    "--batch",
    "4",
    "--hidden",
    "16",
    "--block",
    "4",
    "--eval-utts",
    "1",
    "--espeak-weight",
    "0",
    "--fluent-weight",
    "0",
    "--ema",
    "0.5",
    "--augment",
    "--align",
    "dp",
    "--dp-start",
    "1",
    "--dropout",
    "0.1",
    "--seed",
    "3",
]


@pytest.fixture(scope="module")
def fsdd(tmp_path_factory):
    return write_fake_fsdd(tmp_path_factory.mktemp("fsdd") / "fsdd")


def _user(ck):
    """The trainer's own state in a resume file (history, weight average, every rank's numpy streams)."""
    from explorer.core.training import _join_state

    return _join_state(ck.meta.extra["resume"]["user"], ck.state_dict)


def _train(data, out, *more):
    assert (
        main(["--device", "cpu", "train", "transducer", "--data", str(data), *TINY_RUN, "--out", str(out), *more]) == 0
    )


def test_a_resumed_run_continues_bit_for_bit(fsdd, tmp_path, capsys, monkeypatch):
    """4 steps straight == 4 steps stopped by a signal after 2 (as Ctrl+C does) and resumed. The learning rate's
    cosine runs over --steps, so the stopped run plans 4 steps as well."""
    from explorer.core.training import Run

    _train(fsdd, tmp_path / "a.safetensors", "--steps", "4")
    capsys.readouterr()
    step = Run.step

    def step_then_signal(self, *a, **k):
        if self.step_count + 1 >= 2:
            self._signal = True  # what the SIGINT/SIGTERM handler sets
        return step(self, *a, **k)

    with monkeypatch.context() as mp:
        mp.setattr(Run, "step", step_then_signal)
        _train(fsdd, tmp_path / "b.safetensors", "--steps", "4")
    assert '"stopped": "signal"' in capsys.readouterr().out
    rb = tmp_path / "b.resume.safetensors"
    assert load_checkpoint(rb).meta.extra["resume"]["counters"]["step"] == 2
    assert read_metadata(tmp_path / "b.safetensors").extra["training"]["stop"] == "signal"
    _train(fsdd, tmp_path / "b.safetensors", "--steps", "4", "--resume", str(rb))
    capsys.readouterr()
    a, b = load_checkpoint(tmp_path / "a.safetensors"), load_checkpoint(tmp_path / "b.safetensors")
    assert a.state_dict.keys() == b.state_dict.keys()
    for k in a.state_dict:  # the weight average, as saved
        assert torch.equal(a.state_dict[k], b.state_dict[k]), k
    assert a.meta.metrics["train_final_loss"] == b.meta.metrics["train_final_loss"]
    ra, rb2 = load_checkpoint(tmp_path / "a.resume.safetensors"), load_checkpoint(rb)
    assert ra.state_dict.keys() == rb2.state_dict.keys()
    assert any(k.startswith("optimizer.") for k in ra.state_dict) and any(".avg." in k for k in ra.state_dict)
    for k in ra.state_dict:  # last iterate, Adam's moments, the average
        assert torch.equal(ra.state_dict[k], rb2.state_dict[k]), k
    ua, ub = _user(ra), _user(rb2)
    assert ua["hist"].pop("step_s") and ub["hist"].pop("step_s")  # wall times: the one thing that differs
    ua.pop("avg"), ub.pop("avg")  # tensors, compared above
    assert ua == ub and len(ua["rank_rngs"]) == 1  # loss history and the numpy streams' states

    # (b) the checkpoint says how it was trained
    rec = b.meta.extra["training"]
    assert {"world_size", "steps", "epochs", "wall_s", "resumed_from"} <= set(rec)
    assert rec["world_size"] == 1 and rec["steps"] == 4 and rec["resumed_from"] == "b.resume.safetensors"
    assert read_metadata(tmp_path / "a.safetensors").extra["training"]["resumed_from"] is None
    assert b.meta.extra["train"]["batch"] == 4


def test_zero_minutes_and_a_missing_resume_file_are_refused(fsdd, tmp_path, capsys):
    assert main(["train", "transducer", "--data", str(fsdd), "--minutes", "0"]) == 2
    assert "--minutes" in capsys.readouterr().err
    assert main(["train", "transducer", "--data", str(fsdd), "--resume", str(tmp_path / "none.safetensors")]) == 2


def test_two_processes_on_cpu(fsdd, tmp_path):
    out = tmp_path / "ddp.safetensors"
    env = dict(os.environ, PYTHONPATH=str(REPO), NIPS_EXPLORER_THREADS="1", OMP_NUM_THREADS="1")
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
            "--device",
            "cpu",
            "train",
            "transducer",
            "--data",
            str(fsdd),
            *TINY_RUN,
            "--steps",
            "2",
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    rec = read_metadata(out).extra["training"]
    assert rec["world_size"] == 2 and rec["ranks_in_sync"] is True and rec["steps"] == 2
    assert rec["samples"] == 8  # the global batch (4) each step, 2 per process
    streams = _user(load_checkpoint(tmp_path / "ddp.resume.safetensors"))["rank_rngs"]
    assert len(streams) == 2 and streams[0] != streams[1]  # each rank's own utterance stream, both saved
