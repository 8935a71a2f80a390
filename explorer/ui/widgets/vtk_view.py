"""3D views whose VTK objects all live in one render thread; the widget on the GUI thread only paints frames.

VTK is not thread-safe, and making an OpenGL context and rendering with software OpenGL (Mesa's llvmpipe) takes
0.1-0.4 s, which froze the window when the 3D tab was first shown (an earlier attempt that made each view's
context in a worker while the GUI thread kept using VTK corrupted the heap). So:

* One render thread per process (``render_thread()``: a daemon ``threading.Thread`` with a job queue, started on
  first use) owns every VTK object of the views: an offscreen ``vtkRenderWindow`` per view (the kind of window that
  also works without any display, e.g. CI under ``QT_QPA_PLATFORM=offscreen``), its renderers, actors and
  pipelines. The start-up warm render runs there too, so nothing VTK ever runs anywhere else or concurrently.
  VTK releases the GIL while it renders: the GUI thread runs meanwhile.
* ``VtkView`` is a plain QWidget. Code that builds its scene sends jobs, ``view.submit(fn)``: ``fn(scene)`` runs in
  the render thread, in order, with ``scene`` a ``Scene`` (render window, main renderer, ``parts`` to keep one's
  own VTK objects in). ``view.render()`` asks for a frame: the asks made in one turn of the GUI's event loop, and the
  camera moves made until the render thread gets to it, give one render (latest wins). Each frame comes back as a
  QImage through a queued Qt signal (the GUI thread never waits); the widget paints the last one, scaled while a
  frame at a new size is on its way, a placeholder before the first, and one line when the view failed (the
  traceback goes to the log).
* Mouse: a left drag turns the camera (azimuth and elevation, as VTK's trackball camera style does), the wheel
  dollies, a double click resets the camera (``view.home``, or VTK's ResetCamera).
* ``capture()`` and ``call()`` wait for the render thread (with a timeout): they are for screenshots, tests and the
  figure scripts, never for normal interaction.
* ``close_view()`` (idempotent) finalizes the view's render window in the render thread, so no OpenGL context
  outlives its view; ``shutdown_render_thread()`` (the window's shutdown, and at exit) ends the thread after a
  bounded wait.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QPoint, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QWidget

log = logging.getLogger(__name__)

# what the render thread imports before it makes any VTK object
_VTK_MODULES = (
    "vtkmodules.vtkCommonCore",
    "vtkmodules.vtkCommonDataModel",
    "vtkmodules.vtkFiltersCore",
    "vtkmodules.vtkFiltersSources",
    "vtkmodules.vtkRenderingCore",
    "vtkmodules.vtkRenderingOpenGL2",  # the OpenGL back end (its factory overrides vtkRenderWindow...)
    "vtkmodules.vtkRenderingFreeType",  # text
    "vtkmodules.util.numpy_support",
)
MOTION_FACTOR = 10.0  # as vtkInteractorStyleTrackballCamera: a drag across the renderer turns 200 degrees
WHEEL_DOLLY = 1.1 ** (0.2 * MOTION_FACTOR)  # one wheel notch, as the trackball camera style zooms
BACKGROUND = (0.12, 0.13, 0.16)


class Scene:
    """The render-thread side of a view: only ever touched in the render thread."""

    def __init__(self, key: int, background) -> None:
        from vtkmodules.vtkRenderingCore import vtkRenderer, vtkRenderWindow, vtkWindowToImageFilter

        self.key = key
        self.render_window = vtkRenderWindow()
        self.render_window.SetOffScreenRendering(1)
        self.renderer = vtkRenderer()
        self.renderer.SetBackground(*background)
        self.render_window.AddRenderer(self.renderer)
        self.parts: dict[Any, Any] = {}  # the view's users keep their VTK objects here (a pane's pipeline...)
        self.home: Callable[[Scene], None] | None = None  # resets the camera (else: back to the first frame's)
        self._first_camera: tuple | None = None
        self._grab = vtkWindowToImageFilter()
        self._grab.SetInput(self.render_window)
        self._grab.SetInputBufferTypeToRGB()
        self._grab.ReadFrontBufferOff()
        self._grab.ShouldRerenderOff()  # it reads what draw() just rendered

    def renderers(self) -> list:
        rens = self.render_window.GetRenderers()
        return [rens.GetItemAsObject(i) for i in range(rens.GetNumberOfItems())]

    def move(self, dx: float, dy: float, dolly: float) -> None:
        """Turn the main renderer's camera by a drag of (dx, dy) pixels (Qt's y: down) and dolly it."""
        if not dx and not dy and dolly == 1.0:
            return
        cam = self.renderer.GetActiveCamera()
        w, h = self.renderer.GetSize()
        if dx or dy:
            cam.Azimuth(-20.0 / max(1, w) * dx * MOTION_FACTOR)
            cam.Elevation(20.0 / max(1, h) * dy * MOTION_FACTOR)
            cam.OrthogonalizeViewUp()
        if dolly != 1.0:
            cam.Dolly(dolly)
        for ren in self.renderers():
            ren.ResetCameraClippingRange()

    def reset_camera(self) -> None:
        if self.home is not None:
            self.home(self)
        elif self._first_camera is not None:
            cam = self.renderer.GetActiveCamera()
            pos, focal, up, angle = self._first_camera
            cam.SetPosition(*pos)
            cam.SetFocalPoint(*focal)
            cam.SetViewUp(*up)
            cam.SetViewAngle(angle)
            for ren in self.renderers():
                ren.ResetCameraClippingRange()
        else:
            self.renderer.ResetCamera()

    def draw(self, w: int, h: int) -> np.ndarray:
        """Render at (w, h) pixels; the pixels, (h, w, 3) uint8, top row first. The camera of the first one is what
        ``reset_camera`` goes back to (without a ``home``)."""
        from vtkmodules.util.numpy_support import vtk_to_numpy

        if self._first_camera is None:
            cam = self.renderer.GetActiveCamera()
            self._first_camera = (cam.GetPosition(), cam.GetFocalPoint(), cam.GetViewUp(), cam.GetViewAngle())
        self.render_window.SetSize(max(1, w), max(1, h))
        self.render_window.Render()
        self._grab.Modified()
        self._grab.Update()
        img = self._grab.GetOutput()
        iw, ih, _ = img.GetDimensions()
        arr = vtk_to_numpy(img.GetPointData().GetScalars()).reshape(ih, iw, -1)[:, :, :3]
        return np.ascontiguousarray(arr[::-1])

    def finalize(self) -> None:
        self.parts.clear()
        self.home = None
        self._grab = None
        self.render_window.Finalize()  # its OpenGL context goes now, in this thread


class _ViewState:
    """What the GUI thread tells the render thread about a view (plain Python values; never the widget itself, so
    that the last reference to a QWidget is never dropped in the render thread)."""

    def __init__(self, key: int) -> None:
        self.key = key
        self.size = (64, 64)  # device pixels
        self.shown = False
        self.closed = False
        self._lock = threading.Lock()
        self._motion = [0.0, 0.0, 1.0]  # dx, dy (pixels), dolly factor, since the last render

    def add_motion(self, dx: float = 0.0, dy: float = 0.0, dolly: float = 1.0) -> None:
        with self._lock:
            self._motion[0] += dx
            self._motion[1] += dy
            self._motion[2] *= dolly

    def take_motion(self) -> tuple[float, float, float]:
        with self._lock:
            m, self._motion = self._motion, [0.0, 0.0, 1.0]
        return m[0], m[1], m[2]


class _Bridge(QObject):
    """Carries frames from the render thread to the GUI thread (made on the GUI thread, never deleted)."""

    frame = Signal(int, object, str)  # view key, QImage (None with an error), error ("" when fine)


_bridge: _Bridge | None = None
_views: dict[int, weakref.ref] = {}  # key -> the view (GUI thread)
_keys = itertools.count(1)


def _deliver(key: int, image, error: str) -> None:
    ref = _views.get(key)
    view = ref() if ref is not None else None
    if view is not None:
        try:
            view._receive(image, error)
        except RuntimeError:  # its widget was deleted meanwhile
            log.debug("3D frame for a deleted view", exc_info=True)


def _forget(key: int, thread: RenderThread) -> None:
    """A view's widget is destroyed without close_view(): its scene goes all the same (in the render thread)."""
    if _views.pop(key, None) is not None:
        thread.submit(None, lambda: thread._close(key))


def _ensure_bridge() -> _Bridge:
    global _bridge
    if _bridge is None:
        _bridge = _Bridge()
        _bridge.frame.connect(_deliver, Qt.QueuedConnection)
    return _bridge


class RenderThread:
    """The one thread that owns and touches VTK objects. Jobs run in order; after each batch of jobs the views
    asked for are rendered once each (however often they were asked for), and their frames sent to the GUI."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._jobs: deque[tuple[int | None, Callable, Future | None]] = deque()
        self._dirty: dict[int, _ViewState] = {}
        self._scenes: dict[int, Scene] = {}
        self._stopping = False
        self.renders = 0  # renders done (tests count them)
        self.ident: int | None = None
        self._broken = ""  # why VTK cannot be used here (its import failed)
        self.thread = threading.Thread(target=self._loop, name="vtk-render", daemon=True)
        self.thread.start()

    # ---------------------------------------------------------------------------------- any thread
    def alive(self) -> bool:
        return self.thread.is_alive() and not self._stopping

    def submit(self, key: int | None, fn: Callable, want_result: bool = False) -> Future | None:
        """Run ``fn(scene)`` (``fn()`` when ``key`` is None) in the render thread, after the jobs before it."""
        fut: Future | None = Future() if want_result else None
        with self._cond:
            if self._stopping:
                if fut is not None:
                    fut.set_exception(RuntimeError("the 3D render thread has stopped"))
                return fut
            self._jobs.append((key, fn, fut))
            self._cond.notify()
        return fut

    def call(self, key: int | None, fn: Callable, timeout: float = 60.0):
        """``submit`` and wait for its result (screenshots, tests, figure scripts; never the GUI in normal use)."""
        if threading.get_ident() == self.ident:
            return fn(self._scenes[key]) if key is not None else fn()
        fut = self.submit(key, fn, want_result=True)
        assert fut is not None
        return fut.result(timeout)

    def request(self, state: _ViewState) -> None:
        """Render this view once the jobs queued so far have run (repeated requests: one render). The ask is queued
        as a job of its own, so it is seen only after the jobs before it, the view's own making included: an ask
        marked at once could be taken while the job that makes the view's scene was still waiting, and be lost."""
        with self._cond:
            if not self._stopping:
                self._jobs.append((None, lambda: self._mark(state), None))
                self._cond.notify()

    def _mark(self, state: _ViewState) -> None:
        with self._cond:
            self._dirty[state.key] = state

    def stop(self, timeout: float = 5.0) -> bool:
        """Finalize every render window left and end the thread (bounded wait); True when it ended."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if threading.get_ident() != self.ident:
            self.thread.join(timeout)
        return not self.thread.is_alive()

    # ------------------------------------------------------------------------------- render thread
    def _loop(self) -> None:
        self.ident = threading.get_ident()
        try:
            import importlib

            for name in _VTK_MODULES:
                importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - every view then says why it is blank
            log.exception("VTK is not available")
            self._broken = f"{type(exc).__name__}: {exc}"
        while True:
            with self._cond:
                while not self._jobs and not self._dirty and not self._stopping:
                    self._cond.wait()
                jobs, self._jobs = self._jobs, deque()
            while jobs:  # each job (and what it held) goes once it has run
                self._run(*jobs.popleft())
            with self._cond:  # the views asked for, once the jobs before the asks have run: one render each
                dirty = list(self._dirty.values())
                self._dirty.clear()
                stop = self._stopping and not self._jobs
            for state in dirty:
                self._render(state)
            if stop:
                break
        for key in list(self._scenes):
            self._close(key)

    def _run(self, key: int | None, fn: Callable, fut: Future | None) -> None:
        try:
            if key is None:
                result = fn()
            else:
                scene = self._scenes.get(key)
                if scene is None:
                    raise RuntimeError("the 3D view is closed" if key not in _failed else _failed[key])
                result = fn(scene)
        except Exception as exc:  # noqa: BLE001 - a failing job never ends the thread
            if fut is not None:
                fut.set_exception(exc)
            elif key is not None and key in self._scenes:
                log.exception("3D view job failed")
                self._fail(key, exc)
            else:
                log.debug("3D job of a closed view", exc_info=True)
        else:
            if fut is not None:
                fut.set_result(result)

    def _render(self, state: _ViewState) -> None:
        scene = self._scenes.get(state.key)
        if scene is None or state.closed or not state.shown:
            return  # shown again: it asks again
        try:
            scene.move(*state.take_motion())
            w, h = state.size
            pixels = scene.draw(w, h)
        except Exception as exc:  # noqa: BLE001
            log.exception("3D view render failed")
            self._fail(state.key, exc)
            return
        self.renders += 1
        self._send(state.key, pixels)

    def _send(self, key: int, pixels: np.ndarray) -> None:
        h, w = pixels.shape[:2]
        image = QImage(pixels.data, w, h, 3 * w, QImage.Format_RGB888).copy()
        try:
            if _bridge is not None:  # made by the first view, on the GUI thread
                _bridge.frame.emit(key, image, "")
        except RuntimeError:  # the application is gone (exit)
            log.debug("3D frame not delivered", exc_info=True)

    def _fail(self, key: int, exc: BaseException) -> None:
        _failed[key] = f"{type(exc).__name__}: {exc}"
        self._close(key)
        try:
            if _bridge is not None:
                _bridge.frame.emit(key, None, _failed[key])
        except RuntimeError:
            log.debug("3D error not delivered", exc_info=True)

    def _open(self, key: int, background) -> None:
        try:
            if self._broken:
                raise RuntimeError(self._broken)
            self._scenes[key] = Scene(key, background)
        except Exception as exc:  # noqa: BLE001 - the view says so
            log.exception("3D view could not be made")
            self._fail(key, exc)

    def _close(self, key: int) -> None:
        scene = self._scenes.pop(key, None)
        with self._cond:
            self._dirty.pop(key, None)
        if scene is not None:
            try:
                scene.finalize()
            except Exception:  # noqa: BLE001
                log.debug("VTK teardown", exc_info=True)

    def _capture(self, state: _ViewState, w: int, h: int) -> np.ndarray:
        scene = self._scenes.get(state.key)
        if scene is None:
            raise RuntimeError(_failed.get(state.key, "the 3D view is closed"))
        scene.move(*state.take_motion())
        pixels = scene.draw(w, h)
        self.renders += 1
        if state.shown and (w, h) == state.size:  # the widget shows it too (the camera moves it took included)
            self._send(state.key, pixels)
        return pixels


_failed: dict[int, str] = {}  # view key -> why it failed
_thread: RenderThread | None = None
_previous: RenderThread | None = None  # the one stopped last
_thread_lock = threading.Lock()
_atexit_registered = False


def render_thread() -> RenderThread:
    """The process's render thread, started on first use (again after a shutdown)."""
    global _thread, _atexit_registered
    with _thread_lock:
        if _thread is None or not _thread.alive():
            for old in (_thread, _previous):  # one still finalizing: never two render threads at once
                if old is not None and old.thread.is_alive() and threading.get_ident() != old.ident:
                    old.thread.join(10.0)
            _thread = RenderThread()
            if not _atexit_registered:
                atexit.register(shutdown_render_thread, 2.0)
                _atexit_registered = True
        return _thread


def shutdown_render_thread(timeout: float = 5.0) -> bool:
    """Finalize the render windows left and end the render thread (bounded wait); True when none runs."""
    global _thread, _previous
    with _thread_lock:
        th, _thread = _thread, None
        if th is not None:
            _previous = th
    return th is None or th.stop(timeout)


class VtkView(QWidget):
    """A 3D view: its scene lives in the render thread (``submit``), the widget paints the frames it gets."""

    touched = Signal()  # a visitor pressed, wheeled or double-clicked in it

    def __init__(self, parent: QWidget | None = None, background=BACKGROUND) -> None:
        super().__init__(parent)
        self.setAttribute(Qt.WA_OpaquePaintEvent)
        self.background = QColor.fromRgbF(*background)
        self._state = _ViewState(next(_keys))
        self._frame: QImage | None = None
        self._error = ""
        self._closed = False
        self._armed = False
        self._drag: QPoint | None = None
        self.frames = 0  # frames received (tests)
        self.home: Callable[[], None] | None = None  # what a double click or reset_camera() does (GUI side)
        _views[self._state.key] = weakref.ref(self)
        _ensure_bridge()
        self._thread = th = render_thread()
        key = self._state.key
        th.submit(None, lambda bg=tuple(background): th._open(key, bg))
        self.destroyed.connect(lambda *_: _forget(key, th))

    # --------------------------------------------------------------------------------- the scene
    @property
    def key(self) -> int:
        return self._state.key

    def submit(self, fn: Callable[[Scene], Any]) -> None:
        """Run ``fn(scene)`` in the render thread (after what was submitted before); a failure shows on the view.
        ``fn`` must hold no Qt widget (it is dropped in the render thread): pass plain values (``functools.partial``
        of a module-level function)."""
        if not self._closed:
            self._thread.submit(self._state.key, fn)

    def call(self, fn: Callable[[Scene], Any], timeout: float = 60.0):
        """Run ``fn(scene)`` in the render thread and wait for its result (tests, screenshots, scripts)."""
        if self._closed:
            raise RuntimeError("the 3D view is closed")
        return self._thread.call(self._state.key, fn, timeout)

    def render(self) -> None:
        """Ask for a frame: at the end of this turn of the event loop, the render thread renders once (however
        often it was asked for and the camera moved meanwhile). Nothing when closed or hidden."""
        if self._closed or self._armed:
            return
        self._armed = True
        QTimer.singleShot(0, self._flush)

    def _flush(self) -> None:
        self._armed = False
        if not self._closed:
            self._thread.request(self._state)

    @property
    def has_frame(self) -> bool:
        return self._frame is not None

    @property
    def error(self) -> str:
        return self._error

    def capture(self, timeout: float = 60.0) -> np.ndarray:
        """Rendered pixels at the widget's size, (H, W, 3) uint8, top row first; waits for the render thread."""
        w, h = max(1, self.width()), max(1, self.height())
        if self._closed or self._error:
            return np.zeros((h, w, 3), np.uint8)
        st, th = self._state, self._thread  # the job holds no reference to the widget
        return th.call(None, lambda: th._capture(st, w, h), timeout)

    # ---------------------------------------------------------------------------------- the camera
    def rotate(self, dx: float, dy: float) -> None:
        """Turn the camera as a drag of (dx, dy) pixels does (coalesced with other moves until the next render)."""
        self._state.add_motion(dx=dx, dy=dy)
        self.render()

    def zoom(self, notches: float) -> None:
        """Dolly in (positive) or out as that many wheel notches do."""
        self._state.add_motion(dolly=WHEEL_DOLLY**notches)
        self.render()

    def reset_camera(self) -> None:
        self._state.take_motion()  # moves not yet rendered go too
        if self.home is not None:
            self.home()
        else:
            self.submit(Scene.reset_camera)
        self.render()

    # ---------------------------------------------------------------------------------- Qt side
    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        """No more than its minimum size: the tab's layout gives it the room there is (see fit_scroll)."""
        return self.minimumSize().expandedTo(QSize(64, 64))

    def _update_size(self) -> None:
        dpr = self.devicePixelRatioF()
        self._state.size = (max(1, round(self.width() * dpr)), max(1, round(self.height() * dpr)))

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self._update_size()
        self._state.shown = True
        self.render()

    def hideEvent(self, event) -> None:  # noqa: N802
        super().hideEvent(event)
        self._state.shown = False

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._update_size()
        self.render()  # meanwhile the last frame is drawn scaled

    def _receive(self, image: QImage | None, error: str) -> None:
        if self._closed:
            return
        if error:
            self._error = error
            self._frame = None
        elif not self._error:
            self._frame = image
            self.frames += 1
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        if self._frame is not None:
            p.setRenderHint(QPainter.SmoothPixmapTransform, self._frame.size() != self.size())
            p.drawImage(self.rect(), self._frame)
        else:
            p.fillRect(self.rect(), self.background)
            p.setPen(QColor(200, 200, 200) if self._error else QColor(140, 145, 155))
            text = f"3D view unavailable: {self._error}" if self._error else "preparing the 3D view…"
            p.drawText(self.rect().adjusted(8, 8, -8, -8), Qt.AlignCenter | Qt.TextWordWrap, text)
        p.end()

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.LeftButton:
            self._drag = event.position().toPoint()
        self.touched.emit()
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._drag is not None and event.buttons() & Qt.LeftButton:
            pos = event.position().toPoint()
            d = pos - self._drag
            self._drag = pos
            dpr = self.devicePixelRatioF()
            self.rotate(d.x() * dpr, d.y() * dpr)
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.LeftButton:
            self._drag = None
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.LeftButton:
            self.reset_camera()
        self.touched.emit()
        super().mouseDoubleClickEvent(event)

    def wheelEvent(self, event) -> None:  # noqa: N802
        notches = event.angleDelta().y() / 120.0
        if notches:
            self.zoom(notches)
            self.touched.emit()
        event.accept()

    def close_view(self) -> None:
        """Idempotent teardown: the render window is finalized in the render thread (no GL context outlives it)."""
        if self._closed:
            return
        self._closed = True
        self._state.closed = True
        _views.pop(self._state.key, None)
        key = self._state.key
        th = self._thread
        th.submit(None, lambda: th._close(key))

    def closeEvent(self, event) -> None:  # noqa: N802
        self.close_view()
        super().closeEvent(event)


def _warm_render() -> bool:
    """Render a small lit surface, lines and text once in a throw-away offscreen window (render thread)."""
    from vtkmodules.vtkFiltersSources import vtkOutlineSource, vtkSphereSource
    from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper, vtkRenderer, vtkRenderWindow, vtkTextActor

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


def warm_offscreen_rendering(timeout: float = 60.0) -> bool:
    """Render once in a throw-away offscreen window in the render thread (the app's warm-up worker calls this at
    start and waits for it): software OpenGL (Mesa's llvmpipe) compiles its shaders and rasteriser code on a
    process's first render, 0.1-0.3 s that a 3D view's first frame would otherwise wait for. Skipped (False) once a
    view exists (its own first render does it), with ``NIPS_EXPLORER_NO_VTK_WARMUP=1``, or where offscreen
    rendering is not available."""
    if os.environ.get("NIPS_EXPLORER_NO_VTK_WARMUP") == "1" or _views:
        return False
    try:
        return bool(render_thread().call(None, _warm_render, timeout))
    except Exception:  # noqa: BLE001 - a warm-up that fails only leaves the first frame later
        log.debug("VTK offscreen warm-up failed", exc_info=True)
        return False
