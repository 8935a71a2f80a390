"""The peer codecs (JPEG, JPEG 2000, WebP, AVIF) computed in the helper process equal those computed here."""

import io
import pickle

import numpy as np

from explorer.papers.compression import codec_process
from explorer.papers.compression.infer import peers_within


def _image():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:64]
    img = np.stack([x * 4, y * 4, (x + y) * 2], -1) + rng.integers(0, 20, (64, 64, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_serve_answers_requests_until_the_pipe_closes():
    img = _image()
    inp = io.BytesIO()
    pickle.dump((img, 512), inp)
    pickle.dump((img, 0), inp)  # no bytes: no files
    pickle.dump(("not an image", 512), inp)
    inp.seek(0)
    out = io.BytesIO()
    codec_process.serve(inp, out)
    out.seek(0)
    (ok1, r1), (ok2, r2), (ok3, r3) = (pickle.load(out) for _ in range(3))
    assert ok1 and all(0 < r1[c].nbytes <= 512 for c in ("jpeg2000", "webp", "avif"))
    assert r1["jpeg"] is None or r1["jpeg"].nbytes <= 512
    assert ok2 and r2 == {"jpeg": None, "jpeg2000": None, "webp": None, "avif": None}
    assert not ok3 and isinstance(r3, Exception)


def test_the_helper_process_gives_what_the_app_would_compute():
    img = _image()
    proc = codec_process.CodecProcess()
    try:
        got = proc.peers_within(img, 900)
        assert proc._proc is not None and proc._proc.poll() is None and not proc._failed  # a real child
        want = peers_within(img, 900)
        for name in ("jpeg", "jpeg2000", "webp", "avif"):
            assert got[name].nbytes == want[name].nbytes and got[name].setting == want[name].setting
            assert np.array_equal(got[name].image, want[name].image)
    finally:
        proc.close()
    assert proc._proc is None
