"""Small widget helpers shared by the panels: a bold font, an input level meter."""

from __future__ import annotations

from PySide6.QtGui import QFont
from PySide6.QtWidgets import QProgressBar


def bold_font(points: int) -> QFont:
    f = QFont()
    f.setPointSize(points)
    f.setBold(True)
    return f


def level_meter(width: int | None = None) -> QProgressBar:
    """An audio input level bar from -60 to 0 dBFS, resting at -60."""
    bar = QProgressBar()
    bar.setRange(-60, 0)
    bar.setValue(-60)
    bar.setTextVisible(False)
    bar.setToolTip("Input level (dBFS)")
    if width:
        bar.setMaximumWidth(width)
        bar.setMaximumHeight(14)
    return bar
