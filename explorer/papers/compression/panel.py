"""The conceptual compression tab: a slider over real .cdraw file sizes, with JPEG, JPEG 2000, WebP and AVIF files
no larger than each.

All work runs in workers: per image, one task writes the .cdraw files of k = 1..T iterations in memory and decodes
them (shown at once), then finds each peer codec's largest file no larger than each .cdraw file (in a helper
process, streamed in as partial results); the slider only reads caches. "Imagine the rest" samples (the first k
iterations as decoded from the file, the rest drawn from the prior) are computed per k in another task and cached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from explorer.ui.dialogs import input_folder, remember_folder
from explorer.ui.messages import Msg
from explorer.ui.panel_base import PaperPanel
from explorer.ui.widgets.fit_scroll import shrinkable
from explorer.ui.widgets.task_bar import TaskBar

TILE = 168
SAMPLE_TILE = 92
N_SAMPLES = 4
MAX_SIDE = 512
DEFAULT_SAMPLE = "path.png"
TARGET_BPP = 0.25  # the default k is the one whose file size is closest to this
CAPTION_LINES = 3
IMAGE_DIR_KEY = "compression/last_dir"


def to_pixmap(img: np.ndarray, size: int) -> QPixmap:
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    img = np.ascontiguousarray(img)
    h, w = img.shape[:2]
    mode = Qt.SmoothTransformation if max(h, w) >= size // 2 else Qt.FastTransformation  # tiny: crisp pixels
    if img.ndim == 2:
        qimg = QImage(img.data, w, h, w, QImage.Format_Grayscale8).copy()
    else:
        qimg = QImage(img.data, w, h, 3 * w, QImage.Format_RGB888).copy()
    return QPixmap.fromImage(qimg).scaled(size, size, Qt.KeepAspectRatio, mode)


class ImageTile(QWidget):
    """A title, an image and a caption."""

    def __init__(self, title: str, tooltip: str, size: int = TILE, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        self.size_px = size
        self.title = QLabel(f"<b>{title}</b>")
        self.title.setAlignment(Qt.AlignCenter)
        self.image = QLabel("…")
        self.image.setAlignment(Qt.AlignCenter)
        self.image.setFixedSize(size, size)
        self.image.setStyleSheet("background: #f2f2f2; border: 1px solid #ddd;")
        # The caption sits below the picture in its own rows (never over it): it wraps to the tile's width and
        # always has room for CAPTION_LINES lines, so a longer one cannot push into the picture
        self.caption = QLabel("")
        self.caption.setAlignment(Qt.AlignHCenter | Qt.AlignTop)
        self.caption.setWordWrap(True)
        self.caption.setStyleSheet("font-size: 9pt;")
        self.caption.setMinimumWidth(size)
        self.caption.setMinimumHeight(CAPTION_LINES * self.caption.fontMetrics().lineSpacing() + 4 if title else 0)
        self.caption.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Minimum)
        self.setToolTip(tooltip)
        if title:
            lay.addWidget(self.title)
        lay.addWidget(self.image, 0, Qt.AlignHCenter)
        if title:
            lay.addWidget(self.caption)
        else:
            self.caption.hide()
        self.has_image = False

    def set_image(self, img: np.ndarray | None, caption: str = "") -> None:
        if img is None:
            self.image.clear()
            self.image.setText("computing…")
            self.has_image = False
        else:
            self.image.setPixmap(to_pixmap(img, self.size_px))
            self.has_image = True
        self.caption.setText(caption)


class CompressionPanel(PaperPanel):
    class Messages(PaperPanel.Messages):
        no_samples = Msg("No sample images found in {folder}; use 'Open image…'.")

    def __init__(self, spec, context, parent=None):
        super().__init__(spec, context, parent)
        self.analysis = None
        self.points: dict[int, dict[str, Any]] = {}
        self.baselines: dict[int, dict[str, Any]] = {}
        self.sample_cache: dict[int, list[np.ndarray]] = {}
        self.sample_seed = 0
        self.image: np.ndarray | None = None
        self.image_name = ""
        self.image_note: str | None = None
        self._pending_demo = False
        self._analysis_done = False

    # ------------------------------------------------------------------------------------------- UI
    def build_steps(self):
        """The widgets in pieces (the shell runs one per event-loop turn)."""
        top = QHBoxLayout()
        top.addWidget(QLabel("Image:"))
        self.picker = QComboBox()
        self.picker.setToolTip("Held-out sample photos (never seen in training); or open your own image")
        self._fill_picker(3)
        self.picker.currentIndexChanged.connect(self._on_pick)
        top.addWidget(self.picker)
        self.open_button = QPushButton("Open image…")
        self.open_button.setToolTip("Compress your own PNG or JPEG (larger than 512 pixels: scaled down)")
        self.open_button.clicked.connect(self._ask_open_image)
        top.addWidget(self.open_button)
        top.addSpacing(16)
        top.addWidget(QLabel("File size:"))
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.setValue(0)
        self.slider.setPageStep(1)
        self.slider.setTickPosition(QSlider.TicksBelow)
        self.slider.setMinimumWidth(220)
        self.slider.setToolTip(
            "The .cdraw files of this image, smallest first: each sends the latents of the first k DRAW "
            "iterations (quantised with a step D, range-coded under the learned prior; the rest come from the "
            "prior's mean). Only files that look better than every smaller one are kept."
        )
        self.slider.valueChanged.connect(self._on_slider)
        top.addWidget(self.slider, 1)
        self.k_label = QLabel("")
        self.k_label.setMinimumWidth(260)
        top.addWidget(self.k_label)
        self.body.addLayout(top)

        self.task_bar = TaskBar()
        self.body.addWidget(self.task_bar)
        yield

        tiles = QHBoxLayout()
        self.tile_orig = ImageTile("Original", "The image being compressed")
        self.tile_draw = ImageTile(
            "Conv DRAW, first k iterations",
            "The picture decoded from the .cdraw file of the first k iterations (the remaining iterations use "
            "the learned prior's mean); its size is the file's, header and checksum included",
        )
        self.tile_jpeg = ImageTile(
            "JPEG, same bytes",
            "Pillow JPEG (4:2:0, optimised Huffman): the highest quality whose file is no larger than the .cdraw "
            "file. JPEG cannot go below its quality-1 size",
        )
        self.tile_jp2 = ImageTile(
            "JPEG 2000, same bytes",
            "Pillow/OpenJPEG JPEG 2000 (9/7 wavelet): the compression ratio bisected to the largest file no "
            "larger than the .cdraw file",
        )
        self.tile_webp = ImageTile(
            "WebP, same bytes",
            "Pillow/libwebp lossy WebP (method 6): the highest quality whose file is no larger than the .cdraw file",
        )
        self.tile_avif = ImageTile(
            "AVIF, same bytes",
            "Pillow/libavif AVIF (AV1 intra): the highest quality whose file is no larger than the .cdraw file",
        )
        self.peer_tiles = {
            "jpeg": self.tile_jpeg,
            "jpeg2000": self.tile_jp2,
            "webp": self.tile_webp,
            "avif": self.tile_avif,
        }
        for t in (self.tile_orig, self.tile_draw, *self.peer_tiles.values()):
            tiles.addWidget(t)
        self.body.addLayout(tiles)
        yield

        bottom = QHBoxLayout()
        import pyqtgraph as pg

        self.plot = pg.PlotWidget()
        self.plot.setBackground("w")
        self.plot.setLabel("bottom", "bits per pixel")
        self.plot.setLabel("left", "PSNR (dB)")
        self.plot.setTitle("Rate-distortion on this image", color="k")
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        # bottom right: rate-distortion curves rise to the right, so that corner stays empty
        self.plot.addLegend(offset=(-10, -10), labelTextColor="#333", brush=pg.mkBrush(255, 255, 255, 200))
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.plot.setToolTip(
            "PSNR against real file size (bits per pixel = 8 x bytes / pixels). Conv DRAW: the .cdraw files of "
            "k = 1..T iterations; the others: their largest file no larger than each. Big markers: the current k"
        )
        shrinkable(self.plot, 180)
        colors = {
            "draw": (31, 119, 180),
            "jpeg": (214, 39, 40),
            "jpeg2000": (44, 160, 44),
            "webp": (148, 103, 189),
            "avif": (255, 127, 14),
        }
        styles = {
            "draw": ("o", "conv DRAW (.cdraw files)"),
            "jpeg": ("s", "JPEG"),
            "jpeg2000": ("t", "JPEG 2000"),
            "webp": ("d", "WebP"),
            "avif": ("star", "AVIF"),
        }
        self.curves = {
            key: self.plot.plot(
                [],
                [],
                pen=pg.mkPen(colors[key], width=2),
                symbol=sym,
                symbolSize=6,
                symbolBrush=colors[key],
                name=label,
            )
            for key, (sym, label) in styles.items()
        }
        self.current = pg.ScatterPlotItem(size=14, pen=pg.mkPen("k", width=1.5))
        self.plot.addItem(self.current)
        # one QBrush per codec, made once: a colour given per spot makes pyqtgraph add a symbol to its atlas per call
        self._brushes = {k: pg.mkBrush(c) for k, c in colors.items()}
        bottom.addWidget(self.plot, 3)
        yield

        box = QGroupBox("Imagine the rest")
        box.setToolTip(
            "Keep the first k iterations as sent and sample the remaining ones from the learned prior: "
            "what the model 'imagines' for the bits not sent"
        )
        bl = QVBoxLayout(box)
        self.samples_label = QLabel("Samples for the iterations not sent (beyond what the file holds)")
        self.samples_label.setWordWrap(True)
        bl.addWidget(self.samples_label)
        grid = QGridLayout()
        self.sample_tiles = []
        for i in range(N_SAMPLES):
            t = ImageTile("", "A sample: first k iterations as sent, the rest drawn from the prior", SAMPLE_TILE)
            grid.addWidget(t, 0, i)
            self.sample_tiles.append(t)
        bl.addLayout(grid)
        self.resample_button = QPushButton("New samples")
        self.resample_button.setToolTip("Draw other samples for the iterations not sent")
        self.resample_button.clicked.connect(self._resample)
        bl.addWidget(self.resample_button)
        box.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Preferred)
        bottom.addWidget(box, 2)
        self.body.addLayout(bottom, 1)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.info.setStyleSheet("color: #555;")
        self.body.addWidget(self.info)
        self.reveal_later(self.plot)

    @staticmethod
    def _bundled_images(channels: int = 3) -> list[Path]:
        """Held-out photos for an RGB model; Fashion-MNIST test mosaics for a grey one."""
        from explorer.core.paths import resources_dir

        d = resources_dir() / "compression"
        if channels == 1:
            d = d / "fashion"
        return sorted(d.glob("*.png")) if d.is_dir() else []

    def _fill_picker(self, channels: int) -> bool:
        """Refill the picker for the model's kind of image; True if the list changed."""
        files = self._bundled_images(channels)
        if [self.picker.itemData(i) for i in range(self.picker.count())] == [str(f) for f in files]:
            return False
        self.picker.blockSignals(True)
        self.picker.clear()
        for f in files:
            self.picker.addItem(f.stem, str(f))
        self.picker.blockSignals(False)
        return True

    # ------------------------------------------------------------------------------------- hooks
    def on_model_loaded(self, model, meta) -> None:
        if self._fill_picker(model.in_channels) and self.image is not None and not self._pending_demo:
            self._on_pick(self.picker.currentIndex())  # a photo model <-> Fashion-MNIST model switch
        elif self.image is not None:
            self._start_analysis()

    def start_default_demo(self) -> None:
        self._pending_demo = True
        idx = max(0, self.picker.findText(Path(DEFAULT_SAMPLE).stem))  # -1 for the Fashion-MNIST model
        if self.picker.count() == 0:
            self.show_msg(self.Messages.no_samples, folder="resources/compression")
            self.mark_demo_done()
            return
        if self.picker.currentIndex() != idx:
            self.picker.setCurrentIndex(idx)  # triggers _on_pick
        else:
            self._on_pick(idx)

    def shutdown(self, timeout: float = 5.0) -> bool:
        ok = super().shutdown(timeout)  # the analysis has stopped: its codec process is idle
        from . import codec_process

        if codec_process._shared is not None:
            codec_process._shared.close()
        return ok

    # ----------------------------------------------------------------------------------- actions
    def _on_pick(self, index: int) -> None:
        path = self.picker.itemData(index)
        if path:
            self._open_path(path)

    def image_start_folder(self) -> str:
        """Where "Open image…" opens: the folder of the last image opened, else the bundled sample photos (the
        Fashion-MNIST mosaics for a grey model)."""
        grey = self.model is not None and self.model.in_channels == 1
        return input_folder(self.context.settings, IMAGE_DIR_KEY, "compression", "fashion" if grey else "")

    def _ask_open_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open an image", self.image_start_folder(), "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp)"
        )
        if path:
            remember_folder(self.context.settings, IMAGE_DIR_KEY, path)
            self._open_path(path)

    def _open_path(self, path: str) -> None:
        self.task_bar.start(f"Loading {Path(path).name}…")

        def loaded(res):
            self.image, self.image_note = res
            self.image_name = Path(path).name
            self._start_analysis()

        def failed(exc, tb):
            self.task_bar.finish("")
            self.show_exception(exc, tb)
            if self._pending_demo:
                self._pending_demo = False
                self.mark_demo_done()

        from . import infer

        self.runner.submit(
            infer.load_image_for_app,
            path,
            MAX_SIDE,
            key="load",
            name="load image",
            on_result=loaded,
            on_error=failed,
        )

    def _start_analysis(self) -> None:
        if self.model is None or self.image is None:
            return
        self.clear_error()
        self.analysis, self.points, self.baselines, self.sample_cache = None, {}, {}, {}
        self._analysis_done = False
        self.runner.cancel("samples")
        for t in (self.tile_draw, *self.peer_tiles.values()):
            t.set_image(None)
        for t in self.sample_tiles:
            t.set_image(None)
        self.tile_orig.set_image(
            self.image,
            f"{self.image_name}: {self.image.shape[1]}x{self.image.shape[0]}"
            + (f" ({self.image_note})" if self.image_note else ""),
        )
        for c in self.curves.values():
            c.setData([], [])
        self.current.setData([], [])
        self.task_bar.start("Writing the conv DRAW files…", on_cancel=lambda: self.runner.cancel("analysis"))
        from . import infer

        self.runner.submit(
            infer.analyse_for_app,
            self.model,
            self.image,
            TARGET_BPP,
            key="analysis",
            name="conv DRAW analysis",
            on_partial=self._on_partial,
            on_progress=self.task_bar.set_progress,
            on_result=self._on_analysis_done,
            on_error=self._on_analysis_error,
            on_cancelled=self._on_analysis_cancelled,
        )

    def _on_partial(self, item) -> None:
        if item[0] == "model":
            _, an, points = item
            self.analysis, self.points = an, points
            self.tile_orig.image.setPixmap(to_pixmap(an.image, self.tile_orig.size_px))
            self.report_timing(an.elapsed_ms, "conv DRAW files")
            i = int(np.argmin([abs(points[i]["bpp"] - TARGET_BPP) for i in range(len(points))]))
            self.slider.blockSignals(True)
            self.slider.setRange(0, len(points) - 1)
            if self._pending_demo:
                self.slider.setValue(i)
            self.slider.blockSignals(False)
            self._update_view()
        elif item[0] == "baseline":
            _, k, b = item
            self.baselines[k] = b
            self._update_plot()
            if k == self.slider.value():
                self._update_view()

    def _on_analysis_done(self, an) -> None:
        self._analysis_done = True
        self.task_bar.finish("")
        self._update_view()
        self._maybe_finish_demo()

    def _on_analysis_error(self, exc, tb) -> None:
        self.task_bar.finish("")
        self.show_exception(exc, tb)
        if self._pending_demo:
            self._pending_demo = False
            self.mark_demo_done()

    def _on_analysis_cancelled(self) -> None:
        if not self.runner.latest_cancelled("analysis"):
            return  # replaced by the analysis of another image or model
        self.task_bar.finish("Analysis cancelled.")
        if self._pending_demo:
            self._pending_demo = False
            self.mark_demo_done()

    def _on_slider(self, _value: int) -> None:
        self._update_view()

    def _resample(self) -> None:
        self.sample_seed += 1
        self.sample_cache = {}
        self._request_samples()

    def _request_samples(self) -> None:
        if self.analysis is None:
            return
        k = self.slider.value()
        if k in self.sample_cache:
            self._show_samples(k)
            return
        an = self.analysis

        def done(res):
            kk, imgs = res
            if an is self.analysis:
                self.sample_cache[kk] = imgs
                if kk == self.slider.value():
                    self._show_samples(kk)
            self._maybe_finish_demo()

        def failed(exc, tb):
            self.show_exception(exc, tb)
            if self._pending_demo:  # no samples are coming: the demo shows what it has
                self._pending_demo = False
                self.mark_demo_done()

        # cancelled (a new image or model): the new analysis asks for its own samples
        from . import infer

        self.runner.submit(
            infer.samples_for_app,
            an,
            k,
            self.sample_seed,
            N_SAMPLES,
            key="samples",
            name="imagine the rest",
            on_result=done,
            on_error=failed,
        )

    def _maybe_finish_demo(self) -> None:
        if self._pending_demo and self._analysis_done and self.slider.value() in self.sample_cache:
            self._pending_demo = False
            self.mark_demo_done()

    # ------------------------------------------------------------------------------------ views
    def _show_samples(self, i: int) -> None:
        imgs = self.sample_cache.get(i, [])
        for t, im in zip(self.sample_tiles, imgs):
            t.set_image(im, "")
        T = self.analysis.T if self.analysis else 0
        k = self.points[i]["k"] if i in self.points else T
        self.samples_label.setText(
            f"First {k} iteration(s) as decoded from the file; iterations {k + 1}..{T} are samples from the learned "
            "prior, beyond what was sent"
            if k < T
            else "All iterations sent: nothing left to imagine (the samples equal the decoded picture)"
        )

    def _update_view(self) -> None:
        from .baselines import PEER_NAMES

        an = self.analysis
        if an is None:
            return
        i = self.slider.value()
        p = self.points[i]
        k = p["k"]
        self.k_label.setText(
            f"<b>{p['bytes']} bytes, {p['bpp']:.3f} bpp</b>: k = {k} of {an.T} iterations, step {p['step']:.3g} "
            f"(file {i + 1} of {len(self.points)})"
        )
        self.tile_draw.title.setText(f"<b>Conv DRAW, first {k} of {an.T} iterations</b>")
        self.tile_draw.set_image(
            an.recons[i],
            f"{p['bytes']} bytes, {p['bpp']:.3f} bpp (decoded file)<br>PSNR {p['psnr']:.2f} dB · SSIM {p['ssim']:.3f}",
        )
        b = self.baselines.get(i)
        for name, tile in self.peer_tiles.items():
            if b is None:
                tile.set_image(None, "")
                continue
            r = b.get(name)
            if r is None:
                tile.image.clear()
                tile.image.setText(f"{PEER_NAMES[name]} cannot\nmake a file\nthis small")
                tile.has_image = False
                tile.caption.setText(f"its smallest file is larger than {p['bytes']} bytes")
                continue
            setting = f"ratio {r.setting:.0f}:1" if name == "jpeg2000" else f"q={int(r.setting)}"
            tile.set_image(
                r.image,
                f"{r.nbytes} bytes, {r.bpp:.3f} bpp ({setting})<br>PSNR {r.psnr:.2f} dB · SSIM {r.ssim:.3f}",
            )
        self._update_plot()
        if i in self.sample_cache:
            self._show_samples(i)
        else:
            for t in self.sample_tiles:
                t.set_image(None)
            self._request_samples()
        meta = self.model_meta
        m = meta.metrics if meta else {}
        self.info.setText(
            f"Model: {meta.name if meta else '?'} ({meta.data_summary() if meta else ''}; "
            f"held-out ELBO {m.get('val_bits_per_dim', float('nan')):.3f} bits/dim). Sizes are real files: the "
            ".cdraw file (header, range-coded latents, checksum; 'nips-explorer compress' writes the same bytes) "
            "and each peer's largest file no larger than it. Every picture shown is decoded from its file."
        )

    def _update_plot(self) -> None:
        an = self.analysis
        if an is None:
            return
        ks = sorted(self.points)
        self.curves["draw"].setData([self.points[k]["bpp"] for k in ks], [self.points[k]["psnr"] for k in ks])
        for name in self.peer_tiles:
            pts = sorted(
                (self.baselines[k][name].bpp, self.baselines[k][name].psnr)
                for k in ks
                if k in self.baselines and self.baselines[k].get(name) is not None
            )
            self.curves[name].setData([a for a, _ in pts], [b for _, b in pts])
        k = self.slider.value()
        spots = [{"pos": (self.points[k]["bpp"], self.points[k]["psnr"]), "brush": self._brushes["draw"]}]
        b = self.baselines.get(k)
        if b:
            for name in self.peer_tiles:
                if b.get(name) is not None:
                    spots.append({"pos": (b[name].bpp, b[name].psnr), "brush": self._brushes[name]})
        self.current.setData(spots)
