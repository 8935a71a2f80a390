"""The l2l tab opens, its default race finishes, a quadratic race and a short live meta-training work."""
from __future__ import annotations

import math

import pytest

pytest.importorskip("pytestqt")


def _rows(panel):
    t = panel.table
    return {t.item(r, 0).text(): t.item(r, 2).text() for r in range(t.rowCount())}


def test_panel_race_and_meta_train(make_panel, qtbot):
    from explorer.core.paths import bundled

    panel = make_panel("l2l", timeout=120)
    have_ckpt = bundled("l2l_mnist.safetensors").exists()
    if not have_ckpt:
        pytest.skip("bundled l2l checkpoints missing")
    # default demo: a race on a 2-D random quadratic, all five optimizers in the table, trajectories drawn
    rows = _rows(panel)
    assert len(rows) == 5 and any(k.startswith("LSTM") for k in rows), rows
    assert panel.problem() == "quad2d"
    assert all(len(v) > 2 for k, v in panel._path_data.items()), "trajectories missing"
    assert panel.map_image.image is not None

    # a race on a 10-D quadratic
    panel.problem_box.setCurrentIndex(panel.problem_box.findData("quadratic"))
    panel.seed_box.setValue(3)
    panel.last_results = None
    panel.race_button.click()
    qtbot.waitUntil(lambda: panel.last_results is not None, timeout=60_000)
    res = panel.last_results
    assert set(res) >= {"learned", "sgd", "rmsprop", "adam", "nag"}
    assert all(r["diverged"] or math.isfinite(r["final"]) for r in res.values())
    xs, ys = panel._curve_data["adam"]
    assert len(xs) == 100 and min(ys) > 0

    # live meta-training (tiny), then the fresh optimizer races too
    panel.meta_epochs.setValue(5)
    panel.last_results = None
    panel.meta_button.click()
    qtbot.waitUntil(lambda: panel.last_results is not None and "fresh" in panel.last_results, timeout=90_000)
    assert len(panel._meta_y) == 5
    assert panel.fresh is not None and panel.fresh["epochs"] == 5

    # cancelling a meta-training run stops it and re-enables the button
    panel.meta_epochs.setValue(500)
    panel.meta_button.click()
    qtbot.waitUntil(lambda: len(panel._meta_y) >= 1, timeout=30_000)
    panel.taskbar.cancel_button.click()
    qtbot.waitUntil(lambda: panel.meta_button.isEnabled(), timeout=10_000)
    assert len(panel._meta_y) < 500
