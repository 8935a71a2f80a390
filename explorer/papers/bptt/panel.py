"""The memory-efficient BPTT tab: optimal cost curves, the schedule ("sawtooth") and its memory, and a real run.

Every control change recomputes in a worker (``self.runner``, latest wins) with the functions of ``infer.py``
(planners and curves, a plan with the arrays its plots draw, alpha measured on a core, the real run); the GUI
thread only draws, one plot per event-loop turn. All three policies, MSM included, are planned up to T = 10000
(the MSM table is built in the worker, with its progress in the summary). A real run executes the plan on an
LSTM/GRU cell next to full BPTT and torch.utils.checkpoint and shows the cost model's memory and time beside the
measured ones (:class:`ModelVsMeasured`); it is offered while T x hidden keeps full BPTT's activations moderate.
The widgets are built in pieces (``build_steps``) behind the tab's placeholder, the plots revealed one by one.
"""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import QRectF, QSize, Qt, QTimer
from PySide6.QtGui import QColor, QFontMetrics, QPainter, QPen
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from explorer.ui.messages import Msg
from explorer.ui.panel_base import PaperPanel
from explorer.ui.widgets.fit_scroll import shrinkable
from explorer.ui.widgets.plots import log_plot_widget, set_title, with_legend
from explorer.ui.widgets.task_bar import TaskBar

from . import infer
from .infer import BYTES_PER_STEP_AND_UNIT, RUN_MAX_T_X_HIDDEN, run_allowed
from .planner import MAX_SCHEDULE_ACTIONS, POLICIES, InfeasibleBudget, Planner, time_ratio
from .schedule import full_bptt_memory

COLORS = {"hsm": (40, 90, 220), "ism": (240, 150, 20), "msm": (30, 160, 70)}
LABELS = {"hsm": "HSM (hidden states)", "ism": "ISM (internal states)", "msm": "MSM (mixed)"}
SCHED_TITLE = "The schedule"
MEM_TITLE = "Memory occupancy"
PLAN_MAX_T = 10000  # the length spin box's top: every policy, MSM included, is planned up to here
SLIDER_STEPS = 1000
PAPER_POINT = (0.05, 4.0 / 3.0)
CONTROLS_W = 330
PLOT_MIN_H = {"cost": 170, "sched": 130, "mem": 140}
# The left axes have one fixed width (tick labels up to "10000" and the axis name): the three plots line up, and a
# new range does not resize an axis, relayout its plot and paint it again
LEFT_AXIS_W = 64


def _units(m: float) -> str:
    """'1 unit', '2.5 units' (memory in hidden-state units)."""
    return f"{m:g} unit" + ("" if m == 1 else "s")


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} GB"


# ----------------------------------------------------------------------------------------- model vs measured
class ModelVsMeasured(QWidget):
    """Bar pairs after a real run: the cost model's memory and time next to the measured ones, both as a fraction
    of full BPTT on the same core (full BPTT = 1, drawn as a dashed line). Hidden until a run has finished."""

    ROWS = (("memory", "Activation memory vs full BPTT"), ("time", "Time per iteration vs full BPTT"))
    MODEL = QColor(120, 150, 215)
    MEASURED = QColor(30, 150, 70)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.values: dict[str, tuple] = {}  # "memory" / "time" -> (model, measured)
        self.setVisible(False)

    def set_values(self, memory: tuple, time: tuple, note: str = "") -> None:
        self.values = {"memory": tuple(memory), "time": tuple(time)}
        (mm, xm), (mt, xt) = self.values["memory"], self.values["time"]
        self.setToolTip(
            f"memory: model {self.fmt('memory', mm)}, measured {self.fmt('memory', xm)}\n"
            f"time: model {self.fmt('time', mt)}, measured {self.fmt('time', xt)}" + (f"\n{note}" if note else "")
        )
        self.setVisible(True)
        self.updateGeometry()
        self.update()

    def clear(self) -> None:
        self.values = {}
        self.setToolTip("")
        self.setVisible(False)

    @staticmethod
    def fmt(kind: str, v: float) -> str:
        if kind == "memory":
            return f"{100 * v:.1f}%" if v >= 0.01 else f"{100 * v:.2f}%"
        return f"{v:.2f}x"

    def _line(self) -> int:
        return QFontMetrics(self.font()).height()

    def sizeHint(self) -> QSize:
        return QSize(CONTROLS_W - 40, 6 * (self._line() + 3) + 2 * self._line() + 8)

    def minimumSizeHint(self) -> QSize:
        return self.sizeHint()

    def paintEvent(self, _event) -> None:
        if not self.values:
            return
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        fm = QFontMetrics(self.font())
        lh = fm.height()
        w = self.width()
        label_w = max(fm.horizontalAdvance("measured"), fm.horizontalAdvance("model")) + 6
        value_w = fm.horizontalAdvance("100.00%") + 6
        x0, x1 = label_w, max(label_w + 40, w - value_w)
        text = self.palette().windowText().color()
        y = 2
        for key, title in self.ROWS:
            model, measured = self.values[key]
            top = 1.0 if key == "memory" else max(1.0, model, measured) * 1.08
            bold = p.font()
            bold.setBold(True)
            p.setFont(bold)
            p.setPen(text)
            p.drawText(QRectF(0, y, w, lh), Qt.AlignLeft | Qt.AlignVCenter, title)
            p.setFont(self.font())
            y += lh + 3
            for name, v, color in (("model", model, self.MODEL), ("measured", measured, self.MEASURED)):
                p.setPen(text)
                p.drawText(QRectF(0, y, label_w, lh), Qt.AlignLeft | Qt.AlignVCenter, name)
                bar_w = max(1.0, (x1 - x0) * min(v, top) / top)
                p.fillRect(QRectF(x0, y + 2, x1 - x0, lh - 4), QColor(235, 235, 235))
                p.fillRect(QRectF(x0, y + 2, bar_w, lh - 4), color)
                p.setPen(text)
                p.drawText(QRectF(x1 + 4, y, value_w, lh), Qt.AlignLeft | Qt.AlignVCenter, self.fmt(key, v))
                y += lh + 3
            one = x0 + (x1 - x0) * 1.0 / top  # full BPTT
            pen = QPen(QColor(90, 90, 90))
            pen.setStyle(Qt.DashLine)
            p.setPen(pen)
            p.drawLine(int(round(one)), y - 2 * (lh + 3) + 1, int(round(one)), y - 3)
        small = self.font()
        small.setPointSizeF(max(6.0, small.pointSizeF() * 0.9))
        p.setFont(small)
        p.setPen(self.palette().color(self.palette().ColorRole.PlaceholderText))
        p.drawText(
            QRectF(0, y, w, 2 * lh + 2),
            Qt.AlignLeft | Qt.AlignTop | Qt.TextWordWrap,
            "dashed line: full BPTT on the same core (= 1). Hover for how each figure is computed.",
        )
        p.end()


# ----------------------------------------------------------------------------------------- the panel
class BPTTPanel(PaperPanel):
    class Messages(PaperPanel.Messages):
        # also the Run button's tooltip while the run is not offered
        run_too_long = Msg(
            "Not offered for T={T:,} at hidden {hidden}: the run also executes full BPTT (for the gradient check and "
            "the measured baseline), which keeps every step's activations (measured for an LSTM, batch 8: about "
            "{size} here; T=10,000 at hidden 256 took 573 MB and about a minute on a CPU). Runs are offered while "
            "T x hidden <= {limit:,} (at hidden {hidden}: T <= {top_t:,}). Planning is not limited."
        )

    def __init__(self, spec, context, parent=None) -> None:
        super().__init__(spec, context, parent)
        self._curves: dict | None = None
        self._plan: dict | None = None
        self._demo_pending = True
        self._pending_fraction: float | None = None
        self._curves_pct: int | None = None  # the MSM table's progress last written in the summary
        self._draw_gen = 0  # bumped whenever the schedule plots are redrawn or cleared: queued pieces of an older
        # drawing (see later()) then do nothing
        self.shown_plan = None  # (policy, T, alpha, memory) of the schedule the plots show

    def build_steps(self):
        """The widgets in pieces (the shell runs one per event-loop turn): the plan's controls, the run's, then
        each plot; the plots are revealed one per turn once the tab shows."""
        row = QHBoxLayout()
        self.body.addLayout(row, 1)
        controls = QScrollArea()  # the plan, its summary and a run's result scroll, never cut off
        controls.setFrameShape(QFrame.NoFrame)
        controls.setWidgetResizable(True)
        controls.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        box = QWidget()
        box.setFixedWidth(CONTROLS_W)
        lay = QVBoxLayout(box)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self._build_plan_box())
        lay.addWidget(self.summary)
        controls.setFixedWidth(CONTROLS_W + controls.verticalScrollBar().sizeHint().width() + 2)
        self.controls_scroll = controls
        row.addWidget(controls)
        plots = QVBoxLayout()
        row.addLayout(plots, 1)
        yield
        lay.addWidget(self._build_run_box())
        lay.addStretch(1)
        controls.setWidget(box)
        yield
        self._build_cost_plot(plots)
        yield
        self._build_sched_plot(plots)
        yield
        self._build_mem_plot(plots)
        yield
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(40)
        self._debounce.timeout.connect(self._submit_plan)
        self._connect_controls()
        self._update_run_allowed()
        self.reveal_later(self.cost_plot, self.sched_plot, self.mem_plot)

    # ------------------------------------------------------------------ widgets
    def _build_plan_box(self) -> QGroupBox:
        plan_box = QGroupBox("Plan")
        form = QFormLayout(plan_box)
        self.length_spin = QSpinBox()
        self.length_spin.setRange(10, PLAN_MAX_T)
        self.length_spin.setValue(1000)
        self.length_spin.setKeyboardTracking(False)
        self.length_spin.setToolTip(
            f"Sequence length T (number of recurrent steps to backpropagate through). "
            f"Every policy is planned up to T={PLAN_MAX_T:,}; the real run below is "
            f"offered while T x hidden <= {RUN_MAX_T_X_HIDDEN:,}"
        )
        form.addRow("Length T", self.length_spin)
        self.policy_combo = QComboBox()
        for p in POLICIES:
            self.policy_combo.addItem(LABELS[p], p)
        self.policy_combo.setCurrentIndex(POLICIES.index("msm"))
        self.policy_combo.setToolTip(
            "HSM stores hidden states only, ISM internal states only, MSM mixes both "
            "(chosen by the dynamic program at every split)"
        )
        form.addRow("Policy", self.policy_combo)
        self.budget_slider = QSlider(Qt.Horizontal)
        self.budget_slider.setRange(0, SLIDER_STEPS)
        self.budget_slider.setToolTip(
            "Memory budget (log scale) from 1 slot (h_0 only) to the point where more memory stops helping"
        )
        form.addRow("Memory", self.budget_slider)
        self.budget_label = QLabel("")
        self.budget_label.setWordWrap(True)
        form.addRow("", self.budget_label)
        self.alpha_spin = QDoubleSpinBox()
        self.alpha_spin.setRange(1.0, 64.0)
        self.alpha_spin.setSingleStep(0.5)
        self.alpha_spin.setDecimals(2)
        self.alpha_spin.setValue(4.5)
        self.alpha_spin.setKeyboardTracking(False)
        self.alpha_spin.setToolTip(
            "Size of one step's internal state (all activations backprop needs) in hidden-state units"
        )
        self.alpha_auto = QCheckBox("from core")
        self.alpha_auto.setChecked(True)
        self.alpha_auto.setToolTip("Measure alpha from the real tensors the chosen core saves for backward")
        arow = QHBoxLayout()
        arow.addWidget(self.alpha_spin)
        arow.addWidget(self.alpha_auto)
        form.addRow("alpha", arow)
        self.alpha_spin.setEnabled(False)
        self.backward_spin = QDoubleSpinBox()
        self.backward_spin.setRange(0.0, 10.0)
        self.backward_spin.setSingleStep(0.5)
        self.backward_spin.setValue(2.0)
        self.backward_spin.setToolTip(
            "Cost of a backward step in forward steps, for the time axis: time = (Q + b T) / ((1 + b) T)"
        )
        form.addRow("Backward cost", self.backward_spin)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextSelectableByMouse)
        return plan_box

    def _build_run_box(self) -> QGroupBox:
        run_box = QGroupBox("Run on a real recurrent core")
        rform = QFormLayout(run_box)
        self.core_combo = QComboBox()
        self.core_combo.addItem("LSTM (nn.LSTMCell)", "lstm")
        self.core_combo.addItem("GRU (nn.GRUCell)", "gru")
        self.core_combo.setToolTip("The recurrent core the schedule runs on (batch 8, input 32)")
        rform.addRow("Core", self.core_combo)
        self.hidden_spin = QSpinBox()
        self.hidden_spin.setRange(8, 1024)
        self.hidden_spin.setValue(256)
        self.hidden_spin.setToolTip("Hidden size of the core")
        rform.addRow("Hidden", self.hidden_spin)
        self.run_button = QPushButton("Run on a real LSTM")
        self.run_button.setToolTip(
            "Execute the plan with real tensors (same fraction of full BPTT's memory, "
            "alpha measured from the core), compare gradients with full BPTT, measure "
            "memory and time, and run torch.utils.checkpoint at the same memory"
        )
        self._run_tip = self.run_button.toolTip()
        rform.addRow(self.run_button)
        self.task_bar = TaskBar()
        rform.addRow(self.task_bar)
        self.model_vs_measured = ModelVsMeasured()
        rform.addRow(self.model_vs_measured)
        self.run_result = QLabel(
            "<span style='color:gray'>Run the plan to see the model's memory and time beside the measured ones.</span>"
        )
        self.run_result.setWordWrap(True)
        self.run_result.setTextInteractionFlags(Qt.TextSelectableByMouse)
        rform.addRow(self.run_result)
        return run_box

    def _connect_controls(self) -> None:
        """Once every widget exists (the handlers draw on the plots)."""
        self.run_button.clicked.connect(self.run_real)
        self.length_spin.valueChanged.connect(self._params_changed)
        self.length_spin.valueChanged.connect(lambda _v: self._update_run_allowed())
        self.hidden_spin.valueChanged.connect(lambda _v: self._update_run_allowed())
        self.alpha_spin.valueChanged.connect(self._params_changed)
        self.alpha_auto.toggled.connect(self._alpha_mode_changed)
        self.core_combo.currentIndexChanged.connect(self._core_changed)
        self.policy_combo.currentIndexChanged.connect(lambda _i: self._budget_changed())
        self.budget_slider.valueChanged.connect(lambda _v: self._budget_changed())
        self.backward_spin.valueChanged.connect(lambda _v: (self._draw_curves(), self._draw_marker()))

    def _build_cost_plot(self, lay: QVBoxLayout) -> None:
        pg.setConfigOptions(antialias=True)
        # Legends are rows of coloured names above the plots (never a box over the curves or the markers) and
        # the log axes label whole decades only, so their numbers never run together.
        self.cost_plot = log_plot_widget(x=True, y=True)
        self.cost_plot.showGrid(x=True, y=True, alpha=0.3)
        self.cost_plot.setLabel("bottom", "memory / full BPTT's memory")
        self.cost_plot.setLabel("left", "time / BPTT's")
        set_title(self.cost_plot, "Optimal cost for every budget")
        self.cost_plot.getAxis("left").setWidth(LEFT_AXIS_W)
        shrinkable(self.cost_plot, PLOT_MIN_H["cost"])
        self.cost_items = {p: self.cost_plot.plot([], [], pen=pg.mkPen(COLORS[p], width=2)) for p in POLICIES}
        self.marker = self.cost_plot.plot(
            [], [], pen=None, symbol="o", symbolSize=10, symbolBrush=(220, 30, 30), symbolPen="k"
        )
        self.marker.setZValue(10)  # over the paper's star (the default plan is the paper's point): both show
        self.paper_marker = self.cost_plot.plot(
            [PAPER_POINT[0]],
            [PAPER_POINT[1]],
            pen=None,
            symbol="star",
            symbolSize=16,
            symbolBrush=(250, 200, 0),
            symbolPen="k",
        )
        self.paper_text = pg.TextItem("paper", color=(120, 90, 0), anchor=(0, 1))
        self.paper_text.setPos(math.log10(PAPER_POINT[0]), math.log10(PAPER_POINT[1]))
        self.cost_plot.addItem(self.paper_text)
        box, self.cost_legend = with_legend(self.cost_plot)
        self.cost_legend.set_entries(
            [(COLORS[p], "line", LABELS[p]) for p in POLICIES]
            + [((220, 30, 30), "dot", "current plan"), ((230, 170, 0), "star", "paper: T=1000, 5% memory, +33% time")]
        )
        lay.addWidget(box, 3)

    def _build_sched_plot(self, lay: QVBoxLayout) -> None:
        self.sched_plot = pg.PlotWidget()
        self.sched_plot.setBackground("w")
        # its x axis is the memory plot's (linked): the name "operation index" is written once, down there
        self.sched_plot.setLabel("left", "time step k")
        set_title(self.sched_plot, SCHED_TITLE)
        self.sched_plot.getAxis("left").setWidth(LEFT_AXIS_W)
        shrinkable(self.sched_plot, PLOT_MIN_H["sched"])
        # thousands of steep segments: drawn without antialiasing (several times faster, no visible difference)
        self.fwd_item = self.sched_plot.plot([], [], pen=pg.mkPen((20, 60, 200), width=2), antialias=False)
        self.bwd_item = self.sched_plot.plot([], [], pen=pg.mkPen((220, 30, 30), width=2), antialias=False)
        self.sh_item = self.sched_plot.plot(
            [], [], pen=None, symbol="t1", symbolSize=7, symbolBrush=(30, 160, 70), symbolPen=None, antialias=False
        )
        self.si_item = self.sched_plot.plot(
            [],
            [],
            pen=None,
            symbol="s",
            symbolSize=4,
            symbolBrush=(150, 40, 180, 160),
            symbolPen=None,
            antialias=False,
        )
        for it in (self.fwd_item, self.bwd_item):
            it.setDownsampling(auto=True, method="peak")
            it.setClipToView(True)
            it.setZValue(1)  # the sweeps over the store markers (thousands of them at T=10000 hid the backward line)
        self.sched_note = pg.TextItem("", color=(90, 90, 90), anchor=(0.5, 0.5))
        self.sched_plot.addItem(self.sched_note, ignoreBounds=True)
        box, self.sched_legend = with_legend(self.sched_plot)
        self.sched_legend.set_entries(
            [
                ((20, 60, 200), "line", "forward F"),
                ((220, 30, 30), "line", "backward B"),
                ((30, 160, 70), "triangle", "store h (SH)"),
                ((150, 40, 180), "square", "store I (SI)"),
            ]
        )
        lay.addWidget(box, 3)

    def _build_mem_plot(self, lay: QVBoxLayout) -> None:
        self.mem_plot = pg.PlotWidget()
        self.mem_plot.setBackground("w")
        self.mem_plot.setLabel("bottom", "operation index")
        self.mem_plot.setLabel("left", "stored")
        set_title(self.mem_plot, MEM_TITLE)
        self.mem_plot.getAxis("left").setWidth(LEFT_AXIS_W)
        shrinkable(self.mem_plot, PLOT_MIN_H["mem"])
        self.mem_item = self.mem_plot.plot(
            [], [], pen=pg.mkPen((30, 160, 70), width=1.5), fillLevel=0, brush=(30, 160, 70, 60), antialias=False
        )
        self.mem_item.setDownsampling(auto=True, method="peak")
        self.budget_line = pg.InfiniteLine(angle=0, pen=pg.mkPen((220, 30, 30), width=1.5, style=Qt.DashLine))
        self.mem_plot.addItem(self.budget_line)
        self.mem_plot.setXLink(self.sched_plot)
        box, self.mem_legend = with_legend(self.mem_plot)
        self.mem_legend.set_entries([((30, 160, 70), "band", "stored states"), ((220, 30, 30), "dash", "budget")])
        lay.addWidget(box, 2)

    # ------------------------------------------------------------------ state
    def idle(self) -> bool:
        """Nothing computing, waiting or left to draw: every view shows the current controls' state."""
        debounce = getattr(self, "_debounce", None)
        return not self.runner.is_busy() and not (debounce is not None and debounce.isActive()) and not self._later

    @property
    def policy(self) -> str:
        return self.policy_combo.currentData()

    @property
    def length(self) -> int:
        return int(self.length_spin.value())

    @property
    def alpha(self) -> float:
        return float(self.alpha_spin.value())

    def _planner(self) -> Planner | None:
        if not self._curves:
            return None
        pl = self._curves["planners"]
        return pl.get(self.policy) or pl.get("hsm")

    def budget(self) -> float:
        """The slider position mapped (log scale) onto the policy's budget grid."""
        planner = self._planner()
        T = self.length
        top = planner.saturation if planner else full_bptt_memory(T, self.alpha)
        top = max(top, 1.0)
        frac = self.budget_slider.value() / SLIDER_STEPS
        M = math.exp(frac * math.log(top)) if top > 1 else 1.0
        q = planner.grid.q if planner else 1
        return max(1.0, math.floor(M * q + 1e-9) / q)

    def set_budget(self, memory: float) -> None:
        planner = self._planner()
        top = planner.saturation if planner else full_bptt_memory(self.length, self.alpha)
        pos = 0 if top <= 1 else int(round(SLIDER_STEPS * math.log(max(memory, 1.0)) / math.log(top)))
        self.budget_slider.setValue(max(0, min(SLIDER_STEPS, pos)))

    def _update_run_allowed(self) -> None:
        """The real run is offered while full BPTT's activations stay moderate (T x hidden); else it says why."""
        T, hidden = self.length, int(self.hidden_spin.value())
        busy = self.runner.is_busy("run")
        if run_allowed(T, hidden):
            self.run_button.setToolTip(self._run_tip)
            self.run_button.setEnabled(not busy)
        else:
            self.run_button.setEnabled(False)
            self.run_button.setToolTip(self.Messages.run_too_long.text(**self._run_limit(T, hidden)))

    @staticmethod
    def _run_limit(T: int, hidden: int) -> dict:
        """The fields of ``Messages.run_too_long``: why a run of ``T`` steps at ``hidden`` units is not offered."""
        return {
            "T": T,
            "hidden": hidden,
            "size": _fmt_bytes(BYTES_PER_STEP_AND_UNIT * T * hidden),
            "limit": RUN_MAX_T_X_HIDDEN,
            "top_t": RUN_MAX_T_X_HIDDEN // hidden,
        }

    # ------------------------------------------------------------------ events
    def start_default_demo(self) -> None:
        self._params_changed()
        if self.alpha_auto.isChecked():
            self._measure_alpha()

    def _alpha_mode_changed(self, checked: bool) -> None:
        self.alpha_spin.setEnabled(not checked)
        if checked:
            self._measure_alpha()

    def _core_changed(self, _i: int) -> None:
        kind = self.core_combo.currentData()
        self.run_button.setText("Run on a real " + ("LSTM" if kind == "lstm" else "GRU"))
        if self.alpha_auto.isChecked():
            self._measure_alpha()

    def _measure_alpha(self) -> None:
        kind = self.core_combo.currentData()

        def done(alpha: float) -> None:
            if self.alpha_auto.isChecked() and abs(alpha - self.alpha) > 1e-9:
                self.alpha_spin.setValue(alpha)

        self.runner.submit(infer.measure_core_alpha, kind, 16, key="alpha", name="measure alpha", on_result=done)

    def _params_changed(self, *_args) -> None:
        fraction = None
        if self._curves is not None:
            fraction = self.budget() / full_bptt_memory(self._curves["length"], self._curves["alpha"])
        elif self._demo_pending:
            fraction = 0.05
        self._pending_fraction = fraction
        self._curves_pct = None
        self.summary.setText("Computing the cost curves…")
        T = self.length
        self.runner.submit(
            infer.compute_curves,
            T,
            self.alpha,
            key="curves",
            name="cost curves",
            on_result=self._on_curves,
            on_progress=lambda f, _m="", T=T: self._curves_progress(T, f),
        )

    def _curves_progress(self, T: int, fraction: float | None) -> None:
        """The MSM table's progress in the summary, rewritten only when its percentage changes (a label's relayout
        per report would keep the GUI thread busy)."""
        pct = None if fraction is None else int(100 * fraction)
        if pct == self._curves_pct and pct is not None:
            return
        self._curves_pct = pct
        self.summary.setText(f"Computing the cost curves (T={T:,})… MSM table {'' if pct is None else f'{pct}%'}")

    def _on_curves(self, res: dict) -> None:
        self._curves = res
        note = " ".join(res["notes"])
        if self.policy not in res["planners"]:
            self.summary.setText(note)
        frac = self._pending_fraction
        if frac is not None:
            self.budget_slider.blockSignals(True)
            self.set_budget(frac * full_bptt_memory(res["length"], res["alpha"]))
            self.budget_slider.blockSignals(False)
        self._draw_curves()
        self._budget_changed(immediate=True)

    def _budget_changed(self, immediate: bool = False) -> None:
        planner = self._planner()
        if planner is None:
            return
        M = self.budget()
        full = full_bptt_memory(planner.T, planner.alpha)
        try:
            cost = planner.cost(M)
            self.budget_label.setText(f"{_units(M)}, {100 * M / full:.2f}% of BPTT's {full:g}")
        except Exception as exc:  # noqa: BLE001 - a budget no schedule fits: say so, show no old plan
            self.budget_label.setText(f"{_units(M)}, {100 * M / full:.2f}% of BPTT's {full:g}")
            self._debounce.stop()
            self.runner.cancel("plan")
            self._show_no_plan(planner, M, f"{exc}")
            self._demo_pending = False
            self.mark_demo_done()
            return
        self._draw_marker(cost, M)
        if cost > MAX_SCHEDULE_ACTIONS:  # known at once: no schedule to compute or draw
            self._debounce.stop()
            self.runner.cancel("plan")
            self._show_no_plan(planner, M, "")
            self._demo_pending = False
            self.mark_demo_done()
            return
        if immediate:
            self._submit_plan()
        else:
            self._debounce.start()

    def _plan_words(self, policy: str, T: int, memory: float) -> str:
        return f"{policy.upper()}, T={T:,}, {_units(memory)}"

    def _submit_plan(self) -> None:
        planner = self._planner()
        if planner is None:
            return
        M = self.budget()
        key = (planner.policy, planner.T, planner.alpha, M)
        if key != self.shown_plan:
            # until the new schedule arrives the plots say which plan they will show (not the old one's name)
            what = self._plan_words(planner.policy, planner.T, M)
            set_title(self.sched_plot, f"{SCHED_TITLE} of {what}: computing…")
            set_title(self.mem_plot, f"{MEM_TITLE} of {what}: computing…")
        self.runner.submit(
            infer.compute_plan,
            planner,
            M,
            key="plan",
            name="plan",
            on_result=lambda res, k=key: self._on_plan(res, k),
            on_error=lambda exc, tb, pl=planner, m=M: self._on_plan_error(exc, tb, pl, m),
        )

    def _on_plan_error(
        self, exc: BaseException, tb: str, planner: Planner | None = None, memory: float | None = None
    ) -> None:
        if isinstance(exc, InfeasibleBudget) and planner is not None:
            self._show_no_plan(planner, memory, str(exc))  # a budget too small to list: not an app error
        else:
            self._clear_schedule(None)
            self.show_exception(exc, tb)
        self._demo_pending = False
        self.mark_demo_done()

    def _clear_schedule(self, note: str | None, memory: float | None = None) -> None:
        """No schedule on screen (none fits, or it could not be computed); ``note`` says why, in the plot; the
        memory plot keeps only the budget line (``memory``)."""
        self._draw_gen += 1  # an older plan's pieces still queued are not drawn
        self._plan = None
        self.shown_plan = None
        for it in (self.fwd_item, self.bwd_item, self.sh_item, self.si_item, self.mem_item):
            it.setData([], [])
        self.budget_line.setVisible(memory is not None)
        if memory is not None:
            self.budget_line.setValue(memory)
            self.mem_plot.setYRange(0, max(memory, 1.0) * 1.1, padding=0)
        set_title(self.sched_plot, SCHED_TITLE)
        set_title(self.mem_plot, MEM_TITLE)
        self.sched_plot.setXRange(0, 1, padding=0)
        self.sched_plot.setYRange(0, 1, padding=0)
        self.sched_note.setText(note or "")
        self.sched_note.setPos(0.5, 0.5)

    def _show_no_plan(self, planner: Planner, memory: float, reason: str) -> None:
        """A budget no schedule is drawn for: the plots are emptied and say why, the summary what is known."""
        T = planner.T
        try:
            cost = planner.cost(memory)
        except Exception:  # noqa: BLE001 - below the least memory any schedule needs
            cost = None
        if cost is not None and cost > MAX_SCHEDULE_ACTIONS:
            why = (
                f"At {_units(memory)} this schedule has {cost:,} forward steps: too many to draw.\n"
                f"Give it more memory (the Memory slider) or a shorter T."
            )
            self.summary.setText(
                f"<b>{planner.policy.upper()}</b>, T={T:,}, budget {_units(memory)}: cost Q = <b>{cost:,}</b> "
                f"forward steps = {cost / T:,.1f} T; time vs BPTT "
                f"<b>{time_ratio(cost, T, self.backward_spin.value()):,.1f}x</b>. The schedule is too long to draw."
            )
        else:
            why = f"No schedule fits {_units(memory)}: {reason.rstrip('.')}.\nGive it more memory."
            self.summary.setText(why.replace("\n", " "))
        self._clear_schedule(why, memory)
        if cost is not None:
            self._draw_marker(cost, memory)
        else:
            self.marker.setData([], [])

    def _on_plan(self, res: dict, key=None) -> None:
        """A new plan: its state at once, its drawing in three event-loop turns (schedule, memory, summary) so
        that Qt paints one plot at a time; the arrays were prepared in the worker (infer.compute_plan)."""
        self.clear_error()
        self._draw_gen += 1
        gen = self._draw_gen
        self.later(self._draw_schedule, res, gen)
        self.later(self._draw_memory, res, gen)
        self.later(self._write_summary, res, gen, key)

    def _draw_schedule(self, res: dict, gen: int) -> None:
        if gen != self._draw_gen:
            return
        plan, d = res["plan"], res["draw"]
        T = plan.length
        what = self._plan_words(plan.policy, T, res["memory"])
        set_title(self.sched_plot, f"{SCHED_TITLE} of {what}")
        self.sched_note.setText("")
        xf, yf, conn = d["fwd"]
        self.fwd_item.setData(xf, yf, connect=conn)
        self.bwd_item.setData(*d["bwd"])
        self.sh_item.setData(*d["sh"])
        self.si_item.setData(*d["si"])
        self.sched_plot.setYRange(0, T, padding=0.02)
        self.sched_plot.setXRange(0, max(1, d["actions"]), padding=0.01)

    def _draw_memory(self, res: dict, gen: int) -> None:
        if gen != self._draw_gen:
            return
        plan, d = res["plan"], res["draw"]
        set_title(
            self.mem_plot,
            f"{MEM_TITLE} of {self._plan_words(plan.policy, plan.length, res['memory'])}, against its budget",
        )
        self.mem_item.setData(*d["mem"])
        self.budget_line.setValue(res["memory"])
        self.budget_line.setVisible(True)
        self.mem_plot.setYRange(0, max(res["memory"], d["peak"]) * 1.1, padding=0)

    def _write_summary(self, res: dict, gen: int, key=None) -> None:
        """The last piece of a plan's drawing: from here on it is the plan shown."""
        if gen != self._draw_gen:
            return
        self._plan = res
        self.shown_plan = key
        plan, d = res["plan"], res["draw"]
        T = plan.length
        full = full_bptt_memory(T, plan.alpha)
        bw = self.backward_spin.value()
        fallback = ""
        if plan.policy != self.policy:
            why = " ".join(self._curves["notes"]) if self._curves else ""
            fallback = f"{why} Shown: {LABELS[plan.policy]}.<br>"
        self.summary.setText(
            fallback + f"<b>{plan.policy.upper()}</b>, T={T}, budget {_units(res['memory'])} "
            f"({100 * res['memory'] / full:.2f}% of BPTT)<br>"
            f"cost Q = <b>{plan.cost:,}</b> forward steps = {plan.cost / T:.3f} T "
            f"(BPTT: T; recomputation {plan.cost - T:,})<br>"
            f"time vs BPTT: <b>{time_ratio(plan.cost, T, bw):.3f}x</b> (backward = {bw:g} forwards)<br>"
            f"peak stored {_units(plan.peak_memory)}; {d['n_sh']} hidden and {d['n_si']} internal stores; "
            f"{d['actions']:,} actions, validated"
            + (f"<br>alpha planned as {plan.alpha_used:g}" if plan.alpha_used != plan.alpha else "")
        )
        self._demo_pending = False
        self.mark_demo_done()

    # ------------------------------------------------------------------ drawing
    def _draw_curves(self) -> None:
        """The cost curves (computed in the worker, at the budgets where the cost changes) on the time axis of
        the current backward cost."""
        if not self._curves:
            return
        T = self._curves["length"]
        bw = self.backward_spin.value()
        for p in POLICIES:
            cur = self._curves["curves"].get(p)
            if cur is None:
                self.cost_items[p].setData([], [])
                continue
            x, costs = cur
            self.cost_items[p].setData(x, (costs + bw * T) / ((1 + bw) * T))

    def _draw_marker(self, cost: int | None = None, memory: float | None = None) -> None:
        planner = self._planner()
        if planner is None:
            return
        if cost is None:
            memory = self.budget()
            try:
                cost = planner.cost(memory)
            except Exception:  # noqa: BLE001 - no schedule fits this budget (the summary says so)
                self.marker.setData([], [])
                return
        full = full_bptt_memory(planner.T, planner.alpha)
        bw = self.backward_spin.value()
        self.marker.setData([memory / full], [time_ratio(cost, planner.T, bw)])

    # ------------------------------------------------------------------ real run
    def run_real(self) -> None:
        T = self.length
        hidden = int(self.hidden_spin.value())
        if not run_allowed(T, hidden):
            self._update_run_allowed()
            self.show_msg(self.Messages.run_too_long, **self._run_limit(T, hidden))
            return
        planner = self._planner()
        if planner is None:
            return
        kind = self.core_combo.currentData()
        fraction = self.budget() / full_bptt_memory(planner.T, planner.alpha)
        bw = float(self.backward_spin.value())
        task = None

        def cancel():
            if task is not None:
                task.cancel()

        self.run_button.setEnabled(False)
        self.run_result.setText("")  # the result shown is always the one of the last run started
        self.model_vs_measured.clear()
        self.task_bar.start(f"Running {planner.policy.upper()} on a real {kind.upper()}…", on_cancel=cancel)
        task = self.runner.submit(
            infer.run_real,
            kind,
            T,
            hidden,
            planner.policy,
            fraction,
            backward_ratio=bw,
            key="run",
            name="real run",
            on_result=self._on_run,
            on_progress=self.task_bar.set_progress,
            on_error=self._on_run_error,
            on_cancelled=self._on_run_cancelled,
            on_finished=self._on_run_finished,
        )

    def _on_run_finished(self) -> None:
        self.run_button.setEnabled(True)
        self._update_run_allowed()

    def _on_run_error(self, exc: BaseException, tb: str) -> None:
        self.task_bar.finish("Failed.")
        self.show_exception(exc, tb)

    def _on_run_cancelled(self) -> None:
        # (on_cancelled runs once the task no longer counts as busy: none busy means no newer run took over)
        if not self.runner.is_busy("run"):
            self.task_bar.finish("Cancelled.")

    def _on_run(self, r: dict) -> None:
        self.task_bar.finish("Done.")
        ok = r["forward_steps"] == r["cost"]
        self.model_vs_measured.set_values(
            (r["model_memory_fraction"], r["measured_memory_fraction"]),
            (r["model_ratio"], r["measured_time_ratio"]),
            note=f"model memory: the plan's peak plus the working step, over full BPTT's; model time: "
            f"(Q + bT) / (1 + b)T with b = {r['backward_ratio']:g}; measured: saved-tensor bytes and wall "
            f"time of the planned run over full BPTT's on the same core",
        )
        self.run_result.setText(
            f"<b>{r['kind'].upper()}</b> hidden {r['hidden']}, T={r['length']:,}, alpha={r['alpha']:.2f} "
            f"(measured), {r['policy'].upper()} at {100 * r['fraction']:.1f}% ({_units(r['memory'])}) on "
            f"{r['device']}<br>"
            f"forward steps: {r['forward_steps']:,} (plan {r['cost']:,}) {'✔' if ok else '✘'}<br>"
            f"gradient check vs full BPTT: max |diff| = {r['grad_diff']:.1e} "
            f"{'✔' if r['grad_diff'] < 1e-4 else '✘'}<br>"
            f"memory: {_fmt_bytes(r['peak_bytes'])} measured (plan {_fmt_bytes(r['predicted_bytes'])} + working "
            f"step {_fmt_bytes(r['register_bytes'])}); full BPTT {_fmt_bytes(r['full_bytes'])}<br>"
            f"time: {r['seconds']:.2f} s vs full BPTT {r['full_seconds']:.2f} s "
            f"(model: backward = {r['backward_ratio']:g} forwards)<br>"
            f"torch.utils.checkpoint, {r['ck_segments']} uniform segments: "
            f"{100 * r['ck_memory_fraction']:.1f}% memory, {r['ck_time_ratio']:.2f}x time, "
            f"{r['ck_forward']:,} forward steps"
        )

    def shutdown(self, timeout: float = 5.0) -> bool:
        if hasattr(self, "_debounce"):  # (built)
            self._debounce.stop()
        return super().shutdown(timeout)
