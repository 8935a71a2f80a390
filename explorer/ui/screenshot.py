"""Window screenshots, with VTK views composed in from their own offscreen render (grab() of VTK is garbage)."""

from __future__ import annotations

import logging
import time

from PySide6.QtCore import QPoint, QRect
from PySide6.QtGui import QImage, QPainter, QPixmap
from PySide6.QtWidgets import QApplication, QWidget

log = logging.getLogger(__name__)


def grab_window(window: QWidget) -> QPixmap:
    pix = window.grab()
    views = []
    page = getattr(window, "current_page", lambda: None)()
    if page is not None and page.panel is not None:
        try:
            views = [v for v in page.panel.vtk_views() if v.isVisible()]
        except Exception:  # noqa: BLE001
            log.exception("vtk_views() failed")
    if views:
        painter = QPainter(pix)
        for view in views:
            try:
                arr = view.capture()  # H x W x 3 uint8, top row first
            except Exception:  # noqa: BLE001
                log.exception("VTK capture failed")
                continue
            h, w = arr.shape[:2]
            img = QImage(arr.tobytes(), w, h, 3 * w, QImage.Format_RGB888).copy()
            top_left = view.mapTo(window, QPoint(0, 0))
            painter.drawImage(QRect(top_left, view.size()), img)
        painter.end()
    return pix


def take_screenshot(window, tab: str, out: str, timeout: float = 300.0) -> dict:
    """Show ``tab``, wait for its default demo to finish, save a PNG. Returns timings."""
    app = QApplication.instance()
    t0 = time.perf_counter()
    page = window.show_tab(tab)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.processEvents()
        panel = page.panel
        if page.build_error is not None:
            break
        if panel is not None and panel.demo_done and not panel.runner.is_busy():
            break
        time.sleep(0.02)
    else:
        log.warning("screenshot: the %s demo did not finish within %.0f s", tab, timeout)
    for _ in range(20):  # let the last paint events through
        app.processEvents()
        time.sleep(0.01)
    save_png(grab_window(window), out)
    return {
        "tab": tab,
        "out": out,
        "seconds": time.perf_counter() - t0,
        "error": page.banner.message() or (page.panel.banner.message() if page.panel else ""),
    }


def save_png(pix, out) -> None:
    """Write a QPixmap/QImage as PNG through a temporary file: a failure leaves no partial picture."""
    from ..core.errors import UserError
    from ..core.validate import atomic_output

    with atomic_output(out, "picture") as tmp:
        if not pix.save(str(tmp), "PNG"):
            raise UserError(f"{out}: could not be written (disk full or not writable?)")
