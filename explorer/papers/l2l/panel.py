"""The learned-optimizer tab: race the LSTM optimizer against SGD, RMSprop, Adam and NAG; meta-train one live.

All computation runs in workers (``self.runner``): the race and the live meta-training are generators of infer.py
(no Qt; torch is imported inside them); the GUI only draws what they yield.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGraphicsPathItem,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from explorer.ui.panel_base import PaperPanel
from explorer.ui.widgets.fit_scroll import shrinkable
from explorer.ui.widgets.plots import log_plot_widget, set_title, with_legend
from explorer.ui.widgets.task_bar import TaskBar

from . import infer
from .infer import TWO_D

REDRAW_MS = 50
PANEL_PROBLEMS = (
    "quad2d",
    "valley2d",
    "rosenbrock",
    "quadratic",
    "mnist",
    "mnist-200steps",
    "mnist-40",
    "mnist-2layer",
    "mnist-relu",
    "fashion",
)
COLORS = {
    "learned": (220, 40, 40),
    "fresh": (200, 0, 200),
    "sgd": (140, 140, 140),
    "rmsprop": (40, 160, 60),
    "adam": (40, 90, 220),
    "nag": (240, 150, 20),
}
BASELINE_KINDS = ("sgd", "rmsprop", "adam", "nag")
BASELINE_LABELS = {"sgd": "SGD", "rmsprop": "RMSprop", "adam": "Adam", "nag": "NAG (momentum 0.9)"}
PLOT_MIN_H = 200
METRIC_CHOICES = (("final loss", "final"), ("loss averaged over steps", "avg"))


# ------------------------------------------------------------------------------------------ view helpers
def loss_view_range(
    curves: dict[str, tuple[list[float], list[float]]], diverged: Any = ()
) -> tuple[float, float] | None:
    """The race plot's loss range (log10 units, with a margin) fitted to the curves that have not diverged, so
    one diverging optimizer does not flatten every other curve; None when there is nothing to fit."""
    ys = [y for key, (_, vals) in curves.items() if key not in diverged for y in vals]
    if not ys:
        ys = [y for _, vals in curves.values() for y in vals]
    v = np.asarray(ys, np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return None
    lo, hi = float(np.log10(v.min())), float(np.log10(v.max()))
    pad = max(0.05 * (hi - lo), 0.1)
    return lo - pad, hi + pad


N_CONTOURS = 9


def contour_lines(Z: Any, n: int = N_CONTOURS):
    """log10 of the loss grid and ``n`` of its contour lines as (x, y) polylines in grid-index units, NaN between
    pieces (a PlotCurveItem draws them with ``connect="finite"``). The race (infer.race) calls it in the worker:
    pyqtgraph's marching squares (IsocurveItem) ran in Python on the GUI thread at the first paint, 100-270 ms for
    9 levels."""
    logz = np.log10(np.maximum(np.asarray(Z, np.float64), 1e-8))
    out = []
    for level in np.linspace(np.percentile(logz, 2), np.percentile(logz, 98), n):
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        for line in pg.functions.isocurve(logz, float(level), connected=True, extendToEdge=True):
            a = np.asarray(line, np.float64).reshape(-1, 2)
            xs += [a[:, 0], np.array([np.nan])]
            ys += [a[:, 1], np.array([np.nan])]
        out.append((np.concatenate(xs) if xs else np.zeros(0), np.concatenate(ys) if ys else np.zeros(0)))
    return logz, out


# ---------------------------------------------------------------------------------------------- the panel
class L2LPanel(PaperPanel):
    def __init__(self, spec, context, parent=None) -> None:
        super().__init__(spec, context, parent)
        self.bundle: Any = None
        self.fresh: dict[str, Any] | None = None
        self.last_results: dict[str, Any] | None = None
        self._curves: dict[str, pg.PlotDataItem] = {}
        self._curve_data: dict[str, tuple[list[float], list[float]]] = {}
        self._paths: dict[str, pg.PlotDataItem] = {}
        self._path_data: dict[str, list[list[float]]] = {}
        self._labels: dict[str, str] = {}
        self._race_info: dict[str, Any] = {}
        self._meta_x: list[int] = []
        self._meta_y: list[float] = []
        self._demo_pending = False
        self._dirty: set = set()
        self._dirty_paths: set = set()
        self._redraw = QTimer(self, singleShot=True, interval=REDRAW_MS)
        self._redraw.timeout.connect(self._flush_race)
        self._bar_key: str | None = None  # whose progress the task bar shows: "race" or "meta"
        self._diverged: dict[str, int] = {}  # racer -> the step it diverged at
        self._marks: dict[str, pg.TextItem] = {}
        self._entry_keys: list[str] = []

    def build_steps(self):
        """The widgets in pieces (the shell runs one per event-loop turn): each plot is one piece."""
        # two demos, as in the post: training networks (the race) and styling images with neural art
        self.modes = QTabWidget()
        race_page = QWidget()
        self.race_body = QVBoxLayout(race_page)
        self.race_body.setContentsMargins(0, 0, 0, 0)
        self.modes.addTab(race_page, "Optimizer race")
        self.body.addWidget(self.modes, 1)
        # controls
        row = QHBoxLayout()
        row.addWidget(QLabel("Problem:"))
        self.problem_box = QComboBox()
        from .catalog import PROBLEMS
        from .data import fashion_available

        for name in PANEL_PROBLEMS:
            if name == "fashion" and not fashion_available():
                continue
            self.problem_box.addItem(PROBLEMS[name].label, name)
            self.problem_box.setItemData(
                self.problem_box.count() - 1, PROBLEMS[name].description, Qt.ItemDataRole.ToolTipRole
            )
        self.problem_box.setToolTip(
            "The optimizee: 2-D functions (trajectories drawn on the contour map), random "
            "10-D quadratics, or small MLPs on held-out MNIST images"
        )
        row.addWidget(self.problem_box)
        row.addWidget(QLabel("Seed:"))
        self.seed_box = QSpinBox()
        self.seed_box.setRange(0, 99999)
        self.seed_box.setToolTip(
            "Seed of the problem: data, starting point and minibatches are the same for every optimizer"
        )
        row.addWidget(self.seed_box)
        row.addWidget(QLabel("Rates for:"))
        self.metric_box = QComboBox()
        for label, key in METRIC_CHOICES:
            self.metric_box.addItem(label, key)
        self.metric_box.setToolTip(
            "Fair protocol: the baselines' learning rates (and the learned optimizer's checkpoint) were chosen on "
            "separate tuning problems by this metric, the one to compare them on"
        )
        row.addWidget(self.metric_box)
        self.race_button = QPushButton("Race")
        self.race_button.setToolTip("Run all optimizers step by step on this problem; loss curves grow live")
        row.addWidget(self.race_button)
        row.addSpacing(20)
        self.meta_epochs = QSpinBox()
        self.meta_epochs.setRange(5, 2000)
        self.meta_epochs.setValue(60)
        self.meta_epochs.setSuffix(" runs")
        self.meta_epochs.setToolTip(
            "How many optimizee runs (100 steps on 32 random quadratics each) to meta-train the fresh LSTM on"
        )
        self.meta_button = QPushButton("Meta-train live")
        self.meta_button.setToolTip(
            "Meta-train a new LSTM optimizer from scratch on random quadratics (live "
            "meta-loss curve), then race it; Cancel stops it"
        )
        row.addWidget(self.meta_button)
        row.addWidget(self.meta_epochs)
        row.addStretch(1)
        self.race_body.addLayout(row)

        self.info = QLabel("Loading the learned optimizers…")
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.race_body.addWidget(self.info)
        yield

        # plots
        split = QSplitter(Qt.Orientation.Horizontal)
        self.loss_plot = log_plot_widget(y=True)
        self.loss_plot.setLabel("bottom", "step")
        self.loss_plot.setLabel("left", "optimizee loss (log scale)")
        self.loss_plot.showGrid(x=True, y=True, alpha=0.3)
        set_title(self.loss_plot, "Race")
        shrinkable(self.loss_plot, PLOT_MIN_H)
        # the racers' names: a row above the plot (a legend box on it covered the curves)
        race_box, self.legend = with_legend(self.loss_plot)
        self.legend.setToolTip("The optimizers in the race, in their curves' colours")
        split.addWidget(race_box)
        yield

        self.right = QStackedWidget()
        self.map_plot = pg.PlotWidget()
        self.map_plot.setBackground("w")
        self.map_plot.setAspectLocked(False)
        shrinkable(self.map_plot, PLOT_MIN_H)
        set_title(self.map_plot, "Trajectories on log-loss contours")
        self.map_image = pg.ImageItem(axisOrder="col-major")
        self.map_plot.addItem(self.map_image)
        self._isos: list[QGraphicsPathItem] = []
        self.map_opt = pg.ScatterPlotItem(symbol="star", size=16, brush=pg.mkBrush(255, 255, 255), pen=pg.mkPen("k"))
        self.map_plot.addItem(self.map_opt)
        self.right.addWidget(self.map_plot)
        yield
        self.meta_plot = log_plot_widget(y=True)
        shrinkable(self.meta_plot, PLOT_MIN_H)
        self.meta_plot.setLabel("bottom", "optimizee run (meta-training)")
        self.meta_plot.setLabel("left", "meta-loss per step (log)")
        self.meta_plot.showGrid(x=True, y=True, alpha=0.3)
        self.meta_curve = self.meta_plot.plot([], [], pen=pg.mkPen(COLORS["fresh"], width=2))
        self.right.addWidget(self.meta_plot)
        split.addWidget(self.right)
        split.setSizes([600, 500])
        self.race_body.addWidget(split, 1)
        yield

        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(
            ["Optimizer", "Learning rate", "Final loss", "Mean loss over steps", "Notes"]
        )
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        self.table.setMaximumHeight(190)
        self.table.setMinimumHeight(110)
        self.table.setToolTip(
            "Final loss: on the full held-out image set for MNIST problems, the loss itself "
            "otherwise. Baseline learning rates were chosen on separate tuning problems by the metric "
            "selected above (fair protocol)."
        )
        self.race_body.addWidget(self.table)
        self.task_bar = TaskBar()
        self.race_body.addWidget(self.task_bar)

        self.race_button.clicked.connect(self.start_race)
        self.meta_button.clicked.connect(self.start_meta_train)
        self.problem_box.currentIndexChanged.connect(self._problem_changed)
        self.metric_box.currentIndexChanged.connect(self._problem_changed)
        self.reveal_later(self.loss_plot, self.map_plot, self.meta_plot)
        yield

        from .panel_style import StyleArtPage

        self.style_page = StyleArtPage(self)
        self.modes.addTab(self.style_page, "Neural art")
        self.modes.setTabToolTip(
            1, "Style a photo: the LSTM optimizer meta-trained on style transfer beside tuned Adam (issue 28)"
        )
        self.modes.currentChanged.connect(self._mode_changed)

    # ------------------------------------------------------------------ model
    def on_model_loaded(self, model: Any, meta: Any) -> None:
        self.bundle = model
        self._update_info()
        if getattr(self, "style_page", None) is not None:
            self.style_page.update_info()
        if self._race_info:  # a race of the previous checkpoints is on screen: it is not this one's
            self._clear_race(f"Checkpoint {meta.name} loaded: press Race")

    def _mode_changed(self) -> None:
        if self.model_meta is not None:
            self.checkpoint_changed.emit(self.checkpoint_in_use())  # the header names the page's checkpoint

    def checkpoint_in_use(self) -> Any:
        """The learned optimizer the race on this problem uses (the bundle may hold one per problem family); on
        the neural-art page, the style one."""
        from .catalog import PROBLEMS

        page = getattr(self, "style_page", None)
        if page is not None and self.modes.currentWidget() is page and page.net_and_meta()[1] is not None:
            return page.net_and_meta()[1]
        if self.bundle is not None:
            _, meta = self.bundle.for_family(PROBLEMS[self.problem()].family)
            if meta is not None:
                return meta
        return self.model_meta

    def _update_info(self) -> None:
        from .catalog import PROBLEMS
        from .infer import describe_checkpoint, fair_summary

        fam = PROBLEMS[self.problem()].family
        if self.bundle is None:
            self.info.setText("No learned optimizer loaded: the race shows the hand-designed baselines only.")
            return
        net, meta = self.bundle.for_family(fam)
        text = f"<b>Learned optimizer for this problem</b>: {describe_checkpoint(meta)}."
        summary = fair_summary(meta, self.problem(), self.rate_metric())
        if summary:
            text += f" <b>Fair protocol, {self.metric_box.currentText()}</b>: {summary}."
        others = [describe_checkpoint(m) for k, m in self.bundle.metas.items() if m is not meta]
        if others:
            text += f" Also loaded: {'; '.join(others)}."
        if self.fresh is not None:
            text += f" <b>Live-trained LSTM</b>: {self.fresh['epochs']} quadratic runs in {self.fresh['wall_s']:.0f} s."
        self.info.setText(text)

    def problem(self) -> str:
        return str(self.problem_box.currentData())

    def rate_metric(self) -> str:
        """The metric the race's baselines were tuned for: "final" or "avg"."""
        return str(self.metric_box.currentData())

    def _problem_changed(self) -> None:
        self._update_info()
        if self.model_meta is not None:
            self.checkpoint_changed.emit(self.checkpoint_in_use())  # the header names what a race here uses
        self._clear_race(f"Press Race to race on {self.problem_box.currentText()}")
        self.right.setCurrentWidget(self.map_plot if self.problem() in TWO_D else self.meta_plot)
        if self.problem() not in TWO_D and not self._meta_y:
            self._show_checkpoint_history()

    def _show_checkpoint_history(self) -> None:
        from .catalog import PROBLEMS

        if self.bundle is None:
            return
        _, meta = self.bundle.for_family(PROBLEMS[self.problem()].family)
        hist = ((meta.extra or {}).get("history") or {}) if meta is not None else {}
        ml = hist.get("meta_loss") or []
        stride = int(hist.get("stride") or 1)
        ys = np.clip(np.asarray(ml, dtype=float), 1e-12, None)
        self.meta_curve.setData(np.arange(1, len(ys) + 1) * stride, ys)
        set_title(self.meta_plot, f"Meta-training of {meta.name if meta else '?'} (loss per step, per run)")

    # ------------------------------------------------------------------- race
    def start_default_demo(self) -> None:
        self._demo_pending = True
        self.start_race()

    def _entries(self, problem: str):
        from .catalog import PROBLEMS
        from .infer import rates_and_source, training_problem

        entries, labels, notes = [], {}, {}
        meta = None
        if self.bundle is not None:
            net, meta = self.bundle.for_family(PROBLEMS[problem].family)
            if net is not None:
                entries.append(("learned", "learned", None, net))
                labels["learned"] = f"LSTM ({training_problem(meta)}-trained)"
                notes["learned"] = f"{meta.name}, meta-trained on {training_problem(meta)}"
        if self.fresh is not None:
            entries.append(("fresh", "learned", None, self.fresh["net"]))
            labels["fresh"] = "LSTM (live-trained)"
            notes["fresh"] = f"meta-trained here on {self.fresh['epochs']} quadratic runs"
        rates, src = rates_and_source(meta, problem, self.rate_metric())
        for k in BASELINE_KINDS:
            entries.append((k, k, rates[k], None))
            labels[k] = BASELINE_LABELS[k]
            notes[k] = src
        return entries, labels, notes

    def start_race(self) -> None:
        problem, seed = self.problem(), int(self.seed_box.value())
        entries, labels, notes = self._entries(problem)
        self._labels = labels
        self._race_info = {"problem": problem, "seed": seed, "notes": notes}
        self._reset_race_plots(entries)
        two_d = problem in TWO_D
        self.right.setCurrentWidget(self.map_plot if two_d else self.meta_plot)
        if not two_d and not self._meta_y:
            self._show_checkpoint_history()
        pace = 0.02 if two_d else (0.01 if problem == "quadratic" else 0.0)
        set_title(
            self.loss_plot,
            f"Race on {self.problem_box.currentText()} (seed {seed}); rates chosen for {self.metric_box.currentText()}",
        )
        if self.model_meta is not None:
            self.checkpoint_changed.emit(self.checkpoint_in_use())  # the header names the raced checkpoint
        self._bar_key = "race"
        self.task_bar.start(f"Racing on {self.problem_box.currentText()} (seed {seed})…", on_cancel=self._cancel_race)

        self._race_task = self.runner.submit(
            infer.race,
            problem,
            seed,
            entries,
            pace,
            contours=contour_lines,
            key="race",
            name="race",
            on_partial=self._on_race_partial,
            on_progress=self.task_bar.set_progress,
            on_result=self._on_race_done,
            on_error=lambda exc, tb: self._on_task_error(exc, tb, "race"),
            on_cancelled=self._on_race_cancelled,
        )

    def _bar_end(self, key: str, text: str = "") -> None:
        if self._bar_key == key:
            self._bar_key = None
            self.task_bar.finish(text)

    def _cancel_race(self) -> None:
        self.runner.cancel("race")  # the cancelled outcome ends the task bar

    def _on_race_cancelled(self) -> None:
        if not self.runner.latest_cancelled("race"):
            return  # replaced by a newer race, which reports for itself
        self._bar_end("race", "Race cancelled")
        if self._demo_pending:
            self._demo_pending = False
            self.mark_demo_done()

    def _clear_race(self, message: str) -> None:
        """No race on screen (its problem or checkpoint is no longer the selected one); a running one stops."""
        self.runner.cancel("race")
        self._race_info = {}
        self.last_results = None
        self._reset_race_plots([])
        set_title(self.loss_plot, "Race")
        self.map_image.clear()
        for iso in self._isos:
            iso.setParentItem(None)
            if iso.scene() is not None:
                iso.scene().removeItem(iso)
        self._isos = []
        self.map_opt.setData([], [])
        if self._bar_key in (None, "race"):
            self._bar_key = None
            self.task_bar.finish(message)

    def _reset_race_plots(self, entries) -> None:
        self.loss_plot.clear()
        self._curves.clear()
        self._curve_data.clear()
        self._diverged.clear()
        self._marks.clear()
        self._entry_keys = [key for key, _, _, _ in entries]
        self.loss_plot.enableAutoRange(axis="y")
        for key, _, _, _ in entries:
            pen = pg.mkPen(COLORS[key], width=3 if key in ("learned", "fresh") else 2)
            self._curves[key] = self.loss_plot.plot([], [], pen=pen)
            self._curve_data[key] = ([], [])
        self._set_legend()
        for item in self._paths.values():
            self.map_plot.removeItem(item)
        self._paths.clear()
        self._path_data.clear()
        for key, _, _, _ in entries:
            pen = pg.mkPen(COLORS[key], width=2)
            item = pg.PlotDataItem(
                [], [], pen=pen, symbol="o", symbolSize=4, symbolBrush=pg.mkBrush(COLORS[key]), symbolPen=None
            )
            self.map_plot.addItem(item)
            self._paths[key] = item
            self._path_data[key] = []
        self.table.setRowCount(0)

    def _set_legend(self) -> None:
        def label(key: str) -> str:
            k = self._diverged.get(key)
            return self._labels[key] if k is None else f"{self._labels[key]} (diverged at step {k})"

        self.legend.set_entries([(COLORS[key], "line", label(key)) for key in self._entry_keys])

    def _on_race_partial(self, item: Any) -> None:
        kind = item[0]
        if kind == "diverged":
            _, key, t = item
            self._diverged[key] = int(t)
            self._set_legend()
            mark = pg.TextItem(f"{self._labels.get(key, key)} diverged at step {t}", color=COLORS[key], anchor=(0, 0))
            self.loss_plot.addItem(mark)
            self._marks[key] = mark
            self._dirty.add(key)
            if not self._redraw.isActive():
                self._redraw.start()
        elif kind == "grid":
            _, xs, ys, logz, start, optimum, contours = item
            self._draw_contours(xs, ys, logz, contours, optimum)
        elif kind == "points":
            for key, p in item[1].items():
                self._path_data[key] = [p]
                self._paths[key].setData([p[0]], [p[1]])
        elif kind == "step":
            # every optimizer step of every racer arrives here: the data are kept at once, the curves redrawn
            # at most every REDRAW_MS (redrawing them per step kept the GUI thread busy painting)
            _, t, losses, points = item
            for key, loss in losses.items():
                xs, ys = self._curve_data[key]
                xs.append(t)
                ys.append(min(max(loss, 1e-12), 1e12))
            for key, p in points.items():
                self._path_data[key].append(p)
            self._dirty.update(losses)
            self._dirty_paths.update(points)
            if not self._redraw.isActive():
                self._redraw.start()

    def _flush_race(self) -> None:
        for key in self._dirty:
            if key in self._curves:
                self._curves[key].setData(*self._curve_data[key])
        for key in self._dirty_paths:
            if key in self._paths and self._path_data[key]:
                arr = np.asarray(self._path_data[key])
                self._paths[key].setData(arr[:, 0], arr[:, 1])
        self._dirty.clear()
        self._dirty_paths.clear()
        self._fit_loss_axis()

    def _fit_loss_axis(self) -> None:
        """With a diverged racer: the loss axis fitted to the others, the diverged one marked where it left."""
        if not self._diverged:
            return
        rng = loss_view_range(self._curve_data, self._diverged)
        if rng is None:
            return
        lo, hi = rng
        self.loss_plot.setYRange(lo, hi, padding=0)
        for i, (key, mark) in enumerate(self._marks.items()):
            mark.setPos(float(self._diverged[key]), hi - 0.08 * (hi - lo) * i)

    def _draw_contours(self, xs, ys, logz, contours, optimum) -> None:
        """The log-loss map and its contour lines (both computed in the worker: ``contour_lines``)."""
        # float64 and Python floats: float32 ranges overflowed against pyqtgraph's float64 view limits
        xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
        self.map_image.setImage(logz, autoLevels=True)
        self.map_image.setLookupTable(pg.colormap.get("viridis").getLookupTable(nPts=256))
        dx = (xs[-1] - xs[0]) / (len(xs) - 1)
        dy = (ys[-1] - ys[0]) / (len(ys) - 1)
        self.map_image.setRect(
            QRectF(float(xs[0] - dx / 2), float(ys[0] - dy / 2), float(dx * len(xs)), float(dy * len(ys)))
        )
        for iso in self._isos:
            iso.setParentItem(None)
            if iso.scene() is not None:
                iso.scene().removeItem(iso)
        self._isos = []
        pen = pg.mkPen(255, 255, 255, 110)
        for cx, cy in contours:
            # in the image's pixel units, as children of the image (like IsocurveItems); plain Qt path items:
            # drawn by Qt at each repaint of the map (the race redraws it 20 times a second), no Python involved
            iso = QGraphicsPathItem(pg.arrayToQPath(cx, cy, connect="finite"))
            iso.setPen(pen)
            iso.setParentItem(self.map_image)
            self._isos.append(iso)
        self.map_opt.setData([float(optimum[0])], [float(optimum[1])])
        self.map_plot.setRange(xRange=(float(xs[0]), float(xs[-1])), yRange=(float(ys[0]), float(ys[-1])), padding=0)

    def _on_race_done(self, results: dict[str, Any]) -> None:
        self._redraw.stop()
        self._flush_race()
        self.last_results = results
        notes = self._race_info.get("notes", {})
        order = sorted(results, key=lambda k: (results[k]["final"], k))
        self.table.setRowCount(len(order))
        for r, key in enumerate(order):
            res = results[key]
            lr = "—" if res["lr"] is None else f"{res['lr']:g}"
            gone = "diverged" if res.get("diverged_at") is None else f"diverged at step {res['diverged_at']}"
            fin = gone if res["diverged"] else f"{res['final']:.4g}"
            avg = gone if res["diverged"] else f"{res['avg']:.4g}"
            note = notes.get(key, "")
            if res.get("accuracy") is not None and not res["diverged"]:
                note = f"accuracy {100 * res['accuracy']:.1f}% · " + note
            for c, text in enumerate([self._labels.get(key, key), lr, fin, avg, note]):
                it = QTableWidgetItem(text)
                if c == 0:
                    it.setForeground(pg.mkColor(COLORS[key]))
                self.table.setItem(r, c, it)
        self.table.resizeColumnsToContents()
        best = self._labels.get(order[0], order[0])
        self._bar_end("race", f"Race finished: lowest final loss {best}")
        if self._demo_pending:
            self._demo_pending = False
            self.mark_demo_done()

    def _on_task_error(self, exc: BaseException, tb: str, key: str) -> None:
        self._bar_end(key, "Failed")
        self.show_exception(exc, tb)
        if self._demo_pending:
            self._demo_pending = False
            self.mark_demo_done()

    # ------------------------------------------------------------ meta-train
    def start_meta_train(self) -> None:
        epochs, seed = int(self.meta_epochs.value()), int(self.seed_box.value())
        self._meta_x, self._meta_y = [], []
        self.meta_curve.setData([], [])
        set_title(self.meta_plot, "Live meta-training on random quadratics (mean loss per step, per run)")
        self.right.setCurrentWidget(self.meta_plot)
        self._bar_key = "meta"
        self.task_bar.start("Meta-training a fresh LSTM optimizer…", on_cancel=self._cancel_meta)
        self.meta_button.setEnabled(False)

        self._meta_task = self.runner.submit(
            infer.meta_train,
            epochs,
            seed,
            key="meta",
            name="meta-train",
            on_partial=self._on_meta_partial,
            on_progress=self.task_bar.set_progress,
            on_result=self._on_meta_done,
            on_error=lambda exc, tb: self._on_task_error(exc, tb, "meta"),
            on_cancelled=self._on_meta_cancelled,
            on_finished=lambda: self.meta_button.setEnabled(True),
        )

    def _cancel_meta(self) -> None:
        self.runner.cancel("meta")  # the cancelled outcome ends the task bar; on_finished the button

    def _on_meta_cancelled(self) -> None:
        if self.runner.latest_cancelled("meta"):
            self._bar_end("meta", f"Meta-training cancelled after {len(self._meta_y)} runs")

    def _on_meta_partial(self, item: Any) -> None:
        if item[0] == "meta":
            self._meta_x.append(item[1])
            self._meta_y.append(max(float(item[2]), 1e-12))
            self.meta_curve.setData(self._meta_x, self._meta_y)

    def _on_meta_done(self, result: dict[str, Any]) -> None:
        self.fresh = result
        self.meta_button.setEnabled(True)
        self._update_info()
        self._bar_end("meta", f"Meta-trained on {result['epochs']} runs in {result['wall_s']:.0f} s; racing it…")
        self.start_race()
        if self.problem() not in TWO_D:
            self.right.setCurrentWidget(self.meta_plot)

    def shutdown(self, timeout: float = 5.0) -> bool:
        return super().shutdown(timeout)
