"""The SRNN tab's jobs (infer.py, no Qt): what the panel's workers run, called directly on the CPU."""

from __future__ import annotations

import wave

import numpy as np
import pytest
import torch

from explorer.core.errors import Cancelled
from explorer.core.paths import bundled
from explorer.core.tasks import CancelToken
from explorer.papers.srnn import infer

pytestmark = pytest.mark.skipif(
    not bundled("srnn_jsb_smooth_resq.safetensors").exists(), reason="bundled SRNN checkpoint missing"
)


@pytest.fixture(scope="module")
def prepared():
    torch.set_num_threads(1)
    return infer.prepare("jsb", None, device="cpu")


def test_prepare_gives_test_pieces_and_the_bundled_companions(prepared):
    assert prepared["dataset"] == "jsb" and prepared["pieces"] and "test" in prepared["source"]
    assert all(x.ndim == 2 and x.shape[1] == 88 for _, x in prepared["pieces"])
    comps = prepared["companions"]
    assert "smooth" in comps and set(comps) <= set(infer.COMPANIONS)
    model, meta = comps["smooth"]
    assert meta.name == "srnn_jsb_smooth_resq.safetensors" and meta.data["name"] == "jsb"
    skipped = infer.prepare("jsb", meta.name, device="cpu")["companions"]  # the main model is not loaded twice
    assert "smooth" not in skipped and set(skipped) == set(comps) - {"smooth"}


def test_analyse_models_yields_each_model_in_order_with_progress(prepared):
    models = {k: m for k, (m, _) in prepared["companions"].items()}
    order = ["smooth"] + [k for k in models if k != "smooth"]
    x = prepared["pieces"][0][1][:12]
    reports = []
    gen = infer.analyse_models(
        {k: models[k] for k in order}, x, 2, device="cpu", token=CancelToken(), progress=lambda f, m: reports.append(m)
    )
    got = []
    with pytest.raises(StopIteration) as stop:
        while True:
            got.append(next(gen))
    assert stop.value.value == len(order) and [k for k, _ in got] == order
    assert reports == [f"analysing with {infer.LABELS[k]}" for k in order]
    for _, r in got:
        assert len(r["pred_ll"]) == 12 and np.isfinite(r["elbo_per_step"])
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        next(infer.analyse_models(models, x, 2, token=token))


def test_continue_and_write_samples_a_continuation_and_its_wav(prepared, tmp_path):
    model = prepared["companions"]["smooth"][0]
    x = prepared["pieces"][0][1]
    res = infer.continue_and_write(model, x, 8, 10, seed=3, temperature=1.0, step_s=0.05, wav_dir=str(tmp_path))
    assert res["prime"].shape == (8, 88) and res["generated"].shape == (10, 88) and res["probs"].shape == (10, 88)
    assert set(np.unique(res["generated"])) <= {0.0, 1.0}
    with wave.open(res["wav"]) as w:
        assert 18 * 0.05 <= w.getnframes() / w.getframerate() <= 18 * 0.05 + 1.0  # the steps, and a release tail
    again = infer.continue_and_write(model, x, 8, 10, seed=3, temperature=1.0, step_s=0.05, wav_dir=str(tmp_path))
    assert np.array_equal(again["generated"], res["generated"])  # seeded
