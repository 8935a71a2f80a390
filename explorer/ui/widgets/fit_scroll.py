"""A scroll area for a tab's panel: the panel fills the window, but never gets less than its least size.

``QScrollArea.setWidgetResizable(True)`` sizes a widget whose layout wraps text by its *preferred* height for
the width (plots ask for 480 px), so a panel scrolls long before its plots reach their minimum heights. This
one sizes the panel to the viewport, or to the least height its layout allows at that width (wrapped labels
get their lines, plots their minimum heights) when the viewport is smaller: then it scrolls, and nothing is
squeezed below its minimum or drawn over its neighbour.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QFrame, QScrollArea, QSizePolicy, QWidget


def least_height(widget: QWidget, width: int) -> int:
    """The least height ``widget`` can have at ``width`` without squeezing anything below its minimum.

    Where wrapped text makes the layout's height depend on its width, Qt's box layouts treat each such row's
    *preferred* height for the width as its minimum, so that is what the panel needs (big widgets ask for no
    more than their minimum: see :func:`shrinkable`)."""
    lay = widget.layout()
    h = widget.minimumSizeHint().height()
    if lay is not None and lay.hasHeightForWidth():
        h = max(h, lay.totalMinimumHeightForWidth(width), lay.totalHeightForWidth(width))
    return max(h, widget.minimumHeight())


def shrinkable(widget: QWidget, min_height: int = 0, min_width: int = 0) -> QWidget:
    """Let a plot or a splitter ask for no more than its minimum height and take the room there is: a tab then
    fits its window down to the sum of its widgets' minimum sizes.

    Its size hint is ignored (a pyqtgraph view's hint follows its current size, so a window could never shrink)
    and it reports its minimum height as its height for any width: Qt's box layouts take that as the least
    height of the row, where an ignored hint alone would let a row of wrapped text squeeze it to nothing.
    (For a widget with a layout of its own, e.g. a VTK view, give it a small ``sizeHint`` instead.)"""
    if min_height:
        widget.setMinimumHeight(min_height)
    if min_width:
        widget.setMinimumWidth(min_width)
    if widget.layout() is None:
        pol = widget.sizePolicy()
        pol.setVerticalPolicy(QSizePolicy.Ignored)
        pol.setHeightForWidth(True)
        widget.setSizePolicy(pol)
    return widget


class FitScrollArea(QScrollArea):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.NoFrame)
        self.setWidgetResizable(False)
        self.viewport().installEventFilter(self)
        self._fitting = False

    def setWidget(self, widget: QWidget) -> None:  # noqa: N802 - Qt override
        super().setWidget(widget)
        widget.installEventFilter(self)
        self.fit()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if (obj is self.viewport() and event.type() == QEvent.Resize) or (
            obj is self.widget() and event.type() == QEvent.LayoutRequest
        ):
            self.fit()
        return super().eventFilter(obj, event)

    def fit(self) -> None:
        """Size the widget: the viewport's size, or its least size where the viewport is smaller."""
        w = self.widget()
        if w is None or self._fitting:
            return
        self._fitting = True
        try:
            full = self.maximumViewportSize()  # the viewport without scroll bars
            vbar = self.verticalScrollBar().sizeHint().width()
            hbar = self.horizontalScrollBar().sizeHint().height()
            min_w = max(w.minimumSizeHint().width(), w.minimumWidth())
            width = max(full.width(), min_w)
            need = least_height(w, width)
            avail_h = full.height()
            if need > avail_h:  # a vertical bar takes some of the width
                width = max(full.width() - vbar, min_w)
                need = least_height(w, width)
            if width > full.width() - (vbar if need > avail_h else 0):
                avail_h -= hbar  # and a horizontal one some of the height
            height = max(avail_h, need)
            if w.size().width() != width or w.size().height() != height:
                w.resize(width, height)
        finally:
            self._fitting = False
