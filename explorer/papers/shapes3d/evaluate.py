"""Held-out evaluation: single-view inference against the 32^3 ground-truth voxels (never used in training).

* iou: volumetric IoU of the inferred occupancy (posterior mean latents, occupancy above the checkpoint's level:
  0.5, or the level chosen on validation shapes by :func:`calibrate_level`; enclosed cavities filled: pictures
  never see inside a closed surface) with the truth;
* iou_baseline: the visual hull of the single input view (its silhouette extruded along the viewing rays);
* image_error_input_view / image_error_new_views: mean absolute grey-level error (0..1) of the inferred
  volume's re-projection against the true pictures, from the input camera and from every other camera
  (the other training cameras and the novel, never-trained cameras);
* elbo: the evidence lower bound of the data set's training-camera pictures given the input view, nats per shape
  (one latent sample per shape; grey levels scored as Bernoulli probabilities, as in DRAW on MNIST).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .data import ShapeSet
from .model import Shapes3D, camera_thetas, image_nll, iou, project, solidify, visual_hull

LEVELS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7)


def occupied(logits: torch.Tensor, level: float = 0.5) -> np.ndarray:
    """Boolean occupancy: the voxels whose occupancy probability sigmoid(logit) is above ``level``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"occupancy level {level} is not between 0 and 1")
    return (logits > math.log(level / (1.0 - level))).cpu().numpy()


@torch.no_grad()
def calibrate_level(
    model: Shapes3D,
    shapes: ShapeSet,
    device,
    levels: Sequence[float] = LEVELS,
    batch: int = 50,
    token=None,
) -> tuple[float, dict[str, float]]:
    """The occupancy level with the highest mean single-view IoU (as scored: no post-processing, the class given
    as in ``eval --voxels``) on ``shapes``: validation shapes, never the test ones. A model trained on pictures
    only has no reason to put its surfaces at probability 0.5 exactly; thin parts (chair legs) often sit lower.
    Returns (level, {level: mean IoU})."""
    model.eval()
    sums = np.zeros(len(levels))
    for i in range(0, len(shapes), batch):
        if token is not None:
            token.check()
        v = torch.from_numpy(shapes.views[i : i + batch].astype(np.float32) / 255.0).to(device)
        labels = torch.from_numpy(shapes.labels[i : i + batch]).to(device)
        logits = model(v[:, model.input_view], labels, sample=False)["logits"][:, 0]
        gt = shapes.voxels[i : i + batch]
        for k, lv in enumerate(levels):
            sums[k] += float(iou(occupied(logits, lv), gt).sum())
    table = {f"{lv:g}": round(float(sums[k] / max(1, len(shapes))), 4) for k, lv in enumerate(levels)}
    best = int(np.argmax(sums))
    return float(levels[best]), table


@torch.no_grad()
def evaluate(
    model: Shapes3D,
    test: ShapeSet,
    device,
    batch: int = 50,
    progress=None,
    token=None,
    seed: int = 7,
    extra: dict[str, Any] | None = None,
    level: float = 0.5,
) -> dict[str, Any]:
    """The issue's JSON layout. ``extra`` (a dict), when given, receives further numbers
    (``iou_raw``: IoU without filling enclosed cavities; ``image_error_novel_cameras``: the picture error from
    the cameras never used in training only; ``iou_at_level_0.5``: the IoU at 0.5 when scored at another level)."""
    model.eval()
    gen = torch.random.get_rng_state()
    torch.manual_seed(seed)
    k_train = len(test.cameras)
    cams = list(test.cameras) + list(test.novel_cameras)
    th_all = camera_thetas(cams).to(device)
    ious, ious_raw, base, err_in, err_new, err_novel, elbos = [], [], [], [], [], [], []
    ious_half: list[np.ndarray] = []
    n = len(test)
    for i in range(0, n, batch):
        if token is not None:
            token.check()
        v = torch.from_numpy(test.views[i : i + batch].astype(np.float32) / 255.0).to(device)
        gt = torch.from_numpy(test.voxels[i : i + batch]).to(device)
        x = v[:, model.input_view]
        out = model(x, None, sample=False)
        logits = out["logits"]
        raw = occupied(logits[:, 0], level)
        ious.append(iou(solidify(raw), gt.cpu().numpy()))
        ious_raw.append(iou(raw, gt.cpu().numpy()))
        if extra is not None and level != 0.5:
            ious_half.append(iou(solidify(occupied(logits[:, 0], 0.5)), gt.cpu().numpy()))
        base.append(iou(visual_hull(x, th_all[model.input_view], gt.shape[-1]), gt).cpu().numpy())
        pred = project(logits, th_all, logits=True, out_size=v.shape[-1])
        e = (pred - v).abs().mean(dim=(2, 3))  # (B, K_all)
        err_in.append(e[:, model.input_view].cpu().numpy())
        others = [k for k in range(len(cams)) if k != model.input_view]
        err_new.append(e[:, others].mean(1).cpu().numpy())
        if len(cams) > k_train:
            err_novel.append(e[:, k_train:].mean(1).cpu().numpy())
        s = model(x, None, sample=True)
        nll = image_nll(project(s["logits"], th_all[:k_train], logits=True, out_size=v.shape[-1]), v[:, :k_train])
        elbos.append((-(nll + s["kl"].sum(1))).cpu().numpy())
        if progress:
            progress(min(1.0, (i + batch) / n), f"{min(n, i + batch)}/{n} shapes")
    torch.random.set_rng_state(gen)
    if extra is not None:
        extra["iou_raw"] = round(float(np.concatenate(ious_raw).mean()), 4)
        if ious_half:
            extra["iou_at_level_0.5"] = round(float(np.concatenate(ious_half).mean()), 4)
        if err_novel:
            extra["image_error_novel_cameras"] = round(float(np.concatenate(err_novel).mean()), 5)
    ious_a, base_a = np.concatenate(ious), np.concatenate(base)
    per_class: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(test.class_names):
        m = test.labels == c
        if m.any():
            per_class[name] = {
                "shapes": int(m.sum()),
                "iou": round(float(ious_a[m].mean()), 4),
                "iou_baseline": round(float(base_a[m].mean()), 4),
            }
    return {
        "dataset": str(test.info.get("dataset", "")),
        "shapes": int(n),
        "level": level,
        "iou": round(float(ious_a.mean()), 4),
        "iou_baseline": round(float(base_a.mean()), 4),
        "per_class": per_class,
        "image_error_input_view": round(float(np.concatenate(err_in).mean()), 5),
        "image_error_new_views": round(float(np.concatenate(err_new).mean()), 5),
        "elbo": round(float(np.concatenate(elbos).mean()), 2),
    }


# ----------------------------------------------------------------------------------- any voxel grids
def nearest_bank(train: ShapeSet, res: int) -> dict[str, np.ndarray]:
    """The nearest-picture baseline's memory: every training shape's pictures from the four level axis cameras
    (0, 90, 180, 270 degrees of azimuth), each paired with the shape turned so that this camera becomes the
    input camera (an exact permutation of its voxels). Pictures (M, H, W) float32, voxels (M, R, R, R) bool."""
    from .data import resample_grid
    from .model import camera_thetas, to_camera

    cams = [list(c) for c in train.cameras]
    pics, vox = [], []
    for az in (0.0, 90.0, 180.0, 270.0):
        if [az, 0.0] not in cams:
            continue
        k = cams.index([az, 0.0])
        th = camera_thetas([[az, 0.0]])[0]
        v = torch.from_numpy(train.voxels).unsqueeze(1)
        turned = to_camera(v, th)[:, 0].numpy()
        pics.append(train.views[:, k].astype(np.float32) / 255.0)
        vox.append(turned if turned.shape[-1] == res else np.stack([resample_grid(g, res) for g in turned]))
    if not pics:
        raise ValueError("the training set has no level axis cameras")
    return {"pictures": np.concatenate(pics), "voxels": np.concatenate(vox)}


@torch.no_grad()
def evaluate_grids(
    model: Shapes3D,
    grids: list[tuple[str, str, np.ndarray]],
    device,
    bank: dict[str, np.ndarray] | None = None,
    batch: int = 32,
    progress=None,
    token=None,
    level: float = 0.5,
) -> dict[str, Any]:
    """Single-view IoU on any voxel grids (``data.load_voxel_folder``: class, name, grid [x, y(up), z]).

    For each grid: the model's input picture is rendered by the project's renderer from the model's input camera
    (grid resampled to 64^3, cavities filled for rendering); the shape is inferred (posterior mean latents,
    conditioned on the class when the model knows it, unconditional otherwise) and scored against the grid
    resampled to the model's resolution, as is (surfaces stay surfaces):

    * iou: occupancy above ``level`` (the checkpoint's: 0.5 or chosen on validation shapes), no post-processing;
      iou_filled: the same with enclosed cavities filled;
    * iou_baseline: the visual hull of the input picture;
    * iou_nearest: the training shape whose picture (from the same camera, L2 over pixels) is nearest to the
      input picture (``bank``: :func:`nearest_bank`; None when no bank is given).
    """
    from .data import grid_to_internal, render_grids, resample_grid

    model.eval()
    cam = model.cameras[model.input_view]
    theta = camera_thetas([cam]).to(device)[0]
    known = {c: i for i, c in enumerate(model.class_names)}
    rows: list[tuple[str, float, float, float, float | None]] = []
    bank_pics = bank_vox = None
    if bank is not None:
        bank_pics = torch.from_numpy(bank["pictures"]).flatten(1).to(device)
        bank_vox = bank["voxels"]
    n = len(grids)
    for i in range(0, n, batch):
        if token is not None:
            token.check()
        part = grids[i : i + batch]
        pics = render_grids([g for _, _, g in part], [cam], model.image_size)[:, 0]
        x = torch.from_numpy(pics.astype(np.float32) / 255.0).to(device)
        truth = np.stack([grid_to_internal(resample_grid(g, model.res)) for _, _, g in part])
        labels = torch.tensor([known.get(c, model.n_classes) for c, _, _ in part], device=device)
        logits = model(x, labels, sample=False)["logits"]
        raw = occupied(logits[:, 0], level)
        i_raw = iou(raw, truth)
        i_fill = iou(solidify(raw), truth)
        i_hull = iou(visual_hull(x, theta, model.res).cpu().numpy(), truth)
        if bank_pics is not None and bank_vox is not None:
            d = torch.cdist(x.flatten(1), bank_pics)
            near = bank_vox[d.argmin(1).cpu().numpy()]
            i_near = iou(near, truth)
        for j, (c, _, _) in enumerate(part):
            rows.append(
                (c, float(i_raw[j]), float(i_fill[j]), float(i_hull[j]), float(i_near[j]) if bank is not None else None)
            )
        if progress:
            progress(min(1.0, (i + batch) / n), f"{min(n, i + batch)}/{n} shapes")

    def summary(rs) -> dict[str, Any]:
        a = np.array([r[1:4] for r in rs], np.float64)
        near = [r[4] for r in rs if r[4] is not None]
        return {
            "shapes": len(rs),
            "iou": round(float(a[:, 0].mean()), 4),
            "iou_filled": round(float(a[:, 1].mean()), 4),
            "iou_baseline": round(float(a[:, 2].mean()), 4),
            "iou_nearest": round(float(np.mean(near)), 4) if near else None,
        }

    out = summary(rows)
    out["level"] = level
    out["per_class"] = {}
    for c in sorted({r[0] for r in rows}):
        out["per_class"][c] = {**summary([r for r in rows if r[0] == c]), "conditioned": c in known}
    return out
