"""Attract mode for a booth: when nobody has touched the app for a while, it shows itself off.

After ``idle_s`` seconds without a real input event (a key, a click, a wheel turn, a touch, or a mouse move that the
window system reports), the window moves to the next tab every ``dwell_s`` seconds and runs that tab's attract step
(``PaperPanel.attract_step``: by default its default demo again; the transducer replays a demo utterance, the 3D
tab turns a shape, and so on). The first real input stops it, in place: the visitor takes over the tab that is
showing, and the idle clock starts again. Events that the app makes itself (``QEvent.spontaneous()`` false) never
count as a touch.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QEvent, QObject, QTimer, Signal
from PySide6.QtWidgets import QApplication

log = logging.getLogger(__name__)

TOUCH_EVENTS = {
    QEvent.KeyPress,
    QEvent.MouseButtonPress,
    QEvent.MouseButtonDblClick,
    QEvent.Wheel,
    QEvent.TouchBegin,
    QEvent.TabletPress,
    QEvent.MouseMove,
}
DEFAULT_DWELL_S = 30.0
STATUS = "Attract mode: touch the screen or press any key to explore"


class AttractMode(QObject):
    """Owned by the main window; ``idle_s`` <= 0 means off."""

    active_changed = Signal(bool)

    def __init__(self, window, idle_s: float, dwell_s: float = DEFAULT_DWELL_S) -> None:
        super().__init__(window)
        self.window = window
        self.idle_s, self.dwell_s = float(idle_s), float(dwell_s)
        self.active = False
        self.steps = 0
        self._idle = QTimer(self, singleShot=True, interval=max(1, int(self.idle_s * 1000)))
        self._idle.timeout.connect(self.start)
        self._cycle = QTimer(self, interval=max(1, int(self.dwell_s * 1000)))
        self._cycle.timeout.connect(self.next_tab)
        if self.idle_s > 0:
            QApplication.instance().installEventFilter(self)
            self._idle.start()

    # ------------------------------------------------------------------------------------------- input
    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        if event.type() in TOUCH_EVENTS and event.spontaneous():
            self.touched()
        return False  # never swallow the input: the visitor's first touch also does what it does

    def touched(self) -> None:
        if self.active:
            self.stop()
        if self.idle_s > 0:
            self._idle.start()  # restarts the idle clock

    # ------------------------------------------------------------------------------------------- cycle
    def start(self) -> None:
        if self.active or self.idle_s <= 0:
            return
        log.info("attract mode on after %.0f s idle", self.idle_s)
        self.active = True
        self.window.statusBar().showMessage(STATUS)
        self.active_changed.emit(True)
        self.next_tab()
        self._cycle.start()

    def stop(self) -> None:
        if not self.active:
            return
        log.info("attract mode off: a visitor is here")
        self.active = False
        self._cycle.stop()
        self.window.statusBar().showMessage("Welcome! Every tab is yours to play with.", 5000)
        self.active_changed.emit(False)

    def next_tab(self) -> None:
        """Show the next tab (building it if needed) and run its attract step unless it is busy."""
        tabs = self.window.tabs
        if tabs.count() == 0:
            return
        index = (tabs.currentIndex() + 1) % tabs.count() if self.steps else tabs.currentIndex()
        page = self.window.show_tab(self.window.specs[index].id)
        self.steps += 1
        panel = page.panel
        if panel is None or not panel.demo_done or panel.runner.is_busy():
            return  # still building or running its first demo: that is the show
        try:
            panel.attract_step()
        except Exception:  # noqa: BLE001 - a booth never stops for one tab's demo
            log.exception("attract step of %s failed", page.spec.id)

    def shutdown(self) -> None:
        self._idle.stop()
        self._cycle.stop()
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)
