"""Neural art as an l2l optimizee (issue 28): the random-feature style loss, the StyleProblem variants on the l2l
problem interface, L-BFGS at one gradient evaluation per step, meta-training + resume on the shared core, the
checkpoint round trip (feature network inside), and the fair evaluation's JSON. Tiny images (16x16), 2 steps."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch


@pytest.fixture
def photos(tmp_path, monkeypatch):
    """A folder of small random 'photos' in the BSDS500 naming (train_/val_/test_), tiny problem variants."""
    from PIL import Image

    from explorer.papers.l2l import style, style_data

    rng = np.random.default_rng(0)
    d = tmp_path / "photos" / "bsds500"
    d.mkdir(parents=True)
    for split in ("train", "val", "test"):
        for i in range(3):
            a = (rng.random((24, 32, 3)) * 255).astype(np.uint8)
            Image.fromarray(a).save(d / f"{split}_{i}.png")
    monkeypatch.setenv("NIPS_EXPLORER_PHOTOS", str(tmp_path / "photos"))
    style_data.photo_files.cache_clear()
    tiny = {k: {**v, "size": 16, "steps": 2} for k, v in style.STYLE_VARIANTS.items()}
    tiny["style-128"]["size"] = 32
    monkeypatch.setattr(style, "STYLE_VARIANTS", tiny)
    yield d
    style_data.photo_files.cache_clear()


def _pair(size=16):
    from explorer.papers.l2l.style_data import style_image

    g = torch.Generator().manual_seed(0)
    content = torch.rand(3, size, size, generator=g)
    return content, style_image("disco", size)


def test_headless():
    import subprocess

    code = "import sys, explorer.papers.l2l.style, explorer.papers.l2l.style_data; print('PySide6' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_feature_network_is_the_bundled_file_and_loss_is_normalised():
    from explorer.papers.l2l.style import FEATURE_STAGES, FeatureNet, StyleProblem, feature_weights

    w = feature_weights()
    assert len(w) == 2 * sum(len(c) for _, c in FEATURE_STAGES)
    maps = FeatureNet().maps(torch.rand(1, 3, 16, 16))
    assert [m.shape[-1] for m in maps] == [16, 8, 4]
    p = StyleProblem(*_pair())
    terms = p.terms(p.init_params())
    assert terms["content"] == 0.0 and terms["range"] == 0.0
    assert 0.1 < float(p.loss(p.init_params())) < 10  # O(1) at the start (the content image)


def test_loss_finite_and_decreasing_under_adam():
    from explorer.papers.l2l.style import StyleProblem

    p = StyleProblem(*_pair(), steps=20)
    th = p.init_params().requires_grad_(True)
    opt = torch.optim.Adam([th], lr=0.03)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = p.loss(th).sum()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0]
    pic = p.picture(th)
    assert pic.shape == (16, 16, 3) and pic.dtype == np.uint8


def test_style_problems_on_the_problem_interface(photos):
    from explorer.papers.l2l.problems import make_problem
    from explorer.papers.l2l.style_data import HELD_OUT_STYLES

    p = make_problem("style", 1, split="train")
    assert p.n_params == 3 * 16 * 16 and p.n_instances == 1 and p.steps == 2
    th = p.init_params()
    assert torch.equal(th.view(3, 16, 16), p.content)
    assert p.loss(th, 0).shape == (1,) and torch.equal(p.final_loss(th), p.loss(th, 5))
    assert make_problem("style-128", 1).n_params == 3 * 32 * 32
    styles = {make_problem("style-newstyle", 2_000_000_000 + i).label.split()[-1] for i in range(5)}
    assert styles == set(HELD_OUT_STYLES)
    # the roles of the photos: train_, val_ (tuning), test_ (held out) never mix
    a, b, c = (make_problem("style", 0, split=s).content for s in ("train", "tune", "test"))
    assert not torch.equal(a, b) and not torch.equal(b, c)
    assert make_problem("style", 0, split="tune").cache_key != make_problem("style", 0).cache_key


def test_lbfgs_takes_one_gradient_evaluation_per_step():
    from explorer.papers.l2l.optimizer_runs import run_optimizer
    from explorer.papers.l2l.style import StyleProblem

    p = StyleProblem(*_pair(), steps=5)
    calls = []
    orig = p.loss
    p.loss = lambda th, t=0: calls.append(t) or orig(th, t)
    r = run_optimizer(p, "lbfgs", lr=0.3)
    assert calls[:5] == [0, 1, 2, 3, 4] and len(calls) == 5 + 2  # + the final loss twice (curve end, final)
    assert r["curve"].shape == (6, 1) and r["final"][0] < r["curve"][0, 0]


def test_meta_train_resume_and_checkpoint_round_trip(photos, tmp_path):
    from explorer.core.checkpoints import load_checkpoint
    from explorer.core.errors import CheckpointError, UserError
    from explorer.papers.l2l.infer import load_learned, training_problem
    from explorer.papers.l2l.style import FEATURE_PREFIX, split_checkpoint
    from explorer.papers.l2l.train import DEFAULT_P, DEFAULT_TRAIN, train_problem

    cfg = {**DEFAULT_TRAIN["style"], "steps": 4, "unroll": 2, "val_runs": 1, "val_every": 1, "epochs": 3}
    out = tmp_path / "l2l_style.safetensors"
    h1 = train_problem("style", "cpu", dict(cfg), out, steps=1)
    assert h1["steps"] == 1 and h1["stop"] == "steps"
    h2 = train_problem("style", "cpu", dict(cfg), out, steps=3, resume=h1["resume_file"])
    assert h2["steps"] == 3 and h2["epochs_done"] == 1
    ck = load_checkpoint(out)
    assert any(k.startswith(FEATURE_PREFIX) for k in ck.state_dict)
    net, meta = load_learned(out)
    assert training_problem(meta) == "style" and "BSDS500" in meta.data["name"]
    assert net.p == DEFAULT_P["style"] == 16.0  # the style problem's preprocessing constant, in the checkpoint
    with pytest.raises(UserError, match="p 16.0 \\(now 10.0\\)"):  # a resume must keep the preprocessing
        train_problem(
            "style",
            "cpu",
            dict(cfg),
            tmp_path / "x.safetensors",
            steps=4,
            resume=h2["resume_file"],
            model_config={"p": 10.0},
        )
    # --init from a style checkpoint (the feature network inside is split off, not a "does not fit" error)
    out2 = tmp_path / "l2l_style_init.safetensors"
    h3 = train_problem("style", "cpu", dict(cfg), out2, steps=1, init=str(out))
    assert h3["steps"] == 1
    net2, _ = load_learned(out2)
    assert all(torch.isfinite(q).all() for q in net2.parameters())
    bad = dict(ck.state_dict)
    k = next(k for k in bad if k.startswith(FEATURE_PREFIX))
    bad[k] = bad[k] + 1
    with pytest.raises(CheckpointError, match="other feature-network weights"):
        split_checkpoint(bad, "x")


def test_longer_meta_training_horizon_keeps_validation_at_the_measured_length(photos):
    """--horizon T: meta-training runs of T steps, validation runs as long as the measured ones."""
    from explorer.papers.l2l.train import DEFAULT_TRAIN, make_train_data

    cfg = {**DEFAULT_TRAIN["style"], "steps": 6, "val_steps": 2, "val_runs": 2}
    data = make_train_data("style", "cpu", cfg)
    assert data.sample(0).steps == 6 and [p.steps for p in data.val] == [2, 2]
    plain = make_train_data("style", "cpu", {**cfg, "val_steps": None})
    assert [p.steps for p in plain.val] == [6, 6]


def test_fair_eval_json_with_lbfgs(photos, tmp_path, monkeypatch):
    from explorer.core.checkpoints import save_checkpoint
    from explorer.papers.l2l.evaluate import evaluate_fair_problems, format_fair_table
    from explorer.papers.l2l.model import LSTMOptimizer
    from explorer.papers.l2l.style import checkpoint_extras

    monkeypatch.setenv("NIPS_EXPLORER_L2L_RUN_CACHE", str(tmp_path / "cache"))
    net = LSTMOptimizer()
    feats, note = checkpoint_extras()
    out = tmp_path / "l2l_style.safetensors"
    save_checkpoint(out, {**net.state_dict(), **feats}, paper="l2l", model_config={**net.config(), "problem": "style"})
    res = evaluate_fair_problems(["style"], "cpu", checkpoints=[str(out)], runs=2, tune_runs=1, save=True)
    rec = res["problems"]["style"]
    assert set(rec["metrics"]["final"]["optimizers"]) == {"learned", "sgd", "rmsprop", "adam", "nag", "lbfgs"}
    assert rec["tuning_data"].startswith("tuning: BSDS500 val_")
    json.dumps(res)
    assert "L-BFGS" in format_fair_table(res)
    assert list((tmp_path / "cache").glob("style-tune-*-lbfgs-*.npz"))
    # a second evaluation reads the baselines' runs from the cache: the same numbers
    again = evaluate_fair_problems(["style"], "cpu", checkpoints=[str(out)], runs=2, tune_runs=1)
    assert again["problems"]["style"]["tuning"]["lr"] == rec["tuning"]["lr"]


def test_curves_of_runs_that_diverged_early_still_stack():
    from explorer.papers.l2l.evaluate import _stack_curves

    c = _stack_curves([np.ones((3, 1)), np.ones((5, 2))])
    assert c.shape == (5, 3) and np.isinf(c[3:, 0]).all() and np.isfinite(c[:, 1:]).all()
