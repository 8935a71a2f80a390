"""An inline error banner (never a modal during a run), with a Details button showing the traceback.

It remembers which declared message it shows (``kind``, a :class:`explorer.ui.messages.Msg`, and the ``fields``
that filled it), so code and tests ask what is shown, not how it is worded.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QMessageBox, QPushButton, QWidget


class ErrorBanner(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ErrorBanner")
        self.setStyleSheet(
            "#ErrorBanner { background: #fde8e8; border: 1px solid #e0a0a0; border-radius: 4px; }"
            "#ErrorBanner QLabel { color: #8a1f1f; }"
        )
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 4, 4)
        self.icon = QLabel("⚠")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.details_button = QPushButton("Details…")
        self.details_button.setToolTip("Show the full error report (also written to the log file)")
        self.dismiss_button = QPushButton("✕")
        self.dismiss_button.setToolTip("Dismiss this message")
        self.dismiss_button.setFixedWidth(28)
        lay.addWidget(self.icon)
        lay.addWidget(self.label, 1)
        lay.addWidget(self.details_button)
        lay.addWidget(self.dismiss_button)
        self.details_button.clicked.connect(self._show_details)
        self.dismiss_button.clicked.connect(self.clear)
        self._details = ""
        self.kind: Any = None  # the Msg shown (None: nothing, or words no table declares)
        self.fields: dict[str, Any] = {}
        self.hide()

    def show_message(self, message: str, details: str = "", kind: Any = None, fields: dict | None = None) -> None:
        self.label.setText(message)
        self._details = details
        self.kind = kind
        self.fields = dict(fields or {})
        self.details_button.setVisible(bool(details))
        self.show()

    def message(self) -> str:
        return self.label.text() if self.isVisible() else ""

    def details(self) -> str:
        return self._details

    def clear(self) -> None:
        self.label.clear()
        self._details = ""
        self.kind = None
        self.fields = {}
        self.hide()

    def _show_details(self) -> None:
        box = QMessageBox(self)
        box.setWindowTitle("Error details")
        box.setIcon(QMessageBox.Warning)
        box.setText(self.label.text())
        box.setDetailedText(self._details)
        box.setStandardButtons(QMessageBox.Close)
        box.open()
