"""A VTK render view inside Qt with safe teardown, offscreen support and real screenshots.

* Under ``QT_QPA_PLATFORM=offscreen``/``minimal`` the stock QVTKRenderWindowInteractor renders blank (it hands
  VTK a fake window id), so we give it an offscreen vtkRenderWindow instead.
* ``capture()`` returns the rendered pixels via vtkWindowToImageFilter (``QWidget.grab()`` of a VTK widget
  returns garbage).
* ``close_view()`` is idempotent: stops timers, finalizes the render window; never renders when hidden.
"""
from __future__ import annotations

import logging

import numpy as np
from PySide6.QtCore import QSize
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QVBoxLayout, QWidget

log = logging.getLogger(__name__)


def _offscreen_platform() -> bool:
    return QGuiApplication.platformName() in ("offscreen", "minimal")


class VtkView(QWidget):
    """A QWidget holding one VTK renderer. Use ``self.renderer`` and call ``render()``."""

    def __init__(self, parent: QWidget | None = None, background=(0.12, 0.13, 0.16)) -> None:
        super().__init__(parent)
        import vtkmodules.vtkInteractionStyle  # noqa: F401  (registers interactor styles)
        import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL backend)
        from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
        from vtkmodules.vtkInteractionStyle import vtkInteractorStyleTrackballCamera
        from vtkmodules.vtkRenderingCore import vtkRenderer, vtkRenderWindow

        self._closed = False
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.offscreen = _offscreen_platform()
        self.interactor = QVTKRenderWindowInteractor(self)
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
            self.interactor.Initialize()
            self._initialized = True

    def render(self) -> None:
        """Render now (GUI thread). Does nothing when closed or hidden."""
        if self._closed or not self.isVisible():
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
        try:
            self.render_window.Finalize()
            self.interactor.close()
        except Exception:  # noqa: BLE001
            log.debug("VTK teardown", exc_info=True)

    def closeEvent(self, event) -> None:  # noqa: N802
        self.close_view()
        super().closeEvent(event)
