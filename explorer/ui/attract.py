"""Attract mode for a booth: when nobody has touched the app for a while, it shows itself off.

After ``idle_s`` seconds without a real input event (a key, a click, a wheel turn, a touch, or a mouse move that the
window system reports), the window moves to the next tab every ``dwell_s`` seconds and runs that tab's attract step
(``PaperPanel.attract_step``: by default its default demo again; the transducer replays a demo utterance, the 3D
tab turns a shape, and so on). The first real input stops it, in place: the visitor takes over the tab that is
showing, and the idle clock starts again. Events that the app makes itself (``QEvent.spontaneous()`` false) never
count as a touch.

At each new tab the heap's free pages go back to the system (``core.memory.release_free_memory``, in a worker):
the tabs' demos allocate and free big temporaries in several worker threads, and glibc kept what they freed, so a
booth's resident memory crept up by about 100 MB an hour although nothing leaked (issue 25).
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QEvent, QObject, QTimer, Signal
from PySide6.QtWidgets import QApplication

from ..core.memory import release_free_memory
from .workers import TaskRunner

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
        self.tab_ids: list[str] | None = None  # the tabs it cycles (bench.attract_soak --tabs); None: every tab
        self._idle = QTimer(self, singleShot=True, interval=max(1, int(self.idle_s * 1000)))
        self._idle.timeout.connect(self.start)
        self._cycle = QTimer(self, interval=max(1, int(self.dwell_s * 1000)))
        self._cycle.timeout.connect(self.next_tab)
        self.trims = 0  # heap trims done (tests)
        self._runner = TaskRunner(self, on_error=lambda exc, tb: log.warning("heap trim failed:\n%s", tb))
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
        ids = self.tab_ids or [s.id for s in self.window.specs]
        current = self.window.specs[tabs.currentIndex()].id
        at = ids.index(current) if current in ids else -1
        index = (at + 1) % len(ids) if self.steps or at < 0 else at
        page = self.window.show_tab(ids[index])
        self.steps += 1
        self._runner.submit(release_free_memory, key="trim", name="trim the heap", on_result=self._trimmed)
        panel = page.panel
        if panel is None or not panel.demo_done or panel.runner.is_busy():
            return  # still building or running its first demo: that is the show
        try:
            panel.attract_step()
        except Exception:  # noqa: BLE001 - a booth never stops for one tab's demo
            log.exception("attract step of %s failed", page.spec.id)

    def _trimmed(self, seconds: float | None) -> None:
        if seconds is not None:
            self.trims += 1
            log.debug("heap trimmed in %.1f ms", seconds * 1000)

    def shutdown(self, timeout: float = 2.0) -> None:
        self._idle.stop()
        self._cycle.stop()
        self._runner.shutdown(timeout)
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)
