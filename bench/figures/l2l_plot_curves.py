"""Draw the mean loss curves written by `nips-explorer eval l2l --problem all --curves FILE.json` into a PNG.

    python -m bench.figures.l2l_plot_curves /tmp/l2l_curves.json resources/l2l/l2l_curves.png
    python -m bench.figures.l2l_plot_curves --quick

Prints the last value of each mean curve (the final loss) after the figure. ``--quick`` (no arguments needed):
curves computed here on 4 held-out 10-D quadratics with the bundled optimizer and the baselines at the rates tuned
for it (from its metadata), drawn into a temporary folder.
"""

import argparse
import json
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pyqtgraph as pg  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from bench._util import add_quick, run, scratch  # noqa: E402

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


def quick_curves() -> dict:
    """{"quadratic": {optimizer: mean curve}} on 4 held-out quadratics (bundled optimizer, its tuned rates)."""
    import torch

    from explorer.papers.l2l.evaluate import evaluate_problem
    from explorer.papers.l2l.infer import load_learned

    torch.set_num_threads(1)
    net, meta = load_learned(None, "cpu", "quadratic")
    tuned = ((meta.metrics or {}).get("eval") or {}).get("quadratic", {}).get("tuned_lr")
    return {"quadratic": evaluate_problem("quadratic", net, "cpu", runs=4, tuned=tuned, tune_runs=1)["curves"]}


def draw(curves: dict, dst: str, titles: dict = TITLES) -> None:
    app = QApplication.instance() or QApplication([])
    pg.setConfigOptions(antialias=True, background="w", foreground="k")
    win = pg.GraphicsLayoutWidget()
    win.resize(1500, 760)
    names = [n for n in TITLES if n in curves]
    for i, name in enumerate(names):
        p = win.addPlot(row=i // 4, col=i % 4, title=titles[name])
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", nargs="?", help="the curves JSON of `nips-explorer eval l2l --curves`")
    ap.add_argument("dst", nargs="?", help="the PNG to write")
    add_quick(ap, "curves of 4 quadratics computed here, drawn into a temporary folder")
    args = ap.parse_args(argv)
    if not args.quick and not (args.src and args.dst):
        ap.error("give SRC and DST (or --quick)")
    if args.src:
        with open(args.src) as fh:
            curves = json.load(fh)
        # the fair protocol's file (`eval l2l --protocol fair --curves`) holds one set per metric: the curves of the
        # optimizers tuned for final loss are drawn
        curves = {k: v["final"] if isinstance(v, dict) and "final" in v else v for k, v in curves.items()}
    else:
        curves = quick_curves()
    dst = args.dst or str(scratch("l2l-curves") / "l2l_curves.png")
    titles = TITLES if args.src else {**TITLES, "quadratic": "10-D quadratics (4)"}
    draw(curves, dst, titles)
    print("final loss (last point of the mean curve):")
    for name in (n for n in titles if n in curves):
        print(f"  {titles[name]:22s} " + "  ".join(f"{k} {v[-1]:.4g}" for k, v in curves[name].items()))
    return 0


if __name__ == "__main__":
    run(main)
