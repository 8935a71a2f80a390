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
    # the contour lines (computed in the worker) are drawn on the map, in its pixel units
    assert len(panel._isos) == 9 and all(iso.parentItem() is panel.map_image for iso in panel._isos)
    assert sum(iso.path().elementCount() for iso in panel._isos) > 50

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
    panel.task_bar.cancel_button.click()
    qtbot.waitUntil(lambda: panel.meta_button.isEnabled(), timeout=10_000)
    assert len(panel._meta_y) < 500
    assert panel.task_bar.label.text().startswith("Meta-training cancelled after ")
    assert not panel.task_bar.bar.isVisible() and not panel.task_bar.cancel_button.isVisible()


def _bar(panel):
    page = panel.parentWidget()
    while not hasattr(page, "checkpoint_bar"):
        page = page.parentWidget()
    return page.checkpoint_bar


def _learned_row(panel):
    t = panel.table
    rows = [[t.item(r, c).text() for c in range(t.columnCount())] for r in range(t.rowCount())]
    return next(r for r in rows if r[0].startswith("LSTM ("))


def test_the_header_names_the_checkpoint_the_race_uses(make_panel, qtbot, monkeypatch):
    """Regression: the header named the MNIST checkpoint (the file opened) while the race on a quadratic problem
    used the quadratic one."""
    from explorer.core.paths import bundled

    if not (bundled("l2l_mnist.safetensors").exists() and bundled("l2l_quadratic.safetensors").exists()):
        pytest.skip("bundled l2l checkpoints missing")
    panel = make_panel("l2l", timeout=120)
    bar = _bar(panel)
    assert panel.model_meta.name == "l2l_mnist.safetensors"  # the file opened...
    assert panel.problem() == "quad2d"  # ...but the race is on a quadratic
    assert "l2l_quadratic.safetensors" in bar.name.text() and "quadratic" in bar.data.text()
    assert _learned_row(panel)[0] == "LSTM (quadratic-trained)"
    assert _learned_row(panel)[4].startswith("l2l_quadratic.safetensors")
    assert "for this problem</b>: l2l_quadratic.safetensors" in panel.info.text()

    # another problem family: the header follows at once, the race of the other problem goes
    panel.problem_box.setCurrentIndex(panel.problem_box.findData("mnist"))
    assert "l2l_mnist.safetensors" in bar.name.text() and "MNIST" in bar.data.text()
    assert "for this problem</b>: l2l_mnist.safetensors" in panel.info.text()
    assert panel.table.rowCount() == 0 and not panel._curves and panel.last_results is None
    assert not any(len(d) for d in panel._path_data.values()) and panel.map_image.image is None
    assert panel.task_bar.label.text() == "Press Race to race on " + panel.problem_box.currentText()
    panel.race_button.click()
    qtbot.waitUntil(lambda: panel.last_results is not None, timeout=120_000)
    assert "l2l_mnist.safetensors" in bar.name.text()
    assert _learned_row(panel)[0] == "LSTM (mnist-trained)"
    assert _learned_row(panel)[4].startswith("accuracy") and "l2l_mnist.safetensors" in _learned_row(panel)[4]
    assert panel.problem_box.currentText() in panel.loss_plot.getPlotItem().titleLabel.text

    # Cancel: the task bar ends as "Race cancelled", the header still names the raced checkpoint
    from explorer.core.tasks import Progress
    from explorer.papers.l2l import infer

    def endless(problem_name, seed, entries, pace, device="cpu", token=None, contours=None):
        t = 0
        while True:
            token.wait(0.01)
            yield ("step", t, {key: 1.0 / (t + 1) for key, *_ in entries}, {})
            yield Progress(None, f"step {t}")
            t += 1

    monkeypatch.setattr(infer, "race", endless)
    panel.problem_box.setCurrentIndex(panel.problem_box.findData("quadratic"))
    panel.race_button.click()
    qtbot.waitUntil(lambda: len(panel._curve_data["adam"][0]) > 3, timeout=30_000)
    panel.task_bar.cancel_button.click()
    qtbot.waitUntil(lambda: not panel.runner.is_busy("race"), timeout=30_000)
    assert panel.task_bar.label.text() == "Race cancelled"
    assert not panel.task_bar.bar.isVisible() and not panel.task_bar.cancel_button.isVisible()
    assert "l2l_quadratic.safetensors" in bar.name.text() and not panel.banner.isVisible()


def test_the_race_legend_is_a_row_above_the_plot_and_no_overflow_warnings(make_panel, qtbot):
    """Regression: the race plot's legend box covered the curves, and the contour map of the default demo
    made pyqtgraph print "overflow encountered in cast" (float32 ranges against its float64 limits)."""
    import warnings

    import pyqtgraph as pg

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        panel = make_panel("l2l", timeout=120)
        qtbot.wait(300)  # paint what the demo drew
    overflow = [str(w.message) for w in caught if "overflow" in str(w.message)]
    assert not overflow, overflow
    assert panel.map_image.image is not None
    assert not [it for it in panel.loss_plot.scene().items() if isinstance(it, pg.LegendItem)]
    assert set(panel.legend.labels()) == {panel._labels[k] for k in panel._curves}
    assert {"SGD", "Adam"} <= set(panel.legend.labels())


def test_contour_lines_are_traced_in_the_worker_function():
    """contour_lines: log10 of the grid and one polyline set per level (NaN between pieces), in grid-index units;
    in a bowl the lowest level is one closed line around the centre."""
    import numpy as np

    from explorer.papers.l2l.panel import N_CONTOURS, contour_lines

    x = np.linspace(-1, 1, 41)
    Z = 10 ** (x[:, None] ** 2 + x[None, :] ** 2)  # log10 Z is a paraboloid
    logz, lines = contour_lines(Z)
    assert np.allclose(logz, np.log10(Z)) and len(lines) == N_CONTOURS
    for cx, cy in lines:
        assert cx.shape == cy.shape and np.isnan(cx[-1])
        fx, fy = cx[np.isfinite(cx)], cy[np.isfinite(cy)]
        assert len(fx) > 4 and fx.min() >= -1 and fx.max() <= 41 and fy.min() >= -1 and fy.max() <= 41
    cx, cy = lines[0]
    assert np.sum(np.isnan(cx)) == 1 and abs(np.nanmean(cx) - 20) < 2 and abs(np.nanmean(cy) - 20) < 2


def test_loss_view_range_ignores_a_diverged_curve():
    from explorer.papers.l2l.panel import loss_view_range

    curves = {"adam": ([0, 1, 2], [12.0, 3.0, 0.5]), "nag": ([0, 1, 2], [12.0, 4e5, 1e12])}
    lo, hi = loss_view_range(curves, {"nag"})
    assert lo < math.log10(0.5) and math.log10(12.0) < hi < math.log10(12.0) + 0.5
    assert loss_view_range(curves, ())[1] > 11  # without the mark, everything
    assert loss_view_range({}, ()) is None


def test_a_diverging_baseline_keeps_the_race_axis_readable(make_panel, qtbot, monkeypatch):
    """Regression: NAG diverging on Rosenbrock stretched the loss axis to 1e12 and flattened every curve. Now it
    leaves the race marked "diverged at step k" and the axis is fitted to the others."""
    from explorer.papers.l2l import catalog

    panel = make_panel("l2l", timeout=120)
    monkeypatch.setitem(catalog.FAIR_LR["rosenbrock"], "final", {**catalog.FAIR_LR["rosenbrock"]["final"], "nag": 0.05})
    panel.problem_box.setCurrentIndex(panel.problem_box.findData("rosenbrock"))
    assert panel.rate_metric() == "final"
    panel.last_results = None
    panel.race_button.click()
    qtbot.waitUntil(lambda: panel.last_results is not None, timeout=120_000)
    res = panel.last_results
    k = res["nag"]["diverged_at"]
    assert res["nag"]["diverged"] and isinstance(k, int)
    assert f"(diverged at step {k})" in " ".join(panel.legend.labels())
    assert any(f"diverged at step {k}" in m.textItem.toPlainText() for m in panel._marks.values())
    rows = {panel.table.item(r, 0).text(): panel.table.item(r, 2).text() for r in range(panel.table.rowCount())}
    assert rows["NAG (momentum 0.9)"] == f"diverged at step {k}"
    others = [y for key, (_, ys) in panel._curve_data.items() if key != "nag" for y in ys]
    lo, hi = panel.loss_plot.getPlotItem().getViewBox().viewRange()[1]
    assert hi <= math.log10(max(others)) + 0.5  # log10 units: fitted to the curves still racing
    assert lo <= math.log10(min(others))

    # the other metric: the baselines' rates follow it
    panel.metric_box.setCurrentIndex(panel.metric_box.findData("avg"))
    assert panel.table.rowCount() == 0 and panel.last_results is None
    entries, _, notes = panel._entries("rosenbrock")
    rates = {key: lr for key, _, lr, _ in entries if lr is not None}
    assert rates["adam"] == catalog.FAIR_LR["rosenbrock"]["avg"]["adam"]
    assert "loss averaged over steps" in notes["adam"]
