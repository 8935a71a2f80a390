"""A slim progress bar with a message and a Cancel button for long work in a panel.

``start()`` shows it; Cancel says "Cancelling…" and calls the panel's cancel function; the panel ends it with
``finish(text)`` from the job's outcome (result, error, or the runner's ``on_cancelled``), which hides the bar
and the button and leaves a short message.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

REPAINT_MS = 50  # progress reports arrive up to thousands of times a second; the bar is drawn at most 20 times


class TaskBar(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel("")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.bar.setMaximumHeight(14)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop this computation (Esc)")
        self.cancel_button.setShortcut("Esc")
        # Hidden, the bar and the button keep their room: the row's height never changes when work starts or
        # ends, so the plots above it are not resized (relaid out and redrawn, 100-300 ms for a tab of plots)
        for w in (self.bar, self.cancel_button):
            pol = w.sizePolicy()
            pol.setRetainSizeWhenHidden(True)
            w.setSizePolicy(pol)
        lay.addWidget(self.label)
        lay.addWidget(self.bar, 1)
        lay.addWidget(self.cancel_button)
        self.cancel_button.clicked.connect(self._cancel)
        self._on_cancel: Callable[[], None] | None = None
        self._pending = None  # the latest (fraction, text) not drawn yet
        self._repaint = QTimer(self, singleShot=True, interval=REPAINT_MS)
        self._repaint.timeout.connect(self._apply)
        self.finish("")

    def start(self, text: str, on_cancel: Callable[[], None] | None = None) -> None:
        self._pending = None
        self._on_cancel = on_cancel
        self.label.setText(text)
        self.bar.setRange(0, 0)  # busy until the first fraction arrives
        self.bar.show()
        self.cancel_button.setVisible(on_cancel is not None)
        self.cancel_button.setEnabled(True)

    def set_progress(self, fraction: float | None, text: str = "") -> None:
        """Record the latest progress; it is drawn within REPAINT_MS (the GUI thread is not kept busy repainting)."""
        self._pending = (fraction, text or (self._pending[1] if self._pending else ""))
        if not self._repaint.isActive():
            self._repaint.start()

    def _apply(self) -> None:
        if self._pending is None:
            return
        (fraction, text), self._pending = self._pending, None
        if fraction is None:
            self.bar.setRange(0, 0)
        else:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(max(0.0, min(1.0, fraction)) * 1000))
        if text:
            self.label.setText(text)

    def finish(self, text: str = "") -> None:
        self._pending = None
        self._on_cancel = None
        self.label.setText(text)
        self.bar.hide()
        self.cancel_button.hide()

    def _cancel(self) -> None:
        if self._on_cancel is not None:
            cb, self._on_cancel = self._on_cancel, None
            self.cancel_button.setEnabled(False)
            self.label.setText("Cancelling…")
            cb()
