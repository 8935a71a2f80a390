"""GUI test of the conceptual compression tab: opens with its default demo, the slider updates the view."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")


def test_panel_opens_and_slider_updates_view(make_panel, qtbot):
    from explorer.papers.compression.codec import decode

    panel = make_panel("compression", timeout=240)
    if panel.model is None:
        pytest.skip("bundled checkpoint models/compression_photos.safetensors is missing")
    assert panel.analysis is not None, panel.banner.message()
    T, n = panel.analysis.T, len(panel.analysis)
    assert 2 <= n <= 12 and panel.slider.minimum() == 0 and panel.slider.maximum() == n - 1
    assert panel.tile_orig.has_image and panel.tile_draw.has_image
    i0 = panel.slider.value()
    assert i0 in panel.sample_cache and all(t.has_image for t in panel.sample_tiles)
    # every file is cached: moving the slider updates the view at once, without a worker
    assert set(panel.points) == set(range(n))
    sizes = [panel.points[i]["bytes"] for i in range(n)]
    psnrs = [panel.points[i]["psnr"] for i in range(n)]
    assert sizes == sorted(sizes) and psnrs == sorted(psnrs) and all(isinstance(b, int) and b > 0 for b in sizes)
    # the picture shown is what the file decodes to
    assert np.array_equal(decode(panel.model, panel.analysis.files[i0].data)[0], panel.analysis.recons[i0])
    i1 = 0 if i0 != 0 else n - 1
    panel.slider.setValue(i1)
    k1 = panel.points[i1]["k"]
    assert f"{panel.points[i1]['bytes']} bytes" in panel.k_label.text()
    assert f"k = {k1} of {T}" in panel.k_label.text()
    assert f"first {k1} of {T}" in panel.tile_draw.title.text()
    assert "bpp" in panel.tile_draw.caption.text() and "bytes" in panel.tile_draw.caption.text()
    # the peers for every file stream in; the plot has the curves and the current markers
    qtbot.waitUntil(lambda: len(panel.baselines) == n, timeout=240000)
    panel.slider.setValue(i0)
    assert panel.tile_jp2.has_image and panel.tile_webp.has_image and panel.tile_avif.has_image
    assert len(panel.curves["draw"].getData()[0]) == n
    assert 1 <= len(panel.curves["jpeg2000"].getData()[0]) <= n  # none where JPEG 2000 cannot go that small
    for i in range(n):
        for name, r in panel.baselines[i].items():
            assert r is None or r.nbytes <= panel.points[i]["bytes"], (i, name)
    assert len(panel.current.data) >= 4
    qtbot.waitUntil(lambda: i1 in panel.sample_cache, timeout=60000)


def test_panel_switches_to_fashion_model(make_panel, qtbot):
    from explorer.core.paths import bundled

    fashion = bundled("compression_fashion.safetensors")
    panel = make_panel("compression", timeout=240)
    if panel.model is None or not fashion.exists():
        pytest.skip("bundled checkpoints missing")
    done = []
    panel.open_checkpoint(fashion, on_done=done.append)
    qtbot.waitUntil(lambda: bool(done), timeout=60000)
    assert done == [True] and panel.model.in_channels == 1
    assert "test_grid" in panel.picker.currentText()
    qtbot.waitUntil(lambda: panel.analysis is not None and panel.analysis.image.shape[2] == 1, timeout=60000)
    assert panel.tile_draw.has_image
    qtbot.waitUntil(lambda: not panel.runner.is_busy(), timeout=120000)


def test_cancelling_the_analysis_returns_the_task_bar_to_idle(make_panel, qtbot, monkeypatch):
    from explorer.core.tasks import Progress

    panel = make_panel("compression", timeout=240)

    def endless(model, img, target_bpp, token=None):
        while True:
            token.wait(0.01)
            yield Progress(None, "compressing")

    from explorer.papers.compression import infer as I

    monkeypatch.setattr(I, "analyse_for_app", endless)
    panel._start_analysis()
    assert panel.task_bar.cancel_button.isVisible()
    panel.task_bar.cancel_button.click()
    assert panel.task_bar.label.text() == "Cancelling…"
    qtbot.waitUntil(lambda: not panel.runner.is_busy("analysis"), timeout=30000)
    assert panel.task_bar.label.text() == "Analysis cancelled."
    assert not panel.task_bar.bar.isVisible() and not panel.task_bar.cancel_button.isVisible()
    assert not panel.banner.isVisible()


def test_captions_sit_below_their_pictures_at_every_window_size(make_panel, qtbot):
    """Regression: at 1280x800 the captions of the four pictures were drawn over their lower part."""
    panel = make_panel("compression", timeout=240)
    if panel.model is None:
        pytest.skip("bundled checkpoint models/compression_photos.safetensors is missing")
    qtbot.waitUntil(lambda: panel.slider.value() in panel.baselines, timeout=120000)
    panel.slider.setValue(0)  # the lowest rate: the peers' longest captions
    qtbot.waitUntil(lambda: 0 in panel.baselines, timeout=240000)
    w = panel.window()
    w.setMinimumSize(300, 300)
    for size in ((1024, 560), (1177, 736), (1280, 800), (1900, 1040)):
        w.resize(*size)
        qtbot.wait(200)
        for tile in (panel.tile_orig, panel.tile_draw, *panel.peer_tiles.values()):
            img, cap = tile.image.geometry(), tile.caption.geometry()
            assert cap.top() > img.bottom(), (size, tile.title.text(), img, cap)
            assert cap.height() >= tile.caption.heightForWidth(cap.width()), (size, tile.caption.text())
            assert img.height() == img.width() == tile.size_px
