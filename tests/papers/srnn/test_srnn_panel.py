"""The SRNN tab opens, analyses a piece with the bundled models, continues it and writes a WAV."""

from __future__ import annotations

import os

import numpy as np
import pytest

from explorer.core.paths import bundled

pytestmark = pytest.mark.skipif(
    not bundled("srnn_jsb_smooth_resq.safetensors").exists(), reason="bundled SRNN checkpoint missing"
)


def test_panel_opens_and_renders(make_panel, qtbot):
    panel = make_panel("srnn", timeout=180)
    assert panel.model is not None and panel.pieces
    assert "smooth" in panel.results
    r = panel.results["smooth"]
    assert np.isfinite(r["elbo_per_step"]) and r["probs"].shape[1] == 88
    assert "nats/step" in panel.elbo_label.text()
    assert panel.roll_img.image is not None and panel.prob_img.image is not None
    assert len(panel.p_kl.listDataItems()) >= 1 and len(panel.p_lat[0].listDataItems()) >= 2
    # the default demo also continued the piece and wrote a WAV
    assert panel.continuation["generated"].shape[1] == 88 and os.path.exists(panel._last_wav)
    # hovering a step shows a cursor in every plot and describes the step
    panel.highlight(3.2)
    assert all(c.isVisible() for c in panel.cursors) and "step 4" in panel.hover_label.text()
    panel.highlight(None)
    assert not any(c.isVisible() for c in panel.cursors)
    # playback never crashes (there may be no audio device here): it plays, or says where the WAV is
    panel.play_button.click()
    said = panel.audio_label.text()
    assert said == "Playing…" or panel._last_wav in said, said
    panel._stop_audio()
    # another piece: a new analysis replaces the old one, and the continuation of the other piece goes
    if panel.piece_box.count() > 1:
        panel.piece_box.setCurrentIndex(1)
        assert panel.continuation is None and not panel.play_button.isEnabled() and not panel.audio_label.text()
        qtbot.waitUntil(lambda: not panel.runner.is_busy("analyse") and "smooth" in panel.results, timeout=60000)
        assert panel.roll_img.image.shape == panel.pieces[1][1].shape

    # Bach chorales from the optional music21 package as another source of pieces
    try:
        import music21  # noqa: F401
    except ImportError:
        return
    panel.source_box.setCurrentIndex(1)
    qtbot.waitUntil(lambda: panel.pieces and panel.pieces[0][0].startswith("music21"), timeout=60000)
    qtbot.waitUntil(lambda: not panel.runner.is_busy() and "smooth" in panel.results, timeout=60000)
    assert np.isfinite(panel.results["smooth"]["elbo_per_step"])


def _page_of(panel):
    page = panel.parentWidget()
    while not hasattr(page, "checkpoint_bar"):
        page = page.parentWidget()
    return page


def _settled(panel):
    return not panel.runner.is_busy() and panel.main_key in panel.results and "nats/step" in panel.elbo_label.text()


def _assert_every_view_agrees(panel, ds):
    from explorer.papers.srnn.data import DATASET_TITLES, PAPER_PER_STEP

    bar = _page_of(panel).checkpoint_bar
    title = DATASET_TITLES[ds]
    assert f"srnn_{ds}_" in bar.name.text() and bar.data.text() == f"data: {ds}"
    assert panel.model_meta.data["name"] == ds and panel.models[panel.main_key] is panel.model
    assert panel.dataset == ds and panel.dataset_box.currentData() == ds
    items = [panel.piece_box.itemText(i) for i in range(panel.piece_box.count())]
    assert items and items == [t for t, _ in panel.pieces] and all(t.startswith(title) for t in items), items
    x = panel.current_piece()
    assert panel.roll_img.image.shape == x.shape
    r = panel.results[panel.main_key]
    assert len(r["ll"]) == len(x)
    assert panel.elbo_label.text().startswith(f"ELBO {r['elbo_per_step']:.2f} nats/step")
    assert f"(paper {PAPER_PER_STEP[ds]})" in panel.elbo_label.text()
    assert f"{title} test set" in panel.info_label.text()


@pytest.mark.slow  # about 20 s: three checkpoints, each analysed and continued
@pytest.mark.skipif(
    not bundled("srnn_nottingham_smooth_resq.safetensors").exists(), reason="bundled Nottingham checkpoint missing"
)
def test_opening_another_data_sets_checkpoint_switches_every_view(make_panel, qtbot):
    """Regression: after opening the Nottingham checkpoint while JSB was shown, the header said Nottingham while
    the data set box, the piece list, the ELBO and the plots stayed on JSB (and Reset to bundled did not help)."""
    panel = make_panel("srnn", timeout=180)
    page = _page_of(panel)
    _assert_every_view_agrees(panel, "jsb")
    assert panel.continuation is not None

    with qtbot.waitSignal(panel.checkpoint_changed, timeout=60000):
        page.open_checkpoint(str(bundled("srnn_nottingham_smooth_resq.safetensors")))
    # while the new data set is prepared nothing of the old one is on screen
    assert panel.piece_box.count() == 0 and panel.elbo_label.text() == "…" and not panel.results
    assert panel.continuation is None and not panel.play_button.isEnabled() and panel.cont_img.image is None
    qtbot.waitUntil(lambda: _settled(panel), timeout=120000)
    _assert_every_view_agrees(panel, "nottingham")

    with qtbot.waitSignal(panel.checkpoint_changed, timeout=60000):
        page.checkpoint_bar.reset_button.click()
    qtbot.waitUntil(lambda: _settled(panel), timeout=120000)
    _assert_every_view_agrees(panel, "jsb")

    # the data set box opens that data set's model: the header follows it too
    with qtbot.waitSignal(panel.checkpoint_changed, timeout=60000):
        panel.dataset_box.setCurrentIndex(panel.dataset_box.findData("nottingham"))
    qtbot.waitUntil(lambda: _settled(panel), timeout=120000)
    _assert_every_view_agrees(panel, "nottingham")


def test_cancelling_an_analysis_returns_the_task_bar_to_idle(make_panel, qtbot, monkeypatch):
    from explorer.papers.srnn import infer

    panel = make_panel("srnn", timeout=180)
    devices = []

    def endless(models, x, samples, device="cpu", token=None, progress=None):
        devices.append(device)  # when the job is called (a Cancel may come before its generator starts)

        def forever():
            while True:
                progress(None, "analysing")
                token.wait(0.01)
                yield from ()

        return forever()

    monkeypatch.setattr(infer, "analyse_models", endless)
    panel.piece_box.setCurrentIndex(1)
    assert panel.task_bar.cancel_button.isVisible() and panel.elbo_label.text() == "…"
    panel.task_bar.cancel_button.click()
    qtbot.waitUntil(lambda: not panel.runner.is_busy(), timeout=30000)
    assert panel.task_bar.label.text() == "Analysis cancelled."
    assert not panel.task_bar.bar.isVisible() and not panel.task_bar.cancel_button.isVisible()
    assert not panel.results and not panel.banner.isVisible()
    assert [str(d) for d in devices] == ["cpu"]  # the app's device (the test window's), filled in by the runner


def test_plots_keep_their_height_and_no_legend_covers_them(make_panel, qtbot):
    """Regression: at small window sizes the plots were squashed to 20 px strips with overlapping ticks, and
    the legends of the KL, log-likelihood and latent plots were boxes drawn over the curves."""
    import pyqtgraph as pg

    from explorer.papers.srnn.panel import BOTTOM_ROW_MIN_PX, LABEL, ROW_MIN_PX

    panel = make_panel("srnn", timeout=180)
    plots = [panel.p_roll, panel.p_prob, panel.p_kl, panel.p_ll, *panel.p_lat, panel.p_cont]
    assert not [it for it in panel.glw.scene().items() if isinstance(it, pg.LegendItem)]
    names = panel.legend.labels()
    assert LABEL["smooth"] in names and any(n.startswith("latents") for n in names)
    w = panel.window()
    w.setMinimumSize(300, 300)
    for size in ((1024, 560), (1280, 800), (1900, 1040)):
        w.resize(*size)
        qtbot.wait(200)
        for p in plots:
            least = BOTTOM_ROW_MIN_PX if p in (panel.p_ll, panel.p_cont) else ROW_MIN_PX
            assert p.size().height() >= least - 1, (size, p.titleLabel.text, p.size().height())
        assert panel.glw.height() >= panel.glw.minimumHeight()
