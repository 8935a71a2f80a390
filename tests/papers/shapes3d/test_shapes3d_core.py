"""Headless tests of the 3D structure tab: projection, gradients, data hygiene, training, IoU, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from explorer.papers.shapes3d import data as D
from explorer.papers.shapes3d import model as M

torch.set_num_threads(1)

TINY = dict(steps=2, hidden=32, z_dim=4, patch=8, feat=32, ctx_dim=4)


def _grid(res):
    lin = (np.arange(res) + 0.5) / res * 2 - 1
    return np.meshgrid(lin, lin, lin, indexing="ij")  # z, y, x


@pytest.fixture(scope="module")
def tiny_set():
    return D.make_primitives(10, seed=3)


def test_projection_of_a_sphere_matches_its_analytic_silhouette_and_depth():
    r, res = 0.6, 64
    z, y, x = _grid(res)
    vol = torch.from_numpy((x**2 + y**2 + z**2 <= r * r).astype(np.float32))[None, None]
    cams = M.TRAIN_CAMERAS + M.NOVEL_CAMERAS
    img = M.project(vol, M.camera_thetas(cams), out_size=32)[0].numpy()
    lin = (np.arange(32) + 0.5) / 32 * 2 - 1
    qx, qy = np.meshgrid(lin, lin, indexing="xy")
    disc = qx**2 + qy**2 <= r * r
    clear = np.abs(np.sqrt(qx**2 + qy**2) - r) > 1.5 / 32  # pixels not cut by the outline
    opacity = M.project(vol, M.camera_thetas(cams), out_size=32, shade=0.0)[0].numpy()
    for k in range(len(cams)):
        assert ((opacity[k] > 0.5) == disc)[clear].all(), cams[k]
        area = opacity[k].sum() * (2 / 32) ** 2
        tol = 0.03 if k < len(M.TRAIN_CAMERAS) else 0.07  # trilinear resampling blurs the rim
        assert abs(area - math.pi * r * r) / (math.pi * r * r) < tol, (cams[k], area)
        assert img[k][~disc & clear].max() < 0.05  # black background
        # the ray through the centre hits the sphere at depth (1 - r) / 2: grey = 1 - SHADE * depth
        centre = img[k, 15:17, 15:17].mean()
        assert abs(centre - (1 - M.SHADE * (1 - r) / 2)) < 0.03


def test_max_projection_silhouettes_of_a_sphere():
    z, y, x = _grid(32)
    logits = torch.from_numpy(np.where(x**2 + y**2 + z**2 <= 0.36, 20.0, -20.0).astype(np.float32))[None, None]
    sil = M.silhouettes(logits, M.camera_thetas(M.TRAIN_CAMERAS + M.NOVEL_CAMERAS))[0].numpy()
    lin = (np.arange(32) + 0.5) / 32 * 2 - 1
    qx, qy = np.meshgrid(lin, lin, indexing="xy")
    clear = np.abs(np.sqrt(qx**2 + qy**2) - 0.6) > 2.0 / 32
    for k in range(sil.shape[0]):
        assert ((sil[k] > 0.5) == (qx**2 + qy**2 <= 0.36))[clear].all()


def test_projection_of_an_axis_aligned_box_is_a_rectangle():
    z, y, x = _grid(32)
    vol = ((np.abs(x) < 0.5) & (np.abs(y) < 0.25) & (np.abs(z) < 0.75)).astype(np.float32)
    img = M.project(torch.from_numpy(vol)[None, None], M.camera_thetas([[0, 0], [90, 0], [0, 90]]))[0].numpy() > 0.1
    assert img[0].sum() == 16 * 8 and img[0][12:20, 8:24].all()  # x by y: 16 x 8 pixels
    assert img[1].sum() == 24 * 8  # z by y
    assert img[2].sum() == 16 * 24  # x by z


def test_fast_axis_aligned_path_equals_trilinear_resampling():
    v = torch.randn(2, 1, 12, 12, 12) * 3
    cams = M.TRAIN_CAMERAS + [[270, -90], [90, 90], [180, 90]]
    th = M.camera_thetas(cams)
    fast = M.project(v, th, logits=True)
    slow = []
    for k in range(len(cams)):
        grid = torch.nn.functional.affine_grid(th[k : k + 1].expand(2, 3, 4), [2, 1, 12, 12, 12], align_corners=False)
        rv = torch.nn.functional.grid_sample(v, grid, align_corners=False)
        slow.append(M.composite_logits(rv[:, 0]))
    assert torch.allclose(fast, torch.stack(slow, 1), atol=1e-5)


def test_gradients_flow_from_image_loss_to_volume_and_networks(tiny_set):
    logits = torch.zeros(1, 1, 16, 16, 16, requires_grad=True)
    target = torch.rand(1, 5, 16, 16)
    M.image_nll(M.project(logits, M.camera_thetas(M.TRAIN_CAMERAS), logits=True), target).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert (logits.grad.abs() > 0).float().mean() > 0.5  # every voxel sees some camera
    torch.manual_seed(0)
    model = M.build(dict(TINY))
    views = torch.from_numpy(tiny_set.training_views().views[:4].astype(np.float32) / 255)
    from explorer.papers.shapes3d.train import batch_loss

    batch_loss(model, views, None)["loss"].backward()
    for name in ("encoder.fc.weight", "enc_rnn.weight_ih", "dec_rnn.weight_ih", "writer.fc.weight", "canvas0"):
        g = dict(model.named_parameters())[name].grad
        assert g is not None and g.abs().sum() > 0, name


def test_trainer_batches_contain_no_voxels(tiny_set):
    views = tiny_set.training_views()
    assert not hasattr(views, "voxels")
    assert views.views.shape == (10, len(M.TRAIN_CAMERAS), 32, 32)
    batch = next(views.batches(4, np.random.default_rng(0)))
    assert set(batch) == {"views", "labels"}
    assert batch["views"].shape == (4, len(M.TRAIN_CAMERAS), 32, 32) and batch["labels"].shape == (4,)
    from explorer.papers.shapes3d.train import TrainConfig, fit

    with pytest.raises(TypeError):
        fit(M.build(dict(TINY)), tiny_set, "cpu", TrainConfig(steps=1))


@pytest.mark.parametrize("rig", sorted(M.RIGS))
def test_augmentation_is_an_exact_reshuffle_of_the_pictures(rig):
    cams = M.RIGS[rig]
    rng = np.random.default_rng(4)
    mesh = D.primitive_mesh("cone", rng)
    base = D.render_fine(D.voxelize(mesh)[None], cams)
    gs = D.rig_symmetries(cams)
    assert len(gs) == 8
    for g in gs[1:]:
        moved = mesh.copy()
        moved.vertices = mesh.vertices @ g.T
        direct = D.render_fine(D.voxelize(moved)[None], cams)
        shuffled = D.ViewSet.augment(base, [D.view_shuffle(g, cams, 32)])
        assert np.abs(direct - shuffled).max() < 1e-5


def test_cameras_sharing_a_yaw_render_as_if_each_were_resampled_on_its_own():
    """The fast paths (axis permutations; one slice-wise resampling per yaw) give the general trilinear path."""
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 32, 32, 32) * 3
    cams = M.RIGS["axes+diagonals"] + M.NOVEL_CAMERAS
    th = M.camera_thetas(cams)
    fast = M.project(logits, th, logits=True)
    slow = torch.stack(
        [M.composite_logits(M.to_camera(logits, th[k], pad=-M._LOGIT_PAD)[:, 0]) for k in range(len(cams))], 1
    )
    assert torch.allclose(fast, slow, atol=1e-5)
    occ = torch.sigmoid(logits)
    sil = torch.stack([M.to_camera(occ, th[k])[:, 0].amax(1) for k in range(len(cams))], 1)
    assert torch.allclose(M.silhouettes(logits, th), sil, atol=1e-5)


def test_voxelizer_fills_solids():
    import trimesh

    v = D.voxelize(trimesh.creation.icosphere(subdivisions=3, radius=0.7))
    vol = v.mean() * 8
    assert abs(vol - 4 / 3 * math.pi * 0.7**3) / (4 / 3 * math.pi * 0.7**3) < 0.15
    assert v[32, 32, 32]  # the centre is inside


def test_a_few_training_steps_lower_the_loss(tiny_set):
    from explorer.papers.shapes3d.train import batch_loss

    torch.manual_seed(0)
    model = M.build(dict(TINY))
    views = torch.from_numpy(tiny_set.training_views().views[:8].astype(np.float32) / 255)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = batch_loss(model, views, None, sample=False)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]


def test_fit_runs_and_reports(tiny_set):
    from explorer.papers.shapes3d.train import TrainConfig, fit

    model = M.build(dict(TINY))
    seen = []
    summary = fit(
        model,
        tiny_set.training_views(),
        "cpu",
        TrainConfig(steps=3, batch=4, log_every=1),
        progress=lambda f, m: seen.append(f),
        on_checkpoint=lambda m, s: seen.append("ckpt"),
    )
    assert summary["steps"] == 3 and "ckpt" in seen and math.isfinite(summary["train_elbo"])


def test_iou_helper_known_cases():
    a = np.zeros((4, 4, 4), bool)
    b = np.zeros((4, 4, 4), bool)
    assert M.iou(a, b) == 1.0  # both empty
    a[:2] = True
    assert M.iou(a, a) == 1.0
    assert M.iou(a, b) == 0.0
    b[1:3] = True  # overlap one slab of 16, union 48
    assert M.iou(a, b) == pytest.approx(16 / 48)
    t = M.iou(torch.from_numpy(np.stack([a, a])), torch.from_numpy(np.stack([a, b])))
    assert t.tolist() == pytest.approx([1.0, 16 / 48])


def test_visual_hull_contains_the_shape(tiny_set):
    x = torch.from_numpy(tiny_set.views[:, 0].astype(np.float32) / 255)
    hull = M.visual_hull(x, M.camera_thetas(M.TRAIN_CAMERAS)[0], 32).numpy()
    gt = tiny_set.voxels
    covered = (hull & gt).sum() / gt.sum()
    assert covered > 0.97  # the hull is a superset (up to pixel rounding)


def test_marching_cubes_of_a_sphere(tmp_path):
    from explorer.papers.shapes3d.infer import mesh_from_volume, write_mesh

    z, y, x = _grid(32)
    occ = (np.sqrt(x**2 + y**2 + z**2) < 0.5).astype(np.float32)
    verts, faces = mesh_from_volume(occ)
    rad = np.linalg.norm(verts, axis=1)
    assert len(faces) > 100 and np.abs(rad - 0.5).max() < 0.07
    p = write_mesh(verts, faces, tmp_path / "s.obj")
    text = p.read_text().splitlines()
    assert sum(1 for line in text if line.startswith("v ")) == len(verts)
    assert sum(1 for line in text if line.startswith("f ")) == len(faces)


def test_prepare_image_inverts_and_crops():
    from explorer.papers.shapes3d.infer import prepare_image

    img = np.full((100, 80), 255, np.uint8)
    img[30:60, 20:50] = 40  # a dark square on white
    out = prepare_image(img)
    assert out.shape == (32, 32) and out[16, 16] > 0.5 and out[0, 0] < 0.05


def test_train_and_eval_cli_on_a_tiny_set(tmp_path, capsys):
    from explorer.cli import main

    ck = tmp_path / "tiny.safetensors"
    rc = main(
        [
            "--device",
            "cpu",
            "train",
            "shapes3d",
            "--n-train",
            "12",
            "--n-test",
            "5",
            "--data-dir",
            str(tmp_path),
            "--steps",
            "2",
            "--batch",
            "4",
            "--draw-steps",
            "2",
            "--hidden",
            "32",
            "--out",
            str(ck),
        ]
    )
    assert rc == 0 and ck.exists()
    capsys.readouterr()
    from explorer.core.checkpoints import load_checkpoint

    # primitives come in every size: no single framing for eval --voxels to zoom grids to
    assert "grid_framing" not in load_checkpoint(ck).meta.metrics
    rc = main(
        [
            "--device",
            "cpu",
            "eval",
            "shapes3d",
            "--n-train",
            "12",
            "--n-test",
            "5",
            "--data-dir",
            str(tmp_path),
            "--checkpoint",
            str(ck),
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {
        "dataset",
        "shapes",
        "iou",
        "iou_baseline",
        "per_class",
        "image_error_input_view",
        "image_error_new_views",
        "elbo",
        "level",
        "readout",
    }
    assert out["dataset"] == "primitives" and out["shapes"] == 5 and out["level"] == 0.5  # no validation shapes
    assert set(out["per_class"]) == set(D.PRIMITIVE_CLASSES)
    assert all(set(v) == {"shapes", "iou", "iou_baseline"} for v in out["per_class"].values())
    assert 0.0 <= out["iou"] <= 1.0 and 0.0 < out["iou_baseline"] < 1.0
    # a wrong file is one clear line, exit 2
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"nonsense")
    assert main(["eval", "shapes3d", "--checkpoint", str(bad), "--data-dir", str(tmp_path)]) == 2


def test_reconstruct_cli_writes_a_mesh(tmp_path, capsys):
    from explorer.cli import main
    from explorer.core.checkpoints import save_checkpoint
    from explorer.papers.shapes3d.infer import save_image

    torch.manual_seed(0)
    model = M.build(dict(TINY))
    with torch.no_grad():  # a deterministic blob: the canvas starts full inside r < 0.6
        model.canvas0.fill_(0.0)
        z, y, x = _grid(8)
        model.writer.fc.bias.copy_(torch.from_numpy(np.where(x**2 + y**2 + z**2 < 0.36, 3.0, -3.0).ravel()))
    ck = save_checkpoint(
        tmp_path / "blob.safetensors", model.state_dict(), paper="shapes3d", model_config=model.config()
    )
    img = np.zeros((32, 32), np.float32)
    img[10:22, 10:22] = 0.8
    save_image(img, tmp_path / "in.png")
    rc = main(
        [
            "--device",
            "cpu",
            "reconstruct",
            str(tmp_path / "in.png"),
            "--out",
            str(tmp_path / "s.obj"),
            "--checkpoint",
            str(ck),
            "--views-out",
            str(tmp_path / "v.png"),
        ]
    )
    assert rc == 0
    assert (tmp_path / "s.obj").read_text().count("\nf ") > 50 and (tmp_path / "v.png").exists()
    assert (
        main(["reconstruct", str(tmp_path / "missing.png"), "--out", str(tmp_path / "x.obj"), "--checkpoint", str(ck)])
        == 2
    )
    assert (
        main(["reconstruct", str(tmp_path / "in.png"), "--out", str(tmp_path / "x.vtk"), "--checkpoint", str(ck)]) == 2
    )


def test_furniture_classes_from_names():
    assert D.furniture_class("Office armchair") == 0 and D.furniture_class("Bar stool") == 0
    assert D.furniture_class("Round table") == 1 and D.furniture_class("Desk") == 1
    assert D.furniture_class("Corner sofa") == 2
    assert D.furniture_class("Double bed") == 3 and D.furniture_class("Bedside table") == 1
    assert D.furniture_class("Floor lamp") == 4 and D.furniture_class("Wardrobe") == 5
    assert D.furniture_class("Bathtub") is None


@pytest.mark.skipif(
    not D.FURNITURE_DIR.is_dir(),
    reason="Debian's sweethome3d-furniture is not installed (no /usr/share/sweethome3d/furniture)",
)
def test_furniture_catalog_has_every_class_and_credits_every_pack():
    entries = D.furniture_catalog()
    assert {e["label"] for e in entries} == set(range(len(D.FURNITURE_CLASSES)))
    credits = D.furniture_credits(entries)
    assert sum(c["models"] for c in credits.values()) == len(entries)
    for pack, c in credits.items():
        assert pack in D.FURNITURE_LICENCES, f"{pack}: licence unknown"
        assert c["licence"] in ("CC0", "CC-BY-3.0", "CC-BY-3.0-US") and c["copyright"]
    # two models loaded, upright, normalised into the unit ball
    meshes = D.furniture_meshes(entries[:2], np.random.default_rng(0))
    assert len(meshes) == 2
    for mesh, label, _name in meshes:
        assert np.linalg.norm(mesh.vertices, axis=1).max() <= 0.86 and 0 <= label < len(D.FURNITURE_CLASSES)
    # copies: the same models again under other yaws (the first copy is the one drawn without copies)
    more = D.furniture_meshes(entries[:2], np.random.default_rng(0), copies=3)
    assert len(more) == 6 and [m[2] for m in more] == [m[2] for m in meshes] * 3
    assert np.allclose(more[0][0].vertices, meshes[0][0].vertices)
    assert not np.allclose(more[2][0].vertices, meshes[0][0].vertices)
    # upright: turning about the vertical axis keeps the height profile
    assert np.allclose(np.sort(more[2][0].vertices[:, 1]), np.sort(meshes[0][0].vertices[:, 1]), atol=0.05)
