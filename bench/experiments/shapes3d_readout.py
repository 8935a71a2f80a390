"""What each step of the read-out is worth (docs/shapes3d.md, "The read-out"): the ModelNet model's single-view IoU
on its validation and held-out test shapes read six ways: the network alone, with the mirrored second look, with the
carving to the input silhouette, with both, with the carving to the silhouette and to the depth the rendered picture
shows, with all three. Each read-out's level is chosen on the validation shapes, and the test
shapes are scored at it (the class given, as `eval --voxels` does).

    python -m bench.experiments.shapes3d_readout --shapes DIR [--checkpoint models/shapes3d_modelnet.safetensors] \
        [--quick]

DIR: the folder the checkpoint was trained on (ModelNet's CLASS.npy.gz files, and any CLASS.SOURCE.npy.gz beside
them); the first run renders it into the cache folder (minutes). ``--quick``: 20 validation and 20 test shapes;
skips with one line without --shapes.
"""

from __future__ import annotations

import argparse

from bench._util import add_quick, required, run

WAYS = {  # mirror, carve, depth
    "network alone": (False, False, False),
    "mirrored look": (True, False, False),
    "carving": (False, True, False),
    "both": (True, True, False),
    "carving+depth": (False, True, True),
    "all three": (True, True, True),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="models/shapes3d_modelnet.safetensors")
    ap.add_argument("--shapes", default=None, help="the folder of grids the checkpoint was trained on")
    add_quick(ap, "20 validation and 20 test shapes; skips without --shapes")
    args = ap.parse_args(argv)
    stop = required(ap, args, "--shapes", "give --shapes DIR (the ModelNet folder the checkpoint was trained on)")
    if stop is not None:
        return stop

    import numpy as np
    import torch

    from explorer.core.checkpoints import load_model
    from explorer.papers.shapes3d.data import load_dataset
    from explorer.papers.shapes3d.evaluate import READOUT_LEVELS, readout_ious
    from explorer.papers.shapes3d.model import build
    from explorer.papers.shapes3d.train import PRESETS

    model, _ = load_model(args.checkpoint, "shapes3d", build, torch.device("cpu"))
    train, test = load_dataset("modelnet", shapes=args.shapes, rig=PRESETS["modelnet"]["rig"])
    n_val = int(train.info.get("valid", 0))
    valid = train.subset(range(min(n_val, 20) if args.quick else n_val))
    if args.quick:
        test = test.subset(range(min(20, len(test))))
    print(f"{args.checkpoint}: {len(valid)} validation, {len(test)} test shapes, single view, class given")
    print(f"{'read-out':16s}{'level':>7s}{'valid':>8s}{'test':>8s}" + "".join(f"{c:>10s}" for c in test.class_names))
    for name, (mirror, carve, depth) in WAYS.items():
        on_valid = readout_ious(model, valid, "cpu", READOUT_LEVELS, mirror=mirror, carve=carve, depth=depth).mean(0)
        k = int(np.argmax(on_valid))
        a = readout_ious(model, test, "cpu", READOUT_LEVELS[k : k + 1], mirror=mirror, carve=carve, depth=depth)[:, 0]
        per = [
            a[test.labels == c].mean() if (test.labels == c).any() else float("nan")
            for c in range(len(test.class_names))
        ]
        print(f"{name:16s}{READOUT_LEVELS[k]:7g}{on_valid[k]:8.4f}{a.mean():8.4f}" + "".join(f"{v:10.3f}" for v in per))
    return 0


if __name__ == "__main__":
    run(main)
