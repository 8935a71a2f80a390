"""Inference helpers shared by the CLI and the panel (headless: no Qt, no VTK)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

PAPER = "shapes3d"
TURNTABLE_ELEVATION = 25.0
# The bundled models the tab offers: (data set name in the checkpoint's metadata, file in models/, title).
BUNDLED_MODELS: tuple[tuple[str, str, str], ...] = (
    ("primitives", "shapes3d_primitives.safetensors", "Primitives (generated)"),
    ("furniture", "shapes3d_furniture.safetensors", "Furniture (Sweet Home 3D)"),
    ("modelnet", "shapes3d_modelnet.safetensors", "Real objects: ModelNet10 + Sweet Home 3D furniture"),
)


def load_for_app(path: str, device):
    """The loader of SPEC: (model, meta)."""
    from explorer.core.checkpoints import load_model

    from .model import build

    return load_model(path, PAPER, build, device)


# ------------------------------------------------------------------------------------------- images
def prepare_image(img: np.ndarray, size: int = 32, autocrop: bool | None = None) -> np.ndarray:
    """Any grey or RGB picture -> (size, size) float32 in [0, 1] in the training style (dark background).

    A bright background is inverted. ``autocrop`` (default: when the picture is not already size x size)
    centres the object's bounding box and scales it to about 80 % of the frame.
    """
    from PIL import Image

    a = np.asarray(img, dtype=np.float32)
    if a.ndim == 3:
        a = a[..., :3].mean(-1) if a.shape[-1] >= 3 else a[..., 0]
    if a.ndim != 2 or min(a.shape) < 4:
        from explorer.core.errors import UserError

        if a.ndim == 2:
            raise UserError(
                f"the picture is {a.shape[1]}x{a.shape[0]} pixels; it needs at least 4x4 (one object, "
                "about 32x32 or larger)"
            )
        raise UserError("this is not a picture with rows and columns of pixels; open a PNG or JPEG of one object")
    if a.size == 0 or not np.all(np.isfinite(a)):
        from explorer.core.errors import UserError

        raise UserError("the picture's pixels are not numbers (NaN or infinite values); open another picture")
    if a.max() > 1.5:
        a = a / 255.0
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    if np.median(border) > 0.5:
        a = 1.0 - a
    a = np.clip(a - np.median(border if np.median(border) <= 0.5 else 1.0 - border), 0.0, 1.0)
    if autocrop is None:
        autocrop = a.shape != (size, size)
    if autocrop:
        ys, xs = np.nonzero(a > 0.1)
        if len(ys):
            cy, cx = (ys.min() + ys.max()) / 2.0, (xs.min() + xs.max()) / 2.0
            half = max(ys.max() - ys.min(), xs.max() - xs.min()) / 2.0 / 0.8 + 1.0
            pad = int(np.ceil(half)) + 2
            a = np.pad(a, pad)
            cy, cx = cy + pad, cx + pad
            a = a[int(round(cy - half)) : int(round(cy + half)), int(round(cx - half)) : int(round(cx + half))]
    if a.shape != (size, size):
        a = (
            np.asarray(Image.fromarray((a * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR), np.float32)
            / 255.0
        )
    return a.astype(np.float32)


def load_image(path: str | Path, size: int = 32) -> np.ndarray:
    """A picture file as the model's grey input (checked by ``explorer.core.validate.open_image``: 16-bit and
    float pixels keep their range, bombs and non-images are refused)."""
    from explorer.core.errors import UserError
    from explorer.core.validate import open_image

    try:
        return prepare_image(np.asarray(open_image(path).convert("L")), size)
    except UserError as exc:
        name = Path(path).name
        raise UserError(str(exc) if str(exc).startswith(f"{name}:") else f"{name}: {exc}") from None


def _image_format(path) -> str:
    from PIL import Image

    ext = Path(path).suffix.lower()
    Image.init()
    if ext not in Image.EXTENSION:
        from explorer.core.errors import UserError

        raise UserError(f"{Path(path).name}: unknown image type '{ext or '(none)'}' (use .png, .jpg, ...)")
    return Image.EXTENSION[ext]


def save_image(img: np.ndarray, path: str | Path, scale: int = 1) -> None:
    from PIL import Image

    im = Image.fromarray(np.clip(np.asarray(img) * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    from explorer.core.validate import atomic_output

    with atomic_output(path, "image file") as tmp:
        im.save(tmp, format=_image_format(path))


# ---------------------------------------------------------------------------------------- inference
def turntable_cameras(n: int = 8, elevation: float = TURNTABLE_ELEVATION) -> list[list[float]]:
    return [[360.0 * i / n, elevation] for i in range(n)]


def solid_occupancy(occ: np.ndarray, level: float = 0.5) -> np.ndarray:
    """Occupancy with enclosed cavities (below ``level`` inside a closed surface) set to 1."""
    from .model import solidify

    inside = solidify(occ > level) & (occ <= level)
    return np.where(inside, 1.0, occ).astype(np.float32)


def infer_volume(
    model,
    image: np.ndarray,
    device,
    label: int | None = None,
    turntable: int = 8,
    sample: bool = False,
    readout=None,
    rendered: bool = False,
) -> dict[str, Any]:
    """One picture -> occupancy (R, R, R) as ``readout`` reads it (``model.Readout``: the checkpoint's, from
    ``Readout.from_metrics``; default the network alone), the network's canvases per step (T, R, R, R), and
    re-projections of that occupancy. ``rendered``: the picture was drawn by the project's renderer (a gallery
    shape), so its grey levels are depth and the read-out's depth carving applies; never for a photo."""
    import torch

    from .model import Readout, camera_thetas, probs_to_logits, project

    readout = readout or Readout()
    with torch.no_grad():
        x = torch.from_numpy(np.asarray(image, np.float32)).to(device).unsqueeze(0)
        lab = None if label is None else torch.tensor([int(label)], device=device)
        probs, out = readout.read(model, x, lab, rendered=rendered, sample=sample, keep_canvases=True)
        logits = probs_to_logits(probs).unsqueeze(1)
        reproj = model.render(logits, model.thetas[model.input_view : model.input_view + 1])[0, 0]
        tt = (
            project(
                logits, camera_thetas(turntable_cameras(turntable)).to(device), logits=True, out_size=model.image_size
            )[0]
            if turntable
            else None
        )
    return {
        "occupancy": solid_occupancy(probs[0].cpu().numpy(), readout.level),
        "canvases": torch.sigmoid(out["canvases"][0, :, 0]).cpu().numpy(),
        "reprojection": reproj.cpu().numpy(),
        "turntable": None if tt is None else tt.cpu().numpy(),
        "where": out["where"][0].cpu().numpy(),
    }


def infer_for_app(
    model,
    image: np.ndarray,
    device,
    label: int | None = None,
    truth: np.ndarray | None = None,
    readout=None,
    rendered: bool = False,
):
    """The tab's inference job: :func:`infer_volume` with the turntable, plus a smooth display of the binary ground
    truth when there is one (no staircase stripes)."""
    res = infer_volume(model, image, device, label=label, readout=readout, rendered=rendered)
    if truth is not None:
        from scipy import ndimage

        t = truth.astype(np.float32)
        # smoothed, but one-voxel parts (chair legs, monitor stands in surface grids) stay above the 0.5 level
        res["truth_display"] = np.maximum(ndimage.gaussian_filter(t, 1.0), 0.6 * t)
    return res


def read_gallery(dataset: str) -> tuple[str | None, dict[str, Any], dict[str, Any] | None]:
    """The tab's gallery job: (problem, its fields, gallery). problem is None, "missing" or "unreadable"."""
    p = gallery_path(dataset)
    if not p.exists():
        return "missing", {"file": p.name, "folder": str(p.parent)}, None
    try:
        g = load_gallery(p)
    except Exception as exc:  # noqa: BLE001 - a message in the banner, not a crash
        return "unreadable", {"file": p.name, "reason": str(exc)}, None
    from .photo import reference

    g["reference"] = reference(g["views"][:, 0], g["labels"])  # how "Open picture..." frames and draws a photo
    # by class name: a model may know more classes than its gallery shows, in another order
    names = list(g.get("class_names") or [])
    g["reference"]["fill_by_name"] = {
        names[c]: f for c, f in g["reference"].get("fill_by_class", {}).items() if 0 <= c < len(names)
    }
    return None, {}, g


def sample_volumes(
    model,
    n: int,
    device,
    label: int | None = None,
    temperature: float = 1.0,
    seed: int | None = None,
    turntable: int = 4,
) -> dict[str, Any]:
    """n volumes from the prior (class-conditional when ``label`` is given) with their canvas steps."""
    import torch

    from .model import camera_thetas, project

    if seed is not None:
        torch.manual_seed(seed)
    out = model.sample_prior(n, label, temperature, keep_canvases=True, device=device)
    with torch.no_grad():
        views = project(
            out["logits"],
            camera_thetas(turntable_cameras(turntable)).to(device),
            logits=True,
            out_size=model.image_size,
        )
    return {
        "occupancy": np.stack([solid_occupancy(o) for o in torch.sigmoid(out["logits"][:, 0]).cpu().numpy()]),
        "canvases": torch.sigmoid(out["canvases"][:, :, 0]).cpu().numpy(),
        "views": views.cpu().numpy(),
    }


# ---------------------------------------------------------------------------------------------- meshes
def mesh_from_volume(occ: np.ndarray, level: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of an occupancy volume (z, y, x) in [-1, 1]^3 -> (vertices (N, 3) as x, y, z, faces).

    Returns empty arrays when the level is not crossed."""
    from skimage.measure import marching_cubes

    occ = np.asarray(occ, np.float32)
    padded = np.pad(occ, 1, constant_values=0.0)
    if not (padded.min() < level < padded.max()):
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    verts, faces, _, _ = marching_cubes(padded, level=level)
    r = occ.shape[-1]
    zyx = (verts - 1.0 + 0.5) / r * 2.0 - 1.0
    return zyx[:, ::-1].astype(np.float32).copy(), faces.astype(np.int64)


def write_mesh(verts: np.ndarray, faces: np.ndarray, path: str | Path) -> Path:
    """Write .obj (own writer), .stl or .ply (trimesh) in a y-up frame (the model's world has y down)."""
    from explorer.core.errors import UserError

    p = Path(path)
    suffix = p.suffix.lower()
    if len(faces) == 0:
        raise UserError("the inferred volume is empty at this iso-level; nothing to write")
    v = np.asarray(verts, np.float64) * np.array([1.0, -1.0, 1.0])  # y up
    f = np.asarray(faces)[:, ::-1]  # the flip mirrors: keep faces outward
    if suffix not in (".obj", ".stl", ".ply"):
        raise UserError(f"{p.name}: unsupported mesh format '{suffix or '(none)'}' (use .obj, .stl or .ply)")
    from explorer.core.validate import atomic_output

    with atomic_output(p, "mesh file") as tmp:  # a full disk leaves no truncated mesh that looks valid
        if suffix == ".obj":
            with open(tmp, "w") as fh:
                fh.write("# nips-explorer shapes3d: inferred shape (marching cubes)\n")
                fh.writelines(f"v {a:.5f} {b:.5f} {c:.5f}\n" for a, b, c in v)
                fh.writelines(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in f)
        else:
            import trimesh

            trimesh.Trimesh(v, f, process=False).export(str(tmp), file_type=suffix[1:])
    return p


# ---------------------------------------------------------------------------------------------- gallery
def gallery_path(dataset: str = "primitives") -> Path:
    from explorer.core.paths import resources_dir

    name = "gallery.npz" if dataset == "primitives" else f"gallery_{dataset}.npz"
    return resources_dir() / "shapes3d" / name


def load_gallery(path: Path | None = None) -> dict[str, Any]:
    """Bundled held-out test shapes: pictures (N, K, H, W) uint8, voxels (N, R, R, R) bool, labels, names."""
    p = Path(path) if path else gallery_path()
    z = np.load(p, allow_pickle=False)
    meta = json.loads(str(z["meta"]))
    return {
        "views": z["views"],
        "voxels": np.unpackbits(z["voxels"], axis=-1).astype(bool),
        "labels": z["labels"],
        "names": meta["names"],
        "class_names": meta["class_names"],
    }


def save_gallery(test, idx: Sequence[int], path: Path, source: dict[str, Any] | None = None) -> None:
    """Write held-out shapes ``idx`` of a ShapeSet: their pictures from the training cameras, their 32^3 grids
    bit-packed, labels and names (``source``: where they come from, kept in the metadata)."""
    idx = np.asarray(idx, dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"names": [test.names[i] for i in idx], "class_names": list(test.class_names)}
    if source:
        meta["source"] = source
    np.savez_compressed(
        path,
        views=test.views[idx, : len(test.cameras)],
        labels=test.labels[idx],
        voxels=np.packbits(test.voxels[idx], axis=-1),
        meta=np.array(json.dumps(meta)),
    )
