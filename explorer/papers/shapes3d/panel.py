"""The 3D structure tab: pick a held-out picture (or open one), infer its 3D shape in a worker, turn the
isosurface in a VTK view beside the ground truth, see re-projections, sample new shapes from the prior and
watch the canvas being built step by step."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QVBoxLayout,
)

from explorer.ui.dialogs import input_folder, remember_folder
from explorer.ui.messages import Msg
from explorer.ui.panel_base import PaperPanel
from explorer.ui.widgets.fit_scroll import shrinkable
from explorer.ui.widgets.vtk_view import VtkView

log = logging.getLogger(__name__)
_STRIP = 8 + 2  # input, re-projection, 8 turntable views
THUMB_PX = 64  # a 32-pixel view drawn twice as large
PICTURE_DIR_KEY = "shapes3d/dir"
N_TURNTABLE = _STRIP - 2
SPIN_MS, SPIN_PX, SPIN_S = 40, 2, 15.0  # attract mode: a 2-pixel drag every 40 ms (about 20 degrees/s) for 15 s
# what an empty thumbnail says (a black square would look like a broken picture)
_EMPTY = ("no input picture", "nothing to re-project") + ("",) * N_TURNTABLE


def to_pixmap(img: np.ndarray, scale: int = 3) -> QPixmap:
    a = np.ascontiguousarray(np.clip(np.asarray(img, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8))
    h, w = a.shape
    q = QImage(a.tobytes(), w, h, w, QImage.Format_Grayscale8).copy()
    return QPixmap.fromImage(q).scaled(w * scale, h * scale, Qt.IgnoreAspectRatio, Qt.FastTransformation)


def _same_file(a, b) -> bool:
    try:
        return bool(a) and bool(b) and Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


class _Gallery(QListWidget):
    """The held-out pictures: four columns where the window has room, three in a narrow one."""

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(330, 300)


class IsoSurfacePane:
    """The isosurface (flying edges) of a 32^3 occupancy volume, with a caption, in one viewport of a shared
    VtkView: the tab's two panes (inferred, ground truth) share one render window, hence one OpenGL context and one
    render per change, and one camera. Its VTK objects live in the render thread (see VtkView): every method here
    sends a job there and never waits, but ``triangles()`` and ``capture()`` (tests, screenshots, scripts). What
    is on screen is mirrored here in plain Python (``caption_text``, ``visible``, ``has_volume``, ``level``)."""

    _keys = 0

    def __init__(
        self,
        host: VtkView,
        viewport: tuple[float, float, float, float],
        caption: str,
        color=(0.95, 0.6, 0.25),
        main: bool = False,
    ) -> None:
        """``main``: it draws in the host's own renderer (whose camera every pane of the host shares)."""
        IsoSurfacePane._keys += 1
        self.key = ("pane", IsoSurfacePane._keys)
        self.host = host
        self.viewport = viewport
        self.caption_text = caption
        self.visible = False
        self.has_volume = False
        self.level = 0.5
        host.submit(partial(_make_pane, key=self.key, viewport=viewport, caption=caption, color=color, main=main))
        if main:
            host.home = self.reset_camera
        self.reset_camera()

    # the host's render, capture and teardown, so a pane is used like a view of its own
    def render(self) -> None:
        self.host.render()

    def capture(self) -> np.ndarray:
        """This pane's part of the host's rendered pixels, (H, W, 3) uint8, top row first (waits for it)."""
        img = self.host.capture()
        h, w = img.shape[:2]
        x0, y0, x1, y1 = self.viewport
        c0, c1 = round(x0 * w), round(x1 * w)
        r0, r1 = round((1 - y1) * h), round((1 - y0) * h)
        return np.ascontiguousarray(img[r0:r1, c0:c1])

    def close_view(self) -> None:
        self.host.close_view()

    def reset_camera(self) -> None:
        """The input camera's side of the shape, turned a little (the camera every pane of the host shares)."""
        self.host.submit(_reset_camera)
        self.render()

    def set_caption(self, text: str) -> None:
        self.caption_text = text
        self.host.submit(partial(_pane_caption, key=self.key, text=text))
        self.render()

    def set_volume(self, occ: np.ndarray | None, caption: str | None = None) -> None:
        """Show a (R, R, R) occupancy (z, y, x) in [-1, 1]^3, or nothing (None), with its caption if given.

        Caption and volume change in one render, so the view never shows one with the other's caption."""
        if caption is not None:
            self.caption_text = caption
        if occ is not None:
            occ = np.array(occ, np.float32, order="C", copy=True)  # the render thread gets its own copy
        self.has_volume = self.visible = occ is not None
        self.host.submit(partial(_pane_volume, key=self.key, occ=occ, caption=caption))
        self.render()

    def set_level(self, level: float) -> None:
        self.level = float(level)
        self.host.submit(partial(_pane_level, key=self.key, level=self.level))
        self.render()

    def triangles(self, timeout: float = 60.0) -> int:
        """Triangles of the isosurface shown (waits for the render thread: tests, scripts)."""
        return int(self.host.call(partial(_pane_triangles, key=self.key), timeout))


# ---- the panes' VTK side: these run in the render thread only (VtkView.submit / call), on scene.parts[key]
def _make_pane(scene, key, viewport, caption: str, color, main: bool) -> None:
    from types import SimpleNamespace

    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkFiltersCore import vtkFlyingEdges3D
    from vtkmodules.vtkFiltersSources import vtkOutlineSource
    from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper, vtkRenderer, vtkTextActor

    if main:
        renderer = scene.renderer
    else:
        renderer = vtkRenderer()
        r, g, b = scene.renderer.GetBackground()
        renderer.SetBackground(r * 0.8, g * 0.8, b * 0.8)  # a shade darker: where one pane ends is visible
        renderer.SetActiveCamera(scene.renderer.GetActiveCamera())  # turning one pane turns the other
        scene.render_window.AddRenderer(renderer)
    renderer.SetViewport(*viewport)
    p = SimpleNamespace(renderer=renderer, image=vtkImageData(), surface=vtkFlyingEdges3D())
    p.surface.SetInputData(p.image)
    p.surface.ComputeNormalsOn()
    p.surface.SetValue(0, 0.5)
    mapper = vtkPolyDataMapper()
    mapper.SetInputConnection(p.surface.GetOutputPort())
    mapper.ScalarVisibilityOff()
    p.actor = vtkActor()
    p.actor.SetMapper(mapper)
    p.actor.GetProperty().SetColor(*color)
    p.actor.GetProperty().SetSpecular(0.3)
    p.actor.VisibilityOff()
    renderer.AddActor(p.actor)
    box = vtkOutlineSource()
    box.SetBounds(-1, 1, -1, 1, -1, 1)
    bm = vtkPolyDataMapper()
    bm.SetInputConnection(box.GetOutputPort())
    p.outline = vtkActor()
    p.outline.SetMapper(bm)
    p.outline.GetProperty().SetColor(0.45, 0.47, 0.52)
    renderer.AddActor(p.outline)
    p.caption = vtkTextActor()
    p.caption.SetInput(caption)
    p.caption.GetTextProperty().SetFontSize(15)
    p.caption.GetTextProperty().SetColor(0.92, 0.92, 0.92)
    p.caption.GetPositionCoordinate().SetCoordinateSystemToViewport()  # in its own pane, not the window's
    p.caption.SetPosition(8, 8)
    renderer.AddViewProp(p.caption)
    scene.parts[key] = p


def _reset_camera(scene) -> None:
    cam = scene.renderer.GetActiveCamera()
    cam.SetFocalPoint(0, 0, 0)
    cam.SetPosition(0, 0, -5.5)  # the input camera looks along +z; world y points down
    cam.SetViewUp(0, -1, 0)
    cam.Azimuth(-35)
    cam.Elevation(25)
    cam.OrthogonalizeViewUp()
    for ren in scene.renderers():
        ren.ResetCameraClippingRange()


def _pane_caption(scene, key, text: str) -> None:
    scene.parts[key].caption.SetInput(text)


def _pane_volume(scene, key, occ: np.ndarray | None, caption: str | None) -> None:
    from vtkmodules.util.numpy_support import numpy_to_vtk

    p = scene.parts[key]
    if caption is not None:
        p.caption.SetInput(caption)
    if occ is None:
        p.actor.VisibilityOff()
        return
    r = occ.shape[-1]
    # one empty voxel around the volume, so a shape that fills the cube to a side is closed there (a table or a
    # cabinet spanning the whole cube had no surface on its outer faces: only its inner edges showed)
    occ = np.pad(occ, 1)
    p.image.SetDimensions(r + 2, r + 2, r + 2)
    p.image.SetSpacing(2.0 / r, 2.0 / r, 2.0 / r)
    p.image.SetOrigin(-1 - 1.0 / r, -1 - 1.0 / r, -1 - 1.0 / r)
    p.image.GetPointData().SetScalars(numpy_to_vtk(occ.ravel(), deep=True))
    p.image.Modified()
    p.actor.VisibilityOn()
    p.renderer.ResetCameraClippingRange()


def _pane_level(scene, key, level: float) -> None:
    scene.parts[key].surface.SetValue(0, level)


def _pane_triangles(scene, key) -> int:
    surface = scene.parts[key].surface
    surface.Update()
    return int(surface.GetOutput().GetNumberOfCells())


class Shapes3DPanel(PaperPanel):
    class Messages(PaperPanel.Messages):
        gallery_missing = Msg("The held-out gallery {file} is missing from {folder}; open a picture instead.")
        gallery_unreadable = Msg("Could not read the gallery {file}: {reason}")
        no_model = Msg("No model loaded: open a checkpoint first.")
        STICKY = ("gallery_missing", "gallery_unreadable")  # they stay until the gallery is read again

    def __init__(self, spec, context, parent=None) -> None:
        super().__init__(spec, context, parent)
        self.gallery: dict[str, Any] | None = None
        self.current: dict[str, Any] | None = None  # last result: occupancy, canvases, ...
        self.readout: Any = None  # model.Readout: how the loaded checkpoint's shapes are read (None: network at 0.5)
        self.current_image: np.ndarray | None = None
        self.current_truth: np.ndarray | None = None
        self._anim_step = 0
        self._gallery_dataset = "primitives"
        self._gallery_loading = False
        self._after_gallery: list[Any] = []  # what waits for the gallery being loaded (the default demo)

    # ------------------------------------------------------------------------------------------ layout
    def build_steps(self):
        """The widgets in pieces (the shell runs one per event-loop turn); the 3D view's OpenGL context and
        renders are made in the render thread (see VtkView), the gallery is read in a worker meanwhile."""
        yield from self._build()
        self._load_gallery()

    def _build(self):
        row = QHBoxLayout()
        self.body.addLayout(row, 1)
        left = QVBoxLayout()
        row.addLayout(left, 0)

        gbox = QGroupBox("Held-out shapes (never trained on)")
        gl = QVBoxLayout(gbox)
        self.gallery_list = _Gallery()
        self.gallery_list.setViewMode(QListWidget.IconMode)
        self.gallery_list.setIconSize(QSize(64, 64))
        self.gallery_list.setResizeMode(QListWidget.Adjust)
        self.gallery_list.setMovement(QListWidget.Static)
        self.gallery_list.setMinimumWidth(280)
        shrinkable(self.gallery_list, 150)  # it scrolls: a small window gives it less height
        self.gallery_list.setMaximumWidth(330)
        self.gallery_list.setToolTip(
            "Pictures of held-out shapes from the input camera; click one to infer its 3D shape"
        )
        self.gallery_list.currentRowChanged.connect(self._on_gallery_row)
        gl.addWidget(self.gallery_list)
        self.open_btn = QPushButton("Open picture…")
        self.open_btn.setToolTip(
            "Infer the shape of your own photo: one object on a plain background (or a PNG with a transparent "
            "background). It is masked, cropped and resized to the model's input; the note under the strip says how"
        )
        self.open_btn.clicked.connect(self._open_image)
        gl.addWidget(self.open_btn)
        left.addWidget(gbox, 1)

        cbox = QGroupBox("Model")
        cl = QGridLayout(cbox)
        cl.addWidget(QLabel("Trained on"), 0, 0)
        self.model_combo = QComboBox()
        self.model_combo.setToolTip(
            "The bundled models: each brings its own held-out gallery (Open checkpoint… loads any other)"
        )
        self._fill_model_combo()
        self.model_combo.activated.connect(self._on_model_chosen)
        cl.addWidget(self.model_combo, 0, 1, 1, 2)
        cl.addWidget(QLabel("Class hint"), 1, 0)
        self.cond_combo = QComboBox()
        self.cond_combo.setToolTip("Condition the inference on a class (none: the picture alone)")
        cl.addWidget(self.cond_combo, 1, 1)
        self.infer_btn = QPushButton("Infer")
        self.infer_btn.setToolTip("Infer the 3D shape from the picture (one forward pass, in a worker)")
        self.infer_btn.clicked.connect(self.infer_current)
        cl.addWidget(self.infer_btn, 1, 2)
        cl.addWidget(QLabel("Sample class"), 2, 0)
        self.sample_combo = QComboBox()
        self.sample_combo.setToolTip("Class of the new shapes drawn from the prior (any: unconditional)")
        cl.addWidget(self.sample_combo, 2, 1)
        self.sample_btn = QPushButton("Sample")
        self.sample_btn.setToolTip("Draw a new shape from the model's prior, z_t ~ N(0, I)")
        self.sample_btn.clicked.connect(self.sample)
        cl.addWidget(self.sample_btn, 2, 2)
        cl.addWidget(QLabel("Iso-level"), 3, 0)
        self.iso_slider = QSlider(Qt.Horizontal)
        self.iso_slider.setRange(5, 95)
        self.iso_slider.setValue(50)
        self.iso_slider.setToolTip(
            "Occupancy level of the isosurface; the IoU with the ground truth is computed at it. It starts at the "
            "level the model is scored at (chosen on validation shapes, or 0.5)"
        )
        self.iso_slider.valueChanged.connect(self._on_iso)
        cl.addWidget(self.iso_slider, 3, 1)
        self.iso_label = QLabel("0.50")
        cl.addWidget(self.iso_label, 3, 2)
        cl.addWidget(QLabel("Canvas step"), 4, 0)
        self.step_slider = QSlider(Qt.Horizontal)
        self.step_slider.setRange(1, 1)
        self.step_slider.setToolTip(
            "Show the 3D canvas after this many DRAW steps; the last step is the shape as scored (for a model that "
            "chose them on validation shapes: averaged with the mirrored picture's and carved to the silhouette)"
        )
        self.step_slider.valueChanged.connect(self._on_step)
        cl.addWidget(self.step_slider, 4, 1)
        self.animate_btn = QPushButton("Animate")
        self.animate_btn.setToolTip("Replay how the model builds the volume, one write per step")
        self.animate_btn.clicked.connect(self.animate)
        cl.addWidget(self.animate_btn, 4, 2)
        left.addWidget(cbox)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.info.setMaximumWidth(330)
        left.addWidget(self.info)
        yield

        right = QVBoxLayout()
        row.addLayout(right, 1)
        # one render window, two viewports (one OpenGL context): inferred | ground truth, told apart by a shade
        self.view_host = VtkView()
        self.view_host.setMinimumSize(520, 240)  # VtkView's size hint is its minimum: it takes the room there is
        self.view_host.setToolTip(
            "Drag to turn both shapes, scroll to zoom, double-click to reset the view; the iso-level slider sets the "
            "surface level"
        )
        yield
        # both panes share one camera: turning one turns the other (one render draws both)
        self.pred_view = IsoSurfacePane(self.view_host, (0.0, 0.0, 0.5, 1.0), "inferred from the picture", main=True)
        self.truth_view = IsoSurfacePane(self.view_host, (0.5, 0.0, 1.0, 1.0), "ground truth", color=(0.35, 0.7, 0.95))
        yield
        right.addWidget(self.view_host, 1)

        sbox = QGroupBox("Input picture · re-projection from the input camera · turntable of new views")
        sv = QVBoxLayout(sbox)
        sl = QHBoxLayout()
        sv.addLayout(sl)
        sl.setSpacing(3)  # ten thumbnails fit beside the gallery in a 1024-pixel-wide window
        self.strip: list[QLabel] = []
        for i in range(_STRIP):
            lab = QLabel()
            lab.setFixedSize(THUMB_PX, THUMB_PX)
            lab.setAlignment(Qt.AlignCenter)
            lab.setWordWrap(True)
            lab.setStyleSheet("background: black; color: #8a8f98; font-size: 8pt;")
            sl.addWidget(lab)
            self.strip.append(lab)
            if i == 1:
                sl.addSpacing(6)
        sl.addStretch(1)
        self.strip[0].setToolTip("The input picture (what the inference network sees)")
        self.strip[1].setToolTip("The inferred volume pushed through the fixed projection, from the input camera")
        for lab in self.strip[2:]:
            lab.setToolTip("The inferred volume seen from new cameras (turntable, 25° elevation)")
        self.picture_note = QLabel("")
        self.picture_note.setWordWrap(True)
        self.picture_note.setToolTip("Where the input picture comes from, and what was done to an opened photo")
        sv.addWidget(self.picture_note)
        right.addWidget(sbox, 0)

        self.anim_timer = QTimer(self)
        self.anim_timer.setInterval(350)
        self.anim_timer.timeout.connect(self._anim_tick)
        self.spin_timer = QTimer(self)  # attract mode turns the shapes (rendered in the 3D view's render thread)
        self.spin_timer.setInterval(SPIN_MS)
        self.spin_timer.timeout.connect(self._spin_tick)
        self._spin_ticks = 0
        self.view_host.touched.connect(self.spin_timer.stop)  # the visitor takes over
        self._set_strip([])

    def vtk_views(self):
        return [self.view_host]

    # ------------------------------------------------------------------------------------ model choice
    def _fill_model_combo(self) -> None:
        """The bundled models that are there (a path check per file, no read), then "other" when the loaded
        checkpoint is none of them."""
        from explorer.core.paths import bundled

        from .infer import BUNDLED_MODELS

        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for _name, file, title in BUNDLED_MODELS:
            if bundled(file).exists():
                self.model_combo.addItem(title, str(bundled(file)))
        self.model_combo.blockSignals(False)

    def _on_model_chosen(self, index: int) -> None:
        path = self.model_combo.itemData(index)
        if path and (self.model_meta is None or not _same_file(path, self.model_meta.path)):
            self.open_checkpoint(path)

    def _show_model_choice(self, meta) -> None:
        """The choice shows the loaded checkpoint: its bundled entry, or "other: NAME"."""
        self._fill_model_combo()
        self.model_combo.blockSignals(True)
        for i in range(self.model_combo.count()):
            if _same_file(self.model_combo.itemData(i), meta.path):
                self.model_combo.setCurrentIndex(i)
                break
        else:
            self.model_combo.addItem(f"other: {meta.name}", None)
            self.model_combo.setCurrentIndex(self.model_combo.count() - 1)
        self.model_combo.blockSignals(False)

    # ----------------------------------------------------------------------------------------- gallery
    def _load_gallery(self, dataset: str = "primitives", then=None) -> None:
        """Read the held-out gallery of ``dataset`` in a worker, then fill the list and run ``then`` (and what
        waited for the gallery). Until then ``self.gallery`` is None."""
        self.gallery = None
        self.gallery_list.blockSignals(True)
        self.gallery_list.clear()
        self.gallery_list.blockSignals(False)
        self._gallery_dataset = dataset
        self._gallery_loading = True
        if then is not None:
            self._after_gallery.append(then)
        from . import infer

        self.runner.submit(
            infer.read_gallery,
            dataset,
            key="gallery",
            name="read gallery",
            on_result=self._gallery_read,
            on_error=self._gallery_failed,
            on_cancelled=self._gallery_cancelled,
        )

    def _gallery_read(self, result) -> None:
        problem, fields, g = result
        kind = {"missing": self.Messages.gallery_missing, "unreadable": self.Messages.gallery_unreadable}.get(problem)
        if kind is not None:
            self.show_msg(kind, **fields)
        else:
            self.clear_msg(*self.Messages.sticky())  # the gallery reads again: its old problem goes
            self.gallery = g
            for i in range(len(g["labels"])):
                item = QListWidgetItem(
                    QIcon(to_pixmap(g["views"][i, 0] / 255.0, 2)), g["class_names"][int(g["labels"][i])]
                )
                item.setToolTip(g["names"][i])
                self.gallery_list.addItem(item)
        self._gallery_done()

    def _gallery_failed(self, exc, tb) -> None:
        self.show_msg(self.Messages.gallery_unreadable, tb, file="", reason=str(exc))
        self._gallery_done()

    def _gallery_cancelled(self) -> None:
        if self.runner.latest_cancelled("gallery"):  # not replaced by a newer read: nothing more is coming
            self._gallery_done()

    def _gallery_done(self) -> None:
        self._gallery_loading = False
        waiting, self._after_gallery = self._after_gallery, []
        for fn in waiting:
            fn()

    def on_model_loaded(self, model, meta) -> None:
        self._show_model_choice(meta)
        dataset = str((meta.data or {}).get("name") or "primitives")
        shown = self.current is not None or self.current_image is not None  # not the first model
        new_gallery = False
        if dataset != self._gallery_dataset:
            from .infer import gallery_path

            if gallery_path(dataset).exists():
                new_gallery = True
        names = list(model.class_names)
        self.cond_combo.clear()
        self.cond_combo.addItem("none")
        self.cond_combo.addItems(names)
        self.sample_combo.clear()
        self.sample_combo.addItem("any")
        self.sample_combo.addItems(names)
        self.step_slider.setRange(1, model.steps)
        self.step_slider.setValue(model.steps)
        m = meta.metrics or {}
        # the shape is read as the model is scored (the level, and the mirrored look and the carving to the
        # silhouette and to a gallery picture's depth when validation shapes chose them; else the network at 0.5)
        from .model import Readout

        self.readout = Readout.from_metrics(m)
        level = self.readout.level
        self.iso_slider.setValue(round(100 * level))
        if "test_iou" in m:
            data = meta.data or {}
            what = (
                "held-out real (ModelNet10 and Sweet Home 3D)"
                if data.get("other_collections")
                else data.get("name", "")
            )
            near = f", nearest training picture {m['test_iou_nearest']:.3f}" if "test_iou_nearest" in m else ""
            if near and "test_iou_nearest_carved" in m:
                near += f", carved {m['test_iou_nearest_carved']:.3f}"
            if near and "test_iou_nearest_depth" in m:
                near += f", to the depth {m['test_iou_nearest_depth']:.3f}"
            hull = f"{m.get('test_iou_baseline', float('nan')):.3f}"
            if "test_grids_iou_depth_hull" in m:
                hull += f", to the depth {m['test_grids_iou_depth_hull']:.3f}"
            at = f" ({self.readout.describe()}, chosen on validation shapes)" if "iou_level" in m else ""
            self.info.setText(
                f"Held-out single-view IoU {m['test_iou']:.3f}{at} (visual-hull baseline {hull}{near}) on "
                f"{meta.data.get('test_shapes', '?')} {what} shapes. Trained from pictures only."
            )
        else:
            self.info.setText("")
        if new_gallery:
            self._load_gallery(dataset, then=self._show_new_model if shown else None)
            if shown:
                self.current_image = self.current_truth = None
                self._clear_views()
        elif shown:
            self._clear_views()
            self._show_new_model()

    def _show_new_model(self) -> None:
        """The views showed the previous model's work: show this model's instead."""
        if self.current_image is not None:
            self.infer_current()
        elif self.gallery is not None and len(self.gallery["labels"]):
            self.select_gallery(0)
        else:
            self.sample()

    def _clear_views(
        self, picture: np.ndarray | None = None, caption: str = "pick a held-out shape, open a picture or sample"
    ) -> None:
        """Nothing stale on screen: empty views, captions saying so, the strip reset (but ``picture``)."""
        self.anim_timer.stop()
        self.current = None
        self.pred_view.set_volume(None, caption)
        self.truth_view.set_volume(None, "ground truth")
        self._set_strip([picture])

    def _action_ok(self) -> None:
        """A later action succeeded: a banner left by a failed one goes (not the gallery's own problem)."""
        if self.banner.kind is not None and self.banner.kind not in self.Messages.sticky():
            self.clear_msg()

    def _action_failed(self, exc, tb, what: str, picture: np.ndarray | None = None) -> None:
        self.show_exception(exc, tb)
        self._clear_views(picture, f"{what} failed (see the message above)")
        self.mark_demo_done()

    def start_default_demo(self) -> None:
        if self._gallery_loading:
            self._after_gallery.append(self.start_default_demo)  # it is read in a worker: then
            return
        if self.gallery is not None and len(self.gallery["labels"]):
            self.select_gallery(0)  # infers it; the demo is done when it is shown
        else:
            self.sample(demo=True)

    def attract_step(self) -> None:
        """Attract mode: the next held-out shape (else a sample), and both panes turn slowly for a while, until
        the tab is left or a visitor touches the view."""
        if self.gallery is not None and len(self.gallery["labels"]):
            self.select_gallery((self.gallery_list.currentRow() + 1) % len(self.gallery["labels"]))
        else:
            self.sample()
        self._spin_ticks = 0
        self.spin_timer.start()
        attract = getattr(self.window(), "attract", None)
        if attract is not None and not getattr(self, "_spin_hooked", False):
            self._spin_hooked = True
            attract.active_changed.connect(lambda on: None if on else self.spin_timer.stop())  # a visitor came

    def _spin_tick(self) -> None:
        self._spin_ticks += 1
        if not self.view_host.isVisible() or self._spin_ticks * SPIN_MS > SPIN_S * 1000:
            self.spin_timer.stop()
            return
        self.view_host.rotate(SPIN_PX, 0)

    def select_gallery(self, row: int) -> None:
        """Select a held-out item and infer it (also when it was already the current row)."""
        self.gallery_list.blockSignals(True)
        self.gallery_list.setCurrentRow(row)
        self.gallery_list.blockSignals(False)
        self._on_gallery_row(row)

    def _on_gallery_row(self, row: int) -> None:
        if self.gallery is None or row < 0:
            return
        self.current_image = self.gallery["views"][row, 0].astype(np.float32) / 255.0
        self.current_truth = self.gallery["voxels"][row].astype(np.float32)
        self.picture_note.setText(
            f"Held-out {self.gallery['names'][row]}: rendered by the project's renderer from the input camera "
            "(never trained on)"
        )
        self.infer_current()

    def picture_start_folder(self) -> str:
        """Where "Open picture…" opens: the folder of the last picture opened, else the bundled pictures."""
        return input_folder(self.context.settings, PICTURE_DIR_KEY, "shapes3d")

    def _open_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a picture", self.picture_start_folder(), "Images (*.png *.jpg *.jpeg *.bmp)"
        )
        if path:
            self.open_image(path)

    def open_image(self, path: str) -> None:
        """A photo -> the model's input picture (masked, cropped, resized, in a worker), then its shape. The
        framing and grey level follow this model's training pictures (measured on its gallery)."""
        from .photo import DEFAULT_FILL, load_photo

        remember_folder(self.context.settings, PICTURE_DIR_KEY, path)
        ref = (self.gallery or {}).get("reference") or {"fill": DEFAULT_FILL, "grey": None}
        size = int(getattr(self.model, "image_size", 32))
        name = Path(path).name
        # with a class hint, the framing of that class's pictures (ModelNet monitors span less of the frame)
        hint = self.cond_combo.currentText() if self.cond_combo.currentIndex() > 0 else None
        fill, framing = ref["fill"], "training"
        if hint is not None and hint in (ref.get("fill_by_name") or {}):
            fill, framing = ref["fill_by_name"][hint], f"{hint} training"
        self.runner.submit(
            load_photo,
            path,
            size,
            fill,
            ref["grey"],
            framing=framing,
            key="open",
            name="prepare picture",
            on_result=lambda r, n=name: self._image_opened(r, n),
        )

    def _image_opened(self, result, name: str = "") -> None:
        img, report = result if isinstance(result, tuple) else (result, "")
        self.gallery_list.blockSignals(True)
        self.gallery_list.clearSelection()
        self.gallery_list.setCurrentRow(-1)
        self.gallery_list.blockSignals(False)
        self.current_image, self.current_truth = img, None
        self.picture_note.setText(f"{name}: {report}" if name else report)
        self.infer_current()

    # --------------------------------------------------------------------------------------- inference
    def infer_current(self) -> None:
        if self.model is None or self.current_image is None:
            return
        from . import infer

        model, img = self.model, self.current_image
        cond = self.cond_combo.currentIndex() - 1
        label = cond if cond >= 0 else None
        truth = self.current_truth
        self.infer_btn.setEnabled(False)
        self.runner.submit(
            infer.infer_for_app,
            model,
            img,
            label=label,
            truth=truth,
            readout=self.readout,
            rendered=truth is not None,  # a gallery shape's picture is the renderer's (grey = depth); a photo's is not
            key="infer",
            name="infer shape",
            on_result=lambda r, i=img, t=truth: self._show_inferred(r, i, t),
            on_error=lambda exc, tb, i=img: self._action_failed(exc, tb, "inference", i),
            on_finished=lambda: self.infer_btn.setEnabled(True),
        )

    def _truth_caption(self) -> str:
        """The ground truth's caption: the IoU of the shape as shown (above the iso-level) with the truth."""
        from .model import iou

        level = self.iso_slider.value() / 100.0
        score = float(iou(self.current["occupancy"] > level, self.current["scored_truth"] > 0.5))
        return f"ground truth (IoU {score:.2f} at level {level:.2f})"

    def _show_inferred(self, res, img, truth) -> None:
        self._action_ok()
        self.anim_timer.stop()
        self.current = res
        self.pred_view.set_volume(res["occupancy"], "inferred from the picture")
        if truth is None:
            self.truth_view.set_volume(None, "ground truth: unknown for this picture")
        else:
            res["scored_truth"] = truth
            self.truth_view.set_volume(res.get("truth_display", truth), self._truth_caption())
        self._set_strip([img, res["reprojection"]] + list(res["turntable"]))
        self.step_slider.blockSignals(True)
        self.step_slider.setValue(self.step_slider.maximum())
        self.step_slider.blockSignals(False)
        self.mark_demo_done()

    def sample(self, demo: bool = False) -> None:
        if self.model is None:
            self.show_msg(self.Messages.no_model)
            if demo:
                self.mark_demo_done()
            return
        from . import infer

        model = self.model
        c = self.sample_combo.currentIndex() - 1
        label = c if c >= 0 else None
        name = model.class_names[label] if label is not None else "any class"
        self.runner.submit(
            infer.sample_volumes,
            model,
            1,
            label=label,
            turntable=N_TURNTABLE,
            key="infer",
            name="sample prior",
            on_result=lambda r, n=name: self._show_sample(r, n),
            on_error=lambda exc, tb: self._action_failed(exc, tb, "sampling"),
        )

    def _show_sample(self, res, name) -> None:
        self._action_ok()
        self.anim_timer.stop()
        self.current = {"occupancy": res["occupancy"][0], "canvases": res["canvases"][0]}
        self.pred_view.set_volume(self.current["occupancy"], f"sampled from the prior ({name})")
        self.truth_view.set_volume(None, "a new shape: no ground truth")
        self._set_strip([None, None] + list(res["views"][0]))
        self.picture_note.setText("")
        self.step_slider.blockSignals(True)
        self.step_slider.setValue(self.step_slider.maximum())
        self.step_slider.blockSignals(False)
        self.mark_demo_done()

    def _set_strip(self, images) -> None:
        for lab, img, empty in zip(self.strip, list(images) + [None] * _STRIP, _EMPTY):
            if img is None:
                lab.clear()
                lab.setText(empty)
            else:
                lab.setPixmap(to_pixmap(img, 2))

    # ------------------------------------------------------------------------------------ view controls
    def _on_iso(self, value: int) -> None:
        level = value / 100.0
        self.iso_label.setText(f"{level:.2f}")
        self.pred_view.set_level(level)
        self.truth_view.set_level(level)
        if self.current is not None and "scored_truth" in self.current:
            self.truth_view.set_caption(self._truth_caption())

    def _on_step(self, step: int) -> None:
        if self.current is None or "canvases" not in self.current:
            return
        canv = self.current["canvases"]
        step = max(1, min(step, len(canv)))
        # the last step is the shape as read out (with the mirrored look and the carvings when the checkpoint
        # chose them), the one the IoU is computed on; the steps before are the network's canvas as written
        self.pred_view.set_volume(self.current["occupancy"] if step == len(canv) else canv[step - 1])

    def animate(self) -> None:
        if self.current is None or "canvases" not in self.current:
            return
        self._anim_step = 0
        self.anim_timer.start()

    def _anim_tick(self) -> None:
        if self.current is None:
            self.anim_timer.stop()
            return
        n = len(self.current["canvases"])
        self._anim_step += 1
        if self._anim_step > n:
            self.anim_timer.stop()
            return
        self.step_slider.setValue(self._anim_step)
        self._on_step(self._anim_step)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        for v in self.vtk_views():
            v.render()

    def shutdown(self, timeout: float = 5.0) -> bool:
        self.anim_timer.stop()
        self.spin_timer.stop()
        ok = super().shutdown(timeout)
        for v in self.vtk_views():
            v.close_view()
        return ok
