"""Test-set evaluation: ELBO per step exactly as in the paper, and an importance-sampled bound (headless).

The paper's music metric (the authors' ``test_epoch``): for every test piece, the sum over its real (masked)
steps of ``log p(x_t|z_t,d_t) - KL_t`` divided by its number of steps, then the mean over pieces; one sample
of z, zero initial state. We also give the pooled variant (total over all pieces / total steps) and the
importance-sampled bound with K samples of the whole z path per piece,
``log (1/K) sum_k p(x, z^k) / q(z^k | x)``, divided by the piece's length (tighter than the ELBO; K = 1 gives
a one-sample ELBO estimate with the sampled instead of the analytic KL). For the GRU baseline every number is
the exact log-likelihood.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .data import PAPER_PER_STEP, PAPER_RNN_PER_STEP, MusicData


@torch.no_grad()
def sequence_scores(
    model,
    u: np.ndarray,
    x: np.ndarray,
    mask: np.ndarray,
    device,
    samples: int = 0,
    batch_steps: int = 40000,
    seed: int = 0,
    progress: Callable | None = None,
    token=None,
) -> dict[str, np.ndarray]:
    """Per-piece sums over real steps: elbo, ll, kl (one sample), and the IWAE log-mean-weight (K samples).

    Pieces are sorted by length and batched (trimmed to the batch's longest piece); ``samples`` K copies of each
    piece run side by side. Returns arrays of shape (N,) plus 'steps'.
    """
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    N = len(x)
    lengths = mask.sum(1).astype(int)
    order = np.argsort(-lengths)
    res = {k: np.zeros(N) for k in ("elbo", "ll", "kl", "iwae")}
    is_srnn = model.config["kind"] == "srnn"
    zdim = model.config.get("z_dim", 1)
    K = max(0, int(samples))
    done, total = 0, int(lengths.sum()) * (1 + (K if is_srnn else 0))
    i = 0
    while i < N:
        T = int(lengths[order[i]])
        nb = max(1, min(N - i, batch_steps // max(T, 1)))
        idx = order[i : i + nb]
        ub = torch.from_numpy(np.nan_to_num(u[idx, :T])).to(device)
        xb = torch.from_numpy(x[idx, :T]).to(device)
        mb = torch.from_numpy(mask[idx, :T]).to(device)
        kw = {}
        if is_srnn:
            kw["noise"] = torch.randn(len(idx), T, zdim, generator=gen).to(device)
        out = model(ub, xb, mask=mb, **kw)
        res["ll"][idx] = (out["ll"] * mb).sum(1).cpu().numpy()
        res["kl"][idx] = (out["kl"] * mb).sum(1).cpu().numpy()
        res["elbo"][idx] = res["ll"][idx] - res["kl"][idx]
        done += int(mb.sum())
        if progress is not None:
            progress(done / total, "ELBO")
        if is_srnn and K > 0:
            # K importance samples, in groups that keep about batch_steps steps in memory
            per = max(1, batch_steps // (T * len(idx)))
            logw = []
            k = 0
            while k < K:
                if token is not None:
                    token.check()
                kk = min(per, K - k)
                ur, xr, mr = (t.repeat(kk, *([1] * (t.dim() - 1))) for t in (ub, xb, mb))
                noise = torch.randn(ur.shape[0], T, zdim, generator=gen).to(device)
                o = model(ur, xr, mask=mr, noise=noise)
                logw.append((o["log_w"] * mr).sum(1).view(kk, len(idx)))
                k += kk
                done += int(mb.sum()) * kk
                if progress is not None:
                    progress(done / total, f"importance samples {k}/{K}")
            lw = torch.cat(logw, 0)
            res["iwae"][idx] = (torch.logsumexp(lw, 0) - math.log(K)).cpu().numpy()
        else:
            res["iwae"][idx] = res["elbo"][idx]
        if token is not None:
            token.check()
        i += nb
    res["steps"] = lengths.astype(float)
    return res


def evaluate_test(
    model, data: MusicData, device, samples: int = 100, seed: int = 0, progress=None, token=None
) -> dict[str, Any]:
    """The eval command's numbers for one data set (see the module docstring)."""
    sc = sequence_scores(
        model,
        data.u_test,
        data.x_test,
        data.mask_test,
        device,
        samples=samples,
        seed=seed,
        progress=progress,
        token=token,
    )
    steps = sc["steps"]
    keep = steps > 0
    per = lambda k: float(np.mean(sc[k][keep] / steps[keep]))  # noqa: E731
    pooled = lambda k: float(sc[k][keep].sum() / steps[keep].sum())  # noqa: E731
    is_srnn = model.config["kind"] == "srnn"
    paper = PAPER_PER_STEP if is_srnn else PAPER_RNN_PER_STEP
    return {
        "dataset": data.name,
        "model": describe_model(model.config),
        "test_elbo_per_step": per("elbo"),
        "test_iwae_per_step": per("iwae") if (is_srnn and samples > 0) else per("elbo"),
        "iwae_samples": int(samples) if is_srnn else 0,
        "test_ll_term_per_step": per("ll"),
        "test_kl_per_step": per("kl"),
        "test_elbo_per_step_pooled": pooled("elbo"),
        "test_iwae_per_step_pooled": pooled("iwae") if (is_srnn and samples > 0) else pooled("elbo"),
        "paper_per_step": paper.get(data.name),
        "paper_row": "SRNN smooth+Resq (Table 2)" if is_srnn else "RNN (Table 2, from Boulanger-Lewandowski et al.)",
        "steps": int(steps.sum()),
        "sequences": int(keep.sum()),
    }


def predictive_test(
    model, data: MusicData, device, particles: int = 256, seed: int = 0, progress=None, token=None
) -> dict[str, Any]:
    """The test set's one-step predictive log-likelihood, log p(x_t | x_<t) summed over each piece and divided by
    its length, averaged over the pieces (the paper's per-step convention): by a particle filter for SRNN
    (``SRNN.predictive``; its sum is a stochastic lower bound on log p(x_1:T) in expectation, tighter with more
    particles), exact for the GRU."""
    import torch

    n = len(data.x_test)
    per_piece, steps = [], 0
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for i in range(n):
            if token is not None:
                token.check()
            u, x = data.test_piece(i)
            if not len(x):
                continue
            ub = torch.from_numpy(np.ascontiguousarray(u)).to(device)
            xb = torch.from_numpy(np.ascontiguousarray(x)).to(device)
            if model.config["kind"] == "srnn":
                lp, _, _ = model.predictive(ub, xb, particles=particles, generator=gen)
            else:
                lp = model(ub[None], xb[None])["ll"][0]
            per_piece.append(float(lp.mean()))
            steps += len(x)
            if progress is not None:
                progress((i + 1) / n, f"piece {i + 1}/{n}")
    return {
        "test_predictive_per_step": float(np.mean(per_piece)),
        "predictive_particles": int(particles) if model.config["kind"] == "srnn" else 0,
        "predictive_pieces": len(per_piece),
        "predictive_steps": steps,
    }


def describe_model(cfg: dict[str, Any]) -> str:
    if cfg.get("kind") == "gru":
        return f"GRU baseline (d={cfg['d_dim']})"
    return (
        f"SRNN {cfg['inference']}{'+Resq' if cfg.get('resq') else ''} "
        f"(d={cfg['d_dim']}, z={cfg['z_dim']}, a={cfg['a_dim']}, mlp={cfg['hidden']})"
    )
