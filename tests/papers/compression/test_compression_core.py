"""Headless tests of the conceptual compression tab: conv DRAW, rates, baselines, CLI. Tiny images only."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from explorer.papers.compression import baselines as B  # noqa: E402
from explorer.papers.compression.data import CropSampler, synthetic_image  # noqa: E402
from explorer.papers.compression.model import build, discretized_logistic_nll, to_model_range  # noqa: E402

TINY = {"in_channels": 3, "hidden": 8, "z_channels": 2, "iterations": 3, "stride": 4, "kernel": 3}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_trained(tmp_path_factory):
    """A tiny conv DRAW trained for a few steps on synthetic crops, saved as a checkpoint."""
    from explorer.core.checkpoints import save_checkpoint
    from explorer.papers.compression.train import TrainConfig, TrainData, fit

    torch.manual_seed(0)
    model = build(TINY)
    imgs = [synthetic_image(40, 40, seed=s) for s in range(4)]
    data = TrainData(CropSampler(imgs, 16), CropSampler(imgs, 16).sample(8, np.random.default_rng(1)))
    res = fit(
        model,
        data,
        "cpu",
        TrainConfig(steps=60, time_limit_s=120, batch=8, lr=3e-3, warmup=5, log_every=10, val_every=1000),
    )
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(
        path,
        model.state_dict(),
        paper="compression",
        model_config=model.config(),
        metrics={"headline": "val_bits_per_dim", **res["final"]},
    )
    return model, res, path


def test_discretized_logistic_is_a_distribution():
    levels = torch.arange(256, dtype=torch.float32)
    x = to_model_range(levels)
    for mean, ls in ((0.1, -2.0), (-0.97, -4.0), (0.99, -1.0), (0.3, -6.5)):
        nll = discretized_logistic_nll(x, torch.full_like(x, mean), torch.full_like(x, ls))
        assert torch.all(nll >= 0)
        total = float(torch.exp(-nll).sum())
        assert abs(total - 1.0) < 2e-3, (mean, ls, total)


def test_kl_per_iteration_nonnegative_and_sums_to_total():
    from explorer.papers.compression.infer import Analysis

    torch.manual_seed(0)
    model = build(TINY).eval()
    # make posterior and prior differ so the KL is not trivially zero
    with torch.no_grad():
        for p in model.posterior.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = to_model_range(torch.from_numpy(synthetic_image(20, 24, seed=3)).permute(2, 0, 1)[None])
    out = model(x)
    assert out["kl"].shape == (1, 3)
    assert torch.all(out["kl"] >= 0)
    an = Analysis(model, synthetic_image(22, 18, seed=4), "cpu")  # not a multiple of the stride: padded
    assert np.all(an.kl_bpp >= 0)
    assert an.rate_bpp[0] == 0.0
    assert math.isclose(an.rate_bpp[-1], float(an.kl_bpp.sum()), rel_tol=1e-9)
    assert math.isclose(an.kl_bits.sum() / (22 * 18), an.rate_bpp[-1], rel_tol=1e-9)
    assert np.all(np.diff(an.rate_bpp) >= 0)
    assert set(an.recons) == set(range(4))
    assert an.recons[2].shape == (22, 18, 3) and an.recons[2].dtype == np.uint8
    samples = an.samples(1, n=2, seed=5)
    assert len(samples) == 2 and samples[0].shape == (22, 18, 3)


def test_tiny_model_trains_and_loss_falls(tiny_trained):
    _, res, _ = tiny_trained
    hist = [h["train_bits_per_dim"] for h in res["history"]]
    assert len(hist) >= 5
    assert all(math.isfinite(h) for h in hist)
    assert hist[-1] < hist[0] - 0.5, hist
    assert res["final"]["val_kl_bpp_total"] >= 0


def test_grey_and_odd_sizes_round_trip():
    from explorer.papers.compression.infer import Analysis

    model = build(TINY).eval()
    grey = synthetic_image(13, 9, seed=1, channels=1)
    an = Analysis(model, grey, "cpu")  # grey replicated to RGB for an RGB model
    assert an.recons[3].shape == (13, 9, 3)
    gmodel = build({**TINY, "in_channels": 1}).eval()
    an = Analysis(gmodel, synthetic_image(8, 12, seed=2), "cpu")  # RGB converted to grey
    assert an.recons[1].shape == (8, 12, 1)


def test_psnr_and_ssim_basics():
    a = synthetic_image(32, 32, seed=0)
    assert B.psnr(a, a) == 100.0
    assert B.ssim(a, a) == pytest.approx(1.0)
    noisy = np.clip(a.astype(int) + np.random.default_rng(0).integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    assert 15 < B.psnr(a, noisy) < 30
    assert B.ssim(a, noisy) < 0.95


@pytest.mark.parametrize("target", [0.9, 1.5, 2.5])
def test_jpeg_and_jpeg2000_rate_matching_within_5_percent(target):
    img = synthetic_image(128, 128, seed=7)
    j = B.jpeg_at_bpp(img, target)
    assert abs(j.bpp / target - 1) <= 0.05, (target, j.bpp, j.setting)
    assert j.bpp == pytest.approx(j.nbytes * 8 / 128 / 128)
    k = B.jpeg2000_at_bpp(img, target)
    assert abs(k.bpp / target - 1) <= 0.05, (target, k.bpp, k.setting)
    assert k.image.shape == img.shape and 15 < k.psnr < 60


def test_jpeg_below_its_floor_reports_the_real_rate():
    img = synthetic_image(64, 64, seed=1)
    j = B.jpeg_at_bpp(img, 0.01)  # far below what JPEG can reach (headers alone cost more)
    assert j.setting == 1 and j.bpp > 0.01


def test_eval_cli_on_two_small_images(tiny_trained, tmp_path, capsys):
    from PIL import Image

    from explorer.cli import main

    _, _, ckpt = tiny_trained
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(synthetic_image(40, 48, seed=11)).save(d / "a.png")
    Image.fromarray(synthetic_image(36, 36, seed=12, channels=1)[:, :, 0]).save(d / "b.jpg", quality=95)
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    args = ["eval", "compression", "--images", str(d), "--checkpoint", str(ckpt), "--bpp", "3", "6", "--json"]
    rc = main(args)
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["checkpoint"] == str(ckpt) and out["targets_bpp"] == [3.0, 6.0]
    assert [im["file"] for im in out["images"]] == ["a.png", "b.jpg"]
    im = out["images"][0]
    assert im["width"] == 48 and im["height"] == 40
    assert [p["k"] for p in im["ladder"]] == [1, 2, 3] and [p["k"] for p in im["ideal_rate_curve"]] == [1, 2, 3]
    for im in out["images"]:
        for p in im["points"]:
            draw = p["draw"]
            if draw is None:
                continue
            assert draw["bpp"] <= p["target_bpp"]
            assert draw["bpp"] == pytest.approx(8 * draw["bytes"] / (im["width"] * im["height"]), abs=1e-5)
            for codec in ("jpeg", "jpeg2000", "webp", "avif"):
                if p[codec] is not None:
                    assert p[codec]["bytes"] <= draw["bytes"] and {"psnr", "ssim", "bpp"} <= set(p[codec])
    assert [row["target_bpp"] for row in out["mean"]] == [3.0, 6.0]
    assert out["errors"] and out["errors"][0]["file"] == "broken.png"


def test_compress_cli_wants_a_cdraw_file(tiny_trained, tmp_path, capsys):
    from PIL import Image

    from explorer.cli import main

    _, _, ckpt = tiny_trained
    src = tmp_path / "in.png"
    Image.fromarray(synthetic_image(30, 34, seed=2)).save(src)
    rc = main(
        ["compress", str(src), "--iterations", "2", "--out", str(tmp_path / "rec.png"), "--checkpoint", str(ckpt)]
    )
    assert rc == 2 and ".cdraw" in capsys.readouterr().err
    out = tmp_path / "a.cdraw"
    rc = main(["compress", str(src), "--iterations", "9", "--out", str(out), "--checkpoint", str(ckpt)])
    assert rc == 2
    assert "between 1 and 3" in capsys.readouterr().err


def test_bundled_model_more_bytes_better_pictures():
    """On a held-out sample, the bundled model's larger .cdraw files decode to better pictures."""
    from explorer.core.paths import bundled, resources_dir
    from explorer.papers.compression.codec import decode, rd_files
    from explorer.papers.compression.data import load_image
    from explorer.papers.compression.infer import load

    ckpt = bundled("compression_photos.safetensors")
    sample = resources_dir() / "compression" / "path.png"
    if not ckpt.exists() or not sample.exists():
        pytest.skip("bundled checkpoint or sample image missing")
    model, meta = load(ckpt, "cpu")
    img = load_image(sample)[64:160, 64:160]
    files = rd_files(model, img)
    ps = [B.psnr(img, c.image) for c in files]
    assert len(files) >= 3 and ps[-1] > ps[0] + 3.0, ps
    assert [c.nbytes for c in files] == sorted(c.nbytes for c in files)
    assert np.array_equal(decode(model, files[1].data)[0], files[1].image)
