"""How much of the ModelNet IoU is the ground truth's convention? The ModelNet10 grids are mostly surface voxels
(a closed shape's inside is empty), while the model learns from pictures rendered with the insides filled, so it
infers solids. This scores the model (read as the checkpoint is scored) and the nearest-picture baseline on the
same held-out grids three ways: against the grids as is (what `eval shapes3d --voxels` reports), against the
grids with enclosed cavities filled (both sides filled), and with the model's solid hollowed to its outer shell
(a post-processing that matches the surface convention).

    python -m bench.experiments.shapes3d_filled_truth --voxels HELD_OUT --shapes DIR \
        [--checkpoint models/shapes3d_modelnet.safetensors] [--quick]

HELD_OUT: `eval shapes3d --dataset modelnet --shapes DIR --export-voxels HELD_OUT`; DIR: the ModelNet folder
(the nearest-picture baseline's training shapes). ``--quick``: the first 8 grids; skips with one line without
--voxels.
"""

from __future__ import annotations

import argparse

from bench._util import add_quick, required, run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="models/shapes3d_modelnet.safetensors")
    ap.add_argument("--voxels", default=None, help="folder of held-out CLASS_ID.npy grids")
    ap.add_argument("--shapes", default=None, help="the ModelNet folder, for the nearest-picture baseline")
    add_quick(ap, "the first 8 grids; skips without --voxels")
    args = ap.parse_args(argv)
    stop = required(ap, args, "--voxels", "give --voxels DIR (eval shapes3d --export-voxels) and --shapes DIR")
    if stop is not None:
        return stop

    from types import SimpleNamespace

    import numpy as np
    import torch
    from scipy import ndimage

    from explorer.core.checkpoints import load_checkpoint, load_model
    from explorer.papers.shapes3d.cli import _nearest_bank
    from explorer.papers.shapes3d.data import grid_to_internal, load_voxel_folder, render_grids, resample_grid
    from explorer.papers.shapes3d.model import Readout, build, iou, solidify

    model, _ = load_model(args.checkpoint, "shapes3d", build, torch.device("cpu"))
    model.eval()
    meta = load_checkpoint(args.checkpoint).meta
    readout = Readout.from_metrics(meta.metrics)
    bank = _nearest_bank(SimpleNamespace(shapes=args.shapes, data_dir=None), meta, model)
    grids = load_voxel_folder(args.voxels)[: 8 if args.quick else None]
    cam = model.cameras[model.input_view]
    known = {c: i for i, c in enumerate(model.class_names)}
    six = ndimage.generate_binary_structure(3, 1)

    def shell(v):
        return v & ~ndimage.binary_erosion(v, structure=six)

    cols = ["as is", "model shell", "filled truth"]
    if bank is not None:
        cols += ["nearest, as is", "nearest, filled truth"]
        pics = torch.from_numpy(bank["pictures"]).flatten(1)
    rows: list[tuple[str, list[float]]] = []
    with torch.no_grad():
        for i in range(0, len(grids), 32):
            part = grids[i : i + 32]
            x = torch.from_numpy(render_grids([g for _, _, g in part], [cam], model.image_size)[:, 0] / 255.0).float()
            truth = np.stack([grid_to_internal(resample_grid(g, model.res)) for _, _, g in part])
            full = solidify(truth)
            labels = torch.tensor([known.get(c, model.n_classes) for c, _, _ in part])
            probs, _ = readout.read(model, x, labels, rendered=True)
            pred = (probs > readout.level).numpy()
            near = bank["voxels"][torch.cdist(x.flatten(1), pics).argmin(1).numpy()] if bank is not None else None
            for j, (c, _, _) in enumerate(part):
                r = [iou(pred[j], truth[j]), iou(shell(pred[j]), truth[j]), iou(solidify(pred[j]), full[j])]
                if near is not None:
                    r += [iou(near[j], truth[j]), iou(solidify(near[j]), full[j])]
                rows.append((c, [float(v) for v in r]))
    filled = np.mean([solidify(grid_to_internal(resample_grid(g, model.res))).sum() for _, _, g in grids])
    given = np.mean([grid_to_internal(resample_grid(g, model.res)).sum() for _, _, g in grids])
    print(f"{args.checkpoint}: {len(rows)} grids, {readout.describe()}; truth voxels per grid {given:.0f} as is, "
          f"{filled:.0f} with cavities filled")  # fmt: skip
    print(f"{'class':10s}" + "".join(f"{c:>24s}" for c in cols))
    for c in sorted({r[0] for r in rows}) + [None]:
        a = np.array([r[1] for r in rows if c is None or r[0] == c])
        print(f"{c or 'all':10s}" + "".join(f"{v:24.3f}" for v in a.mean(0)))
    return 0


if __name__ == "__main__":
    run(main)
