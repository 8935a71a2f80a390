"""Convolutional DRAW (Gregor et al., "Towards Conceptual Compression", NIPS 2016), written for this app.

One iteration t = 1..T (all maps live on a grid ``stride`` times coarser than the image):

* read:      r_t = conv1x1(space_to_depth([x, x - canvas_{t-1}]))        (x in [-1, 1])
* encoder:   h_enc_t = ConvLSTM([r_t, h_dec_{t-1}], h_enc_{t-1})
* posterior: q(z_t | x, z_<t) = N(mu_q, sigma_q) from a conv on h_enc_t
* prior:     p(z_t | z_<t)    = N(mu_p, sigma_p) from a conv on h_dec_{t-1}  (learned, not N(0, I))
* decoder:   h_dec_t = ConvLSTM([z_t], h_dec_{t-1})
* canvas:    canvas_t = canvas_{t-1} + depth_to_space(conv(h_dec_t))     (additive)

Read and write (config ``io_channels``): 0, as above, one linear map between a stride x stride block of
pixels and one grid cell (the first models: the write is a 3x3 convolution on the grid, so a block's pixels can
only be a linear function of its neighbourhood's state, and a low-rate picture shows the grid as blocky colour);
> 0, a small convolutional pyramid each way with that many channels (the read: log2(stride) stride-2 3x3
convolutions with GELU from [x, x - canvas]; the write: as many stride-2 4x4 transposed convolutions with GELU up
to the image, then a 3x3 convolution), so the canvas's increments are smooth functions of the state, as the
analysis and synthesis transforms of learned image codecs (Balle et al. 2017) are.

Likelihood: discretized logistic over the 256 levels of each 8-bit sub-pixel, mean canvas_T, per-pixel
log-scale from the last decoder state. Loss = -log p(x | canvas_T) + sum_t KL(q_t || p_t) (the ELBO).
KL_t is the ideal code length of iteration t's latents (bits-back); sending the first k iterations costs
sum_{t<=k} KL_t. Fully convolutional: any image size (padded to the stride by reflection).

Quantised latents (config ``quant_step`` = D > 0, for the real codec in codec.py): the transmitted latent is
z_t = mu_p + n * D with n = round((mu_q - mu_p) / D), entropy-coded with the prior discretised to that grid,
P(n) = Phi((n + 1/2) D / sigma_p) - Phi((n - 1/2) D / sigma_p). Training replaces the rounding by additive uniform
noise, z_t = mu_q + D u with u ~ U(-1/2, 1/2) (Balle et al. 2017), and the KL_t term by -log P of the noisy
latent: the ELBO of a uniform posterior of width D, whose rate term is what the coder pays.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

LN2 = math.log(2.0)

DEFAULT_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "hidden": 32,
    "z_channels": 8,
    "iterations": 8,
    "stride": 4,
    "kernel": 3,
    "read_channels": 32,
    "quant_step": 0.0,  # > 0: latents trained for quantisation on a grid of this step (see the module docstring)
    "io_channels": 0,  # > 0: convolutional read and write pyramids with this many channels (module docstring)
}


def build(config: dict[str, Any]) -> ConvDRAW:
    cfg = dict(DEFAULT_CONFIG)
    cfg.update(config or {})
    return ConvDRAW(
        in_channels=int(cfg["in_channels"]),
        hidden=int(cfg["hidden"]),
        z_channels=int(cfg["z_channels"]),
        iterations=int(cfg["iterations"]),
        stride=int(cfg["stride"]),
        kernel=int(cfg["kernel"]),
        read_channels=int(cfg["read_channels"]),
        quant_step=float(cfg.get("quant_step") or 0.0),
        io_channels=int(cfg.get("io_channels") or 0),
    )


class ConvLSTMCell(nn.Module):
    """A convolutional LSTM: all four gates from one convolution over [input, h]."""

    def __init__(self, in_ch: int, hidden: int, kernel: int = 3) -> None:
        super().__init__()
        self.hidden = hidden
        self.conv = nn.Conv2d(in_ch + hidden, 4 * hidden, kernel, padding=kernel // 2)
        with torch.no_grad():  # forget-gate bias 1: remember by default
            self.conv.bias.zero_()
            self.conv.bias[hidden : 2 * hidden].fill_(1.0)

    def forward(self, inp: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        gates = self.conv(torch.cat([inp, h], dim=1))
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


def gaussian_kl(mu_q, logstd_q, mu_p, logstd_p) -> torch.Tensor:
    """Elementwise KL(N(mu_q, s_q) || N(mu_p, s_p)) in nats (always >= 0)."""
    var_ratio = torch.exp(2.0 * (logstd_q - logstd_p))
    t = ((mu_q - mu_p) * torch.exp(-logstd_p)) ** 2
    return 0.5 * (var_ratio + t - 1.0) - (logstd_q - logstd_p)


def quantized_gaussian_nll(r: torch.Tensor, std: torch.Tensor, step: float) -> torch.Tensor:
    """-log P(bin of width ``step`` centred at offset ``r`` from the mean) under N(0, std), in nats; computed in
    the lower tail (|r| mirrored) with erfc so that far bins keep their precision."""
    a = -r.abs()
    inv = 1.0 / (std * math.sqrt(2.0))
    upper = 0.5 * torch.special.erfc(-(a + 0.5 * step) * inv)
    lower = 0.5 * torch.special.erfc(-(a - 0.5 * step) * inv)
    return -torch.log((upper - lower).clamp(min=1e-9))


def discretized_logistic_nll(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """-log P(x) in nats per sub-pixel, x on the 256-level grid of [-1, 1] (bin width 2/255)."""
    log_scale = log_scale.clamp(min=-7.0)
    centered = x - mean
    inv_s = torch.exp(-log_scale)
    plus = inv_s * (centered + 1.0 / 255.0)
    minus = inv_s * (centered - 1.0 / 255.0)
    cdf_plus = torch.sigmoid(plus)
    cdf_minus = torch.sigmoid(minus)
    log_cdf_plus = plus - F.softplus(plus)  # log sigmoid(plus): bottom bin (x = -1)
    log_one_minus_cdf_minus = -F.softplus(minus)  # log(1 - sigmoid(minus)): top bin (x = 1)
    cdf_delta = cdf_plus - cdf_minus
    mid = inv_s * centered
    log_pdf_mid = mid - log_scale - 2.0 * F.softplus(mid)  # fallback when the bin mass underflows
    log_prob_mid = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp(min=1e-12)), log_pdf_mid - math.log(127.5))
    log_prob = torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_minus, log_prob_mid))
    return -log_prob


def to_model_range(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (or 0..255 float) -> [-1, 1]."""
    return x_uint8.float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


class DrawState:
    """Recurrent state between iterations (decoder side is all a receiver needs)."""

    __slots__ = ("h_enc", "c_enc", "h_dec", "c_dec", "canvas")

    def __init__(self, h_enc, c_enc, h_dec, c_dec, canvas):
        self.h_enc, self.c_enc, self.h_dec, self.c_dec, self.canvas = h_enc, c_enc, h_dec, c_dec, canvas

    def clone_decoder(self) -> DrawState:
        return DrawState(None, None, self.h_dec, self.c_dec, self.canvas)


def _pyramid(layer, ch: int, channels: int, stride: int) -> list[nn.Module]:
    """log2(stride) stride-2 layers ``layer(in, out)``, each followed by GELU, from ``ch`` to ``channels``."""
    n = int(round(math.log2(stride)))
    if stride < 1 or 2**n != stride:
        raise ValueError(f"the stride must be a power of two, not {stride}")
    layers: list[nn.Module] = []
    for _ in range(n):
        layers += [layer(ch, channels), nn.GELU()]
        ch = channels
    return layers


class BlockRead(nn.Conv2d):
    """The first models' read: each stride x stride block of [x, x - canvas] to one grid cell, linearly (a 1x1
    convolution after space-to-depth; its weights are those of a plain Conv2d, so older checkpoints load)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__(in_ch * stride * stride, out_ch, 1)
        self.stride_ = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pixel_unshuffle(x, self.stride_))


class BlockWrite(nn.Conv2d):
    """The first models' write: a convolution on the grid to each cell's stride x stride block of canvas
    increments (depth-to-space)."""

    def __init__(self, hidden: int, out_ch: int, stride: int, kernel: int) -> None:
        super().__init__(hidden, out_ch * stride * stride, kernel, padding=kernel // 2)
        self.stride_ = stride
        with torch.no_grad():
            self.weight.mul_(0.3)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(super().forward(h), self.stride_)


class ConvRead(nn.Module):
    """[x, x - canvas] at full resolution -> ``out_ch`` maps on the grid: log2(stride) stride-2 3x3 convolutions
    with GELU, then a 1x1 convolution."""

    def __init__(self, in_ch: int, channels: int, out_ch: int, stride: int) -> None:
        super().__init__()
        down = _pyramid(lambda a, b: nn.Conv2d(a, b, 3, stride=2, padding=1), in_ch, channels, stride)
        self.net = nn.Sequential(*down, nn.Conv2d(channels if down else in_ch, out_ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvWrite(nn.Module):
    """The decoder state on the grid -> the canvas increment at full resolution: log2(stride) stride-2 4x4
    transposed convolutions with GELU, then a 3x3 convolution to the image's channels."""

    def __init__(self, hidden: int, channels: int, out_ch: int, stride: int) -> None:
        super().__init__()
        up = _pyramid(lambda a, b: nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), hidden, channels, stride)
        self.net = nn.Sequential(*up)
        self.out = nn.Conv2d(channels if up else hidden, out_ch, 3, padding=1)
        with torch.no_grad():
            self.out.weight.mul_(0.3)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.net(h))


class ConvDRAW(nn.Module):
    def __init__(
        self,
        in_channels: int = 3,
        hidden: int = 32,
        z_channels: int = 8,
        iterations: int = 8,
        stride: int = 4,
        kernel: int = 3,
        read_channels: int = 32,
        quant_step: float = 0.0,
        io_channels: int = 0,
    ) -> None:
        super().__init__()
        self.quant_step = float(quant_step)
        self.io_channels = int(io_channels)
        self.in_channels, self.hidden, self.z_channels = in_channels, hidden, z_channels
        self.iterations, self.stride = iterations, stride
        s2 = stride * stride
        self.read_channels = read_channels
        io = self.io_channels
        self.read = (
            ConvRead(2 * in_channels, io, read_channels, stride)
            if io
            else BlockRead(2 * in_channels, read_channels, stride)
        )
        self.encoder = ConvLSTMCell(read_channels + hidden, hidden, kernel)
        self.decoder = ConvLSTMCell(z_channels, hidden, kernel)
        self.posterior = nn.Conv2d(hidden, 2 * z_channels, kernel, padding=kernel // 2)
        self.prior = nn.Conv2d(hidden, 2 * z_channels, kernel, padding=kernel // 2)
        self.write = (
            ConvWrite(hidden, io, in_channels, stride) if io else BlockWrite(hidden, in_channels, stride, kernel)
        )
        self.scale = nn.Conv2d(hidden, in_channels * s2, kernel, padding=kernel // 2)
        with torch.no_grad():
            self.posterior.weight.mul_(0.1)
            self.posterior.bias.zero_()
            self.prior.weight.mul_(0.1)
            self.prior.bias.zero_()
            self.scale.weight.mul_(0.1)
            self.scale.bias.fill_(-2.5)

    # ----- helpers -------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "hidden": self.hidden,
            "z_channels": self.z_channels,
            "iterations": self.iterations,
            "stride": self.stride,
            "kernel": self.encoder.conv.kernel_size[0],
            "read_channels": self.read_channels,
            "quant_step": self.quant_step,
            **({"io_channels": self.io_channels} if self.io_channels > 0 else {}),
        }

    def pad(self, x: torch.Tensor):
        """Reflect-pad H and W up to multiples of the stride; returns (padded, (H, W))."""
        h, w = x.shape[-2:]
        s = self.stride
        ph, pw = (-h) % s, (-w) % s
        if ph or pw:
            mode = "reflect" if (h > ph and w > pw) else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        return x, (h, w)

    def init_state(self, x: torch.Tensor) -> DrawState:
        n, _, h, w = x.shape
        gh, gw = h // self.stride, w // self.stride
        z = x.new_zeros(n, self.hidden, gh, gw)
        return DrawState(z, z, z, z, torch.zeros_like(x))

    def prior_params(self, st: DrawState):
        mu, logstd = self.prior(st.h_dec).chunk(2, dim=1)
        return mu, logstd.clamp(-6.0, 3.0)

    def encode_step(self, x: torch.Tensor, st: DrawState):
        """Run the encoder for one iteration; returns posterior (mu, logstd) and updates st's encoder."""
        r = self.read(torch.cat([x, x - st.canvas], dim=1))
        st.h_enc, st.c_enc = self.encoder(torch.cat([r, st.h_dec], dim=1), st.h_enc, st.c_enc)
        mu, logstd = self.posterior(st.h_enc).chunk(2, dim=1)
        return mu, logstd.clamp(-6.0, 3.0)

    def decode_step(self, z: torch.Tensor, st: DrawState) -> DrawState:
        h, c = self.decoder(z, st.h_dec, st.c_dec)
        canvas = st.canvas + self.write(h)
        return DrawState(st.h_enc, st.c_enc, h, c, canvas)

    def log_scale(self, st: DrawState) -> torch.Tensor:
        return self._log_scale(st.h_dec)

    def _log_scale(self, h: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.scale(h), self.stride)

    # ----- training ------------------------------------------------------------------------------------
    def forward(
        self, x: torch.Tensor, progressive: bool = False, detach_scale: bool = False
    ) -> dict[str, torch.Tensor]:
        """x in [-1, 1] (N, C, H, W) with H, W multiples of the stride. Returns per-image nats:
        ``kl`` (N, T) (with ``quant_step``: the code length of the noisy latents under the discretised prior),
        ``nll`` (N,), and ``canvas`` (the mean of p(x | z)). ``progressive``: also ``nll_steps`` (N, T - 1), the
        likelihood of x under the canvas after each of the first T - 1 iterations, and ``canvases`` (those
        canvases). ``detach_scale``: the likelihood's gradient reaches only the scale head (a model trained on
        squared error keeps a calibrated likelihood without it pulling on the mean); its loss scores the
        intermediate canvases by squared error, so ``nll_steps`` is then not computed (empty)."""
        st = self.init_state(x)
        kls, steps, canvases = [], [], []
        D = self.quant_step
        for t in range(self.iterations):
            mu_p, ls_p = self.prior_params(st)
            mu_q, ls_q = self.encode_step(x, st)
            if D > 0:
                z = mu_q + D * (torch.rand_like(mu_q) - 0.5)
                kls.append(quantized_gaussian_nll(z - mu_p, torch.exp(ls_p), D).flatten(1).sum(1))
            else:
                z = mu_q + torch.exp(ls_q) * torch.randn_like(mu_q)
                kls.append(gaussian_kl(mu_q, ls_q, mu_p, ls_p).flatten(1).sum(1))
            st = self.decode_step(z, st)
            if progressive and t < self.iterations - 1:
                canvases.append(st.canvas)
                if not detach_scale:
                    steps.append(self._nll(x, st, False))
        nll = self._nll(x, st, detach_scale)
        out: dict[str, Any] = {"kl": torch.stack(kls, dim=1), "nll": nll, "canvas": st.canvas}
        if progressive:
            out["nll_steps"] = torch.stack(steps, dim=1) if steps else nll.new_zeros(nll.shape[0], 0)
            out["canvases"] = canvases
        return out

    def _nll(self, x: torch.Tensor, st: DrawState, detach: bool) -> torch.Tensor:
        h, canvas = (st.h_dec.detach(), st.canvas.detach()) if detach else (st.h_dec, st.canvas)
        return discretized_logistic_nll(x, canvas, self._log_scale(h)).flatten(1).sum(1)

    # ----- compression ---------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> dict[str, Any]:
        """Posterior pass with z_t = posterior mean (the transmitted latent). Returns KL per iteration
        (nats, (N, T)), the latents, and the decoder state after every iteration (states[k] = after k)."""
        st = self.init_state(x)
        kls, zs, states = [], [], [st.clone_decoder()]
        for _ in range(self.iterations):
            mu_p, ls_p = self.prior_params(st)
            mu_q, ls_q = self.encode_step(x, st)
            kls.append(gaussian_kl(mu_q, ls_q, mu_p, ls_p).flatten(1).sum(1))
            zs.append(mu_q)
            st = self.decode_step(mu_q, st)
            states.append(st.clone_decoder())
        return {"kl": torch.stack(kls, dim=1), "z": zs, "states": states}

    @torch.no_grad()
    def continue_from(
        self,
        st: DrawState,
        start: int,
        sample: bool = False,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Finish the iterations start+1..T from the prior (its mean, or samples); returns the canvas."""
        for _ in range(start, self.iterations):
            mu_p, ls_p = self.prior_params(st)
            z = mu_p
            if sample:
                eps = torch.randn(mu_p.shape, generator=generator, device=mu_p.device, dtype=mu_p.dtype)
                z = mu_p + temperature * torch.exp(ls_p) * eps
            st = self.decode_step(z, st)
        return st.canvas

    @torch.no_grad()
    def reconstructions(self, x: torch.Tensor, ks: list[int] | None = None) -> dict[str, Any]:
        """For each k in ks (default 0..T): the canvas when the first k iterations' latents are sent and
        the rest come from the prior mean. Returns {"kl": (N, T) nats, "canvas": {k: tensor}}."""
        enc = self.encode(x)
        ks = list(range(self.iterations + 1)) if ks is None else ks
        out = {k: self.continue_from(enc["states"][k], k) for k in ks}
        return {"kl": enc["kl"], "canvas": out, "encoded": enc}

    @torch.no_grad()
    def sample(
        self, n: int, height: int, width: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        x = torch.zeros(n, self.in_channels, height, width, device=next(self.parameters()).device)
        st = self.init_state(x)
        return self.continue_from(st, 0, sample=True, temperature=temperature, generator=generator)
