"""A VTK render view inside Qt with safe teardown, offscreen support and real screenshots.

* Under ``QT_QPA_PLATFORM=offscreen``/``minimal`` the stock QVTKRenderWindowInteractor renders blank (it hands
  VTK a fake window id), so we give it an offscreen vtkRenderWindow instead.
* ``capture()`` returns the rendered pixels via vtkWindowToImageFilter (``QWidget.grab()`` of a VTK widget
  returns garbage).
* ``close_view()`` is idempotent: stops timers, finalizes the render window; never renders when hidden.
* No turn of the event loop holds more than one VTK job: making a view's OpenGL context (``Initialize``, 0.1-0.4 s
  with software OpenGL) waits until the view is first shown and then takes a turn of its own, and ``render()``
  only asks for a render, which runs in a later turn (one view per turn, repeated requests coalesced). Until its
  context exists a view does not paint. ``capture()`` renders at once (screenshots, tests).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict

import numpy as np
from PySide6.QtCore import QSize, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QVBoxLayout, QWidget

log = logging.getLogger(__name__)
_jobs: OrderedDict[int, tuple] = OrderedDict()
# VTK is not thread-safe: the start-up warm render (a worker) and the views (GUI thread) never overlap
_warm_lock = threading.Lock()
_warm_done = threading.Event()
_warm_done.set()  # no warm render running
_views_made = False  # id(view) -> (view, "init" | "render"), oldest first
_armed = False


def _offscreen_platform() -> bool:
    return QGuiApplication.platformName() in ("offscreen", "minimal")


def _schedule(view: VtkView, kind: str) -> None:
    """Queue one VTK job of ``view`` (a render asked for before a queued initialisation follows it anyway)."""
    key = id(view)
    if key in _jobs and _jobs[key][1] == "init":
        return
    _jobs[key] = (view, kind)
    _arm()


def _unschedule(view: VtkView) -> None:
    _jobs.pop(id(view), None)


def _arm() -> None:
    global _armed
    if _jobs and not _armed:
        _armed = True
        QTimer.singleShot(0, _run_one)


def _run_one() -> None:
    """One queued VTK job per event-loop turn: the GUI thread paints and takes input in between."""
    global _armed
    _armed = False
    if _jobs:
        _, (view, kind) = _jobs.popitem(last=False)
        try:
            view._initialize_now() if kind == "init" else view._render_now()
        except RuntimeError:  # its widget was deleted meanwhile
            log.debug("VTK job of a deleted view", exc_info=True)
        except Exception:  # noqa: BLE001 - a failing view must not stop the others
            log.exception("VTK %s failed", kind)
    _arm()


_interactor_class = None


def _interactor_type():
    """QVTKRenderWindowInteractor that does not render (hence make its OpenGL context) when Qt paints it before
    its view has initialized it."""
    global _interactor_class
    if _interactor_class is None:
        from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor

        class _Interactor(QVTKRenderWindowInteractor):
            ready = False

            def paintEvent(self, ev):  # noqa: N802 - Qt override
                if self.ready:
                    super().paintEvent(ev)

        _interactor_class = _Interactor
    return _interactor_class


class VtkView(QWidget):
    """A QWidget holding one VTK renderer. Use ``self.renderer`` and call ``render()``."""

    def __init__(self, parent: QWidget | None = None, background=(0.12, 0.13, 0.16)) -> None:
        super().__init__(parent)
        global _views_made
        with _warm_lock:
            _views_made = True  # from now on no warm render starts
        if not _warm_done.wait(5.0):  # one running already: rare (a tab's import waits for it first)
            log.warning("VTK warm-up still running; making the view anyway")
        import vtkmodules.vtkInteractionStyle  # noqa: F401  (registers interactor styles)
        import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL backend)
        from vtkmodules.vtkInteractionStyle import vtkInteractorStyleTrackballCamera
        from vtkmodules.vtkRenderingCore import vtkRenderer, vtkRenderWindow

        self._closed = False
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.offscreen = _offscreen_platform()
        self.interactor = _interactor_type()(self)
        if self.offscreen:
            rw = vtkRenderWindow()
            rw.SetOffScreenRendering(1)
            self.interactor._RenderWindow = rw  # the widget's own attribute for its render window
            rw.SetInteractor(self.interactor._Iren)
            self.interactor._Iren.SetRenderWindow(rw)
        lay.addWidget(self.interactor)
        self.render_window = self.interactor.GetRenderWindow()
        self.renderer = vtkRenderer()
        self.renderer.SetBackground(*background)
        self.render_window.AddRenderer(self.renderer)
        self.interactor.SetInteractorStyle(vtkInteractorStyleTrackballCamera())
        self._initialized = False

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        """No more than its minimum size: the tab's layout gives it the room there is (see fit_scroll)."""
        return self.minimumSize().expandedTo(QSize(64, 64))

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._initialized and not self._closed:
            _schedule(self, "init")

    @property
    def initialized(self) -> bool:
        return self._initialized

    def _initialize_now(self) -> None:
        """Make the OpenGL context (one event-loop turn); the first render follows in another."""
        if self._initialized or self._closed:
            return
        self.interactor.Initialize()
        self._initialized = True
        self.interactor.ready = True
        _schedule(self, "render")  # the first render (shaders compiled) takes a turn of its own

    def render(self) -> None:
        """Ask for a render (GUI thread): it runs in a later turn of the event loop, one view per turn, however
        often it was asked for meanwhile. Nothing when closed; before the view's first showing the render
        follows its initialisation."""
        if self._closed or not self._initialized:
            return
        _schedule(self, "render")

    def _render_now(self) -> None:
        if self._closed or not self._initialized or not self.isVisible():
            return
        if self.offscreen:
            w, h = max(1, self.width()), max(1, self.height())
            self.render_window.SetSize(w, h)
        self.render_window.Render()

    def capture(self) -> np.ndarray:
        """Rendered pixels as an (H, W, 3) uint8 array, top row first."""
        from vtkmodules.util.numpy_support import vtk_to_numpy
        from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

        if self._closed:
            return np.zeros((max(1, self.height()), max(1, self.width()), 3), np.uint8)
        if not self._initialized:
            _unschedule(self)
            self.interactor.Initialize()
            self._initialized = True
            self.interactor.ready = True
        if self.offscreen:
            self.render_window.SetSize(max(1, self.width()), max(1, self.height()))
        self.render_window.Render()
        f = vtkWindowToImageFilter()
        f.SetInput(self.render_window)
        f.SetInputBufferTypeToRGB()
        f.ReadFrontBufferOff()
        f.Update()
        img = f.GetOutput()
        w, h, _ = img.GetDimensions()
        arr = vtk_to_numpy(img.GetPointData().GetScalars()).reshape(h, w, -1)[:, :, :3]
        return np.ascontiguousarray(arr[::-1])

    def close_view(self) -> None:
        """Idempotent teardown: finalize the render window so no GL context outlives the widget."""
        if self._closed:
            return
        self._closed = True
        _unschedule(self)
        try:
            self.render_window.Finalize()
            self.interactor.close()
        except Exception:  # noqa: BLE001
            log.debug("VTK teardown", exc_info=True)

    def closeEvent(self, event) -> None:  # noqa: N802
        self.close_view()
        super().closeEvent(event)


def wait_for_warm_up(timeout: float = 10.0) -> bool:
    """Block (a worker: a tab's import job) until no warm render runs; True when none does."""
    return _warm_done.wait(timeout)


def warm_offscreen_rendering() -> bool:
    """Render a small lit surface, lines and text once in a throw-away offscreen window (the app's warm-up worker
    calls this at start, before any view exists): software OpenGL (Mesa's llvmpipe) compiles its shaders and
    rasteriser code on a process's first render, 0.1-0.3 s that a 3D view's first render would otherwise spend on
    the GUI thread (then about 30-40 ms). VTK is not thread-safe: it never starts once a view exists, and a view
    made meanwhile waits for it. False (and nothing else) when skipped or where offscreen rendering is not
    available. ``NIPS_EXPLORER_NO_VTK_WARMUP=1`` skips it."""
    global _views_made
    if os.environ.get("NIPS_EXPLORER_NO_VTK_WARMUP") == "1":
        return False
    with _warm_lock:
        if _views_made:
            return False
        _warm_done.clear()
    try:
        import vtkmodules.vtkRenderingFreeType  # noqa: F401  (text rendering)
        import vtkmodules.vtkRenderingOpenGL2  # noqa: F401
        from vtkmodules.vtkFiltersSources import vtkOutlineSource, vtkSphereSource
        from vtkmodules.vtkRenderingCore import (
            vtkActor,
            vtkPolyDataMapper,
            vtkRenderer,
            vtkRenderWindow,
            vtkTextActor,
        )

        rw = vtkRenderWindow()
        rw.SetOffScreenRendering(1)
        rw.SetSize(64, 64)
        ren = vtkRenderer()
        rw.AddRenderer(ren)
        sphere = vtkSphereSource()
        mapper = vtkPolyDataMapper()
        mapper.SetInputConnection(sphere.GetOutputPort())
        mapper.ScalarVisibilityOff()
        actor = vtkActor()
        actor.SetMapper(mapper)
        actor.GetProperty().SetSpecular(0.3)
        ren.AddActor(actor)
        box = vtkOutlineSource()
        bm = vtkPolyDataMapper()
        bm.SetInputConnection(box.GetOutputPort())
        outline = vtkActor()
        outline.SetMapper(bm)
        ren.AddActor(outline)
        text = vtkTextActor()
        text.SetInput("warm-up")
        ren.AddViewProp(text)
        rw.Render()
        rw.Finalize()
        return True
    except Exception:  # noqa: BLE001 - a warm-up that fails only leaves the first render slower
        log.debug("VTK offscreen warm-up failed", exc_info=True)
        return False
    finally:
        _warm_done.set()
