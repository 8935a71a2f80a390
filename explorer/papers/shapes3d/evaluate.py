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
from .model import (
    Readout,
    Shapes3D,
    camera_thetas,
    depth_carve,
    image_nll,
    iou,
    project,
    read_out,
    solidify,
    visual_hull,
)

LEVELS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7)
# with the carving, the chosen level sits lower (what lies outside the silhouette is gone already)
READOUT_LEVELS = tuple(sorted({0.03, 0.05, 0.07, *LEVELS}))


def occupied(logits: torch.Tensor, level: float = 0.5) -> np.ndarray:
    """Boolean occupancy: the voxels whose occupancy probability sigmoid(logit) is above ``level``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"occupancy level {level} is not between 0 and 1")
    return (logits > math.log(level / (1.0 - level))).cpu().numpy()


@torch.no_grad()
def readout_ious(
    model: Shapes3D,
    shapes: ShapeSet,
    device,
    levels: Sequence[float],
    batch: int = 50,
    token=None,
    mirror: bool = False,
    carve: bool = False,
    depth: bool = False,
) -> np.ndarray:
    """Single-view IoU of every shape (as scored: no cavity filling, the class given as in ``eval --voxels``) for
    the read-out given by ``mirror``, ``carve`` and ``depth`` (:func:`model.read_out`; the pictures are the
    renderer's) at each level -> (N, len(levels))."""
    model.eval()
    out = []
    for i in range(0, len(shapes), batch):
        if token is not None:
            token.check()
        v = torch.from_numpy(shapes.views[i : i + batch].astype(np.float32) / 255.0).to(device)
        labels = torch.from_numpy(shapes.labels[i : i + batch]).to(device)
        probs, _ = read_out(model, v[:, model.input_view], labels, mirror=mirror, carve=carve, depth=depth)
        gt = shapes.voxels[i : i + batch]
        out.append(np.stack([iou((probs > lv).cpu().numpy(), gt) for lv in levels], 1))
    return np.concatenate(out) if out else np.zeros((0, len(levels)))


def calibrate_level(
    model: Shapes3D,
    shapes: ShapeSet,
    device,
    levels: Sequence[float] = LEVELS,
    batch: int = 50,
    token=None,
    mirror: bool = False,
    carve: bool = False,
    depth: bool = False,
) -> tuple[float, dict[str, float]]:
    """The occupancy level with the highest mean single-view IoU (as scored: no cavity filling, the class given
    as in ``eval --voxels``) on ``shapes``: validation shapes, never the test ones, for the read-out given by
    ``mirror``, ``carve`` and ``depth`` (:func:`model.read_out`). A model trained on pictures only has no reason to
    put its surfaces at probability 0.5 exactly; thin parts (chair legs) often sit lower.
    Returns (level, {level: mean IoU})."""
    sums = readout_ious(model, shapes, device, levels, batch, token, mirror, carve, depth).sum(0)
    table = {f"{lv:g}": round(float(sums[k] / max(1, len(shapes))), 4) for k, lv in enumerate(levels)}
    best = int(np.argmax(sums))
    return float(levels[best]), table


# the read-outs choose_readout compares beyond the network alone: (name, mirror, carve, depth)
READOUTS = (("mirror+carve", True, True, False), ("mirror+carve+depth", True, True, True))


def choose_readout(model: Shapes3D, shapes: ShapeSet, device, token=None) -> tuple[Readout, dict[str, Any]]:
    """On validation shapes: the network's own best level, and the best level of each read-out of ``READOUTS``
    (the mirrored look, the carving to the silhouette, then also to the depth the rendered picture shows); the
    read-out with the highest validation IoU wins. Returns (readout, {read-out: {level: IoU}})."""
    level_net, table_net = calibrate_level(model, shapes, device, token=token)
    readout, best = Readout(level_net, network_level=level_net), table_net[f"{level_net:g}"]
    tables = {"network": table_net}
    for name, mirror, carve, depth in READOUTS:
        level, tables[name] = calibrate_level(
            model, shapes, device, READOUT_LEVELS, token=token, mirror=mirror, carve=carve, depth=depth
        )
        if tables[name][f"{level:g}"] > best:
            readout, best = Readout(level, mirror, carve, level_net, depth), tables[name][f"{level:g}"]
    return readout, tables


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
    readout: Readout | None = None,
) -> dict[str, Any]:
    """The issue's JSON layout; the occupancy is read by ``readout`` (default: the network alone at 0.5).
    ``extra`` (a dict), when given, receives further numbers (``iou_raw``: IoU without filling enclosed cavities;
    ``image_error_novel_cameras``: the picture error from the cameras never used in training only;
    ``iou_at_level_0.5``: the network alone at 0.5, when scored otherwise; ``iou_network``: the network alone at
    its own level ``readout.network_level``, when the read-out has more steps). Picture errors and the ELBO are
    the network's own."""
    readout = readout or Readout()
    model.eval()
    gen = torch.random.get_rng_state()
    torch.manual_seed(seed)
    k_train = len(test.cameras)
    cams = list(test.cameras) + list(test.novel_cameras)
    th_all = camera_thetas(cams).to(device)
    ious, ious_raw, base, err_in, err_new, err_novel, elbos = [], [], [], [], [], [], []
    ious_half: list[np.ndarray] = []
    ious_net: list[np.ndarray] = []
    n = len(test)
    for i in range(0, n, batch):
        if token is not None:
            token.check()
        v = torch.from_numpy(test.views[i : i + batch].astype(np.float32) / 255.0).to(device)
        gt = torch.from_numpy(test.voxels[i : i + batch]).to(device)
        x = v[:, model.input_view]
        probs, out = readout.read(model, x, None, rendered=True)
        logits = out["logits"]
        raw = (probs > readout.level).cpu().numpy()
        ious.append(iou(solidify(raw), gt.cpu().numpy()))
        ious_raw.append(iou(raw, gt.cpu().numpy()))
        if extra is not None and (readout.level != 0.5 or not readout.network_only):
            ious_half.append(iou(solidify(occupied(logits[:, 0], 0.5)), gt.cpu().numpy()))
        if extra is not None and not readout.network_only:
            ious_net.append(iou(solidify(occupied(logits[:, 0], readout.network_level)), gt.cpu().numpy()))
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
        if ious_net:
            extra["iou_network"] = round(float(np.concatenate(ious_net).mean()), 4)
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
        "level": readout.level,
        "readout": readout.describe(),
        "iou": round(float(ious_a.mean()), 4),
        "iou_baseline": round(float(base_a.mean()), 4),
        "per_class": per_class,
        "image_error_input_view": round(float(np.concatenate(err_in).mean()), 5),
        "image_error_new_views": round(float(np.concatenate(err_new).mean()), 5),
        "elbo": round(float(np.concatenate(elbos).mean()), 2),
    }


# ----------------------------------------------------------------------------------- any voxel grids
# evaluate_grids' scores, in the order its JSON gives them
SCORES = (
    "iou",
    "iou_filled",
    "iou_network",
    "iou_baseline",
    "iou_depth_hull",
    "iou_nearest",
    "iou_nearest_carved",
    "iou_nearest_depth",
)


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
    readout: Readout | None = None,
    framing: float | None = None,
) -> dict[str, Any]:
    """Single-view IoU on any voxel grids (``data.load_voxel_folder``: class, name, grid [x, y(up), z]).

    For each grid: the model's input picture is rendered by the project's renderer from the model's input camera
    (grid resampled to 64^3, cavities filled for rendering); the shape is inferred (posterior mean latents,
    conditioned on the class when the model knows it, unconditional otherwise) and scored against the grid
    resampled to the model's resolution, as is (surfaces stay surfaces). ``framing`` (the checkpoint's
    ``grid_framing``: the share of the cube its training shapes' largest side spans): a grid framed otherwise
    (a margin around the shape, or off centre) is first zoomed to that framing for its picture, as a camera
    framing the object would, and every inferred or baseline shape is mapped back to the grid's own cube before
    it is scored (:func:`data.frame_grid`); a grid framed like the training shapes is used as it is.

    * iou: the occupancy as ``readout`` reads it (the checkpoint's: its level, and the mirrored look and the
      carving to the picture's silhouette when validation chose them), no cavity filling;
      iou_filled: the same with enclosed cavities filled;
    * iou_network: the network alone, no post-processing at all, at ``readout.network_level`` (only when the read-out
      has more steps than the network);
    * iou_baseline: the visual hull of the input picture;
    * iou_nearest: the training shape whose picture (from the same camera, L2 over pixels) is nearest to the
      input picture (``bank``: :func:`nearest_bank`; None when no bank is given); iou_nearest_carved: that shape
      carved to the input picture's silhouette, as the read-out carves the model's;
    * with a read-out that carves to the depth the picture shows (``readout.depth``), the baselines get that carving
      too: iou_depth_hull (the visual hull carved to the depth: the picture's depth map extruded backwards) and
      iou_nearest_depth (the nearest training shape carved to the silhouette and the depth).
    """
    from .data import frame_grid, grid_to_internal, internal_to_grid, render_grids, resample_grid

    readout = readout or Readout()
    model.eval()
    cam = model.cameras[model.input_view]
    theta = camera_thetas([cam]).to(device)[0]
    known = {c: i for i, c in enumerate(model.class_names)}
    rows: list[dict[str, Any]] = []
    all_frames: list[Any] = []
    bank_pics = bank_vox = None
    if bank is not None:
        bank_pics = torch.from_numpy(bank["pictures"]).flatten(1).to(device)
        bank_vox = bank["voxels"]
    n = len(grids)
    for i in range(0, n, batch):
        if token is not None:
            token.check()
        part = grids[i : i + batch]
        frames = [frame_grid(g, framing, model.res) if framing else None for _, _, g in part]
        shown = [g if f is None else f.zoom(g) for f, (_, _, g) in zip(frames, part)]
        pics = render_grids(shown, [cam], model.image_size)[:, 0]
        x = torch.from_numpy(pics.astype(np.float32) / 255.0).to(device)
        truth = np.stack([grid_to_internal(resample_grid(g, model.res)) for _, _, g in part])
        labels = torch.tensor([known.get(c, model.n_classes) for c, _, _ in part], device=device)
        probs, out = readout.read(model, x, labels, rendered=True)
        # float volumes in the model's frame, mapped back to each grid's own cube where it was zoomed
        vols = {
            "model": probs.cpu().numpy(),
            "network": torch.sigmoid(out["logits"][:, 0]).cpu().numpy(),
            "hull": visual_hull(x, theta, model.res).float().cpu().numpy(),
        }
        if bank_pics is not None and bank_vox is not None:
            vols["near"] = bank_vox[torch.cdist(x.flatten(1), bank_pics).argmin(1).cpu().numpy()].astype(np.float32)
        if readout.depth:  # the baselines given the same depth carving as the model
            for key, base in (("depth_hull", "hull"), ("near_depth", "near")):
                if base in vols:
                    carved = torch.from_numpy(vols[base] * vols["hull"]).to(device)
                    vols[key] = depth_carve(carved, x, theta).cpu().numpy()
        all_frames += frames
        for j, f in enumerate(frames):
            if f is not None:
                for v in vols.values():
                    v[j] = grid_to_internal(f.back(internal_to_grid(v[j]), model.res))
        raw = vols["model"] > readout.level
        hull = vols["hull"] > 0.5
        scores = {"iou": iou(raw, truth), "iou_filled": iou(solidify(raw), truth), "iou_baseline": iou(hull, truth)}
        if not readout.network_only:
            scores["iou_network"] = iou(vols["network"] > readout.network_level, truth)
        if "near" in vols:
            near = vols["near"] > 0.5
            scores["iou_nearest"] = iou(near, truth)
            scores["iou_nearest_carved"] = iou(near & hull, truth)
        for key, name in (("depth_hull", "iou_depth_hull"), ("near_depth", "iou_nearest_depth")):
            if key in vols:
                scores[name] = iou(vols[key] > 0.5, truth)
        for j, (c, _, _) in enumerate(part):
            rows.append({"class": c, **{k: float(v[j]) for k, v in scores.items()}})
        if progress:
            progress(min(1.0, (i + batch) / n), f"{min(n, i + batch)}/{n} shapes")

    def summary(rs) -> dict[str, Any]:
        out: dict[str, Any] = {"shapes": len(rs)}
        for k in SCORES:
            if rs and k in rs[0]:
                out[k] = round(float(np.mean([r[k] for r in rs])), 4)
            elif k in ("iou_nearest", "iou_nearest_carved") or (k == "iou_nearest_depth" and readout.depth):
                out[k] = None
        return out

    res = summary(rows)
    res["level"] = readout.level
    res["readout"] = readout.describe()
    res["reframed"] = sum(f is not None for f in all_frames)
    res["per_class"] = {}
    for c in sorted({r["class"] for r in rows}):
        res["per_class"][c] = {**summary([r for r in rows if r["class"] == c]), "conditioned": c in known}
    return res
