"""The executor on real torch cores: exact gradients, forward counts, honest memory."""

from __future__ import annotations

import pytest
import torch

from explorer.papers.bptt.executor import (
    full_bptt,
    make_problem,
    max_abs_diff,
    measure_alpha,
    run_schedule,
    uniform_checkpoint,
)
from explorer.papers.bptt.planner import Planner
from explorer.papers.bptt.schedule import full_bptt_schedule

T = 17


@pytest.fixture(scope="module", params=["lstm", "gru"])
def problem64(request):
    torch.set_num_threads(1)
    pb = make_problem(request.param, T, hidden=8, batch=2, input_size=3, dtype=torch.float64, seed=1)
    return pb, full_bptt(pb), measure_alpha(pb)


@pytest.mark.parametrize("policy", ["hsm", "ism", "msm"])
def test_gradients_equal_full_bptt_float64(problem64, policy):
    pb, ref, a = problem64
    assert ref.forward_steps == T
    planner = Planner(T, policy, a["alpha"])
    for M in (1.0, 2.5, 6.0, 0.3 * planner.full_memory, planner.full_memory):
        plan = planner.plan(M)
        res = run_schedule(pb, plan.schedule)
        assert res.forward_steps == plan.cost, (policy, M)
        assert max_abs_diff(res, ref) < 1e-10, (policy, M)
        # measured memory: never above the plan's stored states plus the working step's internal state
        assert res.peak_bytes <= (plan.peak_memory + a["alpha"]) * a["state_bytes"] + 1e-9


def test_full_bptt_as_a_schedule_and_alpha(problem64):
    pb, ref, a = problem64
    assert a["alpha"] > 1.0
    if pb.core.kind == "lstm":
        assert a["alpha"] == pytest.approx(4.5)  # h,c in; 4H gates, tanh(c); h,c out -> 9H / 2H
    res = run_schedule(pb, full_bptt_schedule(T, a["alpha"]))
    assert res.forward_steps == T
    assert max_abs_diff(res, ref) < 1e-10
    assert res.peak_bytes == ref.peak_bytes  # same activations kept: the accounting agrees


def test_small_budget_saves_memory_and_checkpoint_baseline(problem64):
    pb, ref, a = problem64
    plan = Planner(T, "msm", a["alpha"]).plan(4.0)
    res = run_schedule(pb, plan.schedule)
    assert res.peak_bytes < 0.4 * ref.peak_bytes
    ck = uniform_checkpoint(pb, 4)
    assert ck.forward_steps == 2 * T
    assert max_abs_diff(ck, ref) < 1e-10
    assert ck.peak_bytes < ref.peak_bytes
    assert ck.info["packs_total"] > ck.info["packs_forward"]  # recomputation is seen by the hooks


@pytest.mark.parametrize("policy", ["hsm", "ism", "msm"])
def test_gradients_float32(policy):
    pb = make_problem("lstm", 25, hidden=16, batch=3, input_size=4, dtype=torch.float32, seed=2)
    ref = full_bptt(pb)
    a = measure_alpha(pb)
    plan = Planner(25, policy, a["alpha"]).plan(7.0)
    res = run_schedule(pb, plan.schedule)
    assert res.forward_steps == plan.cost
    assert max_abs_diff(res, ref) < 1e-5


def test_cancel_and_progress():
    from explorer.core.errors import Cancelled
    from explorer.core.tasks import CancelToken

    pb = make_problem("gru", 30, hidden=4, batch=1, input_size=2, seed=3)
    plan = Planner(30, "hsm", 1.0).plan(2)
    seen = []
    run_schedule(pb, plan.schedule, progress=lambda f, m="": seen.append(f))
    assert seen and 0 <= min(seen) and max(seen) < 1
    tok = CancelToken()
    tok.cancel()
    with pytest.raises(Cancelled):
        run_schedule(pb, plan.schedule, token=tok)
