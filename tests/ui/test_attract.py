"""Attract mode: idle -> the tabs cycle with their demos; the first real touch hands the app to the visitor."""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from explorer.ui.attract import STATUS, AttractMode

from . import dummy_paper


def _window(make_window, tmp_path, monkeypatch, qtbot, idle_s=0.3, dwell_s=0.4):
    monkeypatch.setenv("NIPS_EXPLORER_MODELS", str(tmp_path))
    dummy_paper.save(tmp_path / "dummy.safetensors")
    specs = [dummy_paper.SPEC, dataclasses.replace(dummy_paper.SPEC, id="dummy2", short_title="Dummy 2")]
    w = make_window(tab="dummy", specs=specs)
    page = w.show_tab("dummy")
    qtbot.waitUntil(lambda: page.panel is not None and page.panel.demo_done, timeout=30000)
    w.attract.shutdown()
    w.attract = AttractMode(w, idle_s=idle_s, dwell_s=dwell_s)
    return w


def test_idle_app_cycles_its_tabs_and_runs_their_demos(make_window, tmp_path, monkeypatch, qtbot):
    w = _window(make_window, tmp_path, monkeypatch, qtbot)
    steps = []
    first = w.pages["dummy"].panel
    monkeypatch.setattr(type(first), "attract_step", lambda self: steps.append(self.spec.id), raising=False)
    qtbot.waitUntil(lambda: w.attract.active, timeout=5000)
    assert w.statusBar().currentMessage() == STATUS
    qtbot.waitUntil(lambda: w.current_page().spec.id == "dummy2", timeout=5000)
    qtbot.waitUntil(lambda: w.current_page().spec.id == "dummy" and steps.count("dummy") >= 2, timeout=10000)
    assert "dummy2" in steps or w.pages["dummy2"].panel is not None  # built on its first visit


def test_a_touch_stops_it_in_place_and_the_idle_clock_restarts(make_window, tmp_path, monkeypatch, qtbot):
    w = _window(make_window, tmp_path, monkeypatch, qtbot, idle_s=0.3, dwell_s=5.0)
    qtbot.waitUntil(lambda: w.attract.active, timeout=5000)
    shown = w.current_page().spec.id
    QTest.keyClick(w.tabs, Qt.Key_Shift)
    assert not w.attract.active and w.current_page().spec.id == shown
    qtbot.waitUntil(lambda: w.attract.active, timeout=5000)  # nobody again: it starts over


def test_events_the_app_makes_itself_do_not_count_as_a_touch(make_window, tmp_path, monkeypatch, qtbot):
    from PySide6.QtCore import QEvent, QPoint, QPointF
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    w = _window(make_window, tmp_path, monkeypatch, qtbot, idle_s=0.3, dwell_s=5.0)
    qtbot.waitUntil(lambda: w.attract.active, timeout=5000)
    ev = QMouseEvent(
        QEvent.MouseMove, QPointF(QPoint(5, 5)), QPointF(QPoint(5, 5)), Qt.NoButton, Qt.NoButton, Qt.NoModifier
    )
    QApplication.sendEvent(w.tabs, ev)  # not spontaneous
    assert w.attract.active


def test_off_by_default_outside_kiosk(make_window):
    w = make_window()
    assert w.attract.idle_s == 0 and not w.attract._idle.isActive()


def test_each_new_tab_hands_the_heaps_free_pages_back(make_window, tmp_path, monkeypatch, qtbot):
    from explorer.core import memory

    monkeypatch.delenv(memory.OFF_ENV, raising=False)
    calls = []
    monkeypatch.setattr("explorer.ui.attract.release_free_memory", lambda: calls.append(1) or 0.001)
    w = _window(make_window, tmp_path, monkeypatch, qtbot, idle_s=0, dwell_s=5.0)
    for i in range(3):
        w.attract.next_tab()
        qtbot.waitUntil(lambda n=i + 1: w.attract.trims == n, timeout=5000)  # in a worker, once per tab shown
    assert len(calls) == 3


def test_tab_ids_limit_the_cycle_to_those_tabs(make_window, tmp_path, monkeypatch, qtbot):
    w = _window(make_window, tmp_path, monkeypatch, qtbot, idle_s=0, dwell_s=5.0)
    w.attract.tab_ids = ["dummy2"]
    shown = []
    for _ in range(3):
        w.attract.next_tab()
        shown.append(w.current_page().spec.id)
    assert shown == ["dummy2"] * 3
