"""The learned-optimizer tab's jobs (infer.race, infer.meta_train; no Qt), called directly on the CPU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from explorer.core.errors import Cancelled
from explorer.core.tasks import CancelToken, Progress
from explorer.papers.l2l import infer


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _drain(gen):
    items = []
    try:
        while True:
            items.append(next(gen))
    except StopIteration as stop:
        return items, stop.value


def test_a_2d_race_yields_its_map_then_every_round_and_sums_up():
    traced = []

    def contours(Z):
        traced.append(np.shape(Z))
        return np.log10(Z), [(np.zeros(3), np.zeros(3))]

    entries = [("sgd", "sgd", 0.05, None), ("adam", "adam", 0.05, None)]
    items, out = _drain(infer.race("quad2d", 1, entries, 0.0, device="cpu", token=CancelToken(), contours=contours))
    assert traced == [(160, 160)]  # the map's contour lines are traced once, by the caller's function
    assert items[0][0] == "grid" and len(items[0][6]) == 1 and items[1][0] == "points"
    steps = [it for it in items if isinstance(it, tuple) and it[0] == "step"]
    progress = [it for it in items if isinstance(it, Progress)]
    assert len(steps) == len(progress) > 10 and progress[-1].fraction == 1.0
    assert [s[1] for s in steps] == list(range(len(steps)))
    assert all(set(s[2]) == {"sgd", "adam"} and set(s[3]) == {"sgd", "adam"} for s in steps)
    assert set(out) == {"sgd", "adam"} and all(math.isfinite(r["final"]) and not r["diverged"] for r in out.values())
    assert out["adam"]["lr"] == 0.05
    # without a tracer the map still comes, with no lines; a 10-D problem has no map at all
    items, _ = _drain(infer.race("quad2d", 1, entries[:1], 0.0))
    assert items[0][0] == "grid" and items[0][6] == []
    first = next(infer.race("quadratic", 1, entries[:1], 0.0))
    assert first[0] == "step"


def test_a_race_stops_at_cancel():
    token = CancelToken()
    gen = infer.race("quadratic", 1, [("sgd", "sgd", 0.01, None)], 0.0, token=token)
    assert next(gen)[0] == "step"
    token.cancel()
    with pytest.raises(Cancelled):
        _drain(gen)


def test_meta_train_reports_each_run_and_returns_a_frozen_optimizer():
    items, out = _drain(infer.meta_train(2, 0, device="cpu", token=CancelToken()))
    metas = [it for it in items if isinstance(it, tuple)]
    assert [m[1] for m in metas] == [1, 2] and all(math.isfinite(m[2]) for m in metas)
    assert [p.fraction for p in items if isinstance(p, Progress)] == [0.5, 1.0]
    assert out["epochs"] == 2 and out["wall_s"] > 0
    assert not any(p.requires_grad for p in out["net"].parameters()) and not out["net"].training
