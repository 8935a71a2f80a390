"""SRNN headless tests: ELBO pieces, KL, inference look-ahead, training, eval CLI. Tiny shapes, CPU, seeded."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from explorer.papers.srnn import data as D
from explorer.papers.srnn.model import (
    bernoulli_loglik,
    build,
    elbo_loss,
    gaussian_kl,
    gaussian_logpdf,
    iwae_per_sequence,
    per_sequence,
    reverse_padded,
)

TINY = {"hidden": 12, "d_dim": 10, "z_dim": 3, "a_dim": 8}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    torch.set_num_threads(1)


def _model(**kw):
    cfg = dict(TINY)
    cfg.update(kw)
    return build(cfg).eval()


def _roll(B, T, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.bernoulli(torch.full((B, T, 88), 0.1), generator=g)
    u = torch.zeros_like(x)
    u[:, 1:] = x[:, :-1]
    return u, x


# -- ELBO pieces against hand computation ---------------------------------------------------------------------
def test_gaussian_kl_and_logpdf_by_hand():
    mq, lq, mp, lp = 0.3, math.log(0.5), -0.2, math.log(2.0)
    hand = 0.5 * (math.log(2.0 / 0.5) + (0.5 + 0.5**2) / 2.0 - 1.0)
    got = gaussian_kl(*(torch.tensor([v]) for v in (mq, lq, mp, lp)))
    assert got.item() == pytest.approx(hand, rel=1e-6)
    z = 0.7
    hand_lp = -0.5 * math.log(2 * math.pi * 2.0) - (z - mp) ** 2 / (2 * 2.0)
    assert gaussian_logpdf(torch.tensor([z]), torch.tensor([mp]), torch.tensor([lp])).item() == pytest.approx(hand_lp)


def test_bernoulli_and_per_step_normalisation_by_hand():
    logits = torch.tensor([[[0.0, 2.0], [-1.0, 1.0], [3.0, 3.0]]])  # (1, 3, 2)
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    s = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    hand = [math.log(s(0)) + math.log(1 - s(2)), math.log(1 - s(-1)) + math.log(s(1)), 2 * math.log(s(3))]
    ll = bernoulli_loglik(logits, x)
    assert ll[0].tolist() == pytest.approx(hand, rel=1e-5)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert per_sequence(ll, mask).item() == pytest.approx((hand[0] + hand[1]) / 2, rel=1e-5)
    kl = torch.tensor([[0.5, 1.5, 9.0]])
    loss, elbo, klv = elbo_loss({"ll": ll, "kl": kl}, mask, kl_weight=0.2)
    assert loss.item() == pytest.approx(-((hand[0] + hand[1]) / 2 - 0.2 * 1.0), rel=1e-5)
    assert elbo == pytest.approx((hand[0] + hand[1]) / 2 - 1.0, rel=1e-5) and klv == pytest.approx(1.0)


def test_iwae_is_log_mean_exp():
    lw = torch.tensor([[-3.0, -10.0], [-1.0, -12.0], [-2.0, -11.0]])  # (K=3, B=2)
    hand = [
        math.log((math.exp(-3) + math.exp(-1) + math.exp(-2)) / 3),
        math.log((math.exp(-10) + math.exp(-12) + math.exp(-11)) / 3),
    ]
    assert iwae_per_sequence(lw).tolist() == pytest.approx(hand, rel=1e-6)


def test_analytic_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(1)
    mq, mp = torch.randn(5, generator=g), torch.randn(5, generator=g)
    lq, lp = torch.randn(5, generator=g) * 0.5, torch.randn(5, generator=g) * 0.5
    z = mq + torch.exp(0.5 * lq) * torch.randn(200000, 5, generator=g)
    mc = (gaussian_logpdf(z, mq, lq) - gaussian_logpdf(z, mp, lp)).mean(0)
    assert torch.allclose(mc, gaussian_kl(mq, lq, mp, lp), atol=0.02)


def test_model_elbo_terms_recomputed_by_hand():
    """The model's ll / kl / log_w equal a step-by-step recomputation from its own weights."""
    m = _model(inference="filter", resq=True)
    u, x = _roll(2, 5)
    noise = torch.randn(2, 5, 3)
    with torch.no_grad():
        out = m(u, x, noise=noise)
        d, _ = m.d_rnn(m.emb(u))
        a = m.a_mlp(torch.cat([d, m.emb(x)], -1))
        z = torch.zeros(2, 3)
        for t in range(5):
            mu_p, lv_p = m.prior_step(d[:, t], z)
            h = m.config["hidden"]
            hid = torch.clamp(
                torch.nn.functional.leaky_relu(m.post_in(a[:, t]) + z @ m.z_in.weight[2 * h :].T, 1 / 3), -3, 3
            ).view(2, 2, h)
            mu_q = hid[:, 0] @ m.out_w[2] + m.out_b[2] + mu_p
            lv_q = torch.logaddexp(hid[:, 1] @ m.out_w[3] + m.out_b[3], torch.tensor(math.log(1e-6)))
            z = mu_q + torch.exp(0.5 * lv_q) * noise[:, t]
            logits = m.emit(torch.cat([d[:, t], z], -1))
            ll = bernoulli_loglik(logits, x[:, t])
            kl = gaussian_kl(mu_q, lv_q, mu_p, lv_p).sum(-1)
            lw = ll + (gaussian_logpdf(z, mu_p, lv_p) - gaussian_logpdf(z, mu_q, lv_q)).sum(-1)
            assert torch.allclose(out["ll"][:, t], ll, atol=1e-4)
            assert torch.allclose(out["kl"][:, t], kl, atol=1e-4)
            assert torch.allclose(out["log_w"][:, t], lw, atol=1e-3)


def test_resq_adds_prior_mean():
    m = _model(inference="filter", resq=True)
    u, x = _roll(1, 4)
    with torch.no_grad():
        on = m(u, x, noise=torch.zeros(1, 4, 3))
        m.resq = False
        off = m(u, x, noise=torch.zeros(1, 4, 3))
    # step 1 has the same z_0 = 0 in both, so mu_q differs exactly by mu_p there
    assert torch.allclose(on["mu_q"][:, 0] - off["mu_q"][:, 0], on["mu_p"][:, 0], atol=1e-5)


# -- inference look-ahead -----------------------------------------------------------------------------------
@pytest.mark.parametrize("inference,changes", [("filter", False), ("smooth", True)])
def test_posterior_lookahead(inference, changes):
    m = _model(inference=inference)
    u, x = _roll(1, 12)
    x2 = x.clone()
    x2[:, 7:] = 1.0 - x2[:, 7:]  # change x_{8..T}
    u2 = torch.zeros_like(x2)
    u2[:, 1:] = x2[:, :-1]
    noise = torch.randn(1, 12, 3)
    with torch.no_grad():
        a, b = m(u, x, noise=noise), m(u2, x2, noise=noise)
    same = torch.allclose(a["mu_q"][:, :7], b["mu_q"][:, :7]) and torch.allclose(
        a["logvar_q"][:, :7], b["logvar_q"][:, :7]
    )
    assert same != changes
    assert not torch.allclose(a["mu_q"][:, 7:], b["mu_q"][:, 7:])


def test_padding_does_not_change_scores():
    """A padded piece in a batch scores exactly as when run alone (backward GRU reversed within its length)."""
    m = _model(inference="smooth")
    u, x = _roll(2, 9)
    mask = torch.ones(2, 9)
    mask[1, 6:] = 0
    u[1, 6:] = 0
    x[1, 6:] = 0
    noise = torch.randn(2, 9, 3)
    with torch.no_grad():
        both = m(u, x, mask=mask, noise=noise)
        alone = m(u[1:, :6], x[1:, :6], noise=noise[1:, :6])
    assert torch.allclose(both["ll"][1, :6], alone["ll"][0], atol=1e-5)
    assert torch.allclose(both["kl"][1, :6], alone["kl"][0], atol=1e-5)
    r = reverse_padded(torch.arange(6.0).view(2, 3, 1), torch.tensor([3, 2]))
    assert r[:, :, 0].tolist() == [[2, 1, 0], [4, 3, 5]]


# -- training and evaluation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["srnn", "gru"])
def test_few_steps_lower_the_loss(kind):
    m = _model(kind=kind, inference="smooth").train()
    u, x = _roll(8, 20, seed=3)
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    noise = torch.randn(8, 20, 3)

    def loss_now():
        with torch.no_grad():
            return elbo_loss(m(u, x, noise=noise) if kind == "srnn" else m(u, x), None, 1.0)[0].item()

    before = loss_now()
    for _ in range(25):
        loss, _, _ = elbo_loss(m(u, x), None, 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss_now() < before - 1.0


def test_fit_resume_and_checkpoint(tmp_path):
    from explorer.core.checkpoints import read_metadata
    from explorer.papers.srnn.infer import load_model_file
    from explorer.papers.srnn.train import fit

    data = D.MusicData(name="jsb", **D.synthetic(n_train=32, n_valid=8, n_test=3, t_chunk=20, t_test=15))
    for k in ("u_test",):
        np.nan_to_num(getattr(data, k), copy=False)
    m = _model()
    out = tmp_path / "m.safetensors"
    s1 = fit(m, data, "cpu", {"epochs": 1}, out_path=out)
    resume = tmp_path / "m.resume.safetensors"
    assert out.exists() and resume.exists() and s1["epochs_run"] == 1
    s2 = fit(_model(), data, "cpu", {"epochs": 2}, out_path=out, resume=out)
    assert [h["epoch"] for h in s2["history"]] == [1, 2] and s2["training"]["resumed_from"] == resume.name
    meta = read_metadata(out)
    assert meta.paper == "srnn" and meta.metrics["headline"] == "valid_elbo_per_step"
    assert meta.extra["training"]["world_size"] == 1
    model, _ = load_model_file(out)
    assert model.config["z_dim"] == 3


def test_resume_inside_an_epoch_continues_bit_for_bit(tmp_path):
    """Two epochs straight == stopped after 3 batches (a signal), then resumed: same weights, same history."""
    from explorer.papers.srnn.train import fit

    data = D.MusicData(name="jsb", **D.synthetic(n_train=64, n_valid=8, n_test=3, t_chunk=20, t_test=15))
    torch.manual_seed(5)
    a = _model()
    sa = fit(a, data, "cpu", {"epochs": 2}, out_path=tmp_path / "a" / "m.safetensors")

    torch.manual_seed(5)
    b = _model()
    import explorer.core.training as tc

    orig = tc.Run.step

    def step(self, *a_, **k):  # stands in for Ctrl+C during the 3rd step (of 4 per epoch)
        if self.step_count == 2:
            self._signal = True
        return orig(self, *a_, **k)

    tc.Run.step = step
    try:
        s1 = fit(b, data, "cpu", {"epochs": 2}, out_path=tmp_path / "b" / "m.safetensors")
    finally:
        tc.Run.step = orig
    assert s1["stop"] == "signal" and s1["training"]["steps"] == 3 and s1["epochs_run"] == 0
    c = _model()
    s2 = fit(
        c,
        data,
        "cpu",
        {"epochs": 2},
        out_path=tmp_path / "b" / "m.safetensors",
        resume=tmp_path / "b" / "m.resume.safetensors",
    )
    assert s2["training"]["steps"] == sa["training"]["steps"]
    assert [h["valid_elbo_per_step"] for h in s2["history"]] == [h["valid_elbo_per_step"] for h in sa["history"]]
    for k, v in a.state_dict().items():
        assert torch.equal(v, c.state_dict()[k]), k


def test_two_processes_under_torchrun(tmp_path):
    """torchrun with 2 gloo processes: the record says so, and both ranks ended with identical weights."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from explorer.core.checkpoints import read_metadata

    D.write_synthetic(tmp_path, "jsb", n_train=32, n_valid=4, n_test=3, t_chunk=20, t_test=20)
    out = tmp_path / "two.safetensors"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[3]), NIPS_EXPLORER_THREADS="1")
    r = subprocess.run(
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
            "srnn",
            "--data",
            str(tmp_path),
            "--epochs",
            "1",
            "--d-dim",
            "8",
            "--z-dim",
            "2",
            "--a-dim",
            "8",
            "--hidden",
            "8",
            "--iwae-samples",
            "0",
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rec = read_metadata(out).extra["training"]
    assert rec["world_size"] == 2 and rec["backend"] == "gloo" and rec["steps"] == 2
    res = read_metadata(tmp_path / "two.resume.safetensors").extra["training"]
    assert res["ranks_in_sync"] is True


def test_train_cli_refuses_zero_minutes(tmp_path, capsys):
    from explorer.cli import main

    D.write_synthetic(tmp_path, "jsb", n_train=16, n_valid=4, n_test=3, t_chunk=20, t_test=20)
    assert main(["train", "srnn", "--data", str(tmp_path), "--minutes", "0"]) == 2
    assert "--minutes" in capsys.readouterr().err


def test_gru_bound_equals_likelihood():
    from explorer.papers.srnn.evaluate import evaluate_test

    data = D.MusicData(name="jsb", **D.synthetic(n_train=16, n_valid=4, n_test=3, t_chunk=10, t_test=12))
    np.nan_to_num(data.u_test, copy=False)
    res = evaluate_test(_model(kind="gru"), data, "cpu", samples=5)
    assert res["test_iwae_per_step"] == pytest.approx(res["test_elbo_per_step"])
    assert res["steps"] == int(data.mask_test.sum()) and res["sequences"] == 3


def test_iwae_tighter_than_elbo_on_average():
    from explorer.papers.srnn.evaluate import evaluate_test

    data = D.MusicData(name="jsb", **D.synthetic(n_train=16, n_valid=4, n_test=4, t_chunk=10, t_test=10))
    np.nan_to_num(data.u_test, copy=False)
    res = evaluate_test(_model(), data, "cpu", samples=64)
    assert res["test_iwae_per_step"] > res["test_elbo_per_step"]


def test_data_loader_errors(tmp_path):
    from explorer.core.errors import UserError

    with pytest.raises(UserError, match="no such folder"):
        D.load(tmp_path / "nope", "jsb")
    with pytest.raises(UserError, match="has no"):
        D.load(tmp_path, "jsb")
    np.savez(tmp_path / D.file_name("piano"), x_train=np.zeros((2, 3, 88)))
    with pytest.raises(UserError, match="missing arrays"):
        D.load(tmp_path, "piano")
    with pytest.raises(UserError, match="unknown data set"):
        D.load(tmp_path, "bach")
    p = D.write_synthetic(tmp_path, "muse", n_test=2)
    d = D.load(p, "muse")
    assert not np.isnan(d.u_test).any() and d.x_train.shape[1:] == (100, 88)


def test_eval_cli_on_tiny_npz(tmp_path, capsys):
    from explorer.papers.srnn import cli

    D.write_synthetic(tmp_path, "jsb", n_train=16, n_valid=4, n_test=3, t_chunk=100, t_test=20)
    ck = tmp_path / "tiny.safetensors"
    assert (
        cli.main(
            [
                "train",
                "--data",
                str(tmp_path),
                "--epochs",
                "1",
                "--d-dim",
                "8",
                "--z-dim",
                "2",
                "--a-dim",
                "8",
                "--hidden",
                "8",
                "--out",
                str(ck),
                "--iwae-samples",
                "2",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        cli.main(["eval", "--data", str(tmp_path), "--checkpoint", str(ck), "--samples", "3", "--json", "--record"])
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    for k in ("dataset", "test_elbo_per_step", "test_iwae_per_step", "paper_per_step", "steps", "sequences"):
        assert k in res
    assert res["dataset"] == "jsb" and res["paper_per_step"] == -4.74 and res["sequences"] == 3
    from explorer.core.checkpoints import read_metadata

    assert read_metadata(ck).metrics["iwae_samples"] == 3
    # a user mistake is one line, exit 2
    assert cli.main(["eval", "--data", str(tmp_path / "missing"), "--checkpoint", str(ck)]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_headless_modules_do_not_import_qt():
    code = (
        "import sys\n"
        "import explorer.papers.srnn, explorer.papers.srnn.cli\n"
        "assert 'torch' not in sys.modules, 'cli/__init__ must not import torch'\n"
        "import explorer.papers.srnn.model, explorer.papers.srnn.data, explorer.papers.srnn.train\n"
        "import explorer.papers.srnn.evaluate, explorer.papers.srnn.infer\n"
        "bad = [m for m in ('PySide6', 'pyqtgraph', 'vtkmodules') if m in sys.modules]\n"
        "sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_music21_chorales_are_eighth_note_rolls():
    pytest.importorskip("music21")
    rolls = D.roll_from_music21(max_pieces=1)
    title, r = rolls[0]
    assert r.shape[1] == 88 and 2 <= r.sum(1).mean() <= 5  # four voices, mostly


def test_predictive_never_sees_the_frame_it_predicts():
    """The particle filter's p(x_t | x_<t) is unchanged when x_t (or anything later) changes; the ELBO's
    reconstruction term is not (its posterior has seen x_t)."""
    torch.manual_seed(0)
    model = _model(kind="srnn", inference="smooth", resq=True)
    x = (torch.rand(12, 88) < 0.1).float()
    u = torch.from_numpy(D.inputs_for(x.numpy()))
    lp, probs, ess = model.predictive(u, x, particles=32, generator=torch.Generator().manual_seed(1))
    assert lp.shape == (12,) and probs.shape == (12, 88) and torch.isfinite(lp).all()
    assert ((probs > 0) & (probs < 1)).all() and (ess >= 1 - 1e-4).all() and (ess <= 32 + 1e-3).all()
    x2 = x.clone()
    x2[7:] = 1 - x2[7:]  # change frames 7.. (and so the inputs from 8 on)
    u2 = torch.from_numpy(D.inputs_for(x2.numpy()))
    lp2, probs2, _ = model.predictive(u2, x2, particles=32, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(probs2[:8], probs[:8]) and torch.allclose(lp2[:7], lp[:7])
    assert not torch.allclose(lp2[7], lp[7])


def test_analyse_reports_the_predictive_for_both_kinds():
    from explorer.papers.srnn.infer import analyse

    torch.manual_seed(0)
    x = (np.random.default_rng(0).random((10, 88)) < 0.1).astype(np.float32)
    srnn = _model(kind="srnn", inference="filter", resq=True)
    gru = _model(kind="gru")
    r = analyse(srnn, x, samples=4, particles=16)
    assert r["pred_ll"].shape == (10,) and r["pred_probs"].shape == (10, 88) and r["particles"] == 16
    g = analyse(gru, x)
    assert np.allclose(g["pred_ll"], g["ll"]) and g["pred_ll_per_step"] == pytest.approx(g["elbo_per_step"])


def test_eval_cli_reports_the_one_step_predictive(tmp_path, capsys):
    from explorer.cli import main as cli_main
    from explorer.core.checkpoints import save_checkpoint

    D.write_synthetic(tmp_path, "jsb", n_train=4, n_valid=2, n_test=2, t_test=12)
    model = _model(kind="srnn", inference="filter", resq=True)
    ck = save_checkpoint(tmp_path / "m.safetensors", model.state_dict(), paper="srnn", model_config=model.config)
    assert (
        cli_main(
            [
                "eval",
                "srnn",
                "--dataset",
                "jsb",
                "--data",
                str(tmp_path),
                "--checkpoint",
                str(ck),
                "--samples",
                "2",
                "--particles",
                "8",
                "--json",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert res["predictive_particles"] == 8 and res["predictive_pieces"] == 2
    assert math.isfinite(res["test_predictive_per_step"])


@pytest.mark.parametrize("kind", ["srnn", "gru"])
def test_bptt_memory_gives_the_gradients_of_full_bptt(kind):
    """--bptt-memory: the GRUs run through checkpointed_rnn, storing less, with full BPTT's gradients."""
    from explorer.papers.bptt import memory_probe

    torch.manual_seed(0)
    m = build({"kind": kind, "hidden": 16, "d_dim": 12, "z_dim": 3, "a_dim": 8}).train()
    u = torch.rand(4, 40, 88).round()
    x = torch.rand(4, 40, 88).round()
    grads, stored = [], []
    for budget in (None, 1.0, 0.2):
        m.bptt_memory = budget
        torch.manual_seed(1)
        with memory_probe() as calls:
            loss, _, _ = elbo_loss(m(u, x), None, 1.0)
            stored.append(sum(c.bytes_after_forward for c in calls))
        m.zero_grad()
        loss.backward()
        grads.append({k: p.grad.clone() for k, p in m.named_parameters()})
    for k in grads[0]:
        for g in grads[1:]:
            assert torch.allclose(g[k], grads[0][k], rtol=1e-4, atol=1e-6), k
    assert stored[0] == 0 and 0 < stored[2] < 0.5 * stored[1]  # plain nn.GRU: no checkpointed call
