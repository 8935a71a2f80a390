"""Issue 25 ("the booth"): where dialogs open, messages in words, log axes that can be read, tabs that scroll
instead of squeezing their plots."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from explorer.core.paths import models_dir, resources_dir
from explorer.core.settings import Settings

from . import dummy_paper


# ------------------------------------------------------------------------------------------------ dialogs
def test_checkpoint_dialog_starts_in_the_bundled_models_then_in_the_last_folder(tmp_path):
    from explorer.ui.dialogs import CHECKPOINT_KEY, checkpoint_folder, remember_folder

    settings = Settings(tmp_path / "settings.json")
    assert Path(checkpoint_folder(settings)) == models_dir()  # the first time: not the home folder
    (tmp_path / "mine").mkdir()
    remember_folder(settings, CHECKPOINT_KEY, str(tmp_path / "mine" / "x.safetensors"))
    assert Path(checkpoint_folder(settings)) == tmp_path / "mine"  # then where the last one came from
    (tmp_path / "mine").rmdir()  # a folder that is gone: the models again
    assert Path(checkpoint_folder(settings)) == models_dir()


def test_picture_and_sound_pickers_start_in_the_bundled_demo_inputs(tmp_path):
    from types import SimpleNamespace

    from explorer.papers.compression.panel import CompressionPanel
    from explorer.papers.shapes3d.panel import Shapes3DPanel
    from explorer.papers.transducer.panel import TransducerPanel
    from explorer.ui.dialogs import remember_folder

    settings = Settings(tmp_path / "settings.json")
    ctx = SimpleNamespace(settings=settings)
    wav = TransducerPanel.wav_start_folder(SimpleNamespace(context=ctx))
    assert Path(wav) == resources_dir() / "transducer"
    photo = CompressionPanel.image_start_folder(SimpleNamespace(context=ctx, model=None))
    assert Path(photo) == resources_dir() / "compression"
    grey = CompressionPanel.image_start_folder(SimpleNamespace(context=ctx, model=SimpleNamespace(in_channels=1)))
    assert Path(grey) == resources_dir() / "compression" / "fashion"
    assert Path(Shapes3DPanel.picture_start_folder(SimpleNamespace(context=ctx))) == resources_dir() / "shapes3d"
    remember_folder(settings, "transducer_wav_dir", str(tmp_path / "a.wav"))
    assert Path(TransducerPanel.wav_start_folder(SimpleNamespace(context=ctx))) == tmp_path


def test_the_open_checkpoint_dialog_of_a_tab_starts_in_the_models_folder(make_window, qtbot, tmp_path, monkeypatch):
    from explorer.ui import main_window as mw

    monkeypatch.setenv("NIPS_EXPLORER_MODELS", str(tmp_path))
    dummy_paper.save(tmp_path / "dummy.safetensors", seed=0)
    w = make_window(tab="dummy", specs=[dummy_paper.SPEC])
    page = w.show_tab("dummy")
    qtbot.waitUntil(lambda: page.panel is not None and page.panel.demo_done, timeout=30000)
    seen = {}

    def fake_dialog(parent, title, start, filters):
        seen["start"] = start
        return str(tmp_path / "dummy.safetensors"), ""

    monkeypatch.setattr(mw.QFileDialog, "getOpenFileName", staticmethod(fake_dialog))
    with qtbot.waitSignal(page.panel.checkpoint_changed, timeout=30000):
        w._open_checkpoint()  # File > Open checkpoint… (Ctrl+O)
    assert Path(seen["start"]) == tmp_path == models_dir()
    assert w.context.settings.get("last_checkpoint_dir") == str(tmp_path)


# ----------------------------------------------------------------------------------------------- messages
def test_messages_name_tabs_by_their_titles_and_files_once():
    from explorer.ui.messages import exception_text, plain, tab_titles

    titles = tab_titles()
    assert titles["l2l"] == "Learned optimizer" and titles["shapes3d"] == "3D from images"
    text = plain("x.safetensors: this checkpoint is for the 'l2l' tab, not 'shapes3d'", "x.safetensors")
    assert text == "it is a checkpoint for the “Learned optimizer” tab, not for the “3D from images” tab"
    assert "'l2l'" not in text and "x.safetensors" not in text
    assert "tab this app does not have" in plain("this checkpoint is for the 'zzz' tab, not 'srnn'")
    assert exception_text(ValueError("")) == "an unexpected error (ValueError)"
    assert exception_text(MemoryError()) == "the computer ran out of memory"


def test_a_tiny_picture_is_refused_in_words(tmp_path):
    import numpy as np
    from PIL import Image

    from explorer.core.errors import UserError
    from explorer.papers.shapes3d.infer import load_image, prepare_image

    with pytest.raises(UserError) as exc:
        prepare_image(np.zeros((1, 1), np.uint8))
    assert str(exc.value).startswith("the picture is 1x1 pixels") and "array" not in str(exc.value)
    Image.fromarray(np.zeros((2, 3), np.uint8)).save(tmp_path / "dot.png")
    with pytest.raises(UserError) as exc:
        load_image(tmp_path / "dot.png")
    assert str(exc.value).startswith("dot.png: the picture is 3x2 pixels") and str(exc.value).count("dot.png") == 1


# ------------------------------------------------------------------------------------------------ log axes
@pytest.mark.parametrize(
    "lo,hi,px", [(-4, 0, 600), (-4.2, 0.3, 90), (-12, 12, 200), (0, 2.5, 400), (0.05, 0.35, 300), (0.0, 0.02, 300)]
)
def test_log_axes_label_few_ticks_that_never_run_together(lo, hi, px):
    from explorer.ui.widgets.plots import LABEL_PX, log_ticks

    major, minor = log_ticks(lo, hi, px, LABEL_PX["h"])
    assert major, (lo, hi)
    assert len(major) * LABEL_PX["h"] <= max(px, LABEL_PX["h"])  # every label has its room
    assert all(lo - 1e-9 <= v <= hi + 1e-9 for v in major + minor)
    if math.floor(hi) - math.ceil(lo) >= 1:  # two decades or more: decades only
        assert all(abs(v - round(v)) < 1e-9 for v in major)


def test_log_tick_labels_are_short_numbers():
    from explorer.ui.widgets.plots import format_power

    assert [format_power(v) for v in (1e-5, 0.001, 0.02, 1, 100, 1000, 2e4, 1e6)] == [
        "10⁻⁵",
        "0.001",
        "0.02",
        "1",
        "100",
        "1000",
        "2·10⁴",
        "10⁶",
    ]


# ------------------------------------------------------------------------------------------------- layout
def test_a_small_window_scrolls_the_tab_and_never_squeezes_its_plots(make_panel, qtbot):
    import pyqtgraph as pg

    from explorer.ui.widgets.fit_scroll import least_height

    panel = make_panel("bptt")
    w = panel.window()
    page = w.current_page()
    plots = (panel.cost_plot, panel.sched_plot, panel.mem_plot)
    for size in ((1280, 800), (1024, 560), (1700, 1000)):
        w.setMinimumSize(300, 300)
        w.resize(*size)
        qtbot.wait(200)
        for p in plots:
            assert p.height() >= p.minimumHeight() > 100, (size, p.height())
        assert panel.height() >= least_height(panel, panel.width())
        assert panel.height() >= page.scroll.viewport().height()  # it fills the window where it fits
        # legends are rows above the plots, never boxes over the data
        assert not [it for p in plots for it in p.scene().items() if isinstance(it, pg.LegendItem)]
    w.resize(1024, 560)
    qtbot.wait(200)
    assert page.scroll.verticalScrollBar().maximum() > 0  # too small: the tab scrolls
    w.resize(1700, 1000)
    qtbot.wait(200)
    assert page.scroll.verticalScrollBar().maximum() == 0  # big enough: no scroll bar
