"""The l2l tab's second demo, "Neural art" (issue 28): the learned optimizer and tuned Adam style the same photo.

Qt only: the work is ``infer.style_race`` in the panel's worker (``panel.runner``); this page draws what it
yields (the two images every few steps, both loss curves) and keeps no model of its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from explorer.ui.dialogs import input_folder, remember_folder
from explorer.ui.widgets.plots import log_plot_widget, set_title, with_legend
from explorer.ui.widgets.task_bar import TaskBar

from . import infer
from .style_data import STYLE_LABELS, STYLES, TAB_PHOTOS

IMAGE_PX = 176
REDRAW_MS = 60
COLORS = {"learned": (220, 40, 40), "adam": (40, 90, 220)}
NEEDS_CHECKPOINT = (
    "Neural art needs the learned optimizer models/l2l_style.safetensors (nips-explorer train l2l --problem style): "
    "Run styles with Adam alone until then."
)
IMAGE_DIR_KEY = "l2l/style_images"


def to_pixmap(a: np.ndarray, px: int = IMAGE_PX) -> QPixmap:
    """uint8 (H, W, 3) pixels as a pixmap scaled to ``px`` (nearest: the optimised pixels as they are)."""
    a = np.ascontiguousarray(a, dtype=np.uint8)
    h, w, _ = a.shape
    img = QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(img).scaled(px, px, Qt.AspectRatioMode.KeepAspectRatio)


class StyleArtPage(QWidget):
    """Pick a content photo (bundled, or Open...) and a style; Run, Stop, Reset."""

    def __init__(self, panel: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.panel = panel
        self.file_path: str | None = None
        self.last_results: dict[str, Any] | None = None
        self._curves: dict[str, tuple[list[int], list[float]]] = {}
        self._dirty = False
        self._redraw = QTimer(self, singleShot=True, interval=REDRAW_MS)
        self._redraw.timeout.connect(self._flush)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)

        row = QHBoxLayout()
        row.addWidget(QLabel("Photo:"))
        self.content_box = QComboBox()
        for name in TAB_PHOTOS:
            self.content_box.addItem(name.capitalize(), f"bundled:{name}")
        self.content_box.setToolTip("Content photo (Debian wallpapers, see resources/compression/LICENSES.md)")
        row.addWidget(self.content_box)
        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip("Style a photo of your own (any image file; it is scaled and centre-cropped)")
        row.addWidget(self.open_button)
        row.addWidget(QLabel("Style:"))
        self.style_box = QComboBox()
        from .style_data import TRAIN_STYLES

        for name in STYLES:
            seen = " (meta-training style)" if name in TRAIN_STYLES else ""
            self.style_box.addItem(STYLE_LABELS[name].split(" (")[0] + seen, name)
            self.style_box.setItemData(
                self.style_box.count() - 1,
                STYLE_LABELS[name] + ("" if seen else ", never seen in meta-training"),
                Qt.ItemDataRole.ToolTipRole,
            )
        row.addWidget(self.style_box)
        row.addWidget(QLabel("Size:"))
        self.size_box = QComboBox()
        self.size_box.addItem("64×64", 64)
        self.size_box.addItem("128×128", 128)
        self.size_box.setToolTip("64×64 as in meta-training; 128×128 is the paper's double-resolution transfer")
        row.addWidget(self.size_box)
        self.steps_box = QSpinBox()
        self.steps_box.setRange(2, 1000)
        self.steps_box.setValue(100)
        self.steps_box.setSuffix(" steps")
        self.steps_box.setToolTip("Optimizer steps (one loss and gradient evaluation each); meta-trained for 100")
        row.addWidget(self.steps_box)
        self.run_button = QPushButton("Run")
        self.stop_button = QPushButton("Stop")
        self.reset_button = QPushButton("Reset")
        self.stop_button.setEnabled(False)
        for b in (self.run_button, self.stop_button, self.reset_button):
            row.addWidget(b)
        row.addStretch(1)
        lay.addLayout(row)

        self.info = QLabel("")
        self.info.setWordWrap(True)
        lay.addWidget(self.info)

        # left: the photo, the style and the two results (2x2); right: both loss curves
        body = QHBoxLayout()
        grid = QGridLayout()
        self.views: dict[str, QLabel] = {}
        for i, (key, title) in enumerate(
            (("content", "Photo"), ("style", "Style"), ("learned", "LSTM (learned)"), ("adam", "Adam (tuned)"))
        ):
            cap = QLabel(title)
            cap.setAlignment(Qt.AlignmentFlag.AlignCenter)
            if key in COLORS:
                r, g, b = COLORS[key]
                cap.setStyleSheet(f"color: rgb({r},{g},{b}); font-weight: bold")
            view = QLabel()
            view.setFixedSize(IMAGE_PX, IMAGE_PX)
            view.setAlignment(Qt.AlignmentFlag.AlignCenter)
            view.setStyleSheet("background: #eee")
            grid.addWidget(cap, 2 * (i // 2), i % 2)
            grid.addWidget(view, 2 * (i // 2) + 1, i % 2)
            self.views[key] = view
        grid.setVerticalSpacing(2)
        left = QVBoxLayout()
        left.addLayout(grid)
        left.addStretch(1)
        body.addLayout(left)

        self.plot = log_plot_widget(y=True)
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "style-transfer loss (log)")
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        self.plot.setMinimumSize(300, 200)
        set_title(self.plot, "Loss")
        box, self.legend = with_legend(self.plot)
        self.legend.set_entries([(COLORS["learned"], "line", "LSTM (learned)"), (COLORS["adam"], "line", "Adam")])
        self.lines = {k: self.plot.plot([], [], pen=pg.mkPen(c, width=2)) for k, c in COLORS.items()}
        body.addWidget(box, 1)
        lay.addLayout(body, 1)
        self.task_bar = TaskBar()
        lay.addWidget(self.task_bar)

        self.run_button.clicked.connect(self.run)
        self.stop_button.clicked.connect(self.stop)
        self.reset_button.clicked.connect(self.reset)
        self.open_button.clicked.connect(self._ask_open)
        self.size_box.currentIndexChanged.connect(self.update_info)
        self.style_box.currentIndexChanged.connect(self.update_info)
        self.update_info()

    # ------------------------------------------------------------------ state
    def net_and_meta(self) -> tuple[Any, Any]:
        bundle = self.panel.bundle
        if bundle is None or "style" not in bundle.nets:
            return None, None
        return bundle.nets["style"], bundle.metas["style"]

    def update_info(self) -> None:
        net, meta = self.net_and_meta()
        lr, src = infer.style_adam_rate(meta, self.record())
        if net is None:
            self.info.setText(NEEDS_CHECKPOINT)
            return
        self.info.setText(f"{infer.describe_checkpoint(meta)}. Adam at rate {lr:g}, {src}.")

    def content(self) -> tuple[str, str]:
        """("bundled", photo name) or ("file", path): the combo box keeps them as "kind:value" strings."""
        kind, _, value = str(self.content_box.currentData()).partition(":")
        return kind, value

    def _ask_open(self) -> None:
        settings = self.panel.context.settings
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Open a photo to style",
            input_folder(settings, IMAGE_DIR_KEY, "compression"),
            "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp)",
        )
        if path:
            remember_folder(settings, IMAGE_DIR_KEY, path)
            self.use_file(path)

    def use_file(self, path: str) -> None:
        """Style ``path`` (it is read in the worker: a bad file is one line in the banner)."""
        from pathlib import Path

        i = self.content_box.findData(f"file:{path}")
        if i < 0:
            self.content_box.addItem(Path(path).name, f"file:{path}")
            i = self.content_box.count() - 1
        self.content_box.setCurrentIndex(i)

    # ------------------------------------------------------------------- run
    def record(self) -> str:
        """Which evaluation's tuned rates apply: double resolution, an unseen style, or the meta-training one."""
        from .style_data import TRAIN_STYLES

        if int(self.size_box.currentData()) != 64:
            return "style-128"
        return "style" if self.style_box.currentData() in TRAIN_STYLES else "style-newstyle"

    def run(self) -> None:
        net, meta = self.net_and_meta()
        lr, _ = infer.style_adam_rate(meta, self.record())
        self.reset(keep_message=True)
        size, steps = int(self.size_box.currentData()), int(self.steps_box.value())
        style = str(self.style_box.currentData())
        self.run_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        set_title(self.plot, f"{self.content_box.currentText()} in style {style}, {size}×{size}; Adam at rate {lr:g}")
        self.task_bar.start("Styling…", on_cancel=self.stop)
        self.panel.runner.submit(
            infer.style_race,
            self.content(),
            style,
            size,
            steps,
            net,
            lr,
            key="style",
            name="neural art",
            on_partial=self._on_partial,
            on_progress=self.task_bar.set_progress,
            on_result=self._on_done,
            on_error=self._on_error,
            on_cancelled=self._on_cancelled,
            on_finished=self._on_finished,
        )

    def stop(self) -> None:
        self.panel.runner.cancel("style")

    def reset(self, keep_message: bool = False) -> None:
        self.panel.runner.cancel("style")
        self.last_results = None
        self._curves = {k: ([], []) for k in COLORS}
        for line in self.lines.values():
            line.setData([], [])
        for view in self.views.values():
            view.clear()
        if not keep_message:
            self.task_bar.finish("")

    def _on_partial(self, item: Any) -> None:
        kind = item[0]
        if kind == "images":
            self.views["content"].setPixmap(to_pixmap(item[1]))
            self.views["style"].setPixmap(to_pixmap(item[2]))
        elif kind == "step":
            _, t, losses = item
            for key, loss in losses.items():
                xs, ys = self._curves.setdefault(key, ([], []))
                xs.append(int(t))
                ys.append(min(max(float(loss), 1e-12), 1e12))
            self._dirty = True
            if not self._redraw.isActive():
                self._redraw.start()
        elif kind == "pictures":
            for key, pic in item[2].items():
                self.views[key].setPixmap(to_pixmap(pic))

    def _flush(self) -> None:
        if self._dirty:
            for key, (xs, ys) in self._curves.items():
                if key in self.lines:
                    self.lines[key].setData(xs, ys)
            self._dirty = False

    def _on_done(self, results: dict[str, Any]) -> None:
        self._redraw.stop()
        self._flush()
        self.last_results = results
        bits = [f"{'LSTM' if k == 'learned' else 'Adam'} {r['final']:.4g}" for k, r in results.items()]
        self.task_bar.finish("Final loss: " + ", ".join(bits))

    def _on_error(self, exc: BaseException, tb: str) -> None:
        self.task_bar.finish("Failed")
        self.panel.show_exception(exc, tb)

    def _on_cancelled(self) -> None:
        if self.panel.runner.latest_cancelled("style"):
            self._flush()
            self.task_bar.finish("Stopped")

    def _on_finished(self) -> None:
        self.run_button.setEnabled(True)
        self.stop_button.setEnabled(False)
