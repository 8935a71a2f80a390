"""The .cdraw codec: bit-exact round trips, real sizes, determinism, bad files, missing models, odd image files."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from explorer.papers.compression import codec as C  # noqa: E402
from explorer.papers.compression.data import load_image, synthetic_image  # noqa: E402
from explorer.papers.compression.model import build  # noqa: E402

TINY = {"in_channels": 3, "hidden": 8, "z_channels": 2, "iterations": 3, "stride": 4, "kernel": 3, "quant_step": 1.0}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(3)
    model = build(TINY).eval()
    with torch.no_grad():  # spread the posterior so that the latents carry a few bits
        model.posterior.weight.mul_(20.0)
    return model


@pytest.fixture(scope="module")
def tiny_ckpt(tiny, tmp_path_factory):
    from explorer.core.checkpoints import save_checkpoint

    d = tmp_path_factory.mktemp("models")
    path = d / "tiny_codec.safetensors"
    save_checkpoint(path, tiny.state_dict(), paper="compression", model_config=tiny.config(), metrics={})
    return path


def test_round_trip_is_bit_exact_and_the_size_is_the_file(tiny):
    img = synthetic_image(21, 30, seed=1)  # not a multiple of the stride: padded, cropped back
    for k in (1, 3):
        coded = C.encode(tiny, img, k, name="tiny")
        out, header = C.decode(tiny, coded.data)
        assert out.dtype == np.uint8 and out.shape == img.shape
        assert np.array_equal(out, coded.image)
        assert (header.k, header.width, header.height, header.model_name) == (k, 30, 21, "tiny")
        assert coded.nbytes == len(coded.data) and coded.bpp == 8 * len(coded.data) / (21 * 30)
    few, many = C.encode(tiny, img, 1), C.encode(tiny, img, 3)
    assert few.nbytes < many.nbytes  # more iterations sent, more bytes
    assert np.abs(many.image.astype(int) - img).mean() < np.abs(few.image.astype(int) - img).mean() + 1e-9


def test_conv_read_write_round_trip_is_bit_exact():
    """The convolutional read/write pyramids (config io_channels) change the picture path only: the file is still
    decoded bit for bit, at any size (padded to the stride and cropped back)."""
    torch.manual_seed(5)
    model = build({**TINY, "stride": 8, "io_channels": 4}).eval()
    assert model.config()["io_channels"] == 4 and "io_channels" not in build(TINY).config()
    with torch.no_grad():
        model.posterior.weight.mul_(20.0)
    img = synthetic_image(19, 34, seed=4)
    coded = C.encode(model, img, 3)
    out, header = C.decode(model, coded.data)
    assert out.shape == img.shape and np.array_equal(out, coded.image) and header.k == 3
    assert np.array_equal(C.encode(model, img, 3).data, coded.data)


def test_decoder_canvas_equals_the_encoders_bit_for_bit(tiny):
    img = synthetic_image(16, 24, seed=2)
    coded = C.encode(tiny, img, 2)
    header, words = C.read_header(coded.data)
    # decode once more by hand up to the float canvas
    x = torch.zeros(1, 3, 16, 24)
    st = tiny.init_state(x)
    import constriction

    dec = constriction.stream.queue.RangeDecoder(words)
    for _ in range(header.k):
        mu, std = C._prior_grid(tiny, st, header.step)
        n = torch.from_numpy(dec.decode(C._family(), np.zeros(std.size), std).astype(np.float32)).reshape(mu.shape)
        st = tiny.decode_step(mu + n * header.step, st)
    canvas = tiny.continue_from(st, header.k)
    assert torch.equal(canvas, coded.canvas)


def test_two_encodes_give_identical_files_and_the_ladder_matches(tiny):
    img = synthetic_image(20, 20, seed=4)
    a, b = C.encode(tiny, img, 2), C.encode(tiny, img, 2)
    assert a.data == b.data
    lad = C.ladder(tiny, img)
    assert [c.header.k for c in lad] == [1, 2, 3]
    assert lad[1].data == a.data and np.array_equal(lad[1].image, a.image)


def test_encode_within_a_budget(tiny):
    img = synthetic_image(24, 24, seed=5)
    lad = C.ladder(tiny, img)
    budget = lad[1].nbytes
    best = C.encode_within(tiny, img, budget)
    assert best.nbytes <= budget
    out, _ = C.decode(tiny, best.data)
    assert np.array_equal(out, best.image)
    with pytest.raises(C.UserError, match="too small"):
        C.encode_within(tiny, img, 10)


def test_other_model_is_refused(tiny):
    img = synthetic_image(12, 12, seed=6)
    coded = C.encode(tiny, img, 1, name="tiny")
    other = build({**TINY, "hidden": 4}).eval()
    with pytest.raises(C.UserError, match="made with model 'tiny'"):
        C.decode(other, coded.data)


def _cli(args, capsys):
    from explorer.cli import main

    rc = main(args)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_cli_round_trip_and_bad_files(tiny_ckpt, tmp_path, capsys, monkeypatch):
    from PIL import Image

    src = tmp_path / "in.png"
    Image.fromarray(synthetic_image(26, 31, seed=7)).save(src)
    f = tmp_path / "a.cdraw"
    rc, out, err = _cli(
        [
            "compress",
            str(src),
            "-k",
            "2",
            "--out",
            str(f),
            "--model",
            str(tiny_ckpt),
            "--preview",
            str(tmp_path / "p.png"),
            "--json",
        ],
        capsys,
    )
    assert rc == 0, err
    res = json.loads(out)
    assert res["bytes"] == f.stat().st_size and res["k"] == 2
    assert res["bpp"] == pytest.approx(8 * f.stat().st_size / (26 * 31))
    # decompress finds the model among the models folder by the weights' hash
    monkeypatch.setenv("NIPS_EXPLORER_MODELS", str(tiny_ckpt.parent))
    rc, _, err = _cli(["decompress", str(f), "--out", str(tmp_path / "d.png")], capsys)
    assert rc == 0, err
    assert np.array_equal(np.asarray(Image.open(tmp_path / "d.png")), np.asarray(Image.open(tmp_path / "p.png")))
    # --bpp: the real file is within the target
    rc, out, err = _cli(
        ["compress", str(src), "--bpp", "4", "--out", str(tmp_path / "b.cdraw"), "--model", str(tiny_ckpt), "--json"],
        capsys,
    )
    assert rc == 0, err
    assert json.loads(out)["bytes"] * 8 <= 4 * 26 * 31
    data = f.read_bytes()
    bad = {
        "trunc.cdraw": data[: len(data) - 7],
        "flip.cdraw": data[:30] + bytes([data[30] ^ 0x10]) + data[31:],
        "tiny.cdraw": data[:6],
        "other.cdraw": b"hello, not a file of ours",
    }
    for name, blob in bad.items():
        (tmp_path / name).write_bytes(blob)
        rc, _, err = _cli(["decompress", str(tmp_path / name), "--out", str(tmp_path / "x.png")], capsys)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert rc == 2 and len(lines) == 1 and "Traceback" not in err, (name, err)
        assert name in lines[0]
        assert any(w in lines[0] for w in ("corrupt", "truncated", "not a conv DRAW file")), lines[0]
    assert not (tmp_path / "x.png").exists()


def test_missing_model_is_named(tiny_ckpt, tmp_path, capsys, monkeypatch):
    from PIL import Image

    src = tmp_path / "in.png"
    Image.fromarray(synthetic_image(16, 16, seed=8)).save(src)
    f = tmp_path / "a.cdraw"
    assert _cli(["compress", str(src), "-k", "1", "--out", str(f), "--model", str(tiny_ckpt)], capsys)[0] == 0
    empty = tmp_path / "no_models"
    empty.mkdir()
    monkeypatch.setenv("NIPS_EXPLORER_MODELS", str(empty))
    rc, _, err = _cli(["decompress", str(f), "--out", str(tmp_path / "d.png")], capsys)
    assert rc == 2 and "Traceback" not in err
    assert "'tiny_codec'" in err and C.weights_id(C._cpu_model(_load(tiny_ckpt))).hex() in err
    assert "--model" in err


def _load(path):
    from explorer.papers.compression.infer import load

    return load(path, "cpu")[0]


def test_16_bit_and_palette_pngs_keep_their_values(tmp_path):
    from PIL import Image

    ramp = np.tile(np.linspace(0, 65535, 40).astype(np.uint16), (10, 1))
    Image.fromarray(ramp).save(tmp_path / "grey16.png")  # mode I;16
    img = load_image(tmp_path / "grey16.png")
    assert img.shape == (10, 40, 3) and img.dtype == np.uint8
    assert img.min() == 0 and img.max() == 255 and 100 < img.mean() < 155  # a ramp, not all white
    rgb = synthetic_image(12, 16, seed=9)
    pal = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16)
    pal.save(tmp_path / "pal.png")
    got = load_image(tmp_path / "pal.png")
    assert got.shape == rgb.shape
    assert np.abs(got.astype(int) - rgb).mean() < 12  # the palette's colours, not white
    rgb16 = (rgb.astype(np.uint16) * 257).astype(">u2")  # a 48-bit RGB PNG, written by hand
    _write_png16(tmp_path / "rgb16.png", rgb16)
    got16 = load_image(tmp_path / "rgb16.png")
    assert np.abs(got16.astype(int) - rgb).max() <= 1


def _write_png16(path, arr):
    import struct
    import zlib

    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def test_rate_distortion_envelope(tiny):
    from explorer.papers.compression.baselines import psnr

    img = synthetic_image(20, 28, seed=10)
    files = C.rd_files(tiny, img, steps=[1.0, 2.0, 4.0])
    sizes = [c.nbytes for c in files]
    quality = [psnr(img, c.image) for c in files]
    assert sizes == sorted(sizes) and quality == sorted(quality)
    for c in files:  # each one is a real file that decodes to its picture
        assert np.array_equal(C.decode(tiny, c.data)[0], c.image)
    few = C.rd_files(tiny, img, steps=[1.0, 2.0, 4.0], max_files=2)
    assert len(few) == min(2, len(files)) and few[0].nbytes == sizes[0]
