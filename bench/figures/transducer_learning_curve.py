"""Digit error on an unheard FSDD speaker against the number of real FSDD voices the model trained on.

    python -m bench.figures.transducer_learning_curve [--models DIR] \
        [--out resources/screenshots/transducer_learning_curve.png] [--quick]

Reads the metadata of the leave-out checkpoints ``transducer_loso_*30min*.safetensors`` of the fluent-string recipe
(from bench/results/transducer_experiments.json, or from the files themselves in ``--models DIR``; 30
minutes on one thread each; with and without the channel shelf), takes from each checkpoint's metadata which
speakers it never heard and the digit error the train command measured on each of them (120 connected-digit
utterances from all 500 of that speaker's recordings, the same utterances for every run), prints one row per held-out
speaker (the runs at 1, 2, 3 and 4 real training voices) and draws the points with a line through each speaker's mean.
Every model also heard the same synthetic voices (espeak-ng, flite, festival, fluent strings) and the two single-take
human voices; only the number of FSDD speakers changes. ``--quick``: the same, drawn into a temporary folder.
"""

import argparse
import json
import os
from collections import defaultdict
from fnmatch import fnmatch
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from bench._util import add_quick, run, scratch  # noqa: E402
from explorer.core.checkpoints import read_metadata  # noqa: E402
from explorer.papers.transducer.data import SPEAKERS  # noqa: E402

COLORS = {
    "george": (220, 40, 40),
    "jackson": (40, 90, 220),
    "lucas": (40, 160, 60),
    "nicolas": (240, 150, 20),
    "theo": (140, 60, 180),
}


RUNS = Path(__file__).resolve().parents[1] / "results" / "transducer_experiments.json"


def run_metadata(models: Path | None):
    """(file name, CheckpointMeta-like) of each 30-minute leave-out run: from the checkpoints in ``models`` when
    given, else from the runs table (the checkpoints are not bundled)."""
    if models is not None:
        return [(f.name, read_metadata(f)) for f in sorted(models.glob("transducer_loso_*30min*.safetensors"))]
    runs = json.loads(RUNS.read_text())["runs"]
    return [
        (
            r["file"],
            SimpleNamespace(
                data=r.get("data") or {}, metrics=r.get("metrics") or {}, model_config=r.get("model_config") or {}
            ),
        )
        for r in runs
        if fnmatch(r["file"], "transducer_loso_*30min*.safetensors")
    ]


def collect(models: Path | None):
    """{speaker: {n_real_voices: [digit error %, ...]}} from the fluent-recipe 30-minute leave-out runs."""
    out = defaultdict(lambda: defaultdict(list))
    for _name, meta in run_metadata(models):
        held = [s for s in (meta.data.get("holdout") or "").split(",") if s]
        if (
            not held
            or not meta.data.get("fluent_weight")
            or meta.data.get("formant_warp_share")
            or meta.data.get("clip_crop_share")
            or meta.data.get("more_voices")
            or meta.model_config.get("bidirectional")
        ):
            continue
        per = meta.metrics.get("per_speaker_digit_error_rate", {})
        for s in held:
            if s in per:
                out[s][len(SPEAKERS) - len(held)].append(100 * per[s])
    return out


def draw(curve, dst: Path) -> None:
    import numpy as np
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])  # noqa: F841 - pyqtgraph needs the application
    pg.setConfigOptions(antialias=True, background="w", foreground="k")
    win = pg.GraphicsLayoutWidget()
    win.resize(900, 600)
    plot = win.addPlot(title="Unheard FSDD speaker vs real voices in training (same synthetic voices in all)")
    plot.setLabel("bottom", "real FSDD voices in training")
    plot.setLabel("left", "digit errors, unheard speaker (%)")
    plot.addLegend(offset=(10, 10))
    plot.showGrid(y=True, alpha=0.3)
    for k, s in enumerate(s for s in SPEAKERS if s in curve):
        col = COLORS[s]
        xs = sorted(curve[s])
        means = [float(np.mean(curve[s][n])) for n in xs]
        plot.plot(xs, means, pen=pg.mkPen(col, width=2), name=s)
        px = [n + 0.04 * (k - 2) for n in xs for _ in curve[s][n]]
        py = [v for n in xs for v in curve[s][n]]
        plot.plot(px, py, pen=None, symbol="o", symbolSize=8, symbolBrush=col, symbolPen=None)
    target = pg.InfiniteLine(
        pos=5,
        angle=0,
        pen=pg.mkPen((90, 90, 90), style=pg.QtCore.Qt.DashLine),
        label="target 5%",
        labelOpts={"position": 0.08, "color": (90, 90, 90)},
    )
    plot.addItem(target)
    plot.setXRange(0.7, 4.3)
    plot.setYRange(0, 30)
    plot.getAxis("bottom").setTicks([[(n, str(n)) for n in (1, 2, 3, 4)]])
    dst.parent.mkdir(parents=True, exist_ok=True)
    win.show()
    app.processEvents()
    win.grab().save(str(dst))  # as bench/figures/l2l_plot_curves.py does
    win.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=None, help="a folder of the leave-out checkpoints (default: the runs table)")
    p.add_argument("--out", default=None, help="default resources/screenshots/transducer_learning_curve.png")
    add_quick(p, "the figure into a temporary folder")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = str(
            scratch("transducer-curve") / "transducer_learning_curve.png"
            if args.quick
            else "resources/screenshots/transducer_learning_curve.png"
        )
    curve = collect(Path(args.models) if args.models else None)
    draw(curve, Path(args.out))
    print(f"figure: {args.out}")
    print("held-out speaker: digit error % per run, by number of real FSDD training voices")
    for s in SPEAKERS:
        if s in curve:
            print(
                f"  {s:8s} "
                + "   ".join(f"{n}: " + ", ".join(f"{v:.1f}" for v in curve[s][n]) for n in sorted(curve[s]))
            )
    return 0


if __name__ == "__main__":
    run(main)
