"""A 10 ms QTimer on the GUI thread that records how late each tick fires (ms): the benches' stall probe."""
from PySide6.QtCore import QElapsedTimer, QTimer


class LatenessProbe:
    def __init__(self, interval_ms: int = 10) -> None:
        self.interval = interval_ms
        self.late = []
        self._clock = QElapsedTimer()
        self._clock.start()
        self._last = self._clock.elapsed()
        self._timer = QTimer(interval=interval_ms)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    def _tick(self) -> None:
        now = self._clock.elapsed()
        self.late.append(max(0, now - self._last - self.interval))
        self._last = now

    def take(self):
        """(worst, p99) lateness since the last call, in ms; starts a new interval."""
        lat = sorted(self.late) or [0]
        self.late.clear()
        return lat[-1], lat[int(0.99 * (len(lat) - 1))]
