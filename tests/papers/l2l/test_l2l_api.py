"""LearnedOptimizer (torch.optim API), checkpoints and the eval command, on tiny problems."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from explorer.core.checkpoints import read_metadata, save_checkpoint
from explorer.core.errors import CheckpointError
from explorer.papers.l2l.model import LSTMOptimizer


@pytest.fixture
def ckpt(tmp_path):
    """A (briefly meta-trained) learned optimizer checkpoint in a temp folder."""
    from explorer.papers.l2l.problems import QuadraticProblem
    from explorer.papers.l2l.train import MetaTrainer, TrainData

    torch.manual_seed(0)
    net = LSTMOptimizer()
    data = TrainData(sample=lambda k: QuadraticProblem(batch=8, seed=k, steps=10), name="quadratic")
    tr = MetaTrainer(net, data, "cpu", {"steps": 10, "unroll": 5, "meta_lr": 0.01})
    for k in range(3):
        tr.epoch(k)
    path = tmp_path / "l2l_test.safetensors"
    save_checkpoint(
        path,
        net.state_dict(),
        paper="l2l",
        model_config={**net.config(), "problem": "quadratic"},
        metrics={"headline": "val_final_loss", "val_final_loss": 1.0},
    )
    return path


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Sigmoid(), torch.nn.Linear(5, 3))


def _train(model, opt, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, 6, generator=g)
        y = torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return loss.item()


def test_learned_optimizer_state_dict_round_trip(ckpt):
    from explorer.papers.l2l import LearnedOptimizer

    model = _model()
    opt = LearnedOptimizer(model.parameters(), checkpoint=ckpt)
    assert isinstance(opt, torch.optim.Optimizer)
    _train(model, opt, 3)
    sd = opt.state_dict()
    assert set(sd["state"][0]) >= {"h0", "c0", "h1", "c1", "step"}
    assert sd["state"][0]["step"].item() == 3

    twin = copy.deepcopy(model)
    opt2 = LearnedOptimizer(twin.parameters(), checkpoint=ckpt)
    opt2.load_state_dict(copy.deepcopy(sd))
    _train(model, opt, 2, seed=7)
    _train(twin, opt2, 2, seed=7)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)
    # a fresh optimizer (no restored LSTM state) takes different steps
    fresh = copy.deepcopy(twin)
    _train(fresh, LearnedOptimizer(fresh.parameters(), checkpoint=ckpt), 1, seed=9)
    _train(twin, opt2, 1, seed=9)
    assert any(not torch.equal(a, b) for a, b in zip(fresh.parameters(), twin.parameters()))


def test_learned_optimizer_closure_and_errors(ckpt, tmp_path):
    from explorer.papers.l2l import LearnedOptimizer

    w = torch.zeros(3, requires_grad=True)
    opt = LearnedOptimizer([w], checkpoint=ckpt)

    def closure():
        opt.zero_grad()
        loss = ((w - 1) ** 2).sum()
        loss.backward()
        return loss

    first = opt.step(closure).item()
    assert first == pytest.approx(3.0)
    assert not torch.equal(w, torch.zeros(3))
    bad = tmp_path / "other.safetensors"
    save_checkpoint(bad, {"x": torch.zeros(1)}, paper="srnn", model_config={})
    with pytest.raises(CheckpointError, match="srnn"):
        LearnedOptimizer([w], checkpoint=bad)


def test_eval_runs_and_saves_metrics(ckpt, tmp_path):
    from explorer.papers.l2l.evaluate import evaluate_problems

    curves = tmp_path / "curves.json"
    res = evaluate_problems(
        ["quadratic"], "cpu", checkpoint=str(ckpt), runs=6, tune_runs=6, save=True, curves_path=str(curves)
    )
    q = res["problems"]["quadratic"]
    assert q["runs"] == 6 and set(q["optimizers"]) == {"learned", "sgd", "rmsprop", "adam", "nag"}
    for s in q["optimizers"].values():
        assert s["final_mean"] >= 0 and s["avg_mean"] >= 0
    assert set(q["tuned_lr"]) == {"sgd", "rmsprop", "adam", "nag"}
    c = json.loads(curves.read_text())["quadratic"]
    assert len(c["adam"]) == 101
    meta = read_metadata(ckpt)
    assert meta.metrics["eval"]["quadratic"]["tuned_lr"] == q["tuned_lr"]
    assert meta.metrics["headline"] == "final_loss"


def test_train_cli_writes_a_checkpoint(tmp_path):
    import argparse

    from explorer.papers.l2l import cli

    p = argparse.ArgumentParser()
    cli.configure_train(p)
    out = tmp_path / "q.safetensors"
    args = p.parse_args(["--problem", "quadratic", "--epochs", "2", "--val-every", "1", "--out", str(out)])
    args.device = "cpu"
    assert cli.train(args) == 0
    meta = read_metadata(out)
    assert meta.paper == "l2l" and meta.model_config["problem"] == "quadratic"
    assert meta.metrics["epochs"] == 2 and meta.metrics["finished"] is True
    with pytest.raises(SystemExit):  # refused by the parser: --epochs takes a whole number of at least 1
        p.parse_args(["--epochs", "0", "--out", str(out)])


def test_bundled_learned_optimizer_trains_an_mnist_mlp():
    from explorer.core.paths import bundled

    if not bundled("l2l_mnist.safetensors").exists():
        pytest.skip("bundled checkpoint missing")
    from explorer.papers.l2l import LearnedOptimizer
    from explorer.papers.l2l.data import load_mnist

    x, y = load_mnist("test")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 20), torch.nn.Sigmoid(), torch.nn.Linear(20, 10))
    opt = LearnedOptimizer(model.parameters())
    assert opt.checkpoint_name == "l2l_mnist.safetensors"
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        start = torch.nn.functional.cross_entropy(model(x), y).item()
    for _ in range(30):
        idx = torch.randint(0, len(y), (128,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    with torch.no_grad():
        end = torch.nn.functional.cross_entropy(model(x), y).item()
    assert end < 0.5 * start, (start, end)


def test_fashion_eval_is_skipped_when_missing(monkeypatch, tmp_path, ckpt):
    from explorer.papers.l2l import data
    from explorer.papers.l2l.evaluate import evaluate_problems

    monkeypatch.setattr(data, "FASHION_DIR", tmp_path / "nothing")
    res = evaluate_problems(["fashion"], "cpu", checkpoint=str(ckpt))
    assert "skipped" in res["problems"]["fashion"]
