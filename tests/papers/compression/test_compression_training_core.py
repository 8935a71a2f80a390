"""conv DRAW on the shared training core: resume continues bit for bit, the 'training' record, a folder of photos
with its held-out files (--data), 2 gloo processes under torchrun, and the shared options' checks. Tiny images
generated in tmp_path only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from explorer.cli import main  # noqa: E402
from explorer.core.checkpoints import load_checkpoint  # noqa: E402
from explorer.papers.compression import data as D  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
TINY = ["--crop", "16", "--hidden", "8", "--z-channels", "2", "--iterations", "3", "--batch", "4"]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Eight small generated 'photos' in three formats, one in a subfolder, plus a file that is not an image."""
    from PIL import Image

    d = tmp_path_factory.mktemp("photos")
    (d / "sub").mkdir()
    for i in range(6):
        Image.fromarray(D.synthetic_image(36 + 4 * i, 44, seed=i)).save(d / f"img{i}.png")
    Image.fromarray(D.synthetic_image(40, 40, seed=7)).save(d / "sub" / "p.jpg", quality=90)
    Image.fromarray(D.synthetic_image(40, 36, seed=8, channels=1)[:, :, 0]).save(d / "test_g.bmp")
    (d / "notes.txt").write_text("not a photo")
    return d


def _train(photos, out, *extra):
    return main(
        [
            "--device",
            "cpu",
            "train",
            "compression",
            "--data",
            str(photos),
            *TINY,
            "--out",
            str(out),
            "--val-fraction",
            "0.25",
            *extra,
        ]
    )


class _CtrlCHalfway:
    """Stands in for the terminal progress bar: sends this process a real SIGINT once half the steps are done."""

    sent = 0

    def __init__(self, *a, **k):
        pass

    def __call__(self, fraction=None, message=""):
        if fraction is not None and fraction >= 0.5 - 1e-9 and not _CtrlCHalfway.sent:
            _CtrlCHalfway.sent += 1
            os.kill(os.getpid(), signal.SIGINT)

    def close(self):
        pass


def test_resumed_run_continues_bit_for_bit(photos, tmp_path, monkeypatch, capsys):
    """6 steps straight == Ctrl+C after 3 of 6 (resume file written) + --resume for the other 3. The learning
    rate follows a cosine over the budget, so both runs ask for 6 steps."""
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    assert _train(photos, a, "--steps", "6") == 0
    import explorer.core.progress as progress

    monkeypatch.setattr(progress, "TerminalProgress", _CtrlCHalfway)
    assert _train(photos, b, "--steps", "6") == 0
    monkeypatch.undo()
    assert _CtrlCHalfway.sent == 1
    resume = tmp_path / "b.resume.safetensors"
    assert resume.exists()
    half = load_checkpoint(b).meta.extra["training"]
    assert half["steps"] == 3 and half["stop"] == "signal"
    assert f"--resume {resume}" in capsys.readouterr().err
    assert _train(photos, b, "--steps", "6", "--resume", str(resume)) == 0
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert set(ca.state_dict) == set(cb.state_dict)
    for k, v in ca.state_dict.items():
        assert torch.equal(v, cb.state_dict[k]), k
    assert ca.meta.metrics["val_bits_per_dim"] == cb.meta.metrics["val_bits_per_dim"]
    rec = cb.meta.extra["training"]
    assert rec["steps"] == 6 and rec["resumed_from"] == resume.name and rec["samples"] == 24
    assert rec["stop"] == "steps"


def test_training_record_and_held_out_files(photos, tmp_path):
    out = tmp_path / "m.safetensors"
    assert _train(photos, out, "--steps", "2", "--exclude", "test_*") == 0
    meta = load_checkpoint(out).meta
    rec = meta.extra["training"]
    assert {"world_size", "steps", "epochs", "wall_s", "resumed_from"} <= set(rec)
    assert rec["world_size"] == 1 and rec["steps"] == 2 and rec["resumed_from"] is None and rec["wall_s"] >= 0
    d = meta.data
    assert d["files"] == 7 and d["excluded"] == {"patterns": ["test_*"], "files": 1}
    assert d["train_files"] + d["holdout_files"] == 7 and d["holdout_files"] >= 1
    assert "sha256(file name)" in d["holdout_rule"]
    files, _ = D.folder_images(photos, ["test_*"])
    _, hold, _ = D.split_by_name_hash(files, photos, 0.25)
    assert d["holdout_photos"] == sorted(hold)
    assert "notes.txt" not in str(d) and not any(n.startswith("test_") for n in d["holdout_photos"])


def test_holdout_depends_on_the_file_name_only(photos, tmp_path):
    files, _ = D.folder_images(photos)
    train, hold, _ = D.split_by_name_hash(files, photos, 0.5)
    assert hold and train and not set(hold) & set(train)
    assert set(hold) == {k for k in train.keys() | hold.keys() if D.name_hash(Path(k).name) < 0.5}
    # the same names elsewhere (another folder, other contents): the same files held out
    other = tmp_path / "elsewhere"
    other.mkdir()
    for k in list(train) + list(hold):
        (other / Path(k).name).write_bytes(b"")
    moved, _ = D.folder_images(other)
    _, hold2, _ = D.split_by_name_hash(moved, other, 0.5)
    assert set(hold2) == {Path(k).name for k in hold}
    # tiny fractions still hold one file out, and keep one
    assert len(D.split_by_name_hash(files, photos, 1e-9)[1]) == 1
    two = files[:2]
    tr, ho, _ = D.split_by_name_hash(two, photos, 0.5)
    assert len(tr) == 1 and len(ho) == 1


def test_two_processes_under_torchrun(photos, tmp_path):
    out = tmp_path / "ddp.safetensors"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NIPS_EXPLORER_THREADS": "1"}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "explorer",
            "--device",
            "cpu",
            "train",
            "compression",
            "--data",
            str(photos),
            *TINY,
            "--val-fraction",
            "0.25",
            "--steps",
            "2",
            "--out",
            str(out),
        ],
        env=env,
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    rec = load_checkpoint(out).meta.extra["training"]
    assert rec["world_size"] == 2 and rec["ranks_in_sync"] is True
    assert rec["steps"] == 2 and rec["samples"] == 8  # the global batch of 4, 2 per process
    assert load_checkpoint(out).meta.extra["train_config"]["batch"] == 4


def test_shared_options_are_checked(photos, tmp_path, capsys):
    out = tmp_path / "x.safetensors"
    assert _train(photos, out, "--minutes", "0") == 2
    assert "--minutes" in capsys.readouterr().err
    assert main(["train", "compression", "--data", str(photos), "--max-minutes", "-1"]) == 2
    assert main(["train", "compression", "--exclude", "a*"]) == 2  # --exclude needs --data
    assert main(["train", "compression", "--dataset", "fashion", "--data", str(photos)]) == 2
    assert not out.exists()


def test_stride_sets_the_latent_grid_and_the_crop_must_fit_it(photos, tmp_path, capsys):
    out = tmp_path / "s8.safetensors"
    assert _train(photos, out, "--steps", "2", "--stride", "8") == 0
    assert load_checkpoint(out).meta.model_config["stride"] == 8
    bad = tmp_path / "bad.safetensors"
    assert _train(photos, bad, "--steps", "2", "--stride", "8", "--crop", "20") == 2
    assert "multiple of 8" in capsys.readouterr().err and not bad.exists()


def test_squared_error_training_with_conv_read_write(photos, tmp_path):
    """--distortion mse --io-channels: the rate-distortion loss trains, the checkpoint keeps the pyramids, the
    held-out PSNR and a finite ELBO (the likelihood's scale is fitted on the side) are recorded."""
    import math

    from explorer.papers.compression.model import build
    from explorer.papers.compression.train import elbo_terms

    out = tmp_path / "mse.safetensors"
    args = ["--steps", "3", "--distortion", "mse", "--lmbda", "0.01", "--io-channels", "4", "--progressive", "1"]
    assert _train(photos, out, *args) == 0
    ck = load_checkpoint(out)
    assert ck.meta.model_config["io_channels"] == 4
    m = ck.meta.metrics
    assert math.isfinite(m["val_bits_per_dim"]) and 0 < m["val_psnr"] < 100
    # the squared error's gradient reaches the write path; the likelihood's reaches only the scale head
    torch.manual_seed(0)
    model = build({"hidden": 8, "z_channels": 2, "iterations": 2, "io_channels": 4, "quant_step": 1.0})
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    t = elbo_terms(model, x, distortion="mse", lmbda=0.01)
    nll_grad = torch.autograd.grad(t["nll"].sum(), [model.write.out.weight, model.scale.weight], allow_unused=True)
    assert nll_grad[0] is None and nll_grad[1] is not None
    assert torch.autograd.grad(t["loss"], model.write.out.weight)[0].abs().sum() > 0


def test_resume_with_other_options_is_refused(photos, tmp_path, capsys):
    out = tmp_path / "r.safetensors"
    assert _train(photos, out, "--steps", "1") == 0
    resume = tmp_path / "r.resume.safetensors"
    capsys.readouterr()
    # another learning rate (the weights would fit, the run would not be the same run)
    assert _train(photos, out, "--steps", "2", "--lr", "0.01", "--resume", str(resume)) == 2
    assert "differ" in capsys.readouterr().err


def test_fashion_preset_splits_its_array_between_ranks(tmp_path, monkeypatch):
    """--dataset fashion (monkeypatched to a tiny generated array): the grey preset trains on the core, and
    make_data gives each rank every world_size-th training image."""
    import numpy as np

    from explorer.papers.compression.train import make_data

    rng = np.random.default_rng(0)
    tr = rng.integers(0, 256, (10, 28, 28, 1), dtype=np.uint8)
    te = rng.integers(0, 256, (300, 28, 28, 1), dtype=np.uint8)
    monkeypatch.setattr(D, "fashion_mnist", lambda: (tr, te))
    d1 = make_data("fashion", 28, rank=1, world_size=2)
    assert np.array_equal(d1.sampler.images, tr[1::2]) and len(d1.val) == 256
    out = tmp_path / "f.safetensors"
    assert (
        main(
            [
                "--device",
                "cpu",
                "train",
                "compression",
                "--dataset",
                "fashion",
                "--hidden",
                "8",
                "--z-channels",
                "2",
                "--iterations",
                "2",
                "--batch",
                "4",
                "--steps",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    meta = load_checkpoint(out).meta
    assert meta.model_config["in_channels"] == 1 and meta.model_config["stride"] == 2
    assert meta.extra["training"]["steps"] == 2 and meta.data["dataset"] == "fashion"
