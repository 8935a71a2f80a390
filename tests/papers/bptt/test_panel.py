"""The BPTT tab in a real window: default demo, slider recompute (latest wins), a real run."""

from __future__ import annotations


def test_bptt_panel_demo_slider_and_real_run(make_panel, qtbot):
    panel = make_panel("bptt")
    # default demo: T=1000, MSM at ~5% of full BPTT's memory
    assert panel.length == 1000 and panel.policy == "msm"
    x, y = panel.cost_items["msm"].getData()
    assert x is not None and len(x) > 10
    for p in ("hsm", "ism"):
        assert len(panel.cost_items[p].getData()[0]) > 10
    plan = panel._plan["plan"]
    assert abs(plan.memory / 4496.5 - 0.05) < 0.01
    assert plan.cost == 1950
    xf, yf = panel.fwd_item.getData()
    assert xf is not None and len(xf) == plan.cost
    assert panel._plan["occupancy"].max() <= plan.memory + 1e-9

    # drag the slider: several moves, only the last plan is shown
    for v in (100, 300, 500, 700):
        panel.budget_slider.setValue(v)
    target = panel.budget()
    qtbot.waitUntil(lambda: panel._plan["memory"] == target, timeout=20000)
    assert "validated" in panel.summary.text()

    # a small real run
    panel.length_spin.setValue(40)
    panel.hidden_spin.setValue(8)
    qtbot.waitUntil(lambda: panel._curves["length"] == 40 and panel._plan["plan"].length == 40, timeout=20000)
    panel.run_button.click()
    qtbot.waitUntil(lambda: "gradient check" in panel.run_result.text(), timeout=60000)
    assert "✘" not in panel.run_result.text()
    assert panel.run_button.isEnabled()
    # the model's memory and time beside the measured ones, as fractions of full BPTT on the same core
    box = panel.model_vs_measured
    assert box.isVisible() and set(box.values) == {"memory", "time"}
    (mm, xm), (mt, xt) = box.values["memory"], box.values["time"]
    assert 0 < mm < 1 and 0 < xm < 1.5 and mt >= 1 and xt > 0
    assert f"model {box.fmt('memory', mm)}, measured {box.fmt('memory', xm)}" in box.toolTip()
    assert f"model {box.fmt('time', mt)}, measured {box.fmt('time', xt)}" in box.toolTip()
    assert box.height() >= box.sizeHint().height()  # laid out at its full size, not squeezed
    panel.run_button.click()  # a new run clears the last one's figures
    assert not box.isVisible() and box.values == {}
    qtbot.waitUntil(lambda: "gradient check" in panel.run_result.text(), timeout=60000)
    assert box.isVisible()


def test_cancel_returns_the_task_bar_to_idle_and_says_so(make_panel, qtbot, monkeypatch):
    """Regression: after Cancel the task bar stayed on "Cancelling…" for ever (the runner had no cancelled
    outcome, so the panel's cancelled branch never ran)."""
    import threading

    from explorer.papers.bptt import infer

    running = threading.Event()

    def endless_run(kind, length, hidden, policy, fraction, device=None, token=None, progress=None, backward_ratio=2.0):
        progress(0.0, "building the problem")
        while True:  # stops only when cancelled (progress() raises Cancelled then)
            running.set()
            token.wait(0.02)
            progress(0.5, "planned schedule")

    monkeypatch.setattr(infer, "run_real", endless_run)
    panel = make_panel("bptt")
    panel.length_spin.setValue(40)
    qtbot.waitUntil(lambda: panel._curves["length"] == 40 and panel._plan["plan"].length == 40, timeout=20000)
    panel.run_result.setText("an earlier run")
    panel.run_button.click()
    assert not panel.run_button.isEnabled() and panel.run_result.text() == ""
    assert panel.task_bar.bar.isVisible() and panel.task_bar.cancel_button.isVisible()
    qtbot.waitUntil(running.is_set, timeout=20000)
    panel.task_bar.cancel_button.click()
    assert panel.task_bar.label.text() == "Cancelling…"
    qtbot.waitUntil(lambda: not panel.runner.is_busy("run"), timeout=20000)
    assert panel.task_bar.label.text() == "Cancelled."
    assert not panel.task_bar.bar.isVisible() and not panel.task_bar.cancel_button.isVisible()
    assert panel.run_button.isEnabled()
    assert panel.run_result.text() == "" and not panel.banner.isVisible()


def test_every_new_plan_redraws_the_schedule_plots_and_a_too_long_one_empties_them(make_panel, qtbot):
    """Regression: with T=10000 the schedule and memory plots kept showing an earlier plan (a budget whose
    schedule is too long to list failed with a class name in a banner and left the old plot on screen)."""
    from explorer.ui.widgets.plots import LogAxis

    panel = make_panel("bptt")
    assert isinstance(panel.cost_plot.getAxis("bottom"), LogAxis) and isinstance(
        panel.cost_plot.getAxis("left"), LogAxis
    )
    assert "T=1,000" in panel.sched_plot.getPlotItem().titleLabel.text

    def settled():
        return panel.idle()

    panel.length_spin.setValue(10000)
    qtbot.waitUntil(lambda: panel._curves["length"] == 10000 and settled(), timeout=120000)
    plan = panel._plan["plan"]
    assert plan.length == 10000
    assert panel.fwd_item.yData.max() == 10000  # the new schedule is drawn, not the old one
    assert panel.mem_item.xData.size == len(plan.schedule)
    title = panel.sched_plot.getPlotItem().titleLabel.text
    assert "T=10,000" in title and plan.policy.upper() in title
    assert plan.policy == "msm" and panel.summary.text().startswith("<b>MSM</b>")  # no fallback to HSM any more

    panel.budget_slider.setValue(0)  # 1 unit: 50 million forward steps
    qtbot.waitUntil(settled, timeout=60000)
    assert panel._plan is None and _points(panel.fwd_item) == 0 and _points(panel.mem_item) == 0
    assert "too many to draw" in panel.sched_note.toPlainText()
    assert "50,005,000" in panel.summary.text() and not panel.banner.isVisible()

    panel.budget_slider.setValue(600)  # and a drawable budget draws again
    qtbot.waitUntil(lambda: settled() and panel._plan is not None, timeout=60000)
    assert panel._plan["memory"] == panel.budget() and panel.fwd_item.yData.max() == 10000
    assert panel.sched_note.toPlainText() == ""


def _points(item):
    return 0 if item.xData is None else item.xData.size


def test_msm_at_t10000_is_planned_in_a_worker_while_the_gui_runs_and_the_real_run_is_capped(
    make_panel, qtbot, monkeypatch
):
    """T=10000 is planned with MSM (no cap any more); the table is built in a worker thread while the GUI thread
    keeps handling events; the real run is offered only while T x hidden is moderate, and says why not."""
    import threading

    from PySide6.QtCore import QTimer

    from explorer.papers.bptt import planner as PL

    ticked = threading.Event()
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(ticked.set)
    timer.start()
    seen = []
    build = PL.msm_table

    def spy(*args, **kwargs):
        ticked.clear()
        seen.append((threading.current_thread().name, ticked.wait(30)))  # the GUI thread ticked meanwhile
        return build(*args, **kwargs)

    monkeypatch.setattr(PL, "msm_table", spy)
    PL.clear_table_cache()
    panel = make_panel("bptt")
    panel.length_spin.setValue(10000)

    def settled():
        return panel.idle()

    qtbot.waitUntil(lambda: panel._curves["length"] == 10000 and settled(), timeout=180000)
    timer.stop()
    assert seen and all(name.startswith("explorer-worker") and gui_ran for name, gui_ran in seen)
    assert "msm" in panel._curves["planners"] and panel._curves["notes"] == []
    assert len(panel.cost_items["msm"].getData()[0]) > 10
    plan = panel._plan["plan"]
    assert plan.policy == "msm" and plan.length == 10000 and "validated" in panel.summary.text()
    assert plan.cost == panel._curves["planners"]["msm"].cost(plan.memory)

    # the run: 10000 x 256 is over the cap (disabled, the tooltip says why); hidden 64 is under it
    assert panel.hidden_spin.value() == 256
    assert not panel.run_button.isEnabled()
    tip = panel.run_button.toolTip()
    assert tip.startswith("Not offered") and "full BPTT" in tip and "T <= 5,000" in tip
    panel.hidden_spin.setValue(64)
    assert panel.run_button.isEnabled() and "Not offered" not in panel.run_button.toolTip()
    panel.length_spin.setValue(20000)  # the spin box stops at the planning limit
    assert panel.length == 10000


def test_the_tab_is_built_in_pieces_and_its_plots_are_revealed_one_per_turn(qtbot):
    """The constructor builds no widget; build_steps() makes them piece by piece (one plot per piece) and the
    plots stay transparent until the event loop reveals them."""
    import pyqtgraph as pg
    from PySide6.QtWidgets import QSpinBox

    from explorer.core.registry import get_spec
    from explorer.core.settings import Settings
    from explorer.papers.bptt.panel import BPTTPanel
    from explorer.ui.context import AppContext

    panel = BPTTPanel(get_spec("bptt"), AppContext(Settings()))
    qtbot.addWidget(panel)
    assert not panel.findChildren(pg.PlotWidget) and not panel.findChildren(QSpinBox)
    pieces, made = 0, 0
    for _ in panel.build_steps():
        pieces += 1
        now = len(panel.findChildren(pg.PlotWidget))
        assert now - made <= 1  # at most one plot made per piece
        made = now
    assert pieces >= 5 and len(panel.findChildren(pg.PlotWidget)) == 3
    items = [p.getPlotItem() for p in (panel.cost_plot, panel.sched_plot, panel.mem_plot)]
    assert all(it.opacity() == 0.0 for it in items)
    qtbot.waitUntil(lambda: all(it.opacity() == 1.0 for it in items), timeout=5000)
    panel.shutdown()


def test_a_plan_cleared_while_its_drawing_is_queued_is_not_drawn(make_panel, qtbot):
    """A plan is drawn over several event-loop turns; emptied meanwhile (a budget with no drawable schedule), its
    remaining pieces do nothing and the plots stay empty."""
    panel = make_panel("bptt")
    res = panel._plan
    panel._on_plan(res, panel.shown_plan)
    panel._clear_schedule("nothing to draw")
    qtbot.waitUntil(panel.idle, timeout=10000)
    assert panel._plan is None and _points(panel.fwd_item) == 0 and _points(panel.mem_item) == 0
    assert panel.sched_note.toPlainText() == "nothing to draw"


def test_a_run_too_long_to_offer_says_why_in_its_declared_message(make_panel, qtbot):
    """The Run button's tooltip and the banner (Run asked for anyway, e.g. by a shortcut) are one declared message;
    no run starts."""
    from explorer.papers.bptt.infer import RUN_MAX_T_X_HIDDEN
    from explorer.papers.bptt.panel import BPTTPanel

    panel = make_panel("bptt")
    assert panel.run_button.isEnabled() and panel.banner.kind is None
    panel.hidden_spin.setValue(1024)
    T = RUN_MAX_T_X_HIDDEN // 1024 + 1
    panel.length_spin.setValue(T)
    qtbot.waitUntil(lambda: panel._curves["length"] == T and panel.idle(), timeout=60000)
    assert not panel.run_button.isEnabled()
    panel.run_real()
    banner = panel.banner
    assert banner.kind is BPTTPanel.Messages.run_too_long
    assert banner.fields["T"] == T and banner.fields["hidden"] == 1024 and banner.fields["top_t"] == T - 1
    assert banner.message() == panel.run_button.toolTip()
    assert banner.message().startswith(f"Not offered for T={T:,} at hidden 1024: ")
    assert not panel.runner.is_busy("run") and "gradient check" not in panel.run_result.text()
    panel.hidden_spin.setValue(8)  # a size that is offered: the button comes back
    assert panel.run_button.isEnabled() and "Not offered" not in panel.run_button.toolTip()
