"""The checkpoint bar of a tab: name, training data, headline metric, Open…, Reset to bundled."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

DATA_CHARS = 60  # a longer training-data note is cut at a word (whole in the tooltip), so the bar fits 1280 px


def short_data(text: str, limit: int = DATA_CHARS) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,;:(") + "…"


class CheckpointBar(QWidget):
    open_requested = Signal()
    reset_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.name = QLabel("<i>loading checkpoint…</i>")
        self.name.setToolTip("The checkpoint this tab runs")
        self.data = QLabel("")
        self.data.setToolTip("What the model was trained on")
        self.headline = QLabel("")
        self.headline.setToolTip("Headline metric, computed by our evaluation code on held-out data")
        self.open_button = QPushButton("Open checkpoint…")
        self.open_button.setToolTip("Load another compatible checkpoint (.safetensors, or a .pt state dict) (Ctrl+O)")
        self.reset_button = QPushButton("Reset to bundled")
        self.reset_button.setToolTip("Go back to the checkpoint shipped with the app")
        lay.addWidget(QLabel("Checkpoint:"))
        lay.addWidget(self.name)
        lay.addSpacing(12)
        lay.addWidget(self.data)
        lay.addSpacing(12)
        lay.addWidget(self.headline, 1)
        lay.addWidget(self.open_button)
        lay.addWidget(self.reset_button)
        self.open_button.clicked.connect(self.open_requested)
        self.reset_button.clicked.connect(self.reset_requested)

    def set_meta(self, meta) -> None:
        self.name.setText(f"<b>{meta.name}</b>")
        self.name.setToolTip(meta.path or "")
        data = meta.data_summary()
        self.data.setText(f"data: {short_data(data)}" if data else "")
        self.data.setToolTip(f"What the model was trained on: {data}" if data else "What the model was trained on")
        head = meta.headline()
        self.headline.setText(f"{head}" if head else "")

    def set_missing(self, text: str) -> None:
        self.name.setText(f"<i>{text}</i>")
        self.data.setText("")
        self.headline.setText("")
