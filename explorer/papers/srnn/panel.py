"""The SRNN tab: a piano roll, what the model predicts for it, how much information the latent carries per step
(smoothing vs filtering), the latent trajectories, and "Continue the music" with playback.

All computation runs in workers (``self.runner``): the jobs are functions of infer.py (no Qt; torch is imported
inside them); this module only draws what they return.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QUrl
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from explorer.ui.messages import Msg
from explorer.ui.panel_base import PaperPanel
from explorer.ui.widgets.fit_scroll import shrinkable
from explorer.ui.widgets.plots import LegendRow, set_title
from explorer.ui.widgets.small import bold_font
from explorer.ui.widgets.task_bar import TaskBar

from . import infer
from .data import DATASET_TITLES, DATASETS, PAPER_PER_STEP

COL = {
    "smooth": (40, 110, 230),
    "filter": (240, 140, 20),
    "gru": (120, 120, 120),
    "smooth_noresq": (40, 170, 90),
    "prior": (200, 40, 40),
}
LABEL = infer.LABELS
N_LATENT_PLOTS = 3
ROW_MIN_PX = 80  # least height of a row of plots (title, data; the time axis is written once, below)
BOTTOM_ROW_MIN_PX = 110  # the lowest row also holds the time axis
COL_MIN_PX = 360
PROB_TITLE = "Predicted p(note on | earlier steps)"
LL_TITLE = "log p(x_t | earlier steps): one-step prediction (nats)"
KL_TITLE = "KL_t (an ELBO term): information in z_t (nats)"
CONT_TITLE = "Continue the music"


# ---------------------------------------------------------------------------------------------------- the panel
class SRNNPanel(PaperPanel):
    class Messages(PaperPanel.Messages):
        no_model_for_dataset = Msg(
            "No SRNN model for {dataset} in models/; train one with "
            "'nips-explorer train srnn --dataset {dataset_id} --data DIR'."
        )
        nothing_to_continue = Msg("No piece or model loaded yet.")

    def __init__(self, spec, context, parent=None):
        super().__init__(spec, context, parent)
        self.models: dict[str, Any] = {}  # key -> model ('smooth' is the one the big number is about)
        self.pieces: list[tuple[str, np.ndarray]] = []
        self.dataset: str | None = None
        self.results: dict[str, dict[str, Any]] = {}
        self._player = None
        self._audio = None
        self._wav_dir = tempfile.mkdtemp(prefix="nips-srnn-")
        self._last_wav: str | None = None
        self._cont_seed = 0
        self.main_key: str | None = None
        self.source = ""
        self.continuation = None
        self._started = False  # the default demo ran: later checkpoints redo the views
        self._bar_key: str | None = None  # whose progress the task bar shows
        self._keep_piece: int | None = None
        self._draw_gen = 0  # see _clear_curves

    def build_steps(self):
        yield from self._build_ui()

    # ------------------------------------------------------------------------------------------------ ui
    def _build_ui(self):
        """The widgets, in pieces (the shell runs one per event-loop turn): each plot is one piece."""
        row = QHBoxLayout()
        self.dataset_box = QComboBox()
        self.dataset_box.setToolTip("Music benchmark: its test pieces and the models trained on it")
        self.dataset_box.setMinimumContentsLength(14)
        self.piece_box = QComboBox()
        self.piece_box.setToolTip("A held-out test piece (never seen in training)")
        self.piece_box.setMinimumContentsLength(28)
        self.samples_spin = QSpinBox()
        self.samples_spin.setRange(1, 256)
        self.samples_spin.setValue(16)
        self.samples_spin.setToolTip(
            "Posterior samples of the z path: averaged for the curves, and the K of the importance-sampled bound"
        )
        self.source_box = QComboBox()
        self.source_box.addItem("test set", "test")
        self.source_box.addItem("Bach chorales (music21)", "music21")
        import importlib.util

        if importlib.util.find_spec("music21") is None:
            self.source_box.model().item(1).setEnabled(False)
            self.source_box.setItemData(1, "install the optional music21 package to use its chorales", Qt.ToolTipRole)
        self.source_box.setToolTip(
            "Pieces from the data set's held-out test split, or Bach chorales that the "
            "optional music21 package ships (quantised to eighth notes like JSB)"
        )
        row.addWidget(QLabel("Data set"))
        row.addWidget(self.dataset_box)
        row.addWidget(QLabel("Pieces"))
        row.addWidget(self.source_box)
        row.addWidget(QLabel("Piece"))
        row.addWidget(self.piece_box, 1)
        row.addWidget(QLabel("Samples"))
        row.addWidget(self.samples_spin)
        self.body.addLayout(row)

        head = QHBoxLayout()
        self.elbo_label = QLabel("…")
        self.elbo_label.setFont(bold_font(16))
        self.elbo_label.setToolTip(
            "ELBO per time step of this piece (nats): the sum over its steps of "
            "log p(x_t|z_t,d_t) - KL_t, divided by its length; the paper averages this over "
            "the test pieces. In brackets: the paper's figure for SRNN smoothing+Resq on "
            "this data set's whole test set"
        )
        self.info_label = QLabel("")
        self.info_label.setWordWrap(True)
        # room for its usual two lines from the start: filled in, it does not push the plots down (a resize of
        # the eight plots redraws them all at once)
        self.info_label.setMinimumHeight(2 * self.info_label.fontMetrics().lineSpacing() + 2)
        head.addWidget(self.elbo_label)
        head.addWidget(self.info_label, 1)
        self.body.addLayout(head)
        yield

        self.task_bar = TaskBar()

        self.glw = pg.GraphicsLayoutWidget()
        self.glw.setBackground("w")
        # four rows of plots, each at least ROW_MIN_PX tall: a smaller window scrolls the tab instead of
        # squeezing them into unreadable strips with overlapping ticks
        shrinkable(self.glw, 3 * ROW_MIN_PX + BOTTOM_ROW_MIN_PX + 12)
        self.glw.ci.setContentsMargins(2, 2, 2, 2)
        self.glw.ci.layout.setSpacing(2)
        self.glw.setMinimumWidth(2 * COL_MIN_PX)
        # the legend of the curves: a row of coloured names above the plots, never a box over the data
        self.legend = LegendRow()
        self.legend.setToolTip(
            "Colours of the models in the KL and log-likelihood plots, and of the latent plots' curves"
        )
        plots = QWidget()
        pl = QVBoxLayout(plots)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.setSpacing(0)
        pl.addWidget(self.legend)
        pl.addWidget(self.glw, 1)
        self.body.addWidget(plots, 1)

        lab = {"color": "#333", "font-size": "9pt"}
        yield
        self.p_roll = self.glw.addPlot(row=0, col=0)
        yield
        self.p_prob = self.glw.addPlot(row=1, col=0)
        yield
        self.p_kl = self.glw.addPlot(row=2, col=0)
        yield
        self.p_ll = self.glw.addPlot(row=3, col=0)
        self.p_lat = []
        for i in range(N_LATENT_PLOTS):
            yield
            self.p_lat.append(self.glw.addPlot(row=i, col=1))
        yield
        self.p_cont = self.glw.addPlot(row=N_LATENT_PLOTS, col=1)
        yield
        for p, title in (
            (self.p_roll, "Piano roll (test piece)"),
            (self.p_prob, PROB_TITLE),
            (self.p_kl, KL_TITLE),
            (self.p_ll, LL_TITLE),
            (self.p_cont, CONT_TITLE),
        ):
            self._title(p, title)
        for i, p in enumerate(self.p_lat):
            self._title(p, f"latent z[{i}]")
        for p in (self.p_roll, self.p_prob, self.p_kl, *self.p_lat):
            p.setMinimumHeight(ROW_MIN_PX)
        for p in (self.p_ll, self.p_cont):
            p.setMinimumHeight(BOTTOM_ROW_MIN_PX)
        # the time axis is shared (linked): its numbers are written once per column, under the lowest plot
        for p in (self.p_roll, self.p_prob, self.p_kl, self.p_lat[0], self.p_lat[1]):
            p.getAxis("bottom").setStyle(showValues=False)
        for p in (self.p_roll, self.p_prob):
            p.setLabel("left", "key", **lab)
            p.setYRange(0, 88)
        self.p_ll.setLabel("bottom", "time step", **lab)
        self.p_cont.setLabel("bottom", "time step", **lab)
        self.p_cont.setLabel("left", "key", **lab)
        self.roll_img = pg.ImageItem()
        self.prob_img = pg.ImageItem()
        self.cont_img = pg.ImageItem()
        self.p_roll.addItem(self.roll_img)
        self.p_prob.addItem(self.prob_img)
        self.p_cont.addItem(self.cont_img)
        self.prob_img.setLookupTable(pg.colormap.get("viridis").getLookupTable(nPts=256))
        yield
        left = [self.p_roll, self.p_prob, self.p_kl, self.p_ll] + self.p_lat
        for p in left[1:]:
            p.setXLink(self.p_roll)
        self.cursors = []
        for p in left:
            line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen((220, 0, 0, 150), width=1))
            line.setVisible(False)
            p.addItem(line, ignoreBounds=True)
            self.cursors.append(line)
        self.hover_label = QLabel("")
        status = QHBoxLayout()  # what the mouse points at, and the progress of the work running
        status.addWidget(self.hover_label, 1)
        status.addWidget(self.task_bar, 1)
        self.body.addLayout(status)
        self._mouse = pg.SignalProxy(self.glw.scene().sigMouseMoved, rateLimit=30, slot=self._on_mouse)
        yield

        cont = QHBoxLayout()
        self.prime_spin = QSpinBox()
        self.prime_spin.setRange(1, 400)
        self.prime_spin.setValue(32)
        self.prime_spin.setToolTip("Steps of the piece the model reads before it improvises")
        self.gen_spin = QSpinBox()
        self.gen_spin.setRange(1, 400)
        self.gen_spin.setValue(64)
        self.gen_spin.setToolTip("Steps to sample from the generative model")
        self.temp_spin = QDoubleSpinBox()
        self.temp_spin.setRange(0.3, 2.0)
        self.temp_spin.setSingleStep(0.1)
        self.temp_spin.setValue(1.0)
        self.temp_spin.setToolTip("Temperature of the note probabilities (1 = the model as trained)")
        self.step_spin = QDoubleSpinBox()
        self.step_spin.setRange(0.05, 1.0)
        self.step_spin.setSingleStep(0.05)
        self.step_spin.setValue(0.3)
        self.step_spin.setToolTip("Seconds per time step when playing")
        self.continue_button = QPushButton("Continue the music")
        self.continue_button.setToolTip("Prime with the first steps of the piece and sample the rest from p(x)")
        self.play_button = QPushButton("Play")
        self.play_button.setToolTip("Play the primer (grey) and the continuation (orange) with a simple synth")
        self.stop_button = QPushButton("Stop")
        self.play_button.setEnabled(False)
        for w, _t in (
            (QLabel("Prime"), None),
            (self.prime_spin, None),
            (QLabel("Generate"), None),
            (self.gen_spin, None),
            (QLabel("Temperature"), None),
            (self.temp_spin, None),
            (QLabel("s/step"), None),
            (self.step_spin, None),
        ):
            cont.addWidget(w)
        cont.addWidget(self.continue_button)
        cont.addWidget(self.play_button)
        cont.addWidget(self.stop_button)
        self.audio_label = QLabel("")
        self.audio_label.setWordWrap(True)  # a long path wraps instead of widening the whole tab
        self.audio_label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        cont.addWidget(self.audio_label, 1)
        self.body.addLayout(cont)

        self.dataset_box.currentIndexChanged.connect(self._on_dataset_changed)
        self.source_box.currentIndexChanged.connect(self._on_source_changed)
        self.piece_box.currentIndexChanged.connect(lambda _i: self._on_piece_changed())
        self.samples_spin.editingFinished.connect(self._analyse)
        self.continue_button.clicked.connect(self._continue)
        self.play_button.clicked.connect(self._play)
        self.stop_button.clicked.connect(self._stop_audio)
        self.reveal_later(
            self.p_roll, self.p_lat[0], self.p_prob, self.p_lat[1], self.p_kl, self.p_lat[2], self.p_ll, self.p_cont
        )

    @staticmethod
    def _title(plot, text: str) -> None:
        set_title(plot, text, size="9pt", color="#333")

    def _update_legend(self) -> None:
        """The colours of what is drawn: one entry per analysed model, then the latent plots' curves."""
        entries = [
            (COL[k], "line", LABEL[k]) for k in ("smooth", "filter", "smooth_noresq", "gru") if k in self.results
        ]
        if any(p.listDataItems() for p in self.p_lat):
            entries += [
                ((40, 110, 230), "band", "latents: posterior mean ±1 std"),
                (COL["prior"], "dash", "prior mean"),
            ]
        self.legend.set_entries(entries)

    # ---------------------------------------------------------------------------------------- model/data
    # One source of truth: the loaded checkpoint decides the data set; its pieces, the analysis and the
    # continuation all follow it (or are cleared while they are recomputed).
    def on_model_loaded(self, model, meta):
        ds = (meta.data or {}).get("name") if meta is not None else None
        previous = (self.dataset, self.source_box.currentData(), self.piece_box.currentIndex())
        self.dataset = ds if ds in DATASETS else "jsb"
        self.models = {}
        key = "smooth"
        cfg = model.config
        if cfg.get("kind") == "gru":
            key = "gru"
        elif cfg.get("inference") == "filter":
            key = "filter"
        elif not cfg.get("resq", True):
            key = "smooth_noresq"
        self.main_key = key
        self.models[key] = model
        self._fill_datasets()
        if self._started:
            # another checkpoint (Open…, Reset to bundled, or the data set box): redo everything for it
            same = previous[0] == self.dataset and previous[1] == "test"
            self._keep_piece = previous[2] if same else None
            self.source_box.blockSignals(True)
            self.source_box.setCurrentIndex(0)
            self.source_box.blockSignals(False)
            self._clear_views()
            self._prepare(self.dataset)

    def _fill_datasets(self):
        from explorer.core.paths import models_dir

        avail = [
            d for d in DATASETS if (models_dir() / f"srnn_{d}_smooth_resq.safetensors").exists() or d == self.dataset
        ]
        self.dataset_box.blockSignals(True)
        self.dataset_box.clear()
        for d in avail:
            self.dataset_box.addItem(DATASET_TITLES[d], d)
        self.dataset_box.setCurrentIndex(max(0, avail.index(self.dataset)))
        self.dataset_box.blockSignals(False)

    def start_default_demo(self):
        self._started = True
        self._prepare(self.dataset or "jsb")

    def _bar_start(self, key, text, cancellable=True):
        """The task bar shows the job of ``key`` until that job ends (or another one takes the bar over)."""
        self._bar_key = key
        self.task_bar.start(text, on_cancel=(lambda: self.runner.cancel(key)) if cancellable else None)

    def _bar_end(self, key, text=""):
        if self._bar_key == key:
            self._bar_key = None
            self.task_bar.finish(text)

    def _cancelled(self, key, what):
        """on_cancelled of a job of ``key``: Cancel on the task bar. A job replaced by a newer one, or cancelled
        because its views were cleared for new work, says nothing: the newer work owns the bar."""
        if self.runner.latest_cancelled(key) and self._bar_key == key:
            self._bar_end(key, self.Messages.cancelled.text(what=what))
            self.mark_demo_done()  # nothing more is coming for the default demo

    def _on_source_changed(self, _i):
        if self.source_box.currentData() == "music21":
            self._clear_views()
            self._bar_start("pieces", "reading Bach chorales from music21…")
            self.runner.submit(
                infer.chorales,
                key="pieces",
                name="srnn chorales",
                on_result=lambda p: self._set_pieces(p, "Bach chorales from music21", "pieces"),
                on_progress=self.task_bar.set_progress,
                on_error=self._error_of("pieces"),
                on_cancelled=lambda: self._cancelled("pieces", "Reading the chorales"),
            )
        elif self.dataset:
            self.runner.cancel("pieces")
            self._clear_views()
            self._prepare(self.dataset)

    def _on_dataset_changed(self, _i):
        from explorer.core.paths import models_dir

        ds = self.dataset_box.currentData()
        if not ds or ds == self.dataset:
            return
        path = models_dir() / f"srnn_{ds}_smooth_resq.safetensors"
        if not path.exists():
            self._fill_datasets()  # not offered without its model; put the box back
            return
        # the data set follows the checkpoint: open this data set's model; on_model_loaded redoes the views
        self.open_checkpoint(path, on_done=lambda ok: None if ok else self._fill_datasets())

    def _prepare(self, dataset):
        self._bar_start(
            "prepare", f"loading {DATASET_TITLES.get(dataset, dataset)} pieces and models…", cancellable=False
        )
        main_name = self.model_meta.name if (self.model_meta is not None and self.models) else None
        self.runner.submit(
            infer.prepare,
            dataset,
            main_name,
            key="prepare",
            name="srnn prepare",
            on_result=self._on_prepared,
            on_progress=self.task_bar.set_progress,
            on_error=self._error_of("prepare"),
        )

    def _error_of(self, key):
        return lambda exc, tb="": self._on_error(exc, tb, key)

    def _on_error(self, exc, tb="", key=None):
        self._bar_end(key) if key else self.task_bar.finish("")
        self.show_exception(exc, tb)
        self.mark_demo_done()

    def _on_prepared(self, res):
        for key, (model, _meta) in res["companions"].items():
            self.models.setdefault(key, model)
        if self.main_key not in self.models:
            self.main_key = "smooth" if "smooth" in self.models else next(iter(self.models), None)
        if not self.models:
            self._bar_end("prepare")
            self.show_msg(
                self.Messages.no_model_for_dataset,
                dataset=DATASET_TITLES.get(res["dataset"]),
                dataset_id=res["dataset"],
            )
            self.mark_demo_done()
            return
        self.source = res["source"]
        if not res["pieces"]:
            self._bar_start("prepare", "no music data found: sampling pieces from the model…", cancellable=False)
            self.runner.submit(
                infer.sample_pieces,
                self.models[self.main_key],
                n=4,
                steps=120,
                key="prepare",
                name="srnn samples",
                on_result=lambda p: self._set_pieces(
                    p,
                    "pieces sampled from the model (no music data found; set SRNN_MUSIC_DATA or install music21)",
                    "prepare",
                ),
                on_error=self._error_of("prepare"),
            )
            return
        self._set_pieces(res["pieces"], res["source"], "prepare")

    def _set_pieces(self, pieces, source, key=None):
        if key:
            self._bar_end(key)
        self.pieces = pieces
        self.source = source
        keep, self._keep_piece = self._keep_piece, None
        self.piece_box.blockSignals(True)
        self.piece_box.clear()
        for title, _x in pieces:
            self.piece_box.addItem(title)
        self.piece_box.setCurrentIndex(keep if keep is not None and 0 <= keep < len(pieces) else 0)
        self.piece_box.blockSignals(False)
        self._on_piece_changed()

    def _clear_views(self):
        """Nothing on screen from the previous model, data set or piece (before they are recomputed)."""
        self.runner.cancel("analyse")
        self.runner.cancel("continue")
        self.pieces = []
        self.results = {}
        self.piece_box.blockSignals(True)
        self.piece_box.clear()
        self.piece_box.blockSignals(False)
        self.roll_img.clear()
        self.prob_img.clear()
        self._title(self.p_prob, PROB_TITLE)
        self._clear_curves()
        for i, p in enumerate(self.p_lat):
            self._title(p, f"latent z[{i}]")
        self.elbo_label.setText("…")
        self.info_label.setText("")
        self.highlight(None)
        self.hover_label.setText("")
        self._clear_continuation()

    def _clear_continuation(self):
        self.runner.cancel("continue")
        self._stop_audio()
        self.cont_img.clear()
        self._title(self.p_cont, CONT_TITLE)
        self.continuation = None
        self._last_wav = None
        self.play_button.setEnabled(False)
        self.audio_label.setText("")

    # ------------------------------------------------------------------------------------------- analysis
    def current_piece(self) -> np.ndarray | None:
        i = self.piece_box.currentIndex()
        if 0 <= i < len(self.pieces):
            return self.pieces[i][1]
        return None

    def _on_piece_changed(self):
        self._clear_continuation()  # it continued another piece
        self._analyse()

    def _analyse(self):
        x = self.current_piece()
        if x is None or not self.models:
            return
        self.results = {}
        order = [self.main_key] + [
            k for k in ("smooth", "filter", "smooth_noresq", "gru") if k in self.models and k != self.main_key
        ]
        models = {k: self.models[k] for k in order}
        self._draw_roll(x)
        self.prob_img.clear()
        self._clear_curves()
        self.elbo_label.setText("…")
        self.info_label.setText("")
        self._bar_start("analyse", "analysing…")
        self.runner.submit(
            infer.analyse_models,
            models,
            x,
            int(self.samples_spin.value()),
            key="analyse",
            name="srnn analyse",
            on_partial=self._on_analysis,
            on_progress=self.task_bar.set_progress,
            on_result=self._on_analysis_done,
            on_error=self._error_of("analyse"),
            on_cancelled=lambda: self._cancelled("analyse", "Analysis"),
        )

    def _on_analysis_done(self, _n):
        self._bar_end("analyse")
        if not self.demo_done:
            self._continue()  # the default demo also shows a continuation

    def _draw_roll(self, x):
        self.roll_img.setImage(x, levels=(0, 1), autoLevels=False)
        self.roll_img.setLookupTable(np.array([[255, 255, 255], [20, 20, 20]], np.uint8))
        self.p_roll.setXRange(0, len(x), padding=0)
        keys = np.flatnonzero(x.sum(0) > 0)
        lo, hi = (int(keys.min()) - 3, int(keys.max()) + 4) if len(keys) else (0, 88)
        for p in (self.p_roll, self.p_prob):
            p.setYRange(max(0, lo), min(88, hi), padding=0)

    def _clear_curves(self):
        self._draw_gen += 1  # plot pieces still queued (``later``) belong to the cleared results
        for p in [self.p_kl, self.p_ll] + self.p_lat:
            for item in list(p.listDataItems()):
                p.removeItem(item)
            for item in [i for i in p.items if isinstance(i, pg.FillBetweenItem)]:
                p.removeItem(item)
        self._update_legend()

    def _on_analysis(self, item):
        """One model's analysis: the numbers at once; the plots piece by piece in later event-loop turns (one
        paint each; drawn all at once they held the GUI thread 100-300 ms on a slow CPU)."""
        key, r = item
        self.results[key] = r
        if key == self.main_key:
            self._show_headline(key, r)
        self._update_info()
        gen = self._draw_gen
        self.later(self._draw_analysis, gen, key, r)
        if key == self.main_key and r["kind"] == "srnn":
            for i in range(min(N_LATENT_PLOTS, len(r["top_dims"]))):
                self.later(self._draw_latent, gen, r, i)

    def _draw_analysis(self, gen, key, r):
        if gen != self._draw_gen:
            return  # the views were cleared for other work since
        T = len(r["ll"])
        t = np.arange(T) + 0.5
        pen = pg.mkPen(COL.get(key, (0, 0, 0)), width=2)
        # Both views show what each model predicts for step t before seeing it: for SRNN a particle filter over
        # z (the ELBO's reconstruction term would use a posterior that has already seen x_t), for the GRU its
        # exact output. The ELBO's terms stay in the KL plot and the hover text, named as such.
        if key == self.main_key or (key == "smooth"):
            self.prob_img.setImage(r["pred_probs"], levels=(0, 1), autoLevels=False)
            self._title(
                self.p_prob,
                f"{PROB_TITLE} — {LABEL.get(key, key)}"
                + (f" (particle filter, {r['particles']} particles)" if r["kind"] == "srnn" else ""),
            )
        if r["kind"] == "srnn":
            self.p_kl.plot(t, r["kl"], pen=pen)
        self.p_ll.plot(t, r["pred_ll"], pen=pen)
        self._update_legend()

    def _show_headline(self, key, r):
        paper = PAPER_PER_STEP.get(self.dataset)
        what = "log-lik." if r["kind"] == "gru" else "ELBO"
        self.elbo_label.setText(f"{what} {r['elbo_per_step']:.2f} nats/step  (paper {paper})")

    def _update_info(self):
        parts = []
        for k in ("smooth", "filter", "smooth_noresq", "gru"):
            if k in self.results:
                r = self.results[k]
                s = f"{LABEL[k]}: {r['elbo_per_step']:.2f}"
                if r["kind"] == "srnn":
                    s += (
                        f" (IWAE-{r['samples']} {r['iwae_per_step']:.2f}, KL {np.mean(r['kl']):.2f}; one-step "
                        f"prediction {r['pred_ll_per_step']:.2f})"
                    )
                parts.append(s)
        meta = self.model_meta.metrics if self.model_meta is not None else {}
        test = ""
        if meta.get("test_elbo_per_step") is not None and self.dataset == (self.model_meta.data or {}).get("name"):
            test = f" Our whole test set: {meta['test_elbo_per_step']:.2f}."
        source = getattr(self, "source", "")
        short = re.sub(r"\s*\((?:/|[A-Za-z]:\\)[^)]*\)", "", source)  # the file's path goes to the tooltip
        self.info_label.setText("This piece, per step: " + "; ".join(parts) + f".{test}  Source: {short}")
        self.info_label.setToolTip(f"Source: {source}")

    def _draw_latent(self, gen, r, i):
        """The ``i``-th latent plot: the dimension with the ``i``-th largest KL."""
        if gen != self._draw_gen:
            return
        T = len(r["mu_q"])
        t = np.arange(T) + 0.5
        p, d = self.p_lat[i], r["top_dims"][i]
        mu, sd, mp = r["mu_q"][:, d], r["std_q"][:, d], r["mu_p"][:, d]
        self._title(p, f"latent z[{d}] (KL rank {i + 1}): posterior mean ±1 std, prior mean")
        up = p.plot(t, mu + sd, pen=pg.mkPen((40, 110, 230, 60)))
        lo = p.plot(t, mu - sd, pen=pg.mkPen((40, 110, 230, 60)))
        p.addItem(pg.FillBetweenItem(up, lo, brush=pg.mkBrush(40, 110, 230, 60)))
        p.plot(t, mu, pen=pg.mkPen(COL["smooth"], width=2))
        p.plot(t, mp, pen=pg.mkPen(COL["prior"], width=1, style=Qt.DashLine))
        self._update_legend()

    # ---------------------------------------------------------------------------------------------- hover
    def _on_mouse(self, evt):
        pos = evt[0]
        t = None
        for p in [self.p_roll, self.p_prob, self.p_kl, self.p_ll] + self.p_lat:
            if p.sceneBoundingRect().contains(pos):
                t = p.vb.mapSceneToView(pos).x()
                break
        self.highlight(t)

    def highlight(self, t: float | None):
        """Show a cursor at time step ``t`` in every plot (None hides it) and describe that step."""
        x = self.current_piece()
        if t is None or x is None or not (0 <= t < len(x)):
            for c in self.cursors:
                c.setVisible(False)
            return
        step = int(t)
        for c in self.cursors:
            c.setPos(step + 0.5)
            c.setVisible(True)
        keys = np.flatnonzero(x[step] > 0.5)
        names = ", ".join(_note_name(k) for k in keys) or "rest"
        parts = [f"step {step + 1}: {names}"]
        for k, r in self.results.items():
            if step < len(r["ll"]):
                s = f"{LABEL.get(k, k)} log p(x_t | earlier) {r['pred_ll'][step]:.2f}"
                if r["kind"] == "srnn":
                    s += f" (ELBO terms: reconstruction {r['ll'][step]:.2f}, KL {r['kl'][step]:.2f})"
                parts.append(s)
        self.hover_label.setText(" | ".join(parts))

    # -------------------------------------------------------------------------------------------- continue
    def _continue(self):
        x = self.current_piece()
        if x is None or not self.models:
            self.show_msg(self.Messages.nothing_to_continue)
            return
        model = self.models.get("smooth") or self.models[self.main_key]
        self._cont_seed += 1
        self._stop_audio()
        self._bar_start("continue", "sampling a continuation…")
        self.runner.submit(
            infer.continue_and_write,
            model,
            x,
            int(self.prime_spin.value()),
            int(self.gen_spin.value()),
            self._cont_seed,
            float(self.temp_spin.value()),
            float(self.step_spin.value()),
            self._wav_dir,
            key="continue",
            name="srnn continue",
            on_result=self._on_continued,
            on_error=self._error_of("continue"),
            on_cancelled=lambda: self._cancelled("continue", "Continuation"),
        )

    def _on_continued(self, res):
        self._bar_end("continue")
        P, G = len(res["prime"]), len(res["generated"])
        img = np.full((P + G, 88, 3), 255, np.uint8)
        img[:P][res["prime"] > 0.5] = (90, 90, 90)
        gen_prob = (255 - (res["probs"][..., None] * np.array([15, 115, 235]))).clip(0, 255).astype(np.uint8)
        img[P:] = gen_prob  # faint: the probabilities the model sampled from
        img[P:][res["generated"] > 0.5] = (240, 120, 0)
        self.cont_img.setImage(img, levels=(0, 255), autoLevels=False)
        self.p_cont.setXRange(0, P + G, padding=0)
        keys = np.flatnonzero(img.min(2).min(0) < 250)
        lo, hi = (int(keys.min()) - 3, int(keys.max()) + 4) if len(keys) else (0, 88)
        self.p_cont.setYRange(max(0, lo), min(88, hi), padding=0)
        self._title(self.p_cont, f"{CONT_TITLE}: {P} primed steps (grey), {G} sampled (orange)")
        self._last_wav = res["wav"]
        self.play_button.setEnabled(True)
        self.audio_label.setText(f"WAV: {os.path.basename(res['wav'])}")
        self.audio_label.setToolTip(f"The continuation as a WAV file: {res['wav']}")
        self.continuation = res
        self.mark_demo_done()

    def _play(self):
        if not self._last_wav:
            return
        try:
            from PySide6.QtMultimedia import QAudioOutput, QMediaDevices, QMediaPlayer
        except Exception as exc:  # noqa: BLE001
            self.audio_label.setText(f"Qt Multimedia is unavailable ({exc}); WAV saved at {self._last_wav}")
            return
        if not QMediaDevices.audioOutputs():
            self.audio_label.setText(f"No audio output device; the WAV is at {self._last_wav}")
            return
        if self._player is None:
            self._player = QMediaPlayer(self)
            self._audio = QAudioOutput(self)
            self._player.setAudioOutput(self._audio)
            self._player.errorOccurred.connect(
                lambda *_: self.audio_label.setText(
                    f"Playback failed: {self._player.errorString()}; the WAV is at {self._last_wav}"
                )
            )
        self._player.setSource(QUrl.fromLocalFile(self._last_wav))
        self._player.play()
        self.audio_label.setText("Playing…")

    def _stop_audio(self):
        if self._player is not None:
            self._player.stop()

    def shutdown(self, timeout: float = 5.0) -> bool:
        self._stop_audio()
        return super().shutdown(timeout)


NOTE_NAMES = ("A", "A#", "B", "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#")


def _note_name(k: int) -> str:
    midi = 21 + int(k)
    return f"{NOTE_NAMES[k % 12]}{(midi // 12) - 1}"
