"""The l2l tab's "Neural art" page: Run styles a bundled photo in a worker (both images and loss curves update),
Stop ends a long run, Reset clears it, a bad file is one line in the banner; and its job (infer.style_race)."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("pytestqt")


def _drain(gen):
    items = []
    try:
        while True:
            items.append(next(gen))
    except StopIteration as stop:
        return items, stop.value


def test_style_race_job_yields_images_steps_and_pictures():
    from explorer.core.tasks import CancelToken
    from explorer.papers.l2l import infer
    from explorer.papers.l2l.model import LSTMOptimizer

    torch.set_num_threads(1)
    items, out = _drain(
        infer.style_race(
            ("bundled", "kite"), "colorwhirl", 16, 4, LSTMOptimizer().eval(), 0.03, every=2, token=CancelToken()
        )
    )
    assert items[0][0] == "images" and items[0][1].shape == (16, 16, 3) and items[0][2].shape == (16, 16, 3)
    steps = [it for it in items if isinstance(it, tuple) and it[0] == "step"]
    pics = [it for it in items if isinstance(it, tuple) and it[0] == "pictures"]
    assert [s[1] for s in steps] == [0, 1, 2, 3] and all(set(s[2]) == {"learned", "adam"} for s in steps)
    assert [p[1] for p in pics] == [2, 4] and set(pics[-1][2]) == {"learned", "adam"}
    assert set(out) == {"learned", "adam"} and all(math.isfinite(r["final"]) for r in out.values())


def test_neural_art_page_runs_stops_resets_and_reports_a_bad_file(make_panel, qtbot, tmp_path):
    from explorer.papers.l2l.panel_style import NEEDS_CHECKPOINT

    panel = make_panel("l2l", timeout=120)
    page = panel.style_page
    panel.modes.setCurrentWidget(page)
    has_net = page.net_and_meta()[0] is not None
    if not has_net:
        assert page.info.text() == NEEDS_CHECKPOINT
    page.steps_box.setValue(3)
    page.run_button.click()
    qtbot.waitUntil(lambda: page.last_results is not None, timeout=60_000)
    assert set(page.last_results) == ({"learned", "adam"} if has_net else {"adam"})
    assert len(page._curves["adam"][0]) == 3
    assert not page.views["adam"].pixmap().isNull() and not page.views["content"].pixmap().isNull()
    assert page.run_button.isEnabled() and not page.stop_button.isEnabled()

    # Stop ends a long run; Reset clears the views and curves
    page.steps_box.setValue(1000)
    page.run_button.click()
    qtbot.waitUntil(lambda: len(page._curves["adam"][0]) >= 1, timeout=30_000)
    page.stop_button.click()
    qtbot.waitUntil(lambda: page.run_button.isEnabled(), timeout=20_000)
    assert page.last_results is None and len(page._curves["adam"][0]) < 1000
    page.reset_button.click()
    assert page._curves["adam"] == ([], []) and page.views["adam"].pixmap().isNull()

    # a bad file: one clear line in the banner, the page usable again
    bad = tmp_path / "not_an_image.png"
    bad.write_bytes(b"this is no picture")
    page.use_file(str(bad))
    page.steps_box.setValue(3)
    page.run_button.click()
    qtbot.waitUntil(lambda: panel.banner.isVisible(), timeout=30_000)
    assert "not_an_image.png" in panel.banner.message() and "\n" not in panel.banner.message()
    qtbot.waitUntil(lambda: page.run_button.isEnabled(), timeout=10_000)
    # the same file again is not a second entry; the bundled photos are found by name
    n = page.content_box.count()
    page.use_file(str(bad))
    assert page.content_box.count() == n and page.content() == ("file", str(bad))
    page.content_box.setCurrentIndex(page.content_box.findData("bundled:garden"))
    assert page.content() == ("bundled", "garden")
