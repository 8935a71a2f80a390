"""The 3D tab opens, infers a held-out shape in a worker and draws a non-blank isosurface (checked on the VTK
render itself, not on QWidget.grab), survives sampling, slider moves, resizing and closing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def bundled_or_tiny(tmp_path, monkeypatch):
    """Use the bundled checkpoint and gallery; without them (a fresh clone before training), a tiny stand-in."""
    from explorer.core.paths import bundled
    from explorer.papers.shapes3d import SPEC
    from explorer.papers.shapes3d.infer import gallery_path

    if bundled(SPEC.default_checkpoint).exists() and gallery_path().exists():
        return
    import torch

    from explorer.core.checkpoints import save_checkpoint
    from explorer.papers.shapes3d import data as D
    from explorer.papers.shapes3d import model as M
    from explorer.papers.shapes3d.infer import save_gallery

    torch.manual_seed(0)
    model = M.build(dict(steps=2, hidden=32, z_dim=4, patch=8, feat=32, ctx_dim=4))
    lin = (np.arange(8) + 0.5) / 8 * 2 - 1
    z, y, x = np.meshgrid(lin, lin, lin, indexing="ij")
    with torch.no_grad():  # a blob, so that the isosurface is not empty
        model.canvas0.fill_(0.0)
        model.writer.fc.bias.copy_(torch.from_numpy(np.where(x**2 + y**2 + z**2 < 0.36, 3.0, -3.0).ravel()))
    (tmp_path / "models").mkdir()
    save_checkpoint(
        tmp_path / "models" / SPEC.default_checkpoint,
        model.state_dict(),
        paper="shapes3d",
        model_config=model.config(),
        metrics={"headline": "test_iou", "test_iou": 0.0},
    )
    test = D.make_primitives(5, seed=2)
    save_gallery(test, range(5), tmp_path / "resources" / "shapes3d" / "gallery.npz")
    monkeypatch.setenv("NIPS_EXPLORER_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("NIPS_EXPLORER_RESOURCES", str(tmp_path / "resources"))


def _surface_pixels(view) -> int:
    img = view.capture().astype(int)
    r, _g, b = img[..., 0], img[..., 1], img[..., 2]
    return int(((r > 90) & (r > b + 40)).sum())  # orange isosurface on a dark blue-grey background


def _blue_pixels(view) -> int:
    img = view.capture().astype(int)
    return int(((img[..., 2] > 90) & (img[..., 2] > img[..., 0] + 30)).sum())


def test_panel_infers_and_shows_isosurface(make_panel, qtbot, bundled_or_tiny):
    panel = make_panel("shapes3d", timeout=120)
    assert panel.model is not None, panel.banner.text() if hasattr(panel.banner, "text") else "no model"
    assert panel.current is not None and panel.current["occupancy"].shape[-1] == panel.model.res
    assert panel.pred_view.triangles() > 50
    n_pred = _surface_pixels(panel.pred_view)
    assert n_pred > 200, "the inferred isosurface is not visible in the VTK render"
    assert _blue_pixels(panel.truth_view) > 200, "the ground-truth isosurface is not visible"
    assert panel.strip[1].pixmap() is not None and not panel.strip[1].pixmap().isNull()

    # iso-level slider: a higher level gives a smaller (or equal) surface, and re-renders
    panel.iso_slider.setValue(90)
    assert panel.iso_label.text() == "0.90"
    panel.iso_slider.setValue(50)

    # another held-out shape
    panel.current = None
    panel.select_gallery(1)
    qtbot.waitUntil(lambda: panel.current is not None, timeout=30000)
    assert _surface_pixels(panel.pred_view) > 0 or panel.pred_view.triangles() == 0

    # sample from the prior, per class
    panel.sample_combo.setCurrentIndex(1)
    panel.sample()
    qtbot.waitUntil(lambda: not panel.runner.is_busy(), timeout=30000)
    assert "prior" in panel.pred_view.caption_text
    assert not panel.truth_view.visible

    # canvas-building animation steps through the DRAW steps
    panel.anim_timer.setInterval(10)
    panel.animate()
    qtbot.waitUntil(lambda: not panel.anim_timer.isActive(), timeout=10000)
    assert panel.step_slider.value() == panel.model.steps

    # resize and hide/show (tab switch) keep the view alive and rendering
    win = panel.window()
    win.resize(900, 640)
    qtbot.wait(50)
    panel.hide()
    panel.show()
    panel.pred_view.render()
    assert panel.pred_view.capture().std() > 1.0

    panel.shutdown()
    panel.shutdown()  # idempotent
    panel.pred_view.render()  # no-op after close


def test_attract_mode_turns_the_shapes_until_a_visitor_touches_the_view(make_panel, qtbot, bundled_or_tiny):
    """The attract step shows the next held-out shape and turns it: new frames come from the render thread while
    the GUI thread never waits; a press in the view stops the turning."""
    from PySide6.QtCore import QEvent, QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    panel = make_panel("shapes3d", timeout=120)
    view = panel.view_host
    qtbot.waitUntil(lambda: view.has_frame, timeout=30000)
    row = panel.gallery_list.currentRow()
    panel.attract_step()
    assert panel.spin_timer.isActive() and panel.gallery_list.currentRow() == (row + 1) % panel.gallery_list.count()
    _wait_idle(qtbot, panel)
    frames = view.frames
    before = view.capture()
    qtbot.waitUntil(lambda: view.frames >= frames + 5, timeout=30000)  # it turns
    assert np.abs(view.capture().astype(int) - before).mean() > 0.5
    press = QMouseEvent(
        QEvent.MouseButtonPress, QPointF(20, 20), QPointF(20, 20), Qt.LeftButton, Qt.LeftButton, Qt.NoModifier
    )
    QApplication.sendEvent(view, press)
    assert not panel.spin_timer.isActive()
    assert "3D view unavailable" not in view.error
    panel.shutdown()


def test_panel_opens_the_furniture_checkpoint_with_its_gallery(make_panel, qtbot, bundled_or_tiny):
    from explorer.core.paths import bundled
    from explorer.papers.shapes3d.infer import gallery_path

    furniture = bundled("shapes3d_furniture.safetensors")
    if not (furniture.exists() and gallery_path("furniture").exists() and gallery_path().exists()):
        pytest.skip("no bundled furniture checkpoint and gallery")
    panel = make_panel("shapes3d", timeout=120)
    done = {}
    panel.open_checkpoint(str(furniture), on_done=lambda ok: done.update(ok=ok))
    qtbot.waitUntil(lambda: "ok" in done, timeout=60000)
    qtbot.waitUntil(lambda: panel.gallery is not None, timeout=30000)  # the gallery is read in a worker
    assert done["ok"] and "chair" in panel.model.class_names
    assert panel.gallery is not None and set(panel.gallery["class_names"]) == set(panel.model.class_names)
    assert panel.gallery_list.count() == len(panel.gallery["labels"])
    assert [panel.sample_combo.itemText(i) for i in range(panel.sample_combo.count())][1:] == panel.model.class_names
    # the views show the new model's work on its own gallery, not the primitives result
    qtbot.waitUntil(lambda: not panel.runner.is_busy() and panel.current is not None, timeout=30000)
    assert panel.gallery_list.currentRow() == 0
    assert panel.truth_view.caption_text.startswith("ground truth (IoU ")
    # the iso-level starts at the model's scoring level; the IoU caption follows the level shown
    level = float((panel.model_meta.metrics or {}).get("iou_level") or 0.5)
    assert panel.iso_slider.value() == round(100 * level)
    assert panel.truth_view.caption_text.endswith(f"at level {level:.2f})")
    panel.iso_slider.setValue(30)
    assert panel.truth_view.caption_text.endswith("at level 0.30)")
    panel.current = None
    panel.select_gallery(0)
    qtbot.waitUntil(lambda: panel.current is not None, timeout=30000)
    assert panel.pred_view.triangles() > 0 and _surface_pixels(panel.pred_view) > 50
    assert _blue_pixels(panel.truth_view) > 50
    # back to the primitives model: its gallery comes back
    done.clear()
    panel.open_checkpoint(str(bundled("shapes3d_primitives.safetensors")), on_done=lambda ok: done.update(ok=ok))
    qtbot.waitUntil(lambda: "ok" in done, timeout=60000)
    qtbot.waitUntil(lambda: panel.gallery is not None, timeout=30000)
    assert done["ok"] and panel.gallery["class_names"] == list(panel.model.class_names)
    panel.shutdown()


def _spy_rendered_captions(panel):
    """What each view's caption was at its last render (what is on screen), not what was set since."""
    shown = {}
    for view in (panel.pred_view, panel.truth_view):
        orig = view.render

        def render(view=view, orig=orig):
            orig()
            shown[view] = view.caption_text

        view.render = render
    return shown


def _strip_state(panel):
    return [
        ("picture" if lab.pixmap() is not None and not lab.pixmap().isNull() else lab.text()) for lab in panel.strip
    ]


def _wait_idle(qtbot, panel):
    qtbot.waitUntil(lambda: not panel.runner.is_busy(), timeout=30000)


def test_captions_thumbnails_and_banners_follow_the_last_action(
    make_panel, qtbot, bundled_or_tiny, tmp_path, monkeypatch
):
    """Regressions: the truth view's caption was one action behind (an empty view captioned "ground truth (IoU
    0.84)", a shape with its ground truth captioned "no ground truth"); Sample left black thumbnails; a banner
    from a failed action stayed after later actions succeeded."""
    from explorer.papers.shapes3d import panel as P

    panel = make_panel("shapes3d", timeout=120)
    shown = _spy_rendered_captions(panel)
    assert panel.gallery is not None

    # sample: the empty truth view says there is no ground truth, every thumbnail shows something
    panel.sample()
    _wait_idle(qtbot, panel)
    assert shown[panel.pred_view].startswith("sampled from the prior")
    assert shown[panel.truth_view] == "a new shape: no ground truth"
    assert not panel.truth_view.visible and panel.pred_view.visible
    assert _strip_state(panel) == ["no input picture", "nothing to re-project"] + ["picture"] * P.N_TURNTABLE

    # a held-out shape: its ground truth is shown, with its IoU, in the same render
    panel.select_gallery(1)
    _wait_idle(qtbot, panel)
    assert shown[panel.pred_view] == "inferred from the picture"
    assert shown[panel.truth_view].startswith("ground truth (IoU ")
    assert panel.truth_view.visible
    assert _strip_state(panel) == ["picture"] * P._STRIP

    # a picture that cannot be read: a banner; the shape on screen is still the selected one
    bad = tmp_path / "not_a_picture.png"
    bad.write_text("hello")
    panel.open_image(str(bad))
    _wait_idle(qtbot, panel)
    assert panel.banner.kind is panel.Messages.user_error and "not a readable image" in panel.banner.message()
    # ... and it goes once a later action succeeds
    panel.select_gallery(0)
    _wait_idle(qtbot, panel)
    assert not panel.banner.isVisible() and shown[panel.truth_view].startswith("ground truth (IoU ")

    # an inference that fails: a banner, and no result of an earlier picture left under it
    from explorer.papers.shapes3d import infer as I

    def broken(*a, **k):
        raise RuntimeError("out of memory")

    works = I.infer_volume
    monkeypatch.setattr(I, "infer_volume", broken)
    panel.select_gallery(2)
    _wait_idle(qtbot, panel)
    assert panel.banner.kind is panel.Messages.unexpected and "out of memory" in panel.banner.message()
    assert panel.current is None and not panel.pred_view.visible
    assert not panel.truth_view.visible
    assert shown[panel.pred_view].startswith("inference failed") and shown[panel.truth_view] == "ground truth"
    assert _strip_state(panel) == ["picture", "nothing to re-project"] + [""] * P.N_TURNTABLE
    monkeypatch.setattr(I, "infer_volume", works)
    panel.sample()
    _wait_idle(qtbot, panel)
    assert not panel.banner.isVisible() and shown[panel.truth_view] == "a new shape: no ground truth"
    panel.shutdown()


def test_a_missing_gallery_is_its_declared_message_and_stays_after_other_actions(make_panel, qtbot, monkeypatch):
    from explorer.papers.shapes3d import infer as I

    monkeypatch.setattr(I, "gallery_path", lambda dataset="primitives": Path("/nonexistent/gallery_x.npz"))
    panel = make_panel("shapes3d")
    qtbot.waitUntil(lambda: panel.demo_done, timeout=120_000)
    assert panel.banner.kind is panel.Messages.gallery_missing
    assert "gallery_x.npz" in panel.banner.message()
    panel._action_ok()  # a later action succeeding does not hide the gallery's own problem
    assert panel.banner.kind is panel.Messages.gallery_missing
    panel.shutdown()


def test_the_modelnet_model_shows_held_out_real_chairs_and_monitors(make_panel, qtbot, bundled_or_tiny, tmp_path):
    from explorer.core.paths import bundled
    from explorer.papers.shapes3d.infer import gallery_path

    modelnet = bundled("shapes3d_modelnet.safetensors")
    if not (modelnet.exists() and gallery_path("modelnet").exists()):
        pytest.skip("no bundled ModelNet checkpoint and gallery")
    panel = make_panel("shapes3d", timeout=120)
    titles = [panel.model_combo.itemText(i) for i in range(panel.model_combo.count())]
    assert "Real objects: ModelNet10 + Sweet Home 3D furniture" in titles
    # choosing it in "Trained on" loads it, and its gallery of held-out real shapes replaces the primitives
    panel.model_combo.setCurrentIndex(titles.index("Real objects: ModelNet10 + Sweet Home 3D furniture"))
    panel.model_combo.activated.emit(titles.index("Real objects: ModelNet10 + Sweet Home 3D furniture"))
    qtbot.waitUntil(lambda: panel.model is not None and "monitor" in panel.model.class_names, timeout=60000)
    qtbot.waitUntil(lambda: panel.gallery is not None and not panel.runner.is_busy(), timeout=60000)
    g = panel.gallery
    assert {"chair", "monitor", "table"} <= set(g["class_names"]) and panel.gallery_list.count() == len(g["labels"])
    assert len(g["labels"]) >= 10 and g["names"][0].startswith("chair_"), "real chairs first"
    assert all(n.startswith(tuple(c + "_" for c in g["class_names"])) for n in g["names"])
    assert g["reference"]["fill"] > 0.9  # ModelNet pictures: the object spans the frame
    assert "nearest training picture" in panel.info.text()
    shown = _spy_rendered_captions(panel)
    for row in (1, g["names"].index(next(n for n in g["names"] if n.startswith("monitor_")))):  # a chair, a monitor
        before = panel.strip[0].pixmap().toImage() if panel.strip[0].pixmap() is not None else None
        panel.gallery_list.setCurrentRow(row)  # as a click does
        _wait_idle(qtbot, panel)
        assert np.allclose(panel.current_image, g["views"][row, 0] / 255.0)
        assert panel.strip[0].pixmap().toImage() != before
        assert shown[panel.pred_view] == "inferred from the picture"
        assert shown[panel.truth_view].startswith("ground truth (IoU ")
        assert g["names"][row] in panel.picture_note.text()
        assert _blue_pixels(panel.truth_view) > 50
    # a photo with the class hint "monitor" is framed like the monitor pictures (they span less of the frame)
    from PIL import Image

    a = np.full((400, 300, 3), 235, np.uint8)
    a[50:350, 140:160] = 20
    Image.fromarray(a).save(tmp_path / "stand.png")
    panel.cond_combo.setCurrentIndex(panel.cond_combo.findText("monitor"))  # by name: the model knows more classes
    panel.open_image(str(tmp_path / "stand.png"))
    _wait_idle(qtbot, panel)
    fill = g["reference"]["fill_by_name"]["monitor"]
    assert fill < g["reference"]["fill"]
    assert f"fills {fill:.0%} of the frame, as in the monitor training pictures" in panel.picture_note.text()
    panel.shutdown()


def test_open_picture_reports_what_it_did_and_refuses_a_blank_one(make_panel, qtbot, bundled_or_tiny, tmp_path):
    from PIL import Image

    a = np.full((300, 420, 3), 240, np.uint8)
    a[60:240, 170:200] = 30  # a dark object on a plain light background
    a[150:180, 170:300] = 30
    Image.fromarray(a).save(tmp_path / "photo.png")
    Image.new("RGB", (200, 150), (90, 140, 200)).save(tmp_path / "blank.png")
    panel = make_panel("shapes3d", timeout=120)
    shown = _spy_rendered_captions(panel)
    panel.open_image(str(tmp_path / "photo.png"))
    _wait_idle(qtbot, panel)
    note = panel.picture_note.text()
    assert note.startswith("photo.png: masked the white background (object: "), note
    assert "cropped 420x300 -> " in note and f"resized to {panel.model.image_size}x" in note
    assert panel.current_image.shape == (panel.model.image_size,) * 2 and panel.current_image[0, 0] == 0.0
    assert panel.gallery_list.currentRow() == -1
    assert shown[panel.truth_view] == "ground truth: unknown for this picture"
    assert not panel.banner.isVisible()
    panel.open_image(str(tmp_path / "blank.png"))
    _wait_idle(qtbot, panel)
    assert panel.banner.kind is panel.Messages.user_error
    assert "blank.png: no object found" in panel.banner.message()
    assert panel.picture_note.text() == note  # the picture on screen is still the photo
    panel.shutdown()
