"""The JPEG / JPEG 2000 baselines computed in the helper process equal those computed here."""

import io
import pickle

import numpy as np

from explorer.papers.compression import codec_process
from explorer.papers.compression.infer import baselines_at


def _image():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:64]
    img = np.stack([x * 4, y * 4, (x + y) * 2], -1) + rng.integers(0, 20, (64, 64, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_serve_answers_requests_until_the_pipe_closes():
    img = _image()
    inp = io.BytesIO()
    pickle.dump((img, 1.0), inp)
    pickle.dump((img, -1.0), inp)  # no rate: no baselines
    pickle.dump(("not an image", 1.0), inp)
    inp.seek(0)
    out = io.BytesIO()
    codec_process.serve(inp, out)
    out.seek(0)
    (ok1, r1), (ok2, r2), (ok3, r3) = (pickle.load(out) for _ in range(3))
    assert ok1 and r1["jpeg"].bpp > 0 and r1["jpeg2000"].bpp > 0
    assert ok2 and r2 == {"jpeg": None, "jpeg2000": None}
    assert not ok3 and isinstance(r3, Exception)


def test_the_helper_process_gives_what_the_app_would_compute():
    img = _image()
    proc = codec_process.CodecProcess()
    try:
        got = proc.baselines_at(img, 1.0)
        assert proc._proc is not None and proc._proc.poll() is None and not proc._failed  # a real child
        want = baselines_at(img, 1.0)
        for name in ("jpeg", "jpeg2000"):
            assert got[name].nbytes == want[name].nbytes and got[name].setting == want[name].setting
            assert np.array_equal(got[name].image, want[name].image)
    finally:
        proc.close()
    assert proc._proc is None
