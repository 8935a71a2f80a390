"""Shapes and their pictures: primitives from ``trimesh.creation`` and Sweet Home 3D furniture.

Every shape is normalised into the cube [-1, 1]^3 (world "up" is -y, see model.py), voxelised at 64^3 by
dense surface sampling plus hole filling, and rendered from the known cameras through the same fixed
projection the model uses (at 64^3, pooled to 32 x 32 pixels). The 32^3 ground-truth voxels are kept in
a separate array for *evaluation only*: :meth:`ShapeSet.training_views` hands the trainer a
:class:`ViewSet`, which has pictures and class labels and no volumes at all.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PRIMITIVE_CLASSES = ("box", "sphere", "cylinder", "cone", "torus")
FURNITURE_CLASSES = ("chair", "table", "sofa", "bed", "lamp", "cabinet")
FURNITURE_DIR = Path("/usr/share/sweethome3d/furniture")
# Copyright and licence of each Sweet Home 3D furniture pack (Debian sweethome3d-furniture, debian/copyright).
FURNITURE_LICENCES = {
    "BlendSwap-CC-0": ("Emmanuel Puybaret (eTeks) and the Blend Swap contributors", "CC0"),
    "BlendSwap-CC-BY": ("the Blend Swap contributors", "CC-BY-3.0"),
    "KatorLegaz": ("Andrew Kator & Jennifer Legaz", "CC-BY-3.0-US"),
    "Reallusion": ("Reallusion", "CC-BY-3.0-US"),
    "Scopia": ("Scopia Visual Interfaces Systems, s.l.", "CC-BY-3.0"),
}
FINE_RES = 64
DATA_VERSION = 1


# ------------------------------------------------------------------------------------------ meshes
def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3D rotation matrix (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def primitive_mesh(kind: str, rng: np.random.Generator):
    """One primitive of the given kind with random proportions, pose and size, inside the unit ball."""
    import trimesh

    if kind == "box":
        mesh = trimesh.creation.box(extents=rng.uniform(0.45, 1.6, size=3))
    elif kind == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
        mesh.apply_scale(1.0)
        mesh.vertices *= rng.uniform(0.8, 1.2, size=3)  # mildly ellipsoidal
    elif kind == "cylinder":
        mesh = trimesh.creation.cylinder(radius=rng.uniform(0.3, 0.7), height=rng.uniform(0.7, 2.0), sections=32)
    elif kind == "cone":
        mesh = trimesh.creation.cone(radius=rng.uniform(0.45, 0.9), height=rng.uniform(0.9, 2.0), sections=32)
    elif kind == "torus":
        mesh = trimesh.creation.torus(
            major_radius=1.0, minor_radius=rng.uniform(0.3, 0.5), major_sections=48, minor_sections=16
        )
    else:
        raise ValueError(f"unknown primitive '{kind}'")
    mesh.vertices = mesh.vertices @ random_rotation(rng).T
    return normalise(mesh, rng.uniform(0.6, 0.9))


def normalise(mesh, radius: float = 0.85):
    """Centre the mesh's bounding box at the origin and scale it to the given bounding-sphere radius."""
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    mesh.vertices = mesh.vertices - (lo + hi) / 2.0
    r = float(np.linalg.norm(mesh.vertices, axis=1).max())
    if r > 0:
        mesh.vertices = mesh.vertices * (radius / r)
    return mesh


def voxelize(mesh, res: int = FINE_RES, seed: int = 0) -> np.ndarray:
    """Solid occupancy (res, res, res) bool in (z, y, x) order of a mesh inside [-1, 1]^3.

    Dense surface samples (about 6 per voxel face area) are binned, then enclosed cavities are filled
    (``scipy.ndimage.binary_fill_holes`` on the shell dilated by one voxel, eroded back); open meshes stay
    shells.
    """
    import trimesh
    from scipy import ndimage

    pitch = 2.0 / res
    n = int(np.clip(mesh.area / pitch**2 * 6.0, 20000, 600000))
    try:
        pts, _ = trimesh.sample.sample_surface(mesh, n, seed=seed)
    except TypeError:  # older trimesh without a seed argument
        pts, _ = trimesh.sample.sample_surface(mesh, n)
    pts = np.concatenate([pts, mesh.vertices], 0)
    idx = np.clip(np.floor((pts + 1.0) / pitch).astype(np.int64), 0, res - 1)
    grid = np.zeros((res, res, res), bool)
    grid[idx[:, 2], idx[:, 1], idx[:, 0]] = True
    # Close pinholes between samples (dilate), fill the enclosed inside, then peel the added layer again;
    # the sampled shell itself is always kept (thin parts such as table legs survive).
    filled = ndimage.binary_fill_holes(ndimage.binary_dilation(grid))
    return ndimage.binary_erosion(filled, border_value=0) | grid


def downsample(fine: np.ndarray, factor: int = 2, at_least: float = 0.5) -> np.ndarray:
    """Occupancy at a coarser grid: a coarse voxel is filled when at least the fraction ``at_least`` of its fine
    voxels are (the ground truth's rule: half; ``1 / factor**3``: any of them)."""
    r = fine.shape[-1] // factor
    f = fine.reshape(*fine.shape[:-3], r, factor, r, factor, r, factor).astype(np.float32)
    return f.mean(axis=(-5, -3, -1)) >= at_least


def render_fine(
    fine: np.ndarray, cameras: Sequence[Sequence[float]], image_size: int = 32, batch: int = 8
) -> np.ndarray:
    """Pictures (N, K, image_size, image_size) float32 of fine occupancy grids (N, R, R, R) bool."""
    import torch

    from .model import camera_thetas, project

    th = camera_thetas(cameras)
    out = []
    with torch.no_grad():
        for i in range(0, len(fine), batch):
            v = torch.from_numpy(fine[i : i + batch].astype(np.float32)).unsqueeze(1)
            out.append(project(v, th, logits=False, out_size=image_size).numpy())
    return np.concatenate(out, 0) if out else np.zeros((0, len(cameras), image_size, image_size), np.float32)


# ------------------------------------------------------------------------------------------ symmetries
def rig_symmetries(cameras: Sequence[Sequence[float]]) -> list[np.ndarray]:
    """World transforms G (signed permutations: turns about the vertical axis, mirror) that map the camera
    rig onto itself: the pictures of the moved shape G S are a reshuffle of the pictures of S."""
    from .model import camera_matrix

    mats = [camera_matrix(*c) for c in cameras]
    fwd = [m[:, 2] for m in mats]
    out = []
    for quarter in range(4):
        c, s_ = [1, 0, -1, 0][quarter], [0, 1, 0, -1][quarter]
        rot = np.array([[c, 0, s_], [0, 1, 0], [-s_, 0, c]], float)
        for mirror in (1.0, -1.0):
            g = rot @ np.diag([mirror, 1.0, 1.0])
            if all(any(np.allclose(g.T @ f, f2) for f2 in fwd) for f in fwd):
                out.append(g)
    return out


def view_shuffle(g: np.ndarray, cameras: Sequence[Sequence[float]], size: int) -> list[tuple[int, np.ndarray]]:
    """For the world transform g: per camera k, (j, idx) such that view_k(g S) = view_j(S).flat[idx]."""
    from .model import camera_matrix

    mats = [camera_matrix(*c) for c in cameras]
    lin = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    qx, qy = np.meshgrid(lin, lin, indexing="xy")  # (row = y, col = x)
    out = []
    for mk in mats:
        c = g.T @ mk  # camera (frame of S) seeing g S like mk
        j = next(i for i, mj in enumerate(mats) if np.allclose(mj[:, 2], c[:, 2]))
        a = mats[j].T @ c  # in-plane map: q_j = a q
        px = a[0, 0] * qx + a[0, 1] * qy
        py = a[1, 0] * qx + a[1, 1] * qy
        ix = np.clip(np.round((px + 1.0) / 2.0 * size - 0.5).astype(np.int64), 0, size - 1)
        iy = np.clip(np.round((py + 1.0) / 2.0 * size - 0.5).astype(np.int64), 0, size - 1)
        out.append((j, (iy * size + ix).ravel()))
    return out


# -------------------------------------------------------------------------------------------- sets
@dataclass
class ViewSet:
    """What the trainer may see: pictures from known cameras and class labels. No volumes."""

    views: np.ndarray  # (N, K, H, W) uint8 grey levels
    labels: np.ndarray  # (N,) int64
    class_names: list[str]
    cameras: list[list[float]]

    def __len__(self) -> int:
        return len(self.views)

    def batches(
        self, batch: int, rng: np.random.Generator, augment: bool = True, rank: int = 0, world_size: int = 1
    ) -> BatchStream:
        """Endless shuffled minibatches: dicts with "views" (B, K, H, W) float32 in [0, 1] and "labels".

        ``augment``: each shape is turned about the vertical axis by a random quarter turn and maybe
        mirrored; its pictures from the same camera rig are then an exact reshuffle of the stored ones.
        ``rank``/``world_size``: this process's share of every global batch (see :class:`BatchStream`)."""
        return BatchStream(self, batch, rng, augment=augment, rank=rank, world_size=world_size)

    @staticmethod
    def augment(views: np.ndarray, tables) -> np.ndarray:
        b, k, h, w = views.shape
        flat = views.reshape(b, k, h * w)
        out = np.empty_like(flat)
        for i, table in enumerate(tables):
            for kk, (j, idx) in enumerate(table):
                out[i, kk] = flat[i, j, idx]
        return out.reshape(b, k, h, w)


class BatchStream:
    """The endless shuffled minibatches of a :class:`ViewSet`, resumable and shardable.

    Every process of a distributed run draws the same permutations and augmentations from the same ``rng``
    (seeded alike) and keeps its own contiguous share (``batch / world_size`` items) of each global batch of
    ``batch`` shapes: together the processes see exactly the batches one process would see. ``state_dict()``
    (the generator's state, the current permutation and the position in it) lets a resumed run continue the
    same stream."""

    def __init__(
        self,
        data: ViewSet,
        batch: int,
        rng: np.random.Generator,
        augment: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        n, k, h, w = data.views.shape
        if batch < 1 or batch > n:
            raise ValueError(f"batch {batch} does not fit {n} shapes")
        if batch % world_size or not 0 <= rank < world_size:
            raise ValueError(f"batch {batch} does not split over {world_size} processes")
        self.data, self.batch, self.rng = data, int(batch), rng
        self.per = self.batch // world_size
        self.lo = rank * self.per
        self.tables = [view_shuffle(g, data.cameras, h) for g in rig_symmetries(data.cameras)] if augment else []
        self.order: np.ndarray | None = None
        self.pos = 0

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        n = len(self.data)
        if self.order is None or self.pos + self.batch > n:
            self.order = self.rng.permutation(n)
            self.pos = 0
        idx = np.sort(self.order[self.pos : self.pos + self.batch])
        self.pos += self.batch
        pick = self.rng.integers(len(self.tables), size=len(idx)) if self.tables else None
        mine = slice(self.lo, self.lo + self.per)
        v = self.data.views[idx[mine]]
        if pick is not None:
            v = ViewSet.augment(v, [self.tables[t] for t in pick[mine]])
        return {"views": v.astype(np.float32) / 255.0, "labels": self.data.labels[idx[mine]]}

    def state_dict(self) -> dict[str, Any]:
        import torch

        return {
            "rng": self.rng.bit_generator.state,
            "pos": self.pos,
            "order": None if self.order is None else torch.from_numpy(self.order.astype(np.int64)),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        order = state.get("order")
        self.order = (
            None
            if order is None
            else np.asarray(order.cpu().numpy() if hasattr(order, "numpy") else order, dtype=np.int64)
        )
        if self.order is not None and len(self.order) != len(self.data):
            raise ValueError(f"the saved data stream has {len(self.order)} shapes, this data set {len(self.data)}")
        self.pos = int(state["pos"])


@dataclass
class ShapeSet:
    """Shapes with pictures (training + novel cameras), labels, 32^3 ground-truth voxels and names."""

    views: np.ndarray  # (N, K_train + K_novel, H, W) uint8
    labels: np.ndarray  # (N,) int64
    voxels: np.ndarray  # (N, 32, 32, 32) bool: evaluation only
    class_names: list[str]
    cameras: list[list[float]]  # training cameras (input view first)
    novel_cameras: list[list[float]]
    names: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.views)

    def training_views(self) -> ViewSet:
        """The trainer's view of this set: training-camera pictures and labels only (copies)."""
        k = len(self.cameras)
        return ViewSet(
            views=np.ascontiguousarray(self.views[:, :k]),
            labels=self.labels.copy(),
            class_names=list(self.class_names),
            cameras=[list(c) for c in self.cameras],
        )

    def subset(self, idx) -> ShapeSet:
        idx = np.asarray(idx)
        return ShapeSet(
            self.views[idx],
            self.labels[idx],
            self.voxels[idx],
            list(self.class_names),
            self.cameras,
            self.novel_cameras,
            [self.names[i] for i in idx] if self.names else [],
            dict(self.info),
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(
            tmp,
            views=self.views,
            labels=self.labels,
            voxels=np.packbits(self.voxels, axis=-1),
            meta=np.array(
                json.dumps(
                    dict(
                        class_names=self.class_names,
                        cameras=self.cameras,
                        novel_cameras=self.novel_cameras,
                        names=self.names,
                        info=self.info,
                    )
                )
            ),
        )
        os.replace(tmp, path)

    @staticmethod
    def load(path: Path) -> ShapeSet:
        z = np.load(path, allow_pickle=False)
        meta = json.loads(str(z["meta"]))
        vox = np.unpackbits(z["voxels"], axis=-1).astype(bool)
        return ShapeSet(
            z["views"],
            z["labels"].astype(np.int64),
            vox,
            meta["class_names"],
            meta["cameras"],
            meta["novel_cameras"],
            meta.get("names", []),
            meta.get("info", {}),
        )


def build_set(
    meshes: Sequence[tuple[Any, int, str]],
    class_names: Sequence[str],
    cameras: Sequence[Sequence[float]] | None = None,
    novel_cameras: Sequence[Sequence[float]] | None = None,
    image_size: int = 32,
    progress: Callable | None = None,
    token=None,
    info: dict[str, Any] | None = None,
) -> ShapeSet:
    """Voxelise and render (mesh, label, name) triples into a ShapeSet."""
    from .model import NOVEL_CAMERAS, TRAIN_CAMERAS

    cameras = [list(c) for c in (cameras or TRAIN_CAMERAS)]
    novel = [list(c) for c in (NOVEL_CAMERAS if novel_cameras is None else novel_cameras)]
    views, vox, labels, names = [], [], [], []
    chunk: list[np.ndarray] = []

    def flush():
        if chunk:
            fine = np.stack(chunk)
            views.append(np.round(render_fine(fine, cameras + novel, image_size) * 255).astype(np.uint8))
            vox.append(downsample(fine, FINE_RES // 32))
            chunk.clear()

    n = len(meshes)
    for i, (mesh, label, name) in enumerate(meshes):
        if token is not None:
            token.check()
        chunk.append(voxelize(mesh, FINE_RES, seed=i))
        labels.append(label)
        names.append(name)
        if len(chunk) == 16:
            flush()
        if progress and (i % 20 == 0 or i == n - 1):
            progress((i + 1) / n, f"shape {i + 1}/{n}")
    flush()
    k = len(cameras) + len(novel)
    return ShapeSet(
        views=np.concatenate(views) if views else np.zeros((0, k, image_size, image_size), np.uint8),
        labels=np.asarray(labels, np.int64),
        voxels=np.concatenate(vox) if vox else np.zeros((0, 32, 32, 32), bool),
        class_names=list(class_names),
        cameras=cameras,
        novel_cameras=novel,
        names=names,
        info=dict(info or {}),
    )


def primitive_meshes(n: int, seed: int) -> list[tuple[Any, int, str]]:
    """n primitives, classes in turn, from the given seed (train and test use different seeds)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        c = i % len(PRIMITIVE_CLASSES)
        out.append((primitive_mesh(PRIMITIVE_CLASSES[c], rng), c, f"{PRIMITIVE_CLASSES[c]}-{seed}-{i}"))
    return out


def make_primitives(
    n: int, seed: int, progress=None, token=None, novel: bool = True, cameras: Sequence[Sequence[float]] | None = None
) -> ShapeSet:
    """``novel=False`` skips the pictures from the (evaluation-only) novel cameras, as for training sets;
    ``cameras``: the training rig (default: the axis cameras)."""
    return build_set(
        primitive_meshes(n, seed),
        PRIMITIVE_CLASSES,
        cameras=cameras,
        progress=progress,
        token=token,
        novel_cameras=None if novel else [],
        info={"dataset": "primitives", "seed": seed, "n": n},
    )


# ------------------------------------------------------------------------------------------ furniture
def furniture_class(name: str) -> int | None:
    """Class index of a Sweet Home 3D model from its name (keywords), or None for other furniture."""
    n = name.lower()
    if "armchair" in n or "chair" in n or "stool" in n:
        return 0
    if "table" in n or "desk" in n:
        return 1
    if "sofa" in n or "couch" in n:
        return 2
    if re.search(r"\bbed\b", n) or "bunk" in n:
        return 3
    if "lamp" in n or "light" in n:
        return 4
    if "cabinet" in n or "cupboard" in n or "wardrobe" in n or "dresser" in n or "bookcase" in n or "shelf" in n:
        return 5
    return None


def furniture_catalog(folder: Path = FURNITURE_DIR) -> list[dict[str, Any]]:
    """Entries (archive, model path, name, class, creator, licence hint) of the Sweet Home 3D furniture packs."""
    if not folder.is_dir():
        from explorer.core.errors import UserError

        raise UserError(f"{folder} not found: install the furniture with 'apt-get install sweethome3d-furniture'")
    out = []
    for arc in sorted(folder.glob("*.sh3f")):
        with zipfile.ZipFile(arc) as z:
            try:
                props = z.read("PluginFurnitureCatalog.properties").decode("latin-1")
            except KeyError:
                continue
        kv: dict[str, str] = {}
        for line in props.splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                k, v = line.split("=", 1)
                kv[k.strip()] = v.strip()
        for key, name in kv.items():
            m = re.fullmatch(r"name#(\d+)", key)
            if not m:
                continue
            i = m.group(1)
            if f"model#{i}" not in kv:
                continue
            cls = furniture_class(name)
            if cls is None:
                continue
            out.append(
                dict(
                    archive=str(arc),
                    model=kv[f"model#{i}"],
                    name=name,
                    label=cls,
                    creator=kv.get(f"creator#{i}", ""),
                    pack=arc.name,
                )
            )
    return out


def furniture_credits(entries: Sequence[dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Per pack of the models used: copyright holder, licence, number of models and their creators."""
    entries = furniture_catalog() if entries is None else entries
    out: dict[str, dict[str, Any]] = {}
    for e in entries:
        pack = Path(e["pack"]).stem
        holder, licence = FURNITURE_LICENCES.get(pack, ("see the package's copyright file", "unknown"))
        d = out.setdefault(pack, {"copyright": holder, "licence": licence, "models": 0, "creators": set()})
        d["models"] += 1
        if e.get("creator"):
            d["creators"].add(e["creator"])
    return {k: {**v, "creators": sorted(v["creators"])} for k, v in sorted(out.items())}


def load_furniture(entries: Sequence[dict[str, Any]]) -> list[tuple[np.ndarray, np.ndarray, dict[str, Any]]]:
    """Read the OBJ models (y-up) and flip them to our -y-up frame: (vertices, faces, entry); broken ones skipped."""
    import trimesh

    loaded = []
    for e in entries:
        try:
            with zipfile.ZipFile(e["archive"]) as z:
                raw = z.read(e["model"].lstrip("/"))
            mesh = trimesh.load(io.BytesIO(raw), file_type="obj", force="mesh", process=False)
            if len(mesh.faces) == 0:
                continue
        except Exception:  # noqa: BLE001 - a broken model is skipped
            continue
        loaded.append((np.asarray(mesh.vertices, np.float64) * np.array([1.0, -1.0, 1.0]), mesh.faces, e))
    return loaded


def pose_furniture(loaded, rng: np.random.Generator, copies: int = 1) -> list[tuple[Any, int, str]]:
    """Models from :func:`load_furniture` under a random yaw each, normalised; ``copies`` > 1: every model again
    under a new random yaw (copy c of all models after copy c - 1)."""
    import trimesh

    out = []
    for _ in range(copies):
        for v, faces, e in loaded:
            a = rng.uniform(0, 2 * np.pi)
            rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
            mesh = trimesh.Trimesh(v @ rot.T, faces, process=False)
            out.append((normalise(mesh, 0.85), e["label"], e["name"]))
    return out


def furniture_meshes(
    entries: Sequence[dict[str, Any]], rng: np.random.Generator, copies: int = 1
) -> list[tuple[Any, int, str]]:
    """Load the OBJ models, random yaw, normalise (:func:`load_furniture` then :func:`pose_furniture`)."""
    return pose_furniture(load_furniture(entries), rng, copies)


def furniture_split(entries: Sequence[dict[str, Any]], test_fraction: float = 0.15):
    """(train, test) catalogue entries: per class, models ordered by a hash of their archive and path; about
    ``test_fraction`` of each class is held out."""
    test: list[dict[str, Any]] = []
    for c in range(len(FURNITURE_CLASSES)):
        members = sorted(
            (e for e in entries if e["label"] == c),
            key=lambda e: hashlib.md5((e["pack"] + e["model"]).encode()).hexdigest(),
        )
        test += members[: max(1, int(round(test_fraction * len(members))))] if members else []
    return [e for e in entries if e not in test], test


def make_furniture(
    seed: int = 0,
    test_fraction: float = 0.15,
    progress=None,
    token=None,
    train_copies: int = 1,
    cameras: Sequence[Sequence[float]] | None = None,
):
    """(train, test) ShapeSets of furniture; whole models are held out (by a hash of their name).

    ``train_copies`` > 1: the training models again under further random yaws (more pictures of the same
    models; the held-out set is the same as with 1). ``info["models"]``: models per copy (shape i is model
    i % models)."""
    train, test = furniture_split(furniture_catalog(), test_fraction)
    rng = np.random.default_rng(seed)
    train_loaded = load_furniture(train)  # read once, posed for every copy
    meshes = {"train": pose_furniture(train_loaded, rng)}
    n_models = len(meshes["train"])
    meshes["test"] = furniture_meshes(test, rng)  # drawn before the copies: the same held-out set
    if train_copies > 1:
        meshes["train"] += pose_furniture(train_loaded, rng, copies=train_copies - 1)
    sets = []
    for part, ents in (("train", train), ("test", test)):
        info = {"dataset": "furniture", "part": part, "creators": sorted({e["creator"] for e in ents})}
        if part == "train":
            info.update(models=n_models, copies=train_copies)
        sets.append(
            build_set(
                meshes[part],
                FURNITURE_CLASSES,
                cameras=cameras,
                progress=progress,
                token=token,
                novel_cameras=None if part == "test" else [],
                info=info,
            )
        )
    return sets[0], sets[1]


# ------------------------------------------------------------------------------------------ caching
def cache_dir() -> Path:
    from explorer.core.paths import cache_dir as data_cache

    return data_cache() / "shapes3d"


def load_dataset(
    name: str,
    n_train: int = 2000,
    n_test: int = 250,
    progress=None,
    token=None,
    folder: Path | None = None,
    train_copies: int = 1,
    rig: str = "axes",
    shapes: str | Path | None = None,
) -> tuple[ShapeSet, ShapeSet]:
    """(train, test) ShapeSets, built once and cached as .npz under the cache folder.

    ``train_copies`` (furniture): pictures of the training models under that many random yaws.
    ``rig``: the training cameras, a key of ``model.RIGS``; the shapes are the same for any rig.
    ``shapes`` (modelnet): the folder of ModelNet grids (``CLASS.npy.gz``)."""
    from explorer.core.errors import UserError

    from .model import RIGS

    folder = folder or cache_dir()
    if rig not in RIGS:
        raise UserError(f"unknown camera rig '{rig}' (choose {', '.join(RIGS)})")
    cams = RIGS[rig]
    rig_tag = "" if rig == "axes" else f"_{len(cams)}cams"
    tags = None
    if name == "primitives":
        tag = f"primitives_v{DATA_VERSION}_{n_train}_{n_test}{rig_tag}"
        makers = (
            lambda: make_primitives(n_train, seed=1, progress=progress, token=token, novel=False, cameras=cams),
            lambda: make_primitives(n_test, seed=2, progress=progress, token=token, cameras=cams),
        )
    elif name == "furniture":
        tag = f"furniture_v{DATA_VERSION}b{rig_tag}"
        if train_copies > 1:  # the held-out file is the same for any number of copies
            tags = (f"{tag}_x{train_copies}", tag)
        both = {}

        def mk(i):
            if not both:
                both["sets"] = make_furniture(progress=progress, token=token, train_copies=train_copies, cameras=cams)
            return both["sets"][i]

        makers = (lambda: mk(0), lambda: mk(1))
    elif name == "modelnet":
        if shapes is None:
            raise UserError("--dataset modelnet needs --shapes DIR (the folder of ModelNet CLASS.npy.gz grids)")
        src = Path(shapes)
        files = sorted(src.glob("*.npy.gz")) + sorted(src.glob("*.npy")) if src.is_dir() else []
        if not files:
            raise UserError(f"{src}: no ModelNet grids (CLASS.npy.gz files) found there")
        key = json.dumps([[f.name, f.stat().st_size] for f in files])
        tag = f"modelnet_v{DATA_VERSION}_{hashlib.md5(key.encode()).hexdigest()[:10]}{rig_tag}"
        both = {}

        def mk(i):
            if not both:
                both["sets"] = make_modelnet(src, cameras=cams, progress=progress, token=token)
            return both["sets"][i]

        makers = (lambda: mk(0), lambda: mk(1))
    else:
        raise UserError(f"unknown dataset '{name}' (choose primitives, furniture or modelnet)")
    out = []
    for part, make, t in zip(("train", "test"), makers, tags or (tag, tag)):
        p = folder / f"{t}_{part}.npz"
        if p.exists():
            out.append(ShapeSet.load(p))
        else:
            s = make()
            s.save(p)
            out.append(s)
    return out[0], out[1]


# ------------------------------------------------------------------------------------------ voxel grids
# Grids from other collections (ModelNet, or any folder of CLASS_ID.npy files) use the exchange convention of
# `nips-explorer eval shapes3d --voxels`: a cubic boolean array indexed [x, y, z] with y up and the shape centred.
# The model's own frame is (z, y, x) with y DOWN (model.py); ``grid_to_internal`` is the proper rotation
# (180 degrees about x: y -> -y, z -> -z) between the two, so nothing is mirrored and the front of a shape (+z in
# the exchange frame, as in OpenGL) faces the input camera.
MODELNET_CLASSES = ("chair", "monitor")


def grid_to_internal(grid: np.ndarray) -> np.ndarray:
    """An exchange grid [x, y(up), z] -> the model's frame [z, y(down), x] (a rotation, no mirror)."""
    g = np.asarray(grid)
    return np.ascontiguousarray(np.flip(np.transpose(g, (2, 1, 0)), axis=(0, 1)))


def internal_to_grid(vol: np.ndarray) -> np.ndarray:
    """Inverse of :func:`grid_to_internal`."""
    v = np.flip(np.asarray(vol), axis=(0, 1))
    return np.ascontiguousarray(np.transpose(v, (2, 1, 0)))


def _overlap(n: int, r: int) -> np.ndarray:
    """(r, n) float32: 1 where output cell j (of r over [0, 1]) and input cell i (of n) overlap (by more than a
    rounding error), else 0."""
    lo_o, hi_o = np.arange(r) / r, (np.arange(r) + 1) / r
    lo_i, hi_i = np.arange(n) / n, (np.arange(n) + 1) / n
    ov = np.minimum(hi_o[:, None], hi_i[None]) - np.maximum(lo_o[:, None], lo_i[None])
    return (ov > 1e-3 / max(n, r)).astype(np.float32)


def resample_grid(grid: np.ndarray, res: int) -> np.ndarray:
    """A cubic boolean grid of any size -> (res, res, res) bool; axes kept.

    A coarse cell is occupied when ANY finer cell it overlaps is (max-pooling, so one-voxel legs and surfaces
    survive; a solid grows by under one coarse cell at most); a finer cell copies the coarse cell it lies in."""
    g = np.asarray(grid).astype(bool)
    n = g.shape[0]
    if g.ndim != 3 or g.shape != (n, n, n):
        raise ValueError(f"not a cubic grid: shape {g.shape}")
    if n == res:
        return g.copy()
    if res % n == 0:
        f = res // n
        return g.repeat(f, 0).repeat(f, 1).repeat(f, 2)
    if n % res == 0:
        f = n // res
        return g.reshape(res, f, res, f, res, f).any(axis=(1, 3, 5))
    a = _overlap(n, res)
    out = np.einsum("ai,bj,ck,ijk->abc", a, a, a, g.astype(np.float32), optimize=True)
    return out > 0.5


def _bounds(g: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The occupied voxels' bounding box per axis: (first, last) indices as int arrays; None for an empty grid."""
    idx = np.nonzero(g)
    if not len(idx[0]):
        return None
    return np.array([int(i.min()) for i in idx]), np.array([int(i.max()) for i in idx])


def centre_grid(grid: np.ndarray) -> np.ndarray:
    """Shift the occupied voxels by whole voxels so that their bounding box is centred (empty grids unchanged)."""
    g = np.asarray(grid, bool)
    box = _bounds(g)
    if box is None:
        return g.copy()
    out = np.zeros_like(g)
    n = g.shape[0]
    shifts = [int((n - 1 - int(hi) - int(lo)) // 2) for lo, hi in zip(*box)]
    out[tuple(i + s for i, s in zip(np.nonzero(g), shifts))] = True
    return out


def extent_share(grid: np.ndarray) -> float:
    """The largest side of the occupied voxels' bounding box over the grid's side (1.0: the shape fills the cube
    along one axis at least, as every ModelNet grid does); 0 for an empty grid."""
    g = np.asarray(grid, bool)
    box = _bounds(g)
    return 0.0 if box is None else int((box[1] - box[0]).max() + 1) / g.shape[0]


def _sample_grid(vol: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Trilinear samples of an exchange volume [x, y, z] at points (..., 3) in its [-1, 1]^3 cube (x, y, z),
    0 outside it."""
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(np.asarray(vol, np.float32))[None, None]  # (1, 1, X, Y, Z): grid_sample reads (z, y, x)
    g = torch.as_tensor(points[..., ::-1].copy(), dtype=torch.float32).reshape(1, 1, 1, -1, 3)
    out = F.grid_sample(t, g, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(points.shape[:-1]).numpy()


def _cell_centres(n: int) -> np.ndarray:
    lin = (np.arange(n) + 0.5) / n * 2.0 - 1.0
    return np.stack(np.meshgrid(lin, lin, lin, indexing="ij"), -1)


@dataclass(frozen=True)
class Framing:
    """Where a zoomed cube sits in a grid's own cube ([-1, 1]^3, exchange axes): its centre and half-side."""

    centre: tuple[float, float, float]
    half: float

    def zoom(self, grid: np.ndarray, res: int = FINE_RES) -> np.ndarray:
        """The grid resampled into the zoomed cube at ``res`` -> bool (res, res, res)."""
        pts = np.asarray(self.centre) + self.half * _cell_centres(res)
        return _sample_grid(np.asarray(grid, np.float32), pts) > 0.5

    def back(self, vol: np.ndarray, res: int) -> np.ndarray:
        """A volume in the zoomed cube (exchange axes, any size) -> its values at the grid's own cells at ``res``."""
        pts = (_cell_centres(res) - np.asarray(self.centre)) / self.half
        return _sample_grid(vol, pts)


def frame_grid(grid: np.ndarray, share: float, res: int = 32) -> Framing | None:
    """The zoom that gives a grid the framing a model was trained with: its bounding box centred, its largest side
    ``share`` of the cube (a camera framing the object, as for a photo). None when the grid has that framing
    already (largest side within 5% of it, centred within half a voxel at ``res``) or is empty."""
    g = np.asarray(grid, bool)
    n = g.shape[0]
    box = _bounds(g)
    if box is None or share <= 0:
        return None
    lo, hi = box[0].astype(np.float64), box[1] + 1.0
    centre = (lo + hi) / n - 1.0
    half = float((hi - lo).max() / n / share)
    if abs(half - 1.0) <= 0.05 and np.abs(centre).max() <= 1.0 / res:
        return None
    return Framing((float(centre[0]), float(centre[1]), float(centre[2])), half)


def fine_internal(grid: np.ndarray, fill: bool = True) -> np.ndarray:
    """The FINE_RES^3 grid in the model's frame that the renderer draws for an exchange grid.

    ``fill``: enclosed cavities filled first (rendering only: pictures show the outer surface either way, but a
    filled solid stays opaque under the trilinear resampling of the diagonal cameras, a one-voxel shell does not).
    """
    from scipy import ndimage

    g = resample_grid(grid, FINE_RES)
    if fill:
        g = ndimage.binary_fill_holes(g)
    return grid_to_internal(g)


def render_grids(
    grids: Sequence[np.ndarray], cameras: Sequence[Sequence[float]], image_size: int = 32, fill: bool = True
):
    """Pictures (N, K, H, W) uint8 of exchange grids, rendered by the project's renderer from ``cameras``."""
    out = []
    for i in range(0, len(grids), 16):
        fine = np.stack([fine_internal(g, fill) for g in grids[i : i + 16]])
        out.append(np.round(render_fine(fine, cameras, image_size) * 255).astype(np.uint8))
    return np.concatenate(out) if out else np.zeros((0, len(cameras), image_size, image_size), np.uint8)


def load_modelnet(folder: str | Path) -> dict[str, list[tuple[str, np.ndarray]]]:
    """ModelNet grids per class from ``CLASS.npy.gz`` files ((N, 1, 32, 32, 32) 0/1): {class: [(name, grid)]}.

    Each grid comes back in the exchange convention [x, y(up), z], centred; empty grids are skipped. In the
    distributed files the third axis is up (checked on renders of chairs and monitors: legs and stands at its
    low end), the first and second are horizontal; the front faces +/- the second axis depending on the class,
    which the training's quarter-turn augmentation makes immaterial.
    """
    import gzip

    from explorer.core.errors import UserError

    root = Path(folder)
    files = sorted(root.glob("*.npy.gz")) + sorted(root.glob("*.npy"))
    if not root.is_dir() or not files:
        raise UserError(f"{root}: no ModelNet grids (CLASS.npy.gz files) found there")
    out: dict[str, list[tuple[str, np.ndarray]]] = {}
    for f in files:
        # CLASS.npy.gz, or CLASS.SOURCE.npy.gz for a class's grids from another collection (their names carry
        # the source, so the split of the CLASS.npy.gz grids stays as it is)
        cls, *rest = f.name.split(".")
        source = rest[0] if len(rest) > 1 and rest[0] not in ("npy", "gz") else ""
        try:
            with gzip.open(f) if f.suffix == ".gz" else open(f, "rb") as fh:
                a = np.load(fh, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UserError(f"{f.name}: not a NumPy array file ({exc})") from None
        a = np.asarray(a)
        if a.ndim == 5:
            a = a[:, 0]
        if a.ndim != 4 or len(set(a.shape[1:])) != 1:
            raise UserError(f"{f.name}: expected (N, 1, R, R, R) grids, found shape {a.shape}")
        shapes = []
        for i, raw in enumerate(a > 0.5):
            if not raw.any():
                continue
            g = np.transpose(raw, (0, 2, 1))  # raw (a0, a1, a2 = up) -> (x, y = up, z)
            shapes.append((f"{cls}_{source}{i:04d}", centre_grid(g)))
        out.setdefault(cls, []).extend(shapes)
    return out


def furniture_grids(res: int = 32, progress=None, token=None) -> dict[str, list[np.ndarray]]:
    """Every Sweet Home 3D furniture model of :func:`furniture_catalog` as a ModelNet-style grid: upright as
    modelled, its bounding box centred and its largest side filling the cube (as every ModelNet grid does),
    voxelised solid at ``res``; exchange axes [x, y(up), z]. {class: [grid]} in catalogue order."""
    import trimesh

    loaded = load_furniture(furniture_catalog())
    out: dict[str, list[np.ndarray]] = {}
    for k, (v, faces, e) in enumerate(loaded):
        if token is not None:
            token.check()
        lo, hi = v.min(0), v.max(0)
        mesh = trimesh.Trimesh(
            (v - (lo + hi) / 2.0) * (2.0 * (1 - 1e-6) / float((hi - lo).max())), faces, process=False
        )
        occ = voxelize(mesh, res)  # (z, y, x) of the loader's frame (x, -y, z)
        grid = np.flip(internal_to_grid(occ), 2)  # the loader's y flip is undone by the frame change, z is not
        out.setdefault(FURNITURE_CLASSES[e["label"]], []).append(np.ascontiguousarray(grid))
        if progress:
            progress((k + 1) / len(loaded), f"model {k + 1}/{len(loaded)}")
    return out


def write_modelnet_style(grids: dict[str, list[np.ndarray]], folder: str | Path, source: str) -> int:
    """Write {class: [exchange grid]} as CLASS.SOURCE.npy.gz files in ModelNet's layout ((N, 1, R, R, R), the third
    axis up), which :func:`load_modelnet` reads beside the ModelNet files. Returns the number of grids."""
    import gzip

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    n = 0
    for cls, gs in grids.items():
        a = np.stack([np.transpose(g, (0, 2, 1)) for g in gs])[:, None].astype(np.uint8)
        with gzip.open(root / f"{cls}.{source}.npy.gz", "wb") as fh:
            np.save(fh, a)
        n += len(gs)
    return n


def hashed_split(name: str, valid: float = 0.1, test: float = 0.15) -> str:
    """'train', 'valid' or 'test' for a whole shape, from a hash of its name (stable across runs and machines)."""
    u = int(hashlib.md5(name.encode()).hexdigest()[:8], 16) / 16**8
    return "test" if u < test else "valid" if u < test + valid else "train"


def make_modelnet(
    folder: str | Path,
    cameras: Sequence[Sequence[float]] | None = None,
    image_size: int = 32,
    fill: bool = True,
    progress=None,
    token=None,
) -> tuple[ShapeSet, ShapeSet]:
    """(train, test) ShapeSets of ModelNet grids, whole shapes held out by :func:`hashed_split`.

    The train set holds the 'valid' shapes first (``info["valid"]`` of them: the trainer's validation ELBO,
    pictures only), then the 'train' shapes. Pictures are rendered from the grids (interior filled when
    ``fill``); the 32^3 voxels are the grids as they are (surfaces unfilled): evaluation only."""
    from .model import NOVEL_CAMERAS, TRAIN_CAMERAS

    cams = [list(c) for c in (cameras or TRAIN_CAMERAS)]
    by_class = load_modelnet(folder)
    class_names = sorted(by_class)
    parts: dict[str, list[tuple[str, int, np.ndarray]]] = {"valid": [], "train": [], "test": []}
    for c, cls in enumerate(class_names):
        for name, g in by_class[cls]:
            parts[hashed_split(name)].append((name, c, g))
    sets = []
    total = sum(len(v) for v in parts.values())
    done = 0
    for part_names, novel in ((("valid", "train"), []), (("test",), NOVEL_CAMERAS)):
        items = [x for p in part_names for x in parts[p]]
        allcams = cams + [list(c) for c in novel]
        views = []
        for i in range(0, len(items), 64):
            if token is not None:
                token.check()
            views.append(render_grids([g for _, _, g in items[i : i + 64]], allcams, image_size, fill))
            done += len(items[i : i + 64])
            if progress:
                progress(done / total, f"shape {done}/{total}")
        info: dict[str, Any] = {"dataset": "modelnet", "source": str(folder), "fill_for_rendering": fill}
        if "valid" in part_names:
            info["valid"] = len(parts["valid"])
        sets.append(
            ShapeSet(
                views=np.concatenate(views) if views else np.zeros((0, len(allcams), image_size, image_size), np.uint8),
                labels=np.asarray([c for _, c, _ in items], np.int64),
                voxels=np.stack([grid_to_internal(resample_grid(g, 32)) for _, _, g in items])
                if items
                else np.zeros((0, 32, 32, 32), bool),
                class_names=class_names,
                cameras=cams,
                novel_cameras=[list(c) for c in novel],
                names=[n for n, _, _ in items],
                info=info,
            )
        )
    return sets[0], sets[1]


def export_voxels(test: ShapeSet, folder: str | Path) -> int:
    """Write a ShapeSet's ground truth as an `eval --voxels` folder: CLASS_NAME.npy exchange grids. Returns N."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for i, vox in enumerate(test.voxels):
        cls = test.class_names[int(test.labels[i])]
        name = test.names[i] if test.names else f"{cls}_{i:04d}"
        if not name.startswith(cls + "_"):
            name = f"{cls}_{name}"
        np.save(out / f"{name}.npy", internal_to_grid(vox))
    return len(test)


def load_voxel_folder(folder: str | Path) -> list[tuple[str, str, np.ndarray]]:
    """The grids of an `eval --voxels` folder: (class, name, grid [x, y(up), z] bool), sorted by file name.

    Every ``*.npy`` file must hold one cubic 3D array (bool or 0/1 numbers, any size); its class is the file
    name before the first underscore."""
    from explorer.core.errors import UserError

    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"{root}: not a folder (expected a folder of CLASS_ID.npy voxel grids)")
    files = sorted(root.glob("*.npy"))
    if not files:
        raise UserError(f"{root}: no .npy voxel grids found (expected files named CLASS_ID.npy)")
    out = []
    for f in files:
        try:
            a = np.load(f, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UserError(f"{f.name}: not a NumPy .npy array ({exc})") from None
        a = np.squeeze(np.asarray(a))
        if a.ndim != 3 or len(set(a.shape)) != 1 or a.shape[0] < 2:
            raise UserError(f"{f.name}: expected one cubic occupancy grid (R x R x R), found shape {a.shape}")
        if a.dtype != bool:
            if not np.issubdtype(a.dtype, np.number) or not np.all(np.isfinite(a)):
                raise UserError(f"{f.name}: the grid must hold booleans or 0/1 numbers")
            a = a > 0.5
        out.append((f.stem.split("_", 1)[0], f.stem, a))
    return out
