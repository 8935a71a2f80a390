"""SRNN (Fraccaro et al., NIPS 2016) and the plain GRU baseline, for binary piano rolls. Headless (torch only).

Generative model, with u_t the input (previous frame) and x_t the frame to predict:

    d_t = GRU(d_{t-1}, e(u_t))                         deterministic layer
    p(z_t | z_{t-1}, d_t) = N(mu_p, exp(logvar_p))     each from a 1-hidden-layer MLP on [d_t, z_{t-1}]
    p(x_t | z_t, d_t) = Bernoulli(sigmoid(MLP([d_t, z_t])))

Inference network q(z_t | z_{t-1}, a_t) = N(mu_q, exp(logvar_q)), MLPs on [a_t, z_{t-1}], with

    smoothing: a_t = GRU running backwards over [d_t, e(x_t)]   (a_t sees x_t..x_T)
    filtering: a_t = MLP([d_t, e(x_t)])                          (no look-ahead)
    Resq:      mu_q = mu_p + MLP([a_t, z_{t-1}])                 (residual posterior mean)

``e`` is a 2-layer MLP shared by u and x. Non-linearity: leaky ReLU (slope 1/3) clipped to [-3, 3].
Variances are ``exp(raw) + 1e-6``. The ELBO uses the analytic Gaussian KL and one reparameterised z path.

The four MLPs of the stochastic layer (prior mean/log-variance, posterior mean/log-variance) are stored as
fused weights so that one time step costs one matmul for z_{t-1} and one batched matmul for the outputs; the
maths is that of four separate 1-hidden-layer MLPs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)

DEFAULT_CONFIG: dict[str, Any] = {
    "kind": "srnn",  # "srnn" or "gru" (the baseline)
    "x_dim": 88,
    "hidden": 500,  # MLP width (embedding, stochastic-layer MLPs, emission)
    "d_dim": 300,  # deterministic GRU
    "z_dim": 100,  # stochastic layer
    "a_dim": 300,  # inference GRU / MLP
    "inference": "smooth",  # "smooth" or "filter"
    "resq": True,
    "clip": 3.0,  # range of the clipped leaky ReLU
    "var_eps": 1e-6,
}


def make_config(**overrides) -> dict[str, Any]:
    cfg = dict(DEFAULT_CONFIG)
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    if cfg["kind"] not in ("srnn", "gru"):
        raise ValueError(f"unknown model kind {cfg['kind']!r}")
    if cfg["inference"] not in ("smooth", "filter"):
        raise ValueError(f"unknown inference {cfg['inference']!r}")
    return cfg


def build(config: dict[str, Any]) -> nn.Module:
    cfg = make_config(**config)
    return SRNN(cfg) if cfg["kind"] == "srnn" else GRUBaseline(cfg)


class ClippedLeakyReLU(nn.Module):
    def __init__(self, clip: float = 3.0) -> None:
        super().__init__()
        self.clip = float(clip)

    def forward(self, x):
        return act(x, self.clip)


def act(x, clip: float = 3.0):
    return torch.clamp(F.leaky_relu(x, 1.0 / 3.0), -clip, clip)


def gaussian_kl(mu_q, logvar_q, mu_p, logvar_p):
    """KL(N(mu_q, e^lv_q) || N(mu_p, e^lv_p)) elementwise."""
    return 0.5 * (logvar_p - logvar_q + (torch.exp(logvar_q) + (mu_q - mu_p) ** 2) / torch.exp(logvar_p) - 1.0)


def gaussian_logpdf(z, mu, logvar):
    return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 / torch.exp(logvar))


def bernoulli_loglik(logits, x):
    """log p(x | logits) summed over the last axis (keys)."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def _bernoulli(p: torch.Tensor, generator=None) -> torch.Tensor:
    """Bernoulli draws with ``generator`` wherever ``p`` lives (a CPU generator cannot sample a CUDA tensor)."""
    if generator is None or p.device.type == "cpu":
        return torch.bernoulli(p, generator=generator)
    return torch.bernoulli(p.cpu(), generator=generator).to(p.device)


def reverse_padded(x, lengths: torch.Tensor | None):
    """Reverse each sequence of ``x`` (B, T, ...) within its own length; padding stays at the end."""
    if lengths is None:
        return x.flip(1)
    B, T = x.shape[:2]
    t = torch.arange(T, device=x.device).unsqueeze(0).expand(B, T)
    L = lengths.to(x.device).long().unsqueeze(1)
    idx = torch.where(t < L, L - 1 - t, t)
    idx = idx.view(B, T, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, idx)


def _init_gru(gru: nn.GRU) -> None:
    for name, p in gru.named_parameters():
        if "weight" in name:
            for chunk in p.data.chunk(3, 0):
                nn.init.orthogonal_(chunk)
        else:
            nn.init.zeros_(p)


def _mlp_init(layer: nn.Linear) -> None:
    nn.init.xavier_normal_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class _Base(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(cfg)
        h, xd = cfg["hidden"], cfg["x_dim"]
        self.clip = float(cfg["clip"])
        self.emb = nn.Sequential(
            nn.Linear(xd, h), ClippedLeakyReLU(self.clip), nn.Linear(h, h), ClippedLeakyReLU(self.clip)
        )
        self.d_rnn = nn.GRU(h, cfg["d_dim"], batch_first=True)

    #: memory budget of the deterministic GRU's backpropagation through time, as a fraction of full BPTT's
    #: (``train srnn --bptt-memory F``): when set, training runs the GRU step by step through
    #: ``explorer.papers.bptt.checkpointed_rnn`` (Gruslys et al.), same gradients, less stored activation
    bptt_memory: float | None = None

    def deterministic(self, u, d0=None):
        """d_{1:T} (B, T, D) and the last state (B, D)."""
        return self.run_gru(self.d_rnn, self.emb(u), d0)

    def run_gru(self, gru: nn.GRU, inputs, h0=None):
        """A one-layer batch-first GRU over ``inputs`` (B, T, F): outputs (B, T, H) and the last state (B, H);
        within the ``bptt_memory`` budget when training with one set."""
        if self.bptt_memory and self.training and torch.is_grad_enabled():
            from explorer.papers.bptt import checkpointed_rnn

            h = h0 if h0 is not None else inputs.new_zeros(inputs.shape[0], gru.hidden_size)
            out, hT = checkpointed_rnn(
                _GRUStep(gru), inputs.transpose(0, 1), h, memory_fraction=float(self.bptt_memory)
            )
            return out.transpose(0, 1), hT
        out, hT = gru(inputs, None if h0 is None else h0.unsqueeze(0).contiguous())
        return out, hT[0]


class _GRUStep(nn.Module):
    """One step of a one-layer ``nn.GRU`` with its own weights (a cell view for ``checkpointed_rnn``)."""

    def __init__(self, gru: nn.GRU) -> None:
        super().__init__()
        self.gru = gru

    def forward(self, x, h):
        g = self.gru
        return torch.gru_cell(x, h, g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0)


class GRUBaseline(_Base):
    """The paper's 'RNN' row, with a GRU: d_t = GRU(d_{t-1}, e(u_t)), p(x_t | d_t) Bernoulli from an MLP."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(cfg)
        h = cfg["hidden"]
        self.out = nn.Sequential(nn.Linear(cfg["d_dim"], h), ClippedLeakyReLU(self.clip), nn.Linear(h, cfg["x_dim"]))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                _mlp_init(m)
        _init_gru(self.d_rnn)

    def forward(self, u, x, mask=None, state=None, sample=True):
        d0 = None if state is None else state[0]
        d, dT = self.deterministic(u, d0)
        logits = self.out(d)
        ll = bernoulli_loglik(logits, x)
        zero = torch.zeros_like(ll)
        return {"ll": ll, "kl": zero, "log_w": ll, "logits": logits, "d": d, "state": (dT.detach(),)}

    def initial_state(self, batch: int, device=None):
        return (torch.zeros(batch, self.config["d_dim"], device=device),)

    @torch.no_grad()
    def generate(self, u_prime, steps: int, generator=None, temperature: float = 1.0):
        """Prime with inputs ``u_prime`` (B, P, 88) and sample ``steps`` frames autoregressively."""
        d, dT = self.deterministic(u_prime)
        frames = []
        logits = self.out(dT)
        probs = []
        for _ in range(steps):
            p = torch.sigmoid(logits / temperature)
            x = _bernoulli(p, generator)
            frames.append(x)
            probs.append(p)
            _, h = self.d_rnn(self.emb(x).unsqueeze(1), dT.unsqueeze(0))
            dT = h[0]
            logits = self.out(dT)
        return torch.stack(frames, 1), torch.stack(probs, 1)


class SRNN(_Base):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(cfg)
        h, D, Z, A, X = cfg["hidden"], cfg["d_dim"], cfg["z_dim"], cfg["a_dim"], cfg["x_dim"]
        self.smooth = cfg["inference"] == "smooth"
        self.resq = bool(cfg["resq"])
        self.log_var_eps = math.log(float(cfg["var_eps"]))
        if self.smooth:
            self.a_rnn = nn.GRU(D + h, A, batch_first=True)
        else:
            self.a_mlp = nn.Sequential(nn.Linear(D + h, A), ClippedLeakyReLU(self.clip))
        # Hidden layers of the 4 MLPs: [prior mu, prior logvar] from d_t, [q mu, q logvar] from a_t,
        # and all four from z_{t-1}.
        self.prior_in = nn.Linear(D, 2 * h)
        self.post_in = nn.Linear(A, 2 * h)
        self.z_in = nn.Linear(Z, 4 * h, bias=False)
        # Output layers (group, hidden, z): 0 prior mu, 1 prior logvar, 2 q mu, 3 q logvar.
        self.out_w = nn.Parameter(torch.empty(4, h, Z))
        self.out_b = nn.Parameter(torch.zeros(4, Z))
        self.emit = nn.Sequential(nn.Linear(D + Z, h), ClippedLeakyReLU(self.clip), nn.Linear(h, X))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                _mlp_init(m)
        # Glorot-normal per MLP: each hidden layer sees [input, z] as one layer would.
        with torch.no_grad():
            std_p = math.sqrt(2.0 / (D + Z + h))
            std_q = math.sqrt(2.0 / (A + Z + h))
            self.prior_in.weight.normal_(0, std_p)
            self.post_in.weight.normal_(0, std_q)
            self.z_in.weight[: 2 * h].normal_(0, std_p)
            self.z_in.weight[2 * h :].normal_(0, std_q)
            self.out_w.normal_(0, math.sqrt(2.0 / (h + Z)))
        _init_gru(self.d_rnn)
        if self.smooth:
            _init_gru(self.a_rnn)

    # -- pieces ---------------------------------------------------------------------------------------------
    def _logvar(self, raw):
        return torch.logaddexp(raw, torch.full_like(raw, self.log_var_eps))

    def inference_input(self, d, x, lengths=None, ex=None):
        """a_{1:T}: backward GRU (smoothing) or MLP (filtering) over [d_t, e(x_t)]."""
        inp = torch.cat([d, self.emb(x) if ex is None else ex], -1)
        if not self.smooth:
            return self.a_mlp(inp)
        rev = reverse_padded(inp, lengths)
        a_rev, _ = self.run_gru(self.a_rnn, rev)
        return reverse_padded(a_rev, lengths)

    def prior_step(self, d_t, z_prev):
        """mu_p, logvar_p of p(z_t | z_{t-1}, d_t)."""
        h = self.config["hidden"]
        hid = act(self.prior_in(d_t) + F.linear(z_prev, self.z_in.weight[: 2 * h]), self.clip)
        out = torch.bmm(hid.view(-1, 2, h).transpose(0, 1), self.out_w[:2]) + self.out_b[:2].unsqueeze(1)
        return out[0], self._logvar(out[1])

    def stochastic(self, d, a, z0=None, noise=None, sample: bool = True):
        """Run the stochastic recurrence over T steps with z_t ~ q (reparameterised).

        Returns dict of (B, T, Z) tensors z, mu_p, logvar_p, mu_q, logvar_q. With ``sample=False``
        z_t is the posterior mean (for display). ``noise`` (B, T, Z) fixes the standard-normal draws.
        """
        B, T, _ = d.shape
        h, Z = self.config["hidden"], self.config["z_dim"]
        pre = torch.cat([self.prior_in(d), self.post_in(a)], -1)  # (B, T, 4h)
        if noise is None and sample:
            noise = torch.randn(B, T, Z, device=d.device, dtype=d.dtype)
        z = torch.zeros(B, Z, device=d.device, dtype=d.dtype) if z0 is None else z0
        w_z = self.z_in.weight
        out_w, out_b = self.out_w, self.out_b.unsqueeze(1)
        zs, outs = [], []
        pre_t = pre.unbind(1)  # unbind, not pre[:, t]: the latter's backward zero-fills (B, T, 4h) every step
        noise_t = noise.unbind(1) if sample else None
        for t in range(T):
            hid = act(pre_t[t] + F.linear(z, w_z), self.clip)  # (B, 4h)
            o = torch.baddbmm(out_b, hid.view(B, 4, h).transpose(0, 1), out_w)  # (4, B, Z)
            o_mp, _, o_mq, o_lq = o.unbind(0)
            mu_q = o_mq + o_mp if self.resq else o_mq
            if sample:
                z = mu_q + torch.exp(0.5 * self._logvar(o_lq)) * noise_t[t]
            else:
                z = mu_q
            zs.append(z)
            outs.append(o)
        o = torch.stack(outs, 2)  # (4, B, T, Z)
        mu_p, lv_p = o[0], self._logvar(o[1])
        mu_q = o[2] + o[0] if self.resq else o[2]
        lv_q = self._logvar(o[3])
        return {"z": torch.stack(zs, 1), "mu_p": mu_p, "logvar_p": lv_p, "mu_q": mu_q, "logvar_q": lv_q}

    def forward(self, u, x, mask=None, state=None, sample: bool = True, noise=None):
        """Per-step terms of the ELBO for inputs u and targets x (B, T, 88).

        Returns ll (B, T) = log p(x_t | z_t, d_t) at the sampled z, kl (B, T) = analytic
        KL(q(z_t|z_{t-1},a_t) || p(z_t|z_{t-1},d_t)), log_w (B, T) = log p(x_t|.) + log p(z_t|.) - log q(z_t|.)
        (the per-step importance log-weight), logits, d, the stochastic outputs, and the carried state.
        """
        d0, z0 = (None, None) if state is None else state
        lengths = None if mask is None else mask.sum(1).long()
        if u.shape[1] > 1 and torch.equal(u[:, 1:], x[:, :-1]):
            # u_t = x_{t-1}: the shared embedding of x is that of u shifted by one; embed T + 1 frames once.
            e = self.emb(torch.cat([u, x[:, -1:]], 1))
            eu, ex = e[:, :-1], e[:, 1:]
        else:
            eu, ex = self.emb(u), self.emb(x)
        d, dT = self.run_gru(self.d_rnn, eu, d0)
        a = self.inference_input(d, x, lengths, ex=ex)
        st = self.stochastic(d, a, z0=z0, noise=noise, sample=sample)
        logits = self.emit(torch.cat([d, st["z"]], -1))
        ll = bernoulli_loglik(logits, x)
        kl = gaussian_kl(st["mu_q"], st["logvar_q"], st["mu_p"], st["logvar_p"]).sum(-1)
        log_w = ll + (
            gaussian_logpdf(st["z"], st["mu_p"], st["logvar_p"]) - gaussian_logpdf(st["z"], st["mu_q"], st["logvar_q"])
        ).sum(-1)
        if lengths is not None and state is None:
            new_state = None
        else:
            new_state = (dT.detach(), st["z"][:, -1].detach())
        out = dict(st)
        out.update({"ll": ll, "kl": kl, "log_w": log_w, "logits": logits, "d": d, "a": a, "state": new_state})
        return out

    def initial_state(self, batch: int, device=None):
        return (
            torch.zeros(batch, self.config["d_dim"], device=device),
            torch.zeros(batch, self.config["z_dim"], device=device),
        )

    @torch.no_grad()
    def predictive(self, u, x, particles: int = 256, generator=None):
        """One-step-ahead predictions p(x_t | x_<t) for one sequence (u, x: (T, 88)), by a bootstrap particle
        filter: K particles of z_{t-1}, each moved by the prior p(z_t | z_{t-1}, d_t) (d_t depends on x_<t only),
        weighted by how well they explained the frames so far; resampled when the effective sample size drops below
        K/2. Unlike the ELBO's terms, nothing here has seen x_t before predicting it (except at t = 0, where the
        authors' input convention makes the first frame its own input u_0 = x_0).

        Returns (log_pred (T,): log p(x_t | x_<t), estimated as log sum_k w_k p(x_t | z_t^k, d_t); sum over t is
        the filter's estimate of log p(x_1:T), a stochastic lower bound in expectation; probs (T, 88): p(x_t = 1 |
        x_<t) = sum_k w_k sigmoid(logits_k); ess (T,): effective sample size before each step)."""
        K = int(particles)
        d, _ = self.deterministic(u.unsqueeze(0))
        d = d[0]
        T = d.shape[0]
        z = torch.zeros(K, self.config["z_dim"], device=d.device, dtype=d.dtype)
        logw = torch.full((K,), -math.log(K), device=d.device, dtype=d.dtype)
        log_pred = torch.empty(T, device=d.device, dtype=d.dtype)
        probs = torch.empty(T, x.shape[-1], device=d.device, dtype=d.dtype)
        ess = torch.empty(T, device=d.device, dtype=d.dtype)
        for t in range(T):
            ess[t] = 1.0 / torch.exp(2 * logw).sum()
            if ess[t] < K / 2:
                idx = torch.multinomial(torch.exp(logw).cpu(), K, replacement=True, generator=generator).to(d.device)
                z, logw = z[idx], torch.full_like(logw, -math.log(K))
            dt = d[t].expand(K, -1)
            mu, lv = self.prior_step(dt, z)
            eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
            z = mu + torch.exp(0.5 * lv) * eps
            logits = self.emit(torch.cat([dt, z], -1))
            ll_k = bernoulli_loglik(logits, x[t].expand(K, -1))
            w = torch.exp(logw)
            probs[t] = (w[:, None] * torch.sigmoid(logits)).sum(0)
            log_pred[t] = torch.logsumexp(logw + ll_k, 0)
            logw = logw + ll_k
            logw = logw - torch.logsumexp(logw, 0)
        return log_pred, probs, ess

    @torch.no_grad()
    def generate(self, u_prime, steps: int, x_prime=None, generator=None, temperature: float = 1.0):
        """Prime on ``u_prime``/``x_prime`` (B, P, 88) with the posterior, then sample ``steps`` frames from the
        generative model: z_t ~ p(z_t|z_{t-1}, d_t), x_t ~ p(x_t|z_t, d_t), u_{t+1} = x_t.

        Returns (frames (B, steps, 88), probabilities (B, steps, 88)).
        """
        B = u_prime.shape[0]
        if x_prime is None:  # inputs are the previous frames: x_{t} = u_{t+1}
            x_prime = torch.cat([u_prime[:, 1:], u_prime[:, -1:]], 1)
        out = self.forward(u_prime, x_prime, sample=True, state=self.initial_state(B, u_prime.device))
        dT, z = out["state"]
        x = x_prime[:, -1]
        frames, probs = [], []
        for _ in range(steps):
            _, hT = self.d_rnn(self.emb(x).unsqueeze(1), dT.unsqueeze(0))
            dT = hT[0]
            mu, lv = self.prior_step(dT, z)
            eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
            z = mu + torch.exp(0.5 * lv) * eps
            p = torch.sigmoid(self.emit(torch.cat([dT, z], -1)) / temperature)
            x = _bernoulli(p, generator)
            frames.append(x)
            probs.append(p)
        return torch.stack(frames, 1), torch.stack(probs, 1)


# -- objectives -----------------------------------------------------------------------------------------------
def per_sequence(values, mask=None):
    """Sum over (masked) steps divided by the number of steps, per sequence: (B,)."""
    if mask is None:
        return values.mean(1)
    return (values * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def elbo_loss(out: dict[str, torch.Tensor], mask=None, kl_weight: float = 1.0):
    """Training loss: minus the mean over sequences of the per-step annealed ELBO (the authors' f_train).

    Returns (loss, elbo_per_step (unannealed, float), kl_per_step (float))."""
    ll = per_sequence(out["ll"], mask)
    kl = per_sequence(out["kl"], mask)
    loss = -(ll - kl_weight * kl).mean()
    return loss, float((ll - kl).mean().detach()), float(kl.mean().detach())


def iwae_per_sequence(log_w_sum: torch.Tensor) -> torch.Tensor:
    """Importance-sampled bound log (1/K) sum_k w_k from log-weights (K, B) summed over each sequence."""
    K = log_w_sum.shape[0]
    return torch.logsumexp(log_w_sum, 0) - math.log(K)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
