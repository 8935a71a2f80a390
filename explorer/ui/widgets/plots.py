"""Plot helpers shared by the panels: readable log axes and legends that never cover the data.

* :class:`LogAxis` labels a log axis at whole decades only (thinned so labels never run together), with
  unlabelled minor ticks; when less than two decades are in view it labels 1-2-5 steps instead.
* :class:`LegendRow` is a legend as a row of coloured words above a plot (it wraps when the plot is narrow), so
  no legend box is ever drawn over the curves.
* :func:`legend_html` is the same row as rich text, for a plot's title.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
LABEL_PX = {"h": 46, "v": 22}  # least room one tick label needs along a horizontal / vertical axis


def format_power(value: float) -> str:
    """0.001 -> '0.001', 1e-05 -> '10⁻⁵', 20000 -> '2·10⁴' (short, and never in e-notation)."""
    if value <= 0 or not math.isfinite(value):
        return ""
    exp = math.floor(math.log10(value) + 1e-9)
    mant = value / 10**exp
    if -3 <= exp <= 3:
        return f"{value:.{max(0, -exp)}f}" if exp < 0 else f"{value:g}"
    m = f"{mant:.2g}"
    return f"10{str(exp).translate(_SUPERSCRIPT)}" if m == "1" else f"{m}·10{str(exp).translate(_SUPERSCRIPT)}"


def log_ticks(lo: float, hi: float, length_px: float, label_px: float) -> tuple[list[float], list[float]]:
    """Labelled and unlabelled tick positions (log10 units) for a log axis showing ``lo..hi`` (log10 units)
    along ``length_px`` pixels, labels at least ``label_px`` apart."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [], []
    room = max(1, int(length_px // max(1.0, label_px)))  # how many labels fit
    decades = list(range(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1))
    minor = [d + math.log10(m) for d in range(math.floor(lo), math.ceil(hi) + 1) for m in range(1, 10)]
    minor = [v for v in minor if lo <= v <= hi]
    if len(decades) >= 2:
        step = max(1, math.ceil(len(decades) / room))
        major = [d for d in decades if d % step == 0] or decades[:1]
        return major, [v for v in minor if all(abs(v - d) > 1e-9 for d in major)]
    # less than two decades in view: 1, 2, 5 (then every mantissa) steps, as many as fit
    for mantissas in ((1,), (1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        cand = [d + math.log10(m) for d in range(math.floor(lo), math.ceil(hi) + 1) for m in mantissas]
        cand = [v for v in cand if lo - 1e-9 <= v <= hi + 1e-9]
        if len(cand) >= 2 or mantissas[-1] == 9:
            if len(cand) > room:
                cand = cand[:: math.ceil(len(cand) / room)]
            return cand, [v for v in minor if all(abs(v - c) > 1e-9 for c in cand)]
    return [], minor


class LogAxis(pg.AxisItem):
    """An axis that, in log mode, labels whole decades only (or 1-2-5 steps within one decade), thinned to the
    room the axis has; linear mode is pyqtgraph's own."""

    def __init__(self, orientation: str, **kwargs) -> None:
        super().__init__(orientation, **kwargs)
        self._labelled: set = set()

    def logTickValues(self, minVal, maxVal, size, stdTicks):  # noqa: N802 - pyqtgraph's name
        horizontal = self.orientation in ("top", "bottom")
        major, minor = log_ticks(float(minVal), float(maxVal), float(size), LABEL_PX["h" if horizontal else "v"])
        self._labelled = {round(v, 6) for v in major}
        return [(None, major), (None, minor)]

    def logTickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph's name
        return [format_power(10 ** float(v) * scale) if round(float(v), 6) in self._labelled else "" for v in values]


def log_plot_widget(x: bool = False, y: bool = True, **kwargs) -> pg.PlotWidget:
    """A white PlotWidget whose log axes use :class:`LogAxis`."""
    axes = {}
    if x:
        axes["bottom"] = LogAxis("bottom")
    if y:
        axes["left"] = LogAxis("left")
    w = pg.PlotWidget(axisItems=axes, **kwargs)
    w.setBackground("w")
    w.setLogMode(x=x, y=y)
    return w


TITLE_PX = 20


def set_title(plot, text: str, size: str = "10pt", color: str = "#222") -> None:
    """A one-line title in a row of TITLE_PX (pyqtgraph's own title row is 30 px: room the data needs).
    ``plot``: a PlotWidget or a PlotItem."""
    item = plot.getPlotItem() if hasattr(plot, "getPlotItem") else plot
    item.setTitle(text, size=size, color=color)
    item.layout.setRowFixedHeight(0, TITLE_PX)
    item.titleLabel.setMaximumHeight(TITLE_PX)


# ------------------------------------------------------------------------------------------------ legends
def _hex(color) -> str:
    return pg.mkColor(color).name()


def legend_html(entries: Iterable[tuple[object, str, str]]) -> str:
    """``(colour, mark, label)`` entries as rich text: a coloured mark ('line', 'dash', 'dot', 'square',
    'star', 'triangle' or any text) followed by the label."""
    marks = {"line": "━━", "dash": "╍╍", "dot": "●", "square": "■", "star": "★", "triangle": "▲", "band": "▆"}
    parts = []
    for color, mark, label in entries:
        parts.append(f"<span style='color:{_hex(color)}; font-weight:bold'>{marks.get(mark, mark)}</span>&nbsp;{label}")
    return "&nbsp;&nbsp;&nbsp; ".join(parts)


class LegendRow(QLabel):
    """A legend as a wrapped row of coloured marks and labels, placed above (never on) a plot."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextFormat(Qt.RichText)
        self.setStyleSheet("color: #333; font-size: 9pt; background: white; padding: 2px 6px;")
        self.setMinimumHeight(self.fontMetrics().height() + 6)  # one line even while empty: no jumps
        self.entries: list[tuple[object, str, str]] = []

    def set_entries(self, entries: Sequence[tuple[object, str, str]]) -> None:
        self.entries = list(entries)
        self.setText(legend_html(self.entries))

    def labels(self) -> list[str]:
        return [label for _, _, label in self.entries]


def with_legend(plot: QWidget, legend: LegendRow | None = None) -> tuple[QWidget, LegendRow]:
    """``plot`` under a :class:`LegendRow` in one widget (no gap between them)."""
    legend = legend or LegendRow()
    box = QWidget()
    lay = QVBoxLayout(box)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.setSpacing(0)
    lay.addWidget(legend)
    lay.addWidget(plot, 1)
    return box, legend


def finite_range(values: np.ndarray) -> tuple[float, float] | None:
    """(min, max) of the finite values as Python floats (None when there are none): ranges handed to pyqtgraph
    as float64, never as float32 scalars that overflow its float64 limits."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return (float(v.min()), float(v.max())) if v.size else None
