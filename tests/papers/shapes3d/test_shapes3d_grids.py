"""Voxel grids from other collections (ModelNet, `eval --voxels`) and the rotating writer: headless, tiny, CPU."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

from explorer.papers.shapes3d import data as D
from explorer.papers.shapes3d import model as M

torch.set_num_threads(1)

TINY = dict(steps=2, hidden=32, z_dim=4, patch=8, feat=32, ctx_dim=4)


def _raw_l_shape(n: int = 32) -> np.ndarray:
    """An L in the ModelNet files' layout (axis 0, axis 1 horizontal; axis 2 up), off centre: a tall post
    standing on a foot that reaches out along axis 1 at the bottom."""
    g = np.zeros((n, n, n), bool)
    g[4:8, 2:6, 0:24] = True  # the post: from the floor (axis 2 = 0) up to 24
    g[4:8, 2:20, 0:4] = True  # the foot, along axis 1, on the floor
    return g


def _write_modelnet(folder, grids_by_class):
    folder.mkdir(parents=True, exist_ok=True)
    for cls, grids in grids_by_class.items():
        a = np.stack(grids)[:, None].astype(np.float64)
        with gzip.open(folder / f"{cls}.npy.gz", "wb") as fh:
            np.save(fh, a)


def test_modelnet_loader_keeps_y_up_centres_and_skips_empty(tmp_path):
    _write_modelnet(tmp_path / "mn", {"chair": [_raw_l_shape(), np.zeros((32, 32, 32))]})
    shapes = D.load_modelnet(tmp_path / "mn")
    assert list(shapes) == ["chair"] and len(shapes["chair"]) == 1  # the empty grid is skipped
    name, g = shapes["chair"][0]
    assert name == "chair_0000" and g.shape == (32, 32, 32)
    # exchange frame [x, y, z], y up: the post is tall along y, the foot sits at the LOW end of y
    xs, ys, zs = np.nonzero(g)
    assert np.ptp(ys) + 1 == 24 and np.ptp(xs) + 1 == 4 and np.ptp(zs) + 1 == 18
    foot_y = ys[zs == zs.max()]
    assert foot_y.max() < ys.min() + 4
    # centred (bounding box)
    for a in (xs, ys, zs):
        assert abs((a.min() + a.max()) / 2 - 15.5) <= 0.5
    # the model's frame has y DOWN: the foot is at the high end of the internal y axis, and the picture from the
    # input camera shows the post upright with its foot at the bottom rows
    v = D.grid_to_internal(g)
    zi, yi, xi = np.nonzero(v)
    assert yi[zi == zi.min()].min() > yi.max() - 4 or yi[zi == zi.max()].min() > yi.max() - 4
    assert np.array_equal(D.internal_to_grid(v), g)
    pic = D.render_grids([g], [[90.0, 0.0]])[0, 0] > 0
    rows = np.nonzero(pic.any(1))[0]
    wide = [int(pic[r].sum()) for r in rows]
    assert wide[-1] > 2 * wide[0]  # the foot (wide) is in the bottom rows of the side picture


def test_grid_to_internal_is_a_rotation_not_a_mirror():
    rng = np.random.default_rng(0)
    g = rng.random((6, 6, 6)) > 0.5
    # a proper rotation keeps the handedness: compare with applying two 180-degree flips in the model frame
    v = D.grid_to_internal(g)
    assert np.array_equal(v, np.transpose(g, (2, 1, 0))[::-1, ::-1, :])


def test_resample_grid_keeps_thin_parts_and_any_size():
    g = np.zeros((64, 64, 64), bool)
    g[:, 31, :] = True  # a one-voxel plane
    assert D.resample_grid(g, 32)[:, 15, :].all()
    g48 = np.zeros((48, 48, 48), bool)
    g48[10:20, 10:20, 10:20] = True
    r = D.resample_grid(g48, 32)
    assert r.shape == (32, 32, 32) and r[8:12, 8:12, 8:12].all() and not r[0].any()
    up = D.resample_grid(np.ones((16, 16, 16), bool), 32)
    assert up.all()
    with pytest.raises(ValueError):
        D.resample_grid(np.zeros((4, 4, 5)), 32)


def test_hashed_split_is_stable_and_holds_out_whole_shapes():
    names = [f"chair_{i:04d}" for i in range(400)]
    parts = [D.hashed_split(n) for n in names]
    assert parts == [D.hashed_split(n) for n in names]
    frac = {p: parts.count(p) / len(parts) for p in ("train", "valid", "test")}
    assert 0.05 < frac["test"] < 0.25 and 0.03 < frac["valid"] < 0.2 and frac["train"] > 0.6


def test_identity_rotation_writer_equals_the_scale_shift_writer():
    torch.manual_seed(0)
    rot = M.VolumeWriter(32, 8, 16, "mlp", rotation=True)
    with torch.no_grad():
        rot.where.weight.normal_(0.0, 0.5)
        rot.fc.weight.normal_(0.0, 0.5)
    old = M.VolumeWriter(32, 8, 16, "mlp")
    old.load_state_dict({k: v for k, v in rot.state_dict().items() if not k.startswith("turn")})
    h = torch.randn(3, 32)
    a, _ = rot(h)
    b, _ = old(h)
    assert b.abs().max() > 0.01
    assert torch.allclose(a, b, atol=1e-5)


def test_rotation_writer_turns_the_patch():
    # an elongated patch along x, turned 90 degrees about y, lies along z
    patch = torch.zeros(1, 8, 8, 8)
    patch[0, 3:5, 3:5, :] = 1.0  # (z, y, x): a bar along x
    scale, shift = torch.ones(1, 3), torch.zeros(1, 3)
    out0 = M.place_patch(patch, scale, shift, torch.eye(3).unsqueeze(0), 8)[0, 0]
    turned = M.place_patch(patch, scale, shift, M.axis_angle_matrix(torch.tensor([[0.0, np.pi / 2, 0.0]])), 8)[0, 0]
    assert torch.allclose(out0, patch[0], atol=1e-5)
    assert torch.allclose(turned, patch[0].permute(2, 1, 0), atol=1e-4)
    r = M.axis_angle_matrix(torch.randn(5, 3))
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(3).expand(5, 3, 3), atol=1e-5)


def test_old_checkpoints_load_and_score_as_before(tmp_path):
    from explorer.core.checkpoints import load_checkpoint, save_checkpoint
    from explorer.core.paths import bundled
    from explorer.papers.shapes3d import SPEC
    from explorer.papers.shapes3d.infer import load_for_app

    torch.manual_seed(0)
    old = M.build(dict(TINY))
    cfg = old.config()
    assert "writer_rotation" not in cfg  # a scale + shift model writes the same config as before
    p = tmp_path / "old.safetensors"
    save_checkpoint(p, old.state_dict(), paper="shapes3d", model_config=cfg)
    model, _ = load_for_app(str(p), "cpu")
    assert not model.writer_rotation and model.writer.turn is None
    x = torch.rand(2, 32, 32)
    ref = old.eval()(x, None, sample=False)["logits"]
    assert torch.allclose(model(x, None, sample=False)["logits"], ref, atol=1e-6)
    # the same weights in a rotating writer (as --init does) start from the same shapes
    rot = M.build({**cfg, "writer_rotation": True}).eval()
    missing = rot.load_state_dict(load_checkpoint(p, expected_paper="shapes3d").state_dict, strict=False).missing_keys
    assert sorted(missing) == ["writer.turn.bias", "writer.turn.weight"]
    assert torch.allclose(rot(x, None, sample=False)["logits"], ref, atol=1e-5)
    if bundled(SPEC.default_checkpoint).exists():
        m, meta = load_for_app(str(bundled(SPEC.default_checkpoint)), "cpu")
        assert not m.writer_rotation and meta.model_config.get("writer", "mlp") == "mlp"


@pytest.fixture
def tiny_checkpoint(tmp_path):
    from explorer.core.checkpoints import save_checkpoint

    torch.manual_seed(1)
    model = M.build(dict(TINY, class_names=["chair", "monitor"], writer_rotation=True))
    p = tmp_path / "tiny.safetensors"
    save_checkpoint(p, model.state_dict(), paper="shapes3d", model_config=model.config(), data={"name": "modelnet"})
    return p


def test_eval_voxels_json_on_grids_of_two_sizes_and_an_unknown_class(tmp_path, tiny_checkpoint, capsys):
    from explorer.cli import main

    vox = tmp_path / "vox"
    vox.mkdir()
    a = np.zeros((24, 24, 24), bool)
    a[6:18, 2:22, 8:16] = True
    b = np.zeros((40, 40, 40), np.uint8)
    b[10:30, 5:35, 10:30] = 1
    np.save(vox / "chair_a1.npy", a)
    np.save(vox / "vase_0001.npy", b)  # a class the model never saw
    # a ModelNet-style folder for the nearest-picture baseline (its training split)
    _write_modelnet(tmp_path / "mn", {"chair": [_raw_l_shape()] * 6, "monitor": [np.roll(_raw_l_shape(), 5, 0)] * 6})
    args = ["--device", "cpu", "eval", "shapes3d", "--checkpoint", str(tiny_checkpoint), "--voxels", str(vox)]
    args += ["--data-dir", str(tmp_path / "cache"), "--json"]
    assert main(args + ["--shapes", str(tmp_path / "mn")]) == 0
    out = json.loads(capsys.readouterr().out)
    keys = {"iou", "iou_filled", "iou_baseline", "iou_nearest", "iou_nearest_carved"}
    assert set(out) == keys | {"shapes", "per_class", "level", "readout", "reframed"} and out["shapes"] == 2
    assert out["level"] == 0.5 and out["readout"] == "occupancy level 0.5"  # a checkpoint without a chosen read-out
    assert set(out["per_class"]) == {"chair", "vase"}
    assert out["per_class"]["chair"]["conditioned"] and not out["per_class"]["vase"]["conditioned"]
    for r in [out, *out["per_class"].values()]:
        assert all(0.0 <= r[k] <= 1.0 for k in keys)
    assert out["per_class"]["vase"]["iou_baseline"] > 0.3  # the visual hull of a box is most of the box
    # without a training collection the nearest baseline is null, the rest unchanged
    assert main(args) == 0
    out2 = json.loads(capsys.readouterr().out)
    assert out2["iou_nearest"] is None and out2["iou_nearest_carved"] is None
    assert out2["iou_baseline"] == out["iou_baseline"]
    # bad input is one line and exit 2
    np.save(vox / "bad_1.npy", np.zeros((3, 4, 5)))
    assert main(args) == 2
    assert "bad_1.npy" in capsys.readouterr().err


def test_export_voxels_writes_the_held_out_modelnet_shapes(tmp_path, capsys):
    from explorer.cli import main

    grids = [np.roll(_raw_l_shape(), i, 0) for i in range(12)]
    _write_modelnet(tmp_path / "mn", {"chair": grids})
    out = tmp_path / "held"
    rc = main(
        ["eval", "shapes3d", "--dataset", "modelnet", "--shapes", str(tmp_path / "mn")]
        + ["--data-dir", str(tmp_path / "cache"), "--export-voxels", str(out)]
    )
    assert rc == 0
    files = sorted(out.glob("*.npy"))
    expected = [f"chair_{i:04d}" for i in range(12) if D.hashed_split(f"chair_{i:04d}") == "test"]
    assert [f.stem for f in files] == expected
    loaded = D.load_voxel_folder(out)
    assert all(c == "chair" and g.shape == (32, 32, 32) for c, _, g in loaded)


def test_export_gallery_takes_held_out_test_shapes_per_class(tmp_path, capsys):
    from explorer.cli import main
    from explorer.papers.shapes3d.infer import load_gallery

    chairs = [np.roll(_raw_l_shape(), i, 0) for i in range(16)]
    monitors = [np.roll(_raw_l_shape(), i, 1) for i in range(16)]
    _write_modelnet(tmp_path / "mn", {"chair": chairs, "monitor": monitors})
    out = tmp_path / "gallery_modelnet.npz"
    args = ["eval", "shapes3d", "--dataset", "modelnet", "--shapes", str(tmp_path / "mn")]
    args += ["--data-dir", str(tmp_path / "cache"), "--export-gallery", str(out), "--gallery-counts", "2,1"]
    assert main(args) == 0
    g = load_gallery(out)
    assert g["class_names"] == ["chair", "monitor"] and list(g["labels"]) == [0, 0, 1]
    test_chairs = [f"chair_{i:04d}" for i in range(16) if D.hashed_split(f"chair_{i:04d}") == "test"]
    assert g["names"][:2] == test_chairs[:2] and D.hashed_split(g["names"][2]) == "test"
    assert g["views"].shape[1:] == (9, 32, 32) and g["voxels"].shape[1:] == (32, 32, 32)
    assert main(args[:-1] + ["2,x"]) == 2  # a bad count: one line
    assert "--gallery-counts" in capsys.readouterr().err
    assert main(args[:-1] + ["monitor=1,chair=1"]) == 0  # named counts: the gallery in the order given
    g = load_gallery(out)
    assert list(g["labels"]) == [1, 0] and g["names"][1] == test_chairs[0]
    assert main(args[:-1] + ["sofa=1"]) == 2 and "no class sofa" in capsys.readouterr().err


@pytest.mark.parametrize("dataset", ["primitives", "furniture", "modelnet"])
def test_bundled_galleries_hold_a_picture_and_a_grid_per_item(dataset):
    from explorer.papers.shapes3d.infer import gallery_path, load_gallery

    p = gallery_path(dataset)
    if not p.exists():
        pytest.skip(f"no bundled {p.name}")
    g = load_gallery(p)
    n = len(g["labels"])
    assert n >= 10 and len(g["names"]) == n and g["views"].shape[0] == g["voxels"].shape[0] == n
    for i in range(n):
        assert g["views"][i, 0].max() > 50, f"{g['names'][i]}: blank input picture"
        assert g["voxels"][i].sum() > 20, f"{g['names'][i]}: empty ground truth"
    if dataset == "modelnet":
        assert {"chair", "monitor", "table", "sofa"} <= {g["class_names"][c] for c in g["labels"]}
        assert all(D.hashed_split(name) == "test" for name in g["names"]), "only held-out TEST shapes"
        licences = (p.parent / "LICENSES.md").read_text()
        assert "ModelNet10" in licences and "Sweet Home 3D" in licences and p.name in licences


def test_eval_record_writes_the_held_out_numbers_into_the_checkpoint(tmp_path, tiny_checkpoint, capsys):
    from explorer.cli import main
    from explorer.core.checkpoints import load_checkpoint

    grids = [np.roll(_raw_l_shape(), i, 0) for i in range(12)]
    _write_modelnet(tmp_path / "mn", {"chair": grids, "monitor": [np.roll(g, 3, 1) for g in grids]})
    base = ["--device", "cpu", "eval", "shapes3d", "--checkpoint", str(tiny_checkpoint), "--json"]
    base += ["--shapes", str(tmp_path / "mn"), "--data-dir", str(tmp_path / "cache")]
    assert main(base + ["--dataset", "modelnet", "--record"]) == 0
    out = json.loads(capsys.readouterr().out)
    m = load_checkpoint(tiny_checkpoint).meta.metrics
    assert m["headline"] == "test_iou" and m["test_iou"] == out["iou"]
    assert m["grid_framing"] == 24 / 32  # every training grid's largest side spans 24 of 32: one framing
    # the occupancy level is chosen on the validation shapes (when the hashed split gives some) and scored at
    level = m.get("iou_level", 0.5)
    assert out["level"] == level
    if "iou_level" in m:  # the read-out with the best validation IoU, at its best level
        ro = m["iou_readout"]
        name = "mirror+carve" + ("+depth" if ro["depth"] else "") if ro["carve"] else "network"
        chosen = m["iou_level_valid"][name]
        assert max(chosen.values()) == chosen[f"{level:g}"]
        best = {k: max(t.values()) for k, t in m["iou_level_valid"].items()}
        assert max(best.values()) == best[name]
        net = m["iou_level_valid"]["network"]
        assert max(net.values()) == net[f"{m['iou_level_network']:g}"]
    assert (
        m["test_iou_baseline"] == out["iou_baseline"]
        and m["per_class"]["chair"]["iou"] == out["per_class"]["chair"]["iou"]
    )
    vox = tmp_path / "held"
    assert main(base + ["--dataset", "modelnet", "--export-voxels", str(vox)]) == 0
    capsys.readouterr()
    assert main(base + ["--voxels", str(vox), "--record"]) == 0
    out2 = json.loads(capsys.readouterr().out)
    assert out2["level"] == level, "any grids are scored at the checkpoint's level"
    m2 = load_checkpoint(tiny_checkpoint).meta.metrics
    assert m2["test_iou"] == out["iou"], "the data set's numbers stay"
    assert m2["test_iou_nearest"] == out2["iou_nearest"] and m2["test_grids_iou"] == out2["iou"]
    chair = m2["per_class"]["chair"]
    assert (
        chair["iou"] == out["per_class"]["chair"]["iou"]
        and chair["iou_nearest"] == out2["per_class"]["chair"]["iou_nearest"]
    )
    assert main(base + ["--dataset", "modelnet", "--record", "--limit", "2"]) == 2  # only the whole set is recorded


def test_occupancy_level_is_chosen_on_the_shapes_given():
    from explorer.papers.shapes3d.evaluate import LEVELS, calibrate_level, occupied

    logits = torch.tensor([-3.0, -1.0, 0.0, 1.0])  # probabilities 0.047, 0.27, 0.5, 0.73
    assert occupied(logits, 0.5).tolist() == [False, False, False, True]
    assert occupied(logits, 0.2).tolist() == [False, True, True, True]
    with pytest.raises(ValueError):
        occupied(logits, 1.0)
    torch.manual_seed(0)
    model = M.build(dict(TINY))
    shapes = D.make_primitives(4, seed=5)
    level, table = calibrate_level(model, shapes, "cpu")
    assert level in LEVELS and set(table) == {f"{lv:g}" for lv in LEVELS}
    assert table[f"{level:g}"] == max(table.values())


def test_a_flipped_picture_is_the_picture_of_the_mirrored_shape():
    """The read-out's mirrored look rests on this: the renderer has no left or right."""
    shape = torch.zeros(1, 1, 32, 32, 32)
    shape[0, 0, 8:20, 10:26, 4:12] = 1.0  # off-centre, so a wrong axis shows
    shape[0, 0, 20:24, 10:14, 4:28] = 1.0
    for cam, dim in (([0.0, 0.0], 3), ([90.0, 0.0], 1), ([180.0, 0.0], 3), ([0.0, 90.0], 3)):
        th = M.camera_thetas([cam])
        assert M.mirror_dim(th[0]) == dim
        pic = M.project(shape, th)[0, 0]
        mirrored = M.project(shape.flip(dim + 1), th)[0, 0]
        assert torch.allclose(pic.flip(-1), mirrored, atol=1e-5), cam
    assert M.mirror_dim(M.camera_thetas([[45.0, 0.0]])[0]) is None  # no voxel permutation: no mirrored look


def test_read_out_mirrors_and_carves_from_the_picture_alone():
    torch.manual_seed(0)
    model = M.build(dict(TINY)).eval()
    x = torch.rand(3, model.image_size, model.image_size) * (torch.rand(3, 1, model.image_size) > 0.4)
    plain, out = M.read_out(model, x, None)
    assert torch.allclose(plain, torch.sigmoid(out["logits"][:, 0]))
    dim = M.mirror_dim(model.thetas[model.input_view])
    both, _ = M.read_out(model, x, None, mirror=True)
    flipped, _ = M.read_out(model, x.flip(-1), None, mirror=True)
    assert torch.allclose(flipped, both.flip(dim), atol=1e-6), "a mirrored picture gives the mirrored shape"
    carved, _ = M.read_out(model, x, None, mirror=True, carve=True)
    hull = M.visual_hull(x, model.thetas[model.input_view], model.res)
    assert (carved[~hull] == 0).all() and torch.allclose(carved[hull], both[hull])
    r = M.Readout.from_metrics({"iou_level": 0.1, "iou_readout": {"mirror": True, "carve": True}})
    assert (r.level, r.mirror, r.carve) == (0.1, True, True) and not r.network_only
    assert M.Readout.from_metrics({}) == M.Readout(0.5, False, False) and M.Readout().network_only
    assert "carved" in r.describe() and "0.1" in r.describe()


def _stepped_shape(n: int = 32) -> np.ndarray:
    """A grid [x, y(up), z] with three depths seen from the front: a slab, a block before it, a post behind."""
    g = np.zeros((n, n, n), bool)
    g[6:26, 4:28, 14:18] = True
    g[10:16, 8:14, 8:14] = True
    g[20:23, 18:30, 18:28] = True
    return g


def test_from_camera_undoes_to_camera_for_every_axis_camera():
    v = torch.rand(2, 1, 8, 8, 8)
    for cam in M.TRAIN_CAMERAS:
        th = M.camera_thetas([cam])[0]
        assert torch.equal(M.from_camera(M.to_camera(v, th), th), v), cam
    assert M.from_camera(v, M.camera_thetas([[45.0, 0.0]])[0]) is None


def test_depth_carving_reads_a_rendered_picture_exactly():
    """A shape voxelised at the volume's resolution: its picture shows whole voxels, every silhouette pixel is
    trusted, and carving the visual hull to the depth gives the shape's front exactly: its picture again."""
    theta = M.camera_thetas([[0.0, 0.0]])[0]
    g = _stepped_shape()
    pic = torch.from_numpy(D.render_grids([g], [[0.0, 0.0]], 32)[:, 0].astype(np.float32) / 255.0)
    hull = M.visual_hull(pic, theta, 32).float()
    carved = M.depth_carve(hull, pic, theta)
    truth = torch.from_numpy(D.grid_to_internal(g)).unsqueeze(0)
    front = M.to_camera(carved.unsqueeze(1), theta)[0, 0]
    first = front.argmax(0)  # the first filled voxel along each ray
    true_first = M.to_camera(truth.unsqueeze(1).float(), theta)[0, 0].argmax(0)
    sil = pic[0] > 0.1
    assert torch.equal(first[sil], true_first[sil]), "the first surface at the depth the picture shows"
    assert ((carved > 0.5) | ~truth).all(), "nothing of the shape is carved away"
    again = M.project(M.probs_to_logits(carved).unsqueeze(1), theta.unsqueeze(0), logits=True)[0, 0]
    assert (again - pic[0]).abs().max() < 0.02
    # and the read-out with it: every voxel in front of the surface is emptied, the surface voxel filled
    model = M.build(dict(TINY)).eval()
    probs, _ = M.read_out(model, pic, None, carve=True, depth=True)
    cam = M.to_camera(probs.unsqueeze(1), theta)[0, 0]
    k = torch.arange(32).view(32, 1, 1)
    assert (cam[(k < true_first) & sil] == 0).all() and (cam[(k == true_first) & sil] == 1).all()


def test_depth_carving_trusts_only_whole_pixels_of_a_finer_shape():
    """A shape finer than the volume: edge pixels are covered in part and look deeper than they are, so they are
    left alone; inner pixels are carved. Pictures of another size or from a turned camera: nothing changes."""
    theta = M.camera_thetas([[0.0, 0.0]])[0]
    g = np.zeros((64, 64, 64), bool)
    g[13:51, 9:55, 29:35] = True  # odd edges: the border pixels at 32 are half covered
    pic = torch.from_numpy(D.render_grids([g], [[0.0, 0.0]], 32)[:, 0].astype(np.float32) / 255.0)
    ones = torch.ones(1, 32, 32, 32)
    carved = M.to_camera(M.depth_carve(ones, pic, theta).unsqueeze(1), theta)[0, 0]
    sil = pic[0] > 0.1
    inner = sil.clone()
    inner[1:-1, 1:-1] &= sil[:-2, 1:-1] & sil[2:, 1:-1] & sil[1:-1, :-2] & sil[1:-1, 2:]
    edge = sil & ~inner
    assert edge.any() and inner.any()
    assert (carved[:, edge] == 1).all(), "a partly covered pixel is not trusted"
    assert (carved[0, inner] == 0).all(), "an inner pixel's ray is emptied in front of its surface"
    assert torch.equal(M.depth_carve(ones, pic[:, ::2, ::2], theta), ones)  # 16 px for a 32 volume
    turned = M.camera_thetas([[45.0, 0.0]])[0]
    assert torch.equal(M.depth_carve(ones, pic, turned), ones)


def test_a_photo_is_never_carved_to_depth():
    from explorer.papers.shapes3d.infer import infer_volume

    torch.manual_seed(0)
    model = M.build(dict(TINY)).eval()
    pic = D.render_grids([_stepped_shape()], [[0.0, 0.0]], 32)[0, 0].astype(np.float32) / 255.0
    r = M.Readout(0.3, True, True, 0.3, depth=True)
    photo = infer_volume(model, pic, "cpu", readout=r, turntable=0)
    rendered = infer_volume(model, pic, "cpu", readout=r, turntable=0, rendered=True)
    plain = infer_volume(model, pic, "cpu", readout=M.Readout(0.3, True, True, 0.3), turntable=0)
    assert np.array_equal(photo["occupancy"], plain["occupancy"])
    assert not np.array_equal(rendered["occupancy"], plain["occupancy"])
    assert M.Readout.from_metrics({"iou_readout": {"mirror": True, "carve": True, "depth": True}}).depth
    assert "depth" in r.describe() and not M.Readout(depth=True).network_only


def test_a_grid_framed_otherwise_is_zoomed_to_the_training_framing_and_mapped_back():
    g = np.zeros((40, 40, 40), bool)
    g[8:28, 10:30, 12:22] = True  # largest side 20 of 40, off centre
    assert D.extent_share(g) == 0.5 and D.extent_share(np.zeros((4, 4, 4))) == 0.0
    f = D.frame_grid(g, 1.0)
    assert f is not None and abs(f.half - 0.5) < 1e-9
    z = f.zoom(g, 32)
    assert D.extent_share(z) == 1.0  # now it fills the cube along its largest side, centred
    idx = np.nonzero(z)
    assert all(abs((int(i.min()) + int(i.max()) + 1) / 2 - 16) <= 0.5 for i in idx)
    back = f.back(z.astype(np.float32), 40) > 0.5  # and maps back onto the grid's own cells
    assert (back == g).mean() > 0.99
    full = np.zeros((32, 32, 32), bool)
    full[:, 4:28, 8:24] = True  # fills the cube along x and is centred: used as it is
    assert D.frame_grid(full, 1.0) is None and D.frame_grid(full, 0.5) is not None


def test_eval_voxels_zooms_grids_framed_otherwise(tmp_path, tiny_checkpoint):
    from explorer.papers.shapes3d.evaluate import evaluate_grids
    from explorer.papers.shapes3d.infer import load_for_app

    model, _ = load_for_app(str(tiny_checkpoint), torch.device("cpu"))
    box = np.zeros((32, 32, 32), bool)
    box[:, 6:26, 10:22] = True
    small = np.zeros((48, 48, 48), bool)
    small[8:40, 14:38, 18:30] = True  # the same box with a margin of 8 voxels
    deep = np.zeros((48, 48, 48), bool)
    deep[8:40, 14:38, 10:38] = True
    grids = [("chair", "a", box), ("chair", "b", small)]
    plain = evaluate_grids(model, grids, "cpu")
    framed = evaluate_grids(model, grids, "cpu", framing=1.0)
    assert plain["reframed"] == 0 and framed["reframed"] == 1
    # the hull of the zoomed picture, mapped back, is the silhouette extruded through the zoomed cube only:
    # exactly the box's depth of 28 voxels in a zoomed cube of 32 (instead of the whole 48)
    hull_plain = evaluate_grids(model, [("chair", "c", deep)], "cpu")["iou_baseline"]
    hull_zoomed = evaluate_grids(model, [("chair", "c", deep)], "cpu", framing=1.0)["iou_baseline"]
    assert abs(hull_plain - 28 / 48) < 0.05 and abs(hull_zoomed - 28 / 32) < 0.05


def test_eval_voxels_scores_with_the_model_trained_on_real_objects_by_default(tmp_path, monkeypatch, capsys):
    from explorer.cli import main
    from explorer.core.paths import bundled
    from explorer.papers.shapes3d import cli as C

    if not bundled("shapes3d_modelnet.safetensors").exists():
        pytest.skip("no bundled ModelNet model")
    monkeypatch.setattr(C, "_nearest_bank", lambda *a, **k: None)  # no training collection needed here
    vox = tmp_path / "vox"
    vox.mkdir()
    chair = np.zeros((64, 64, 64), bool)
    chair[:, 4:30, 8:56] = True  # seat and base, filling the cube from side to side as ModelNet grids do
    chair[:, 30:60, 48:56] = True  # back
    np.save(vox / "chair_1.npy", chair)
    np.save(vox / "bench_1.npy", np.pad(chair[:, :32], ((0, 0), (16, 16), (0, 0))))  # a class it never saw
    assert main(["--device", "cpu", "eval", "shapes3d", "--voxels", str(vox), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["shapes"] == 2 and set(out["per_class"]) == {"bench", "chair"}
    assert "carved" in out["readout"] and out["level"] < 0.5, "the read-out chosen on ModelNet validation shapes"
    assert out["per_class"]["chair"]["conditioned"] and not out["per_class"]["bench"]["conditioned"]
    assert out["reframed"] == 1  # the bench spans only part of the cube: zoomed to the training framing
    assert out["iou"] > out["iou_baseline"] - 0.2 and 0.0 < out["iou"] <= 1.0


def test_grids_of_another_collection_join_a_class_without_moving_its_split(tmp_path):
    mn = tmp_path / "mn"
    _write_modelnet(mn, {"chair": [np.roll(_raw_l_shape(), i, 0) for i in range(6)]})
    before = D.load_modelnet(mn)
    extra = [D.centre_grid(np.transpose(_raw_l_shape(), (0, 2, 1)))] * 3
    assert D.write_modelnet_style({"chair": extra, "table": extra[:2]}, mn, "sh3d") == 5
    after = D.load_modelnet(mn)
    assert sorted(after) == ["chair", "table"]
    names = [n for n, _ in after["chair"]]
    assert names[:6] == [n for n, _ in before["chair"]], "the ModelNet grids keep their names, so their split"
    assert names[6:] == ["chair_sh3d0000", "chair_sh3d0001", "chair_sh3d0002"]
    assert np.array_equal(after["table"][0][1], extra[0]), "written in ModelNet's layout, read back as written"


def test_a_furniture_mesh_becomes_an_upright_grid_filling_the_cube(monkeypatch):
    import trimesh

    # a "chair" in Sweet Home 3D's frame (y up, as OBJ): a seat box and a back at -z, as the loader returns it
    seat = trimesh.creation.box(
        extents=(1.0, 0.2, 1.0), transform=trimesh.transformations.translation_matrix((0, 0.5, 0))
    )
    back = trimesh.creation.box(
        extents=(1.0, 1.0, 0.2), transform=trimesh.transformations.translation_matrix((0, 1.0, -0.4))
    )
    mesh = trimesh.util.concatenate([seat, back])
    v = np.asarray(mesh.vertices) * np.array([1.0, -1.0, 1.0])  # load_furniture's flip to the -y-up frame
    entry = {"label": 0, "name": "chair"}
    monkeypatch.setattr(D, "furniture_catalog", lambda *a, **k: [entry])
    monkeypatch.setattr(D, "load_furniture", lambda entries: [(v, np.asarray(mesh.faces), entry)])
    g = D.furniture_grids(32)["chair"][0]
    assert g.shape == (32, 32, 32) and D.extent_share(g) == 1.0
    top = g[:, 24:, :]  # y up: the upper part holds only the back, and the back is at low z, as modelled
    zs = np.nonzero(top)[2]
    assert len(zs) and zs.max() < 10
    ys = np.nonzero(g)[1]
    assert ys.min() == 0 and ys.max() == 31  # its tallest side (y) spans the cube
