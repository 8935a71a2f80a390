"""Validation ELBO against training time for the SRNN models of the four music sets (the figure of the README).

    python -m bench.figures.srnn_curves [--chain jsb=A.safetensors,B.safetensors ...]
                                        [--out resources/screenshots/srnn_curves.png] [--quick]

Each chain is the checkpoints of one set in training order (a later one continued from the earlier by
``--init`` or ``--resume``); every checkpoint carries its per-epoch history (validation ELBO per step, wall
time) up to its best epoch, and its total training time (``training.wall_s`` or ``metrics.train_wall_s``), which
offsets the next stage. Default: the bundled smoothing+Resq model of each set. The curves are validation ELBOs
(one-sample bound on the validation chunks); the paper reports test numbers, so the paper's values are printed
in the legend, not drawn against the validation curves. Needs matplotlib (without it: the numbers, no figure).
``--quick``: the same, drawn into a temporary folder (the bundled checkpoints' histories are small).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench._util import ROOT, add_quick, run, scratch


def stage_points(path: Path, offset_h: float):
    from explorer.core.checkpoints import read_metadata

    meta = read_metadata(path)
    hist = meta.extra.get("history") or []
    xs = [offset_h + h["wall_s"] / 3600 for h in hist]
    ys = [h["valid_elbo_per_step"] for h in hist]
    total = (
        (meta.extra.get("training") or {}).get("wall_s")
        or meta.metrics.get("train_wall_s")
        or (hist[-1]["wall_s"] if hist else 0.0)
    )
    return xs, ys, offset_h + float(total) / 3600, meta.metrics


def main(argv=None) -> int:
    from explorer.papers.srnn.data import DATASET_TITLES, PAPER_PER_STEP

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chain", action="append", default=[], metavar="SET=A,B,...")
    ap.add_argument("--out", default=None, help="default resources/screenshots/srnn_curves.png")
    add_quick(ap, "the figure into a temporary folder")
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = str(
            scratch("srnn-curves") / "srnn_curves.png"
            if args.quick
            else ROOT / "resources" / "screenshots" / "srnn_curves.png"
        )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
    chains = {}
    for c in args.chain:
        name, files = c.split("=", 1)
        chains[name] = [Path(f) for f in files.split(",")]
    for name in ("jsb", "nottingham", "muse", "piano"):
        f = ROOT / "models" / f"srnn_{name}_smooth_resq.safetensors"
        if name not in chains and f.exists():
            chains[name] = [f]
    lines = []
    fig, axes = plt.subplots(1, len(chains), figsize=(4.2 * len(chains), 3.4), squeeze=False) if plt else (None, None)
    for k, (name, files) in enumerate(chains.items()):
        ax = axes[0][k] if plt else None
        offset = 0.0
        metrics = {}
        for i, f in enumerate(files):
            xs, ys, offset, metrics = stage_points(f, offset)
            if ax is not None:
                ax.plot(xs, ys, "-o", ms=2.5, lw=1.2, label=f"stage {i + 1}: {f.name}" if len(files) > 1 else None)
        test = metrics.get("test_elbo_per_step")
        if ax is not None:
            title = DATASET_TITLES.get(name, name)
            ax.set_title(
                f"{title}\ntest ELBO {test:.2f} (paper {PAPER_PER_STEP[name]:.2f})" if test is not None else title,
                fontsize=10,
            )
            ax.set_xlabel("training wall time (hours, one thread)")
            ax.set_ylabel("validation ELBO (nats/step)")
            ax.grid(alpha=0.3)
            if len(files) > 1:
                ax.legend(fontsize=7)
        lines.append(
            f"{name}: {len(files)} stage(s), {offset:.2f} h, best valid "
            f"{max(stage_points(files[-1], 0)[1] or [float('nan')]):.3f}, test {test}"
        )
    if fig is not None:
        fig.tight_layout()
        fig.savefig(args.out, dpi=110)
        print(args.out)
    else:
        print("matplotlib missing: no figure", file=sys.stderr)
    print("\n".join(lines))
    return 0 if fig is not None or args.quick else 1


if __name__ == "__main__":
    run(main)
