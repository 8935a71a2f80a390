"""Headless tests of the learned optimizer (tiny configs; the whole file runs in a few seconds)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from explorer.papers.l2l.model import LSTMOptimizer, build, preprocess_gradient
from explorer.papers.l2l.problems import QuadraticProblem, make_problem
from explorer.papers.l2l.train import MetaTrainer, TrainData, unroll, validate


def test_spec_and_cli_import_without_torch():
    code = (
        "import sys, explorer.papers.l2l as m, explorer.papers.l2l.cli, explorer.papers.l2l.panel, "
        "explorer.papers.l2l.catalog, explorer.papers.l2l.infer; "
        "assert m.SPEC.id == 'l2l'; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_preprocessing_matches_formula_at_edges():
    p = 10.0
    thr = math.exp(-p)
    g = torch.tensor(
        [0.0, 1e-10, -1e-10, thr * 0.999, thr * 1.001, -thr * 1.001, 1.0, -3.5, 1e10, -1e30], dtype=torch.float64
    )
    out = preprocess_gradient(g, p)
    assert out.shape == (10, 2) and torch.isfinite(out).all()
    for i, v in enumerate(g.tolist()):
        if abs(v) >= thr:
            expect = (math.log(abs(v)) / p, math.copysign(1.0, v))
        else:
            expect = (-1.0, math.exp(p) * v)
        assert out[i, 0].item() == pytest.approx(expect[0], rel=1e-9, abs=1e-12), (v, out[i])
        assert out[i, 1].item() == pytest.approx(expect[1], rel=1e-9, abs=1e-12), (v, out[i])
    # continuity-ish at the threshold: both branches give (-1, ±1) there
    assert out[3, 0].item() == -1.0 and out[3, 1].item() == pytest.approx(0.999, rel=1e-6)
    assert out[4, 0].item() == pytest.approx(-1.0, abs=1e-3) and out[4, 1].item() == 1.0
    # huge: log-magnitude grows slowly, sign exact
    assert out[8].tolist() == pytest.approx([math.log(1e10) / p, 1.0])
    assert out[9, 1].item() == -1.0


def test_lstm_is_applied_coordinatewise():
    torch.manual_seed(0)
    net = LSTMOptimizer()
    n = 9
    g1 = torch.randn(n)
    g2 = torch.randn(n)
    s0 = net.initial_state(n)
    with torch.no_grad():
        u1, s1 = net(g1, s0)
        u2, _ = net(g2, s1)
        g1b = g1.clone()
        g1b[4] = 123.0  # change one coordinate's gradient at step 1
        v1, t1 = net(g1b, s0)
        v2, _ = net(g2, t1)
    changed = (u1 != v1) | (u2 != v2)
    assert changed[4]
    assert not changed[torch.arange(n) != 4].any(), "another coordinate's update depended on coordinate 4"
    # the same gradient at different coordinates gives the same update (shared weights)
    with torch.no_grad():
        u, _ = net(torch.full((5,), 0.3), net.initial_state(5))
    assert torch.allclose(u, u[0].expand(5))


def _tiny_quadratic(seed=3):
    return QuadraticProblem(batch=2, dim=3, seed=seed, steps=4, dtype=torch.float64)


def _meta_grads(net, problem, length, second):
    net.zero_grad()
    theta = problem.init_params()
    ml, _, _, _ = unroll(
        net, problem, theta, net.initial_state(theta.numel(), dtype=torch.float64), 0, length, second_derivatives=second
    )
    ml.backward()
    return [q.grad.detach().clone() for q in net.parameters()]


def test_meta_gradients_flow_to_weights_without_second_derivatives():
    torch.manual_seed(1)
    net = LSTMOptimizer().double()
    prob = _tiny_quadratic()
    ours = _meta_grads(net, prob, 3, second=False)
    assert all(g is not None and torch.isfinite(g).all() for g in ours)
    assert all(g.abs().sum() > 0 for g in ours), "some LSTM weights got no meta-gradient"

    # reference: the same unroll with the analytic gradient 2Wᵀ(Wθ−y) fed as a constant
    net.zero_grad()
    th = prob.init_params()
    state = net.initial_state(th.numel(), dtype=torch.float64)
    meta = th.new_zeros(())
    for _k in range(3):
        grad = prob.gradient(th).detach()
        upd, state = net(grad, state)
        th = th + upd
        meta = meta + prob.loss(th).mean()
    meta.backward()
    ref = [q.grad.detach().clone() for q in net.parameters()]
    for a, b in zip(ours, ref):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-12)

    # keeping second derivatives gives a different meta-gradient (so the check above is not vacuous)
    second = _meta_grads(net, prob, 3, second=True)
    assert any(not torch.allclose(a, b, rtol=1e-6, atol=1e-10) for a, b in zip(ours, second))


def test_a_few_meta_training_steps_lower_the_meta_loss():
    torch.manual_seed(0)
    net = LSTMOptimizer()
    cfg = {"steps": 20, "unroll": 10, "meta_lr": 0.01, "seed": 0}
    data = TrainData(sample=lambda k: QuadraticProblem(batch=16, seed=100 + k, steps=20), name="quadratic")
    val = [QuadraticProblem(batch=64, seed=99, steps=20)]
    before = validate(net, val)["val_avg_loss"]
    trainer = MetaTrainer(net, data, "cpu", cfg)
    for k in range(30):
        trainer.epoch(k)
    after = validate(net, val)["val_avg_loss"]
    assert after < 0.8 * before, (before, after)


def test_final_weighting_trains_only_the_last_truncation():
    """--weighting final with short unrolls: the truncations before the last run forward only (no Adam step on a
    zero meta-gradient), so one meta-step per run, and that step moves the weights."""
    from explorer.papers.l2l.train import steps_per_epoch

    torch.manual_seed(0)
    net = LSTMOptimizer()
    cfg = {"steps": 6, "unroll": 2, "meta_lr": 0.01, "seed": 0, "weighting": "final"}
    data = TrainData(sample=lambda k: QuadraticProblem(batch=4, seed=100 + k, steps=6), name="quadratic")
    trainer = MetaTrainer(net, data, "cpu", cfg)
    before = [q.detach().clone() for q in net.parameters()]
    trainer.start(0)
    value = trainer.meta_step()
    assert value is not None and math.isfinite(value) and trainer.finished and trainer.episode.t0 == 6
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert steps_per_epoch(cfg) == 1 and steps_per_epoch({**cfg, "weighting": "ramp"}) == 3


def test_mlp_problem_is_functional_and_deterministic():
    p1 = make_problem("mnist", seed=5, split="test")
    p2 = make_problem("mnist", seed=5, split="test")
    assert p1.n_params == 784 * 20 + 20 + 20 * 10 + 10
    th = p1.init_params()
    assert not th.requires_grad and torch.equal(th, p2.init_params())
    assert torch.equal(p1.loss(th, 3), p2.loss(th, 3))
    assert abs(p1.final_loss(th).item() - math.log(10)) < 0.3  # near chance at the start
    p3 = make_problem("mnist-2layer", seed=5)
    assert p3.n_params == 784 * 20 + 20 + 20 * 20 + 20 + 20 * 10 + 10


def test_mnist_split_is_disjoint_and_sized():
    from explorer.papers.l2l.data import load_mnist

    xtr, ytr = load_mnist("train")
    xte, yte = load_mnist("test")
    assert xtr.shape == (4000, 784) and xte.shape == (1000, 784)
    assert 0.0 <= float(xtr.min()) and float(xtr.max()) <= 1.0
    assert len(set(ytr.tolist())) == 10 and len(set(yte.tolist())) == 10
    # no image of the held-out part appears in the meta-training part
    tr = {hash(r.numpy().tobytes()) for r in (xtr * 255).round().to(torch.uint8)}
    dup = sum(hash(r.numpy().tobytes()) in tr for r in (xte * 255).round().to(torch.uint8))
    assert dup <= 2  # the 5k sample itself may hold a stray duplicate


def test_baseline_tuning_picks_the_best_rate():
    from explorer.papers.l2l.optimizer_runs import tune_learning_rates

    res = tune_learning_rates("quadratic", grid=(1e-4, 1e-2, 10.0), kinds=("sgd", "adam"), runs=8)
    assert res["lr"]["sgd"] == 1e-2  # 1e-4 barely moves, 10 diverges
    assert math.isinf(res["scores"]["sgd"]["10.0"])
    for kind in ("sgd", "adam"):
        best = res["scores"][kind][repr(res["lr"][kind])]
        assert best == min(res["scores"][kind].values())


def test_rescaled_preprocessing_keeps_the_steps_above_both_thresholds():
    """--preprocess-p with --init: a p = 10 network moved to p = 16 proposes the same steps for |g| >= e^-10 and
    now reads the log magnitude of gradients down to e^-16 (the style run's late pixel gradients)."""
    import copy

    from explorer.papers.l2l.train import rescale_preprocessing

    torch.manual_seed(3)
    net = LSTMOptimizer().double()
    moved = copy.deepcopy(net)
    rescale_preprocessing(moved, 16.0)
    assert moved.p == 16.0 and moved.config()["p"] == 16.0
    g = torch.cat([torch.logspace(-4, 2, 50, dtype=torch.float64), -torch.logspace(-4, 2, 50, dtype=torch.float64)])
    s0 = net.initial_state(g.numel(), dtype=torch.float64)
    with torch.no_grad():
        a, sa = net(g, s0)
        b, sb = moved(g, s0)
        a2, _ = net(g * 0.5, sa)
        b2, _ = moved(g * 0.5, sb)
    assert torch.allclose(a, b, atol=1e-12) and torch.allclose(a2, b2, atol=1e-12)
    small = torch.tensor([1e-6, 1e-5], dtype=torch.float64)  # under e^-10, over e^-16: now a log magnitude
    assert preprocess_gradient(small, moved.p)[:, 0].gt(-1.0).all()
    assert preprocess_gradient(small, net.p)[:, 0].eq(-1.0).all()


def test_build_ignores_extra_config_keys():
    net = build({"hidden": 20, "layers": 2, "problem": "mnist"})
    assert net.config()["hidden"] == 20


@pytest.mark.parametrize("name", ["quad2d", "valley2d", "rosenbrock"])
def test_two_d_problems_have_grids_and_finite_losses(name):
    p = make_problem(name, seed=4)
    xs, ys, Z = p.grid(20)
    assert Z.shape == (20, 20) and (Z >= 0).all()
    x0, x1, y0, y1 = p.bounds
    assert x0 <= p.optimum[0] <= x1 and y0 <= p.optimum[1] <= y1
    assert p.loss(torch.tensor(p.optimum, dtype=torch.float32), 0).item() < 1e-4


def test_ramp_weighting_leans_the_meta_loss_to_late_steps():
    """--weighting ramp: meta-loss Σ (2t/T) f_t; final: T f_T; uniform (default) is the paper's plain sum."""
    from explorer.papers.l2l.train import step_weight

    assert step_weight({"steps": 4}) is None and step_weight({"steps": 4, "weighting": "uniform"}) is None
    w = step_weight({"steps": 4, "weighting": "ramp"})
    assert [w(t) for t in range(1, 5)] == [0.5, 1.0, 1.5, 2.0]
    torch.manual_seed(1)
    net = LSTMOptimizer().double()
    prob = _tiny_quadratic()
    theta = prob.init_params()

    def run(weight):
        state = net.initial_state(theta.numel(), dtype=torch.float64)
        ml, _, _, losses = unroll(net, prob, theta, state, 0, 4, weight=weight)
        return float(ml.detach()), losses

    plain, losses = run(None)
    ramp, _ = run(w)
    end = plain - sum(losses[1:])  # f_4, the loss after the last step
    assert math.isclose(plain, sum(losses[1:]) + end)
    assert math.isclose(ramp, sum(w(t) * f for t, f in enumerate(losses) if t > 0) + w(4) * end, rel_tol=1e-9)
    # "final": the loss after the last step alone, weighted by T (the sum's scale)
    fin = step_weight({"steps": 4, "weighting": "final"})
    assert [fin(t) for t in range(1, 5)] == [0.0, 0.0, 0.0, 4.0]
    final, _ = run(fin)
    assert math.isclose(final, 4.0 * end, rel_tol=1e-9)
