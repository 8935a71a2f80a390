"""The SRNN tab opens, analyses a piece with the bundled models, continues it and writes a WAV."""
from __future__ import annotations

import os

import numpy as np
import pytest

from explorer.core.paths import bundled

pytestmark = pytest.mark.skipif(not bundled("srnn_jsb_smooth_resq.safetensors").exists(),
                                reason="bundled SRNN checkpoint missing")


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
    # another piece: a new analysis replaces the old one
    if panel.piece_box.count() > 1:
        panel.piece_box.setCurrentIndex(1)
        qtbot.waitUntil(lambda: not panel.runner.is_busy("analyse") and "smooth" in panel.results, timeout=60000)
    # playback never crashes (there may be no audio device here)
    panel.play_button.click()
    assert panel.audio_label.text()
    panel._stop_audio()

    # Bach chorales from the optional music21 package as another source of pieces
    try:
        import music21  # noqa: F401
    except ImportError:
        return
    panel.source_box.setCurrentIndex(1)
    qtbot.waitUntil(lambda: panel.pieces and panel.pieces[0][0].startswith("music21"), timeout=60000)
    qtbot.waitUntil(lambda: not panel.runner.is_busy() and "smooth" in panel.results, timeout=60000)
    assert np.isfinite(panel.results["smooth"]["elbo_per_step"])
