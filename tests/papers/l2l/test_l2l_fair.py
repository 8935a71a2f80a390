"""The fair protocol: per-metric selection on tuning problems disjoint from the reported ones, a widened rate grid,
the CLI, and the transfer check (LearnedOptimizer as a plain torch.optim optimizer on real data it never saw)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from explorer.core.checkpoints import save_checkpoint
from explorer.papers.l2l.model import LSTMOptimizer


@pytest.fixture
def ckpts(tmp_path):
    """Two learned-optimizer checkpoints: briefly meta-trained on quadratics, and untrained."""
    from explorer.papers.l2l.problems import QuadraticProblem
    from explorer.papers.l2l.train import MetaTrainer, TrainData

    torch.manual_seed(0)
    net = LSTMOptimizer()
    data = TrainData(sample=lambda k: QuadraticProblem(batch=8, seed=k, steps=10), name="quadratic")
    tr = MetaTrainer(net, data, "cpu", {"steps": 10, "unroll": 5, "meta_lr": 0.01})
    for k in range(3):
        tr.epoch(k)
    paths = []
    for name, n in (("trained", net), ("untrained", LSTMOptimizer())):
        p = tmp_path / f"l2l_{name}.safetensors"
        save_checkpoint(p, n.state_dict(), paper="l2l", model_config={**n.config(), "problem": "quadratic"})
        paths.append(str(p))
    return paths


def test_next_rate_walks_the_1_3_10_grid():
    from explorer.papers.l2l.optimizer_runs import next_rate

    assert next_rate(1e-4, up=False) == 3e-5 and next_rate(3e-5, up=False) == 1e-5
    assert next_rate(10.0, up=True) == 30.0 and next_rate(30.0, up=True) == 100.0
    assert next_rate(3.0, up=True) == 10.0 and next_rate(1.0, up=False) == 0.3


def test_tune_rates_selects_per_metric_and_widens_past_an_edge():
    from explorer.papers.l2l.optimizer_runs import tune_rates

    calls = []

    def score(kind, lr):  # final loss best at lr 100 (past the grid's top), averaged loss best at 0.01
        calls.append(lr)
        return {"final": (math.log10(lr) - 2) ** 2, "avg": (math.log10(lr) + 2) ** 2}

    res = tune_rates(score, kinds=("sgd",), grid=(0.03, 0.1, 0.3, 1.0))
    assert res["lr"]["final"]["sgd"] == 100.0 and res["lr"]["avg"]["sgd"] == 0.01
    assert {3.0, 10.0, 30.0, 100.0, 300.0} <= set(res["widened"]["sgd"])
    assert {0.01, 0.003} <= set(res["widened"]["sgd"])
    assert res["at_edge"] == {"final": [], "avg": []}
    assert len(calls) == len(set(calls))  # no rate measured twice
    fixed = tune_rates(score, kinds=("sgd",), grid=(0.03, 0.1, 0.3, 1.0), widen=False)
    assert fixed["lr"]["final"]["sgd"] == 1.0 and fixed["at_edge"]["final"] == ["sgd"]


def test_tune_rates_stops_widening_into_divergence():
    from explorer.papers.l2l.optimizer_runs import tune_rates

    def score(kind, lr):  # lower is better up to 1, everything above diverges
        v = math.inf if lr > 1.0 else -lr
        return {"final": v, "avg": v}

    res = tune_rates(score, kinds=("adam",), grid=(0.01, 0.1, 1.0))
    assert res["lr"]["final"]["adam"] == 1.0 and res["widened"]["adam"] == [3.0]


def test_tuning_problems_are_disjoint_from_the_reported_ones():
    from explorer.papers.l2l.evaluate import eval_problems_for, tuning_problems

    tune = tuning_problems("mnist", "cpu", 2)
    held, _ = eval_problems_for("mnist", "cpu", 2)
    assert all(len(p.y) == 4000 for p in tune) and all(len(p.y) == 1000 for p in held)  # other images
    assert not torch.equal(tune[0].theta0, held[0].theta0)  # other seeds
    (qt,) = tuning_problems("quadratic", "cpu", 5)
    (qh,), _ = eval_problems_for("quadratic", "cpu", 5)
    assert not torch.equal(qt.W, qh.W)


def test_fair_evaluation_selects_every_optimizer_by_the_reported_metric(ckpts):
    import numpy as np

    from explorer.papers.l2l.evaluate import evaluate_fair
    from explorer.papers.l2l.infer import load_learned

    cands = {p.rsplit("/", 1)[-1]: load_learned(p)[0] for p in ckpts}
    res = evaluate_fair("quadratic", cands, "cpu", runs=10, tune_runs=10, grid=(1e-3, 1e-2, 0.1), kinds=("sgd", "adam"))
    assert res["runs"] == 10 and set(res["metrics"]) == {"final", "avg"}
    tun = res["tuning"]
    for m, rec in res["metrics"].items():
        opts = rec["optimizers"]
        assert set(opts) == {"learned", "sgd", "adam"}
        for kind in ("sgd", "adam"):
            scores = tun["scores"][kind]
            assert scores[repr(opts[kind]["lr"])][m] == min(v[m] for v in scores.values())
        cs = tun["checkpoints"]
        assert opts["learned"]["checkpoint"] == min(cs, key=lambda c, m=m: cs[c][m])
        for s in opts.values():
            assert s["n"] == 10 and len(s["values"]) == 10
            assert s["mean"] == pytest.approx(np.mean(s["values"])) and s["se"] >= 0
        best = rec["best_baseline"]
        assert opts[best]["mean"] == min(opts[k]["mean"] for k in ("sgd", "adam"))
        assert rec["learned_at_most_best_baseline"] == (opts["learned"]["mean"] <= opts[best]["mean"])


def test_eval_cli_fair_protocol_json(ckpts, capsys):
    import argparse

    from explorer.papers.l2l import cli

    p = argparse.ArgumentParser()
    cli.configure_eval(p)
    args = p.parse_args(
        ["--problem", "quadratic", "--protocol", "fair", "--json", "--runs", "10", "--tune-runs", "10"]
        + ["--checkpoint", ckpts[0]]
    )
    args.device = "cpu"
    assert cli.evaluate(args) == 0
    out = json.loads(capsys.readouterr().out)
    q = out["problems"]["quadratic"]
    assert out["protocol"] == "fair" and q["runs"] == 10
    assert q["metrics"]["final"]["optimizers"]["learned"]["checkpoint"] == "l2l_trained.safetensors"
    assert set(q["metrics"]["avg"]["optimizers"]) == {"learned", "sgd", "rmsprop", "adam", "nag"}
    # the legacy protocol takes one checkpoint only
    args = p.parse_args(["--problem", "quadratic", "--checkpoint", ckpts[0], "--checkpoint", ckpts[1]])
    args.device = "cpu"
    from explorer.core.errors import UserError

    with pytest.raises(UserError, match="--protocol fair"):
        cli.evaluate(args)


def test_transfer_runs_the_learned_optimizer_as_a_torch_optimizer(ckpts):
    from explorer.papers.l2l.transfer import evaluate_transfer_set

    res = evaluate_transfer_set("wine", checkpoints=ckpts, runs=3, tune_runs=2, kinds=("adam",), grid=(0.01, 0.1))
    assert res["runs"] == 3 and "13-20-3" in res["net"]
    for rec in res["metrics"].values():
        opts = rec["optimizers"]
        assert set(opts) == {"learned", "adam"} and opts["learned"]["checkpoint"].startswith("l2l_")
        assert all(s["n"] == 3 and math.isfinite(s["mean"]) for s in opts.values())
        assert "learned_at_most_adam" in rec and "learned_minus_adam" in rec


def test_transfer_sets_split_and_skip_with_a_message(monkeypatch):
    from explorer.papers.l2l import data
    from explorer.papers.l2l.transfer import evaluate_transfer, load_transfer_set

    ds = load_transfer_set("wine")
    (xt, yt), (_, ye) = ds["tune"], ds["eval"]
    assert len(yt) + len(ye) == 178 and ds["classes"] == 3
    assert abs(float(xt.mean())) < 1e-4  # standardised with the tuning half's statistics
    monkeypatch.setattr(data, "_package_dir", lambda name: None)
    res = evaluate_transfer(["digits", "wine"], runs=2, tune_runs=1)
    assert "scikit-learn" in res["transfer"]["digits"]["skipped"]
    assert "mlxtend" in res["transfer"]["wine"]["skipped"]


def test_fashion_splits_when_installed():
    from explorer.papers.l2l.data import fashion_available, load_fashion

    if not (fashion_available("train") and fashion_available("test")):
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    xt, _ = load_fashion("train")
    xe, _ = load_fashion("test")
    assert xt.shape == (10000, 784) and xe.shape == (10000, 784) and not torch.equal(xt[:5], xe[:5])


def test_race_rates_follow_the_selected_metric():
    from explorer.papers.l2l.catalog import FAIR_LR
    from explorer.papers.l2l.infer import rates_and_source

    final, src = rates_and_source(None, "rosenbrock", "final")
    avg, _ = rates_and_source(None, "rosenbrock", "avg")
    assert final == FAIR_LR["rosenbrock"]["final"] and avg == FAIR_LR["rosenbrock"]["avg"]
    assert "final loss" in src and "fair protocol" in src
    legacy, _ = rates_and_source(None, "rosenbrock")
    assert set(legacy) == {"sgd", "rmsprop", "adam", "nag"}
