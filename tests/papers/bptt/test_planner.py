"""The BPTT planner: recurrences, closed forms (Griewank's Revolve), schedules and the validator."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explorer.papers.bptt.planner import (
    InfeasibleBudget,
    Planner,
    clear_table_cache,
    dp_table,
    hsm_cost,
    ism_cost,
    ism_costs,
    ism_costs_over_slots,
    make_grid,
    msm_table,
    numforw,
    reference_table,
    revolve_beta,
)
from explorer.papers.bptt.schedule import Schedule, ScheduleError, full_bptt_memory, full_bptt_schedule, validate


def test_hsm_dp_equals_griewank_revolve_closed_form():
    T, Mmax = 300, 12
    C = dp_table(T, Mmax, 1, 1, "hsm", prune=False)  # the plain recurrence, no closed-form help
    for t in range(1, T + 1):
        for m in range(1, Mmax + 1):
            # Revolve: r minimal with beta(m, r) >= t; C = t + numforw(t, m) = (r+1) t - beta(m+1, r-1)
            assert C[t, m] == t + numforw(t, m) == hsm_cost(t, m), (t, m)
    assert revolve_beta(3, 2) == math.comb(5, 3)


def test_hsm_boundaries_and_the_t1000_table():
    for t in (1, 2, 7, 50):
        assert hsm_cost(t, 1) == t * (t + 1) // 2
        assert hsm_cost(t, t + 5) == 2 * t - 1
    expected = {
        1: 500500,
        2: 29820,
        5: 7284,
        10: 4636,
        20: 3747,
        31: 3439,
        44: 2954,
        100: 2898,
        250: 2748,
        500: 2498,
        999: 1999,
    }
    for m, c in expected.items():
        assert hsm_cost(1000, m) == c


def test_ism_closed_form_equals_dp():
    T = 150
    C = dp_table(T, T, 1, 1, "ism", prune=False)  # q = p = 1: budget 1 + s units = s internal slots
    for s in range(0, T):
        assert np.array_equal(C[:, 1 + s], ism_costs(np.arange(T + 1), s)), s
    for t in (1, 5, 40):
        assert ism_cost(t, 0) == t * (t + 1) // 2
        assert ism_cost(t, t - 1) == t


def test_ism_curve_over_slots_equals_the_scalar_closed_form():
    for t in (0, 1, 2, 63, 64, 65, 1000, 9999):
        s = np.arange(0, 3 * t + 70)
        assert np.array_equal(ism_costs_over_slots(t, s), [ism_cost(t, int(x)) for x in s]), t


def test_msm_sanity_values():
    # papers.md: t = 60, m = 5: HSM 216, MSM 215 (alpha 4) and 202 (alpha 2)
    assert Planner(60, "hsm").cost(5) == 216
    assert Planner(60, "msm", 4.0).cost(5) == 215
    assert Planner(60, "msm", 2.0).cost(5) == 202
    for alpha in (1.0, 2.0, 4.5):
        P = Planner(40, "msm", alpha)
        assert P.cost(alpha * 40) == 40  # standard BPTT cost once m >= alpha t
        assert P.cost(P.saturation) == 40
        assert P.cost(P.saturation - 0.5) > 40


@pytest.mark.parametrize("q,p", [(1, 1), (1, 2), (1, 4), (2, 9), (4, 5)])
@pytest.mark.parametrize("policy", ["hsm", "ism", "msm"])
def test_fast_dp_equals_reference(policy, q, p):
    T, G = 30, 60
    ref = np.array(reference_table(T, G, q, p, policy), dtype=float)
    fast = dp_table(T, G, q, p, policy, prune=True).astype(float)
    fast[fast >= 2**29] = np.inf
    assert np.array_equal(ref[:, q:], fast[:, q:])


def _finite(C):
    C = np.asarray(C, dtype=float)
    C[C >= 2**29] = np.inf
    return C


@pytest.mark.parametrize("q,p", [(1, 1), (1, 2), (1, 4), (1, 8), (2, 3), (2, 9), (4, 5), (4, 13)])
def test_msm_table_equals_the_plain_python_reference(q, p):
    """The fast MSM table (one convolution per budget, solved by exact windows and passes) is the DP itself."""
    T, G = 40, 6 * q + 5 * p
    ref = _finite(reference_table(T, G, q, p, "msm"))
    assert np.array_equal(ref[:, q:], _finite(msm_table(T, G, q, p))[:, q:])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(T=st.integers(1, 45), q=st.sampled_from([1, 2, 4, 5]), extra=st.integers(0, 12), G=st.integers(1, 90))
def test_msm_table_equals_reference_on_random_grids(T, q, extra, G):
    p = q + extra  # alpha = p / q >= 1
    ref = _finite(reference_table(T, G, q, p, "msm"))
    got = _finite(msm_table(T, G, q, p))
    assert np.array_equal(ref[:, q:], got[:, q:])


@pytest.mark.parametrize("T,alpha", [(1000, 4.5), (600, 8.0), (500, 3.25), (800, 1.0)])
def test_msm_table_equals_the_numpy_dp_at_larger_t(T, alpha):
    """Against the row-by-row numpy DP (an independent implementation of the same recurrence) up to the budget
    where the ISM closed form takes over, at lengths where that DP is affordable in a test."""
    P = Planner(T, "msm", alpha)
    g = make_grid(alpha, 4)
    G = P.cut_cells
    slow = dp_table(T, G, g.q, g.p, "msm", prune=True)
    fast = msm_table(T, G, g.q, g.p)
    assert np.array_equal(_finite(slow)[:, g.q :], _finite(fast)[:, g.q :])


def test_msm_table_equals_the_unpruned_numpy_dp():
    T, q, p = 300, 2, 9
    G = 150
    plain = dp_table(T, G, q, p, "msm", prune=False)  # every split point of every row, no bounds
    assert np.array_equal(_finite(plain)[:, q:], _finite(msm_table(T, G, q, p))[:, q:])


@pytest.mark.parametrize("seed", range(4))
def test_msm_fast_path_equals_the_plain_dps_on_random_lengths_and_alphas(seed):
    """The fast MSM table, its curve and a plan against the plain DPs (numpy, every split point; plain Python on
    short sequences) at random lengths up to 300 and random alphas (exact on the grid or rounded up)."""
    rng = np.random.default_rng(seed)
    T = int(rng.integers(150, 301))
    alpha = float(rng.choice([1.0, 1.25, 2.0, 3.5, 4.5, 6.75, 10.0, 2.3, 5.1]))
    P = Planner(T, "msm", alpha, cache=False)
    q, p = P.grid.q, P.grid.p
    G = P.cut_cells
    fast = msm_table(T, G, q, p)
    plain = dp_table(T, G, q, p, "msm", prune=False)
    assert np.array_equal(_finite(plain)[:, q:], _finite(fast)[:, q:])
    bud, costs = P.curve()
    cells = np.round(bud * q).astype(int)
    inside = cells <= G
    assert np.array_equal(costs[inside], plain[T, cells[inside]])
    assert np.all(np.diff(costs) <= 0) and costs[-1] == T
    M = float(rng.uniform(1.0, P.saturation))
    plan = P.plan(M)
    assert plan.cost == P.cost(M) and validate(plan.schedule, M).cost == plan.cost
    Ts = int(rng.integers(20, 41))
    ref = _finite(reference_table(Ts, 8 * q + 3 * p, q, p, "msm"))
    assert np.array_equal(ref[:, q:], _finite(msm_table(Ts, 8 * q + 3 * p, q, p))[:, q:])


def test_msm_windows_from_levels_equal_the_searches():
    """The windows read off the few levels of the increments' envelopes equal the ones found by searches."""
    from explorer.papers.bptt import planner as PL

    rng = np.random.default_rng(5)
    for _ in range(400):
        T = int(rng.integers(3, 120))
        DA = np.sort(rng.integers(1, 6, T))
        DA[rng.integers(0, T, rng.integers(0, 5))] = rng.integers(1, 7)  # a few increments out of order
        DM1 = np.sort(rng.integers(1, 6, T - 1))
        DM1[rng.integers(0, T - 1, rng.integers(0, 5))] = rng.integers(1, 7)
        A = np.concatenate(([0], np.cumsum(DA)))
        t = np.arange(2, T + 1)
        levels = PL._levels(np.diff(A), 100)
        got = PL._conv_windows(A, PL._MSteps(DM1), t, levels, 3 * (T + 2))
        want = PL._conv_windows(A, PL._MSteps(DM1), t, None, 3 * (T + 2))
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_msm_curve_at_t10000():
    """The whole MSM curve at T = 10000 (alpha 4.5, the tab's default): monotone, from T(T+1)/2 down to T, and
    the same values as the implementation before the speed-up (numbers it computed, checked against the numpy
    DP there up to T = 2000)."""
    P = Planner(10000, "msm", 4.5, cache=False)
    bud, costs = P.curve()
    assert bud.size == 89992 and bud[0] == 1.0 and bud[-1] == P.saturation == 44996.5
    assert np.all(np.diff(costs) <= 0)
    assert costs[0] == 50005000 and costs[-1] == 10000
    assert int(costs.sum()) == 1458192874
    assert int((costs * np.arange(costs.size)).sum()) == 53991114986338
    expected = {2: 942820, 5: 122868, 10: 67413, 20: 46950, 50: 34542, 100: 28842, 250: 22942, 500: 19898}
    expected.update({1000: 19777, 5000: 18889})
    for m, c in expected.items():
        assert P.cost(m) == c, m
    plan = P.plan(50)
    assert plan.cost == 34542 and validate(plan.schedule, 50).cost == 34542


def test_msm_curve_with_cut_equals_unpruned_table():
    T, alpha = 120, 4.5
    P = Planner(T, "msm", alpha)
    bud, costs = P.curve()
    full = dp_table(T, int(round(P.saturation * 2)), 2, 9, "msm", prune=False)
    assert P._table.shape[1] < full.shape[1]  # the cut really cuts
    assert all(full[T, int(round(b * 2))] == c for b, c in zip(bud, costs))
    assert np.all(np.diff(costs) <= 0)


alphas = st.sampled_from([1.0, 1.5, 2.0, 3.0, 3.25, 4.5, 7.0])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(T=st.integers(1, 60), frac=st.floats(0.0, 1.2), alpha=alphas, policy=st.sampled_from(["hsm", "ism", "msm"]))
def test_every_plan_passes_the_validator(T, frac, alpha, policy):
    P = Planner(T, policy, alpha)
    M = 1.0 + frac * (P.saturation - 1.0)
    plan = P.plan(M)
    rep = validate(plan.schedule, M)
    assert rep.cost == plan.cost == P.cost(M)
    assert rep.peak_memory <= M + 1e-9
    assert abs(rep.peak_memory - plan.peak_memory) < 1e-9
    b_steps = plan.schedule.ks[plan.schedule.ops == 5].tolist()
    assert b_steps == list(range(T, 0, -1))


@settings(max_examples=60, deadline=None)
@given(T=st.integers(2, 50), frac=st.floats(0.0, 1.0), alpha=alphas)
def test_msm_never_worse_than_hsm_or_ism(T, frac, alpha):
    msm = Planner(T, "msm", alpha)
    M = 1.0 + frac * (msm.saturation - 1.0)
    c = msm.cost(M)
    assert c <= Planner(T, "hsm", alpha).cost(M)
    assert c <= Planner(T, "ism", alpha).cost(M)  # these alphas are exact on the MSM grid
    assert T <= c <= T * (T + 1) // 2


def test_closed_and_table_methods_agree_on_schedules():
    for policy in ("hsm", "ism"):
        for M in (1, 2, 3.5, 9, 30):
            a = Planner(25, policy, 2.5, method="closed").plan(M)
            b = Planner(25, policy, 2.5, method="table").plan(M)
            assert a.cost == b.cost
            validate(b.schedule, M)


def test_infeasible_budget_is_a_clear_error():
    with pytest.raises(InfeasibleBudget, match="infeasible"):
        Planner(10, "hsm").plan(0.5)
    with pytest.raises(ValueError):
        Planner(0, "hsm")


def test_full_bptt_schedule():
    s = full_bptt_schedule(10, 3.0)
    rep = validate(s, full_bptt_memory(10, 3.0))
    assert rep.cost == 10 and rep.peak_memory == 1 + 9 * 3.0
    with pytest.raises(ScheduleError, match="exceeds"):
        validate(s, full_bptt_memory(10, 3.0) - 0.5)


@pytest.mark.parametrize(
    "actions,message",
    [
        ([["F", 2], ["B", 2], ["F", 1], ["B", 1]], "h_1 is neither"),
        ([["F", 1], ["F", 2], ["B", 1], ["B", 2]], "expected backward step 2"),
        ([["F", 1], ["F", 2], ["SI", 1], ["B", 2], ["B", 1]], "directly after F"),
        ([["F", 1], ["SH", 2]], "register does not hold"),
        ([["F", 1], ["F", 2], ["B", 2]], "ends before backward step 1"),
        ([["F", 1], ["SI", 1], ["F", 2], ["B", 2], ["B", 1], ["DH", 1]], "not stored"),
        ([["F", 1], ["SI", 1], ["F", 2], ["B", 2], ["B", 1], ["F", 1]], "already backpropagated"),
        ([["X", 1]], "unknown operation"),
    ],
)
def test_validator_rejects(actions, message):
    with pytest.raises(ScheduleError, match=message):
        validate(Schedule.from_actions(actions, 2, 2.0), memory=10)


def test_validator_accepts_restart_from_stored_internal_state():
    acts = [["F", 1], ["SI", 1], ["F", 2], ["F", 3], ["B", 3], ["F", 2], ["B", 2], ["B", 1], ["DI", 1]]
    rep = validate(Schedule.from_actions(acts, 3, 2.0), memory=3)
    assert rep.cost == 4 and rep.peak_memory == 3


def test_msm_tables_are_reused_for_shorter_lengths_on_the_same_grid(monkeypatch):
    """C(t, g) does not depend on T: a planner for a shorter T (or fewer budgets) on the same grid reads the
    largest table built so far instead of building one, with the same costs; cache=False always builds."""
    from explorer.papers.bptt import planner as PL

    clear_table_cache()
    built = []
    real = PL.msm_table
    monkeypatch.setattr(PL, "msm_table", lambda *a, **k: built.append(a[:2]) or real(*a, **k))
    big = Planner(400, "msm", 4.5)
    big.curve()
    assert len(built) == 1
    small = Planner(250, "msm", 4.5)
    bud, costs = small.curve()
    assert len(built) == 1  # a view of the T=400 table
    cold = Planner(250, "msm", 4.5, cache=False)
    assert np.array_equal(cold.curve()[1], costs) and len(built) == 2
    Planner(250, "msm", 8.0).curve()  # another grid: built, both kept
    Planner(300, "msm", 4.5).curve()
    assert len(built) == 3
    with pytest.raises(ValueError):
        small._table[0, 0] = 1  # read-only
    clear_table_cache()
