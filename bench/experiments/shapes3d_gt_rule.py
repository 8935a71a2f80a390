"""How much of the furniture IoU is the ground-truth rule? The evaluation's 32^3 ground truth keeps a voxel when at
least half of its eight 64^3 sub-voxels are filled, so legs and stems one sub-voxel thin vanish from it although the
pictures show them. This rebuilds the held-out furniture at 64^3 (the same models and poses: checked against the
stored ground truth) and prints the model's IoU against both rules: "half" (the evaluation's) and "any" (a voxel is
filled when any of its sub-voxels is).

    python -m bench.experiments.shapes3d_gt_rule [--checkpoint models/shapes3d_furniture.safetensors] [--quick]

Needs the Sweet Home 3D furniture (apt-get install sweethome3d-furniture); the first run builds the furniture data
set into the cache folder (minutes). ``--quick``: the first 6 held-out models; skips with one line without the
furniture.
"""

from __future__ import annotations

import argparse

from bench._util import add_quick, run, skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="models/shapes3d_furniture.safetensors")
    add_quick(ap, "the first 6 held-out models; skips without the furniture")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from explorer.core.checkpoints import load_model
    from explorer.papers.shapes3d import data as D
    from explorer.papers.shapes3d.model import build, iou, solidify
    from explorer.papers.shapes3d.train import PRESETS

    if args.quick and not D.FURNITURE_DIR.is_dir():
        return skip(f"{D.FURNITURE_DIR} not found (apt-get install sweethome3d-furniture)")
    preset = PRESETS["furniture"]
    train, test = D.load_dataset("furniture", train_copies=preset["train_copies"], rig=preset["rig"])
    # make_furniture's draws: one yaw per loaded training model, then the held-out models' yaws
    _, held = D.furniture_split(D.furniture_catalog())
    rng = np.random.default_rng(0)
    rng.uniform(0, 2 * np.pi, size=int(train.info["models"]))
    if args.quick:  # the first models only (their yaws are drawn first), and the same ground truth
        held = held[:6]
        test = test.subset(range(len(held)))
    meshes = D.furniture_meshes(held, rng)
    fine = np.stack([D.voxelize(m, D.FINE_RES, seed=i) for i, (m, _, _) in enumerate(meshes)])
    half = D.downsample(fine, 2)
    if half.shape != test.voxels.shape or (half != test.voxels).mean() > 1e-3:
        print("could not rebuild the held-out set exactly (the catalogue or the data code changed)")
        return 1
    anyrule = D.downsample(fine, 2, at_least=1.0 / 8)

    model, _ = load_model(args.checkpoint, "shapes3d", build)
    model.eval()
    with torch.no_grad():
        x = torch.from_numpy(test.views[:, model.input_view].astype(np.float32) / 255.0)
        pred = solidify(model(x, None, sample=False)["logits"][:, 0].numpy() > 0)
    a, b = iou(pred, half), iou(pred, anyrule)
    print(
        f"{args.checkpoint}: {len(test)} held-out models; ground-truth voxels per model: half rule "
        f"{half.sum((1, 2, 3)).mean():.0f}, any rule {anyrule.sum((1, 2, 3)).mean():.0f}"
    )
    print(f"{'class':10s} {'IoU half rule':>14s} {'IoU any rule':>13s}")
    for c, name in enumerate(test.class_names):
        m = test.labels == c
        if m.any():
            print(f"{name:10s} {a[m].mean():14.3f} {b[m].mean():13.3f}")
    print(f"{'all':10s} {a.mean():14.3f} {b.mean():13.3f}")
    return 0


if __name__ == "__main__":
    run(main)
