"""Draw the mean loss curves written by `nips-explorer eval l2l --problem all --curves FILE.json` into a PNG.

QT_QPA_PLATFORM=offscreen python bench/l2l_plot_curves.py /tmp/l2l_curves.json resources/l2l/l2l_curves.png
"""

import json
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pyqtgraph as pg  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

COLORS = {
    "learned": (220, 40, 40),
    "sgd": (140, 140, 140),
    "rmsprop": (40, 160, 60),
    "adam": (40, 90, 220),
    "nag": (240, 150, 20),
}
LABELS = {"learned": "LSTM (learned)", "sgd": "SGD", "rmsprop": "RMSprop", "adam": "Adam", "nag": "NAG"}
TITLES = {
    "quadratic": "10-D quadratics (100)",
    "mnist": "MNIST 20 sigmoid",
    "mnist-200steps": "MNIST, 200 steps",
    "mnist-40": "MNIST, 40 units",
    "mnist-2layer": "MNIST, 2 layers",
    "mnist-relu": "MNIST, ReLU",
    "fashion": "Fashion-MNIST",
}


def main(src: str, dst: str) -> None:
    curves = json.load(open(src))
    app = QApplication.instance() or QApplication([])
    pg.setConfigOptions(antialias=True, background="w", foreground="k")
    win = pg.GraphicsLayoutWidget()
    win.resize(1500, 760)
    names = [n for n in TITLES if n in curves]
    for i, name in enumerate(names):
        p = win.addPlot(row=i // 4, col=i % 4, title=TITLES[name])
        p.setLogMode(x=False, y=True)
        p.showGrid(x=True, y=True, alpha=0.3)
        p.setLabel("bottom", "step")
        if i == 0:
            p.addLegend(offset=(-5, 5), brush=pg.mkBrush(255, 255, 255, 220))
        for kind, ys in curves[name].items():
            y = np.asarray(ys, dtype=float)
            y = np.where(np.isfinite(y), np.clip(y, 1e-8, 1e8), np.nan)
            ok = np.isfinite(y)
            p.plot(
                np.arange(len(y))[ok],
                y[ok],
                pen=pg.mkPen(COLORS[kind], width=3 if kind == "learned" else 2),
                name=LABELS[kind],
            )
    win.show()
    app.processEvents()
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    win.grab().save(dst)
    print("wrote", dst)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
