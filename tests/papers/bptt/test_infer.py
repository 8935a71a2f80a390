"""The BPTT tab's worker jobs (infer.py), headless: curves, plan arrays, the real run and its cancel."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

from explorer.core.errors import Cancelled
from explorer.core.tasks import CancelToken
from explorer.papers.bptt import infer
from explorer.papers.bptt.planner import Planner
from explorer.papers.bptt.schedule import F, full_bptt_memory

HERE = pathlib.Path(infer.__file__).parent


def _polyline_at(x, y, conn, xs):
    """y of the drawn polyline at xs (each xs inside one connected piece)."""
    out = np.full(xs.size, np.nan)
    starts = np.flatnonzero(np.r_[True, ~conn[:-1]])
    ends = np.r_[starts[1:], x.size]
    for a, b in zip(starts, ends):
        inside = (xs >= x[a]) & (xs <= x[b - 1])
        out[inside] = np.interp(xs[inside], x[a:b], y[a:b])
    return out


def test_thin_polyline_keeps_the_same_lines():
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.integers(1, 3, 400)).astype(float)
    y = np.cumsum(rng.choice([1.0, 1.0, 1.0, -3.0], 400))
    conn = rng.random(400) > 0.05
    conn[-1] = False
    tx, ty, tc = infer.thin_polyline(x, y, conn)
    assert tx.size < x.size
    assert np.allclose(_polyline_at(tx, ty, tc, x), y)
    # pieces keep their ends: as many pieces before and after
    assert (~tc).sum() == (~conn).sum()


def test_compute_curves_gives_staircases_as_fractions_of_full_bptt():
    res = infer.compute_curves(200, 4.5)
    assert set(res["planners"]) == {"hsm", "ism", "msm"} and res["notes"] == []
    full = full_bptt_memory(200, 4.5)
    for policy, (x, costs) in res["curves"].items():
        assert np.all(np.diff(x) > 0) and x[-1] <= 1.0 + 1e-9
        pl = res["planners"][policy]
        for xi, c in list(zip(x, costs))[:: max(1, x.size // 20)]:
            assert pl.cost(xi * full) == c  # the curve's points are the planner's costs


def test_compute_plan_arrays_match_the_schedule_and_long_ones_are_drawn_from_their_corners(monkeypatch):
    planner = Planner(300, "msm", 4.5)
    memory = 0.05 * planner.full_memory
    full = infer.compute_plan(planner, memory)
    sched = full["plan"].schedule
    d = full["draw"]
    assert d["fwd"][0].size == full["plan"].cost == int((sched.ops == F).sum())
    assert d["mem"][0].size == len(sched) == d["actions"]
    assert d["n_sh"] + d["n_si"] > 0 and d["peak"] <= memory + 1e-9

    monkeypatch.setattr(infer, "DRAW_FULL_POINTS", 10)
    thin = infer.compute_plan(planner, memory)["draw"]
    assert thin["fwd"][0].size < d["fwd"][0].size and thin["mem"][0].size < d["mem"][0].size
    xf, yf, cf = d["fwd"]
    assert np.allclose(_polyline_at(*thin["fwd"], xf), yf)
    mx, my = d["mem"]
    tx, ty = thin["mem"]
    assert np.allclose(np.interp(mx, tx, ty), my)


def test_run_real_is_the_evaluation_measurement_and_checks_gradients():
    r = infer.run_real("gru", 30, 8, "msm", 0.1)
    assert r["forward_steps"] == r["cost"] and r["grad_diff"] < 1e-4 and r["ck_grad_diff"] < 1e-4
    assert 0 < r["measured_memory_fraction"] < 1.5 and r["ck_segments"] >= 1


def test_a_cancel_during_full_bptt_stops_it_within_a_step(monkeypatch):
    """full BPTT and torch.utils.checkpoint take no token: the run checks it before every step of the core."""
    from explorer.papers.bptt import executor

    token = CancelToken()
    steps_done = []
    real = executor.full_bptt

    def spy(pb):
        try:
            return real(pb)
        finally:
            steps_done.append(pb.core.calls)

    def progress(fraction=None, message=""):
        if message == "full BPTT":
            token.cancel()

    monkeypatch.setattr(executor, "full_bptt", spy)
    with pytest.raises(Cancelled):
        infer.run_real("lstm", 400, 8, "msm", 0.05, token=token, progress=progress)
    assert steps_done == [0]  # cancelled before its first step, not after its 400


def test_the_panel_and_infer_import_no_private_names_of_other_modules():
    for name in ("panel.py", "infer.py"):
        tree = ast.parse((HERE / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, (name, node.module, private)
