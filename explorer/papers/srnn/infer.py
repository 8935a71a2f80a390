"""What the SRNN tab runs in its workers (headless; no Qt): loading, per-piece analysis, continuation, audio.

Every function takes plain numpy inputs, returns plain numpy/dicts, and accepts ``token``/``progress`` where it
loops, so the panel can cancel it. The tab's jobs (``prepare``, ``analyse_models``, ``continue_and_write``,
``chorales``, ``sample_pieces``) take ``device``, which the panel's runner fills in the worker.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

PAPER_ID = "srnn"
COMPANIONS = {  # the models the tab compares, per data set (file names in models/)
    "smooth": "srnn_{ds}_smooth_resq.safetensors",
    "filter": "srnn_{ds}_filter_resq.safetensors",
    "smooth_noresq": "srnn_{ds}_smooth.safetensors",
    "gru": "srnn_{ds}_gru.safetensors",
}
LABELS = {  # the companions' names, as the tab and its progress messages say them
    "smooth": "SRNN smoothing+Resq",
    "filter": "SRNN filtering+Resq",
    "smooth_noresq": "SRNN smoothing",
    "gru": "GRU baseline (exact)",
}


def load_model_file(path, device="cpu"):
    """(model, CheckpointMeta) for an SRNN/GRU checkpoint; raises CheckpointError on a wrong file."""
    from explorer.core.checkpoints import load_model

    from .model import DEFAULT_CONFIG, build

    return load_model(path, PAPER_ID, build, device=device, default_config=dict(DEFAULT_CONFIG))


def load_for_app(path, device="cpu"):
    """SPEC.loader: the model and its metadata."""
    return load_model_file(path, device)


def load_companions(dataset: str, device="cpu", skip: str | None = None, token=None) -> dict[str, Any]:
    """The bundled models for ``dataset`` that exist: {'smooth': (model, meta), 'filter': ..., 'gru': ...}."""
    from explorer.core.paths import models_dir

    out = {}
    for key, pattern in COMPANIONS.items():
        if token is not None:
            token.check()
        p = models_dir() / pattern.format(ds=dataset)
        if skip and p.name == skip:
            continue
        if p.exists():
            try:
                out[key] = load_model_file(p, device)
            except Exception:  # a broken companion just leaves its curve out
                continue
    return out


# -- pieces ---------------------------------------------------------------------------------------------------
def load_pieces(
    dataset: str, data_dir=None, max_pieces: int = 40, token=None, progress=None
) -> tuple[list[tuple[str, np.ndarray]], str]:
    """Test pieces to look at: [(title, x (T, 88))], and a description of the source.

    From the authors' npz files when found (``data_dir``, $SRNN_MUSIC_DATA or the shared folder), else the test
    pieces bundled in resources/srnn, else Bach chorales from the optional music21 package, else an empty list.
    """
    from . import data as D

    folder = Path(data_dir) if data_dir else D.find_data_dir()
    if folder is not None and (Path(folder) / D.file_name(dataset)).exists():
        md = D.load(folder, dataset)
        pieces = []
        for i in range(min(len(md.x_test), max_pieces)):
            _, x = md.test_piece(i)
            pieces.append((f"{md.title} test piece {i + 1} ({len(x)} steps)", np.array(x)))
        return pieces, f"{md.title} test set ({md.source})"
    bundled = D.read_demo_pieces(dataset)
    if bundled:
        title = D.DATASET_TITLES.get(dataset, dataset)
        pieces = [(f"{title} test piece {i + 1} ({len(x)} steps)", x) for i, x in bundled[:max_pieces]]
        return pieces, f"{title} test set (the {len(bundled)} pieces bundled with the app)"
    try:
        ch = D.roll_from_music21(max_pieces=min(max_pieces, 12), token=token, progress=progress)
        return [(f"music21 chorale {t}", r) for t, r in ch], "Bach chorales from music21"
    except Exception:
        return [], "no music data found"


# -- analysis ---------------------------------------------------------------------------------------------------
def analyse(
    model, x: np.ndarray, samples: int = 16, seed: int = 0, device="cpu", token=None, particles: int = 256
) -> dict[str, Any]:
    """Everything the tab plots for one piece x (T, 88) and one model.

    * probs (T, 88): p(x_t = 1 | z_t, d_t) averaged over ``samples`` posterior paths (the reconstruction the
      ELBO scores); for the GRU baseline the one-step-ahead prediction p(x_t | x_<t).
    * ll (T,), kl (T,): per-step log-likelihood term and analytic KL, averaged over the paths; elbo = ll - kl.
    * elbo_per_step: the piece's ELBO per step (the paper's metric for one piece); iwae_per_step with K paths.
    * For SRNN, trajectories along the posterior-mean path: mu_q, std_q, mu_p, std_p (T, Z) and kl_dims (Z,).
    * pred_ll (T,), pred_probs (T, 88), pred_ll_per_step: the one-step-ahead prediction p(x_t | x_<t), what a
      model that has not seen x_t expects: for SRNN by a particle filter with ``particles`` particles (see
      ``SRNN.predictive``), for the GRU its exact output. This, not ``ll``/``probs`` (computed from a posterior that
      has seen x_t, and with smoothing the future), is the like-for-like comparison of the two.
    """
    import torch

    from .data import inputs_for

    T = len(x)
    u = inputs_for(x)
    is_srnn = model.config["kind"] == "srnn"
    S = max(1, int(samples)) if is_srnn else 1
    xb = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device).unsqueeze(0)
    ub = torch.from_numpy(np.ascontiguousarray(u, dtype=np.float32)).to(device).unsqueeze(0)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        kw = {}
        if is_srnn:
            kw["noise"] = torch.randn(S, T, model.config["z_dim"], generator=gen).to(device)
        out = model(ub.expand(S, -1, -1), xb.expand(S, -1, -1), **kw)
        if token is not None:
            token.check()
        probs = torch.sigmoid(out["logits"]).mean(0)
        ll, kl = out["ll"].mean(0), out["kl"].mean(0)
        res: dict[str, Any] = {
            "kind": model.config["kind"],
            "probs": probs.cpu().numpy(),
            "ll": ll.cpu().numpy(),
            "kl": kl.cpu().numpy(),
            "elbo": (ll - kl).cpu().numpy(),
            "elbo_per_step": float((ll - kl).mean()),
            "iwae_per_step": float((torch.logsumexp(out["log_w"].sum(1), 0) - math.log(S)) / T),
            "samples": S,
        }
        if is_srnn:
            mean = model(ub, xb, sample=False)
            res.update(
                {
                    "mu_q": mean["mu_q"][0].cpu().numpy(),
                    "std_q": torch.exp(0.5 * mean["logvar_q"][0]).cpu().numpy(),
                    "mu_p": mean["mu_p"][0].cpu().numpy(),
                    "std_p": torch.exp(0.5 * mean["logvar_p"][0]).cpu().numpy(),
                }
            )
            from .model import gaussian_kl

            kl_dims = gaussian_kl(out["mu_q"], out["logvar_q"], out["mu_p"], out["logvar_p"]).mean((0, 1))
            res["kl_dims"] = kl_dims.cpu().numpy()
            res["top_dims"] = [int(i) for i in np.argsort(-res["kl_dims"])[:4]]
            if token is not None:
                token.check()
            # the honest one-step view: p(x_t | x_<t) by a particle filter (nothing has seen x_t)
            log_pred, pred_probs, ess = model.predictive(ub[0], xb[0], particles=particles, generator=gen)
            res.update(
                {
                    "pred_ll": log_pred.cpu().numpy(),
                    "pred_probs": pred_probs.cpu().numpy(),
                    "pred_ll_per_step": float(log_pred.mean()),
                    "particles": int(particles),
                    "min_ess": float(ess.min()),
                }
            )
        else:
            # the GRU's output is already the one-step prediction: its ll is log p(x_t | x_<t), exactly
            res.update({"pred_ll": res["ll"], "pred_probs": res["probs"], "pred_ll_per_step": res["elbo_per_step"]})
    return res


def continue_music(
    model, x: np.ndarray, prime_steps: int, steps: int, seed: int = 0, temperature: float = 1.0, device="cpu"
) -> dict[str, np.ndarray]:
    """Prime the model with the first ``prime_steps`` frames of x and sample ``steps`` more from the generative
    model. Returns {'prime': (P, 88), 'generated': (steps, 88), 'probs': (steps, 88)}."""
    import torch

    from .data import inputs_for

    P = int(max(1, min(prime_steps, len(x))))
    xp = np.ascontiguousarray(x[:P], dtype=np.float32)
    up = inputs_for(xp)
    gen = torch.Generator().manual_seed(seed)
    ub = torch.from_numpy(up).unsqueeze(0).to(device)
    with torch.no_grad():
        if model.config["kind"] == "srnn":
            torch.manual_seed(seed)  # the priming posterior sample
            frames, probs = model.generate(
                ub, steps, x_prime=torch.from_numpy(xp).unsqueeze(0).to(device), generator=gen, temperature=temperature
            )
        else:
            # the GRU reads x_{1..P} as inputs to predict x_{P+1}
            u_all = torch.from_numpy(np.concatenate([up, xp[-1:]], 0)).unsqueeze(0).to(device)
            frames, probs = model.generate(u_all, steps, generator=gen, temperature=temperature)
    return {"prime": xp, "generated": frames[0].cpu().numpy(), "probs": probs[0].cpu().numpy()}


def sample_pieces(model, n: int = 4, steps: int = 120, seed: int = 0, device="cpu") -> list[tuple[str, np.ndarray]]:
    """Pieces sampled from the model itself (for a tab without any music data): primed with one silent frame."""
    pieces = []
    for i in range(n):
        start = np.zeros((1, 88), np.float32)
        r = continue_music(model, start, 1, steps, seed=seed + i, device=device)
        pieces.append((f"sampled from the model (seed {seed + i})", r["generated"]))
    return pieces


# -- the tab's jobs ---------------------------------------------------------------------------------------------
def prepare(dataset: str, main_name: str | None, device="cpu", token=None, progress=None) -> dict[str, Any]:
    """Pieces for ``dataset`` and the companion models (smoothing, filtering, GRU) that exist in models/ (the one
    named ``main_name``, already loaded, is skipped)."""
    pieces, source = load_pieces(dataset, token=token, progress=progress)
    comps = load_companions(dataset, device=device, skip=main_name, token=token)
    return {"dataset": dataset, "pieces": pieces, "source": source, "companions": comps}


def analyse_models(models: dict[str, Any], x: np.ndarray, samples: int, device="cpu", token=None, progress=None):
    """Generator: yields ``(key, analyse(...))`` per model in the order given (the main one first); returns how
    many were analysed."""
    keys = list(models)
    for i, key in enumerate(keys):
        if token is not None:
            token.check()
        if progress is not None:
            progress(i / len(keys), f"analysing with {LABELS.get(key, key)}")
        yield (key, analyse(models[key], x, samples=samples, device=device, token=token))
    return len(keys)


def continue_and_write(
    model,
    x: np.ndarray,
    prime: int,
    steps: int,
    seed: int,
    temperature: float,
    step_s: float,
    wav_dir: str,
    device="cpu",
    token=None,
) -> dict[str, Any]:
    """``continue_music``, and the primer with its continuation written as a WAV in ``wav_dir`` (``res["wav"]``)."""
    import os

    res: dict[str, Any] = dict(
        continue_music(model, x, prime, steps, seed=seed, temperature=temperature, device=device)
    )
    if token is not None:
        token.check()
    roll = np.concatenate([res["prime"], res["generated"]], 0)
    res["wav"] = str(write_wav(os.path.join(wav_dir, f"srnn_continuation_{seed}.wav"), roll, step_s=step_s))
    return res


def chorales(max_pieces: int = 12, token=None, progress=None) -> list[tuple[str, np.ndarray]]:
    """Bach chorales from the optional music21 package, as (title, roll) pieces."""
    from . import data as D

    return [
        (f"music21 chorale {t} ({len(r)} steps)", r)
        for t, r in D.roll_from_music21(max_pieces=max_pieces, token=token, progress=progress)
    ]


# -- audio ------------------------------------------------------------------------------------------------------
def midi_to_hz(m):
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=np.float64) - 69.0) / 12.0)


def synthesize(roll: np.ndarray, step_s: float = 0.3, sr: int = 22050, lowest_midi: int = 21) -> np.ndarray:
    """A simple additive 'piano': each active key a decaying tone with three harmonics; held notes continue.
    Returns float32 mono audio in [-1, 1]."""
    T = len(roll)
    n = int(round(step_s * sr))
    audio = np.zeros(T * n + int(0.5 * sr), np.float64)
    roll = np.asarray(roll) > 0.5
    for k in range(roll.shape[1]):
        col = roll[:, k]
        if not col.any():
            continue
        f = float(midi_to_hz(lowest_midi + k))
        # note runs: start where the key turns on, duration while it stays on
        on = np.flatnonzero(col & ~np.concatenate([[False], col[:-1]]))
        for s in on:
            e = s
            while e < T and col[e]:
                e += 1
            dur = (e - s) * n
            m = min(len(audio) - s * n, dur + int(0.15 * sr))
            tt = np.arange(m) / sr
            env = np.exp(-tt * 2.5) * np.minimum(1.0, tt / 0.005)
            if m > dur:
                env[dur:] *= np.exp(-(tt[dur:] - tt[dur]) * 30.0)
            tone = np.sin(2 * np.pi * f * tt) + 0.4 * np.sin(4 * np.pi * f * tt) + 0.15 * np.sin(6 * np.pi * f * tt)
            audio[s * n : s * n + m] += env * tone
    peak = np.max(np.abs(audio)) if audio.size else 0.0
    if peak > 0:
        audio *= 0.8 / peak
    return audio.astype(np.float32)


def write_wav(path, roll: np.ndarray, step_s: float = 0.3, sr: int = 22050) -> Path:
    import soundfile as sf

    from explorer.core.validate import atomic_output

    p = Path(path)
    with atomic_output(p, "WAV file") as tmp:
        sf.write(str(tmp), synthesize(roll, step_s, sr), sr, subtype="PCM_16", format="WAV")
    return p
