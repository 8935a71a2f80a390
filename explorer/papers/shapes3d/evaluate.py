"""Held-out evaluation: single-view inference against the 32^3 ground-truth voxels (never used in training).

* iou: volumetric IoU of the inferred occupancy (posterior mean latents, occupancy > 0.5, enclosed cavities
  filled: pictures never see inside a closed surface) with the truth;
* iou_baseline: the visual hull of the single input view (its silhouette extruded along the viewing rays);
* image_error_input_view / image_error_new_views: mean absolute grey-level error (0..1) of the inferred
  volume's re-projection against the true pictures, from the input camera and from every other camera
  (the other training cameras and the novel, never-trained cameras);
* elbo: the evidence lower bound of the data set's training-camera pictures given the input view, nats per shape
  (one latent sample per shape; grey levels scored as Bernoulli probabilities, as in DRAW on MNIST).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .data import ShapeSet
from .model import Shapes3D, camera_thetas, image_nll, iou, project, solidify, visual_hull


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
) -> dict[str, Any]:
    """The issue's JSON layout. ``extra`` (a dict), when given, receives further numbers
    (``iou_raw``: IoU without filling enclosed cavities; ``image_error_novel_cameras``: the picture error from
    the cameras never used in training only)."""
    model.eval()
    gen = torch.random.get_rng_state()
    torch.manual_seed(seed)
    k_train = len(test.cameras)
    cams = list(test.cameras) + list(test.novel_cameras)
    th_all = camera_thetas(cams).to(device)
    ious, ious_raw, base, err_in, err_new, err_novel, elbos = [], [], [], [], [], [], []
    n = len(test)
    for i in range(0, n, batch):
        if token is not None:
            token.check()
        v = torch.from_numpy(test.views[i : i + batch].astype(np.float32) / 255.0).to(device)
        gt = torch.from_numpy(test.voxels[i : i + batch]).to(device)
        x = v[:, model.input_view]
        out = model(x, None, sample=False)
        logits = out["logits"]
        raw = (logits[:, 0] > 0).cpu().numpy()
        ious.append(iou(solidify(raw), gt.cpu().numpy()))
        ious_raw.append(iou(raw, gt.cpu().numpy()))
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
        "iou": round(float(ious_a.mean()), 4),
        "iou_baseline": round(float(base_a.mean()), 4),
        "per_class": per_class,
        "image_error_input_view": round(float(np.concatenate(err_in).mean()), 5),
        "image_error_new_views": round(float(np.concatenate(err_new).mean()), 5),
        "elbo": round(float(np.concatenate(elbos).mean()), 2),
    }
