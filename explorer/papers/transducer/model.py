"""The Neural Transducer (Jaitly et al. 2016) for spoken digits: the network.

* Features: log-mel (own filterbank), global mean/variance normalisation (buffers in the checkpoint), 3 frames
  stacked -> one encoder frame every 30 ms.
* Encoder: unidirectional GRU (online). The offline variant has a bidirectional encoder (its answer exists only
  once the utterance has ended); ``block=0`` instead makes the whole utterance one block.
* Transducer (paper Eqs. 3-6): s_m = GRU(s_{m-1}, [c_{m-1}; emb(y_{m-1})]); c_m = attention(s_m, current block);
  h'_m = GRU(h'_{m-1}, [c_m; s_m]); softmax(h'_m) over 10 digits + <e> (end of block). At most M tokens per block
  (M-1 digits and <e>). The state (s, h', c, y) is carried across blocks.
* Training targets: per-block digit lists ("alignments"); loss = -log p(alignment).
* :class:`Ensemble`: several transducers decoded in lockstep as one.

The alignments the loss reads are found in ``align.py`` (the paper's approximate best-alignment search, or the
known digit boundaries); decoding, one block at a time, is ``decode.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .features import FeatureConfig, LogMel

EOB = 10  # end-of-block token <e>
SOS = 11  # start token (input only)
N_OUT = 11

# End of input: when a file, a replay or a microphone stream ends, ``flush_s`` seconds of silence (digital zeros)
# follow the last sample, through the same features, encoder and blocks as the audio, so a word that ends at the
# very end of the input (a clip trimmed tight to it, a quick "seven" right before Stop) still gets the block after
# it in which the transducer emits. Training appends the same silence, and checkpoints made before it existed read
# it too: the shipped model left about half of tightly trimmed clips empty without it.
FLUSH_S = 0.5
DEFAULT_CONFIG: dict = dict(
    n_mels=40,
    stack=3,
    enc_hidden=128,
    enc_layers=2,
    bidirectional=False,
    dec_hidden=128,
    embed=32,
    att_hidden=64,
    attention="mlp",
    block=8,
    max_per_block=4,
    norm="causal",
    norm_prior=100,
    norm_gate=True,
    fmin=20.0,
    ceps=0,
    dropout=0.0,
    frontend="linear",
    flush_s=FLUSH_S,
    log_floor=1e-10,
    remove_dc=True,
)
# Feature normalisation: "global" subtracts the training set's per-mel mean; "causal" subtracts a running mean
# of the utterance heard so far (frames 1..t, with ``norm_prior`` frames' worth of the training mean as the
# prior), which removes a speaker's or microphone's fixed spectral colouring without looking ahead.
# ``norm_gate``: frames of digital silence (every band at the log floor: a muted or null input) are left out of the
# running mean, so a long stretch of exact zeros before speech does not drag the mean down.
# ``fmin``: the lowest filter edge in Hz (150 Hz, which leaves out the band where one FSDD speaker's microphone
# is ~25 dB weaker, did not help an unheard speaker in our runs: 31.8% vs 29.2% digit errors for george).
# "pcen": per-channel energy normalisation (Wang et al. 2017, for keyword spotting in noise): each band's energy
# is divided by its own causal smoothed energy M (time constant about 0.4 s, started at the first frame), then
# root-compressed, (E / M^0.98 + 2)^0.5 - 2^0.5, and scaled by the training set's per-band spread. A stationary
# background gives about the same value in every band whatever its level, so a band that a microphone leaves under
# its noise floor looks like a quiet band of a clean one. Frames of digital silence hold M (``norm_gate``). On two
# leave-one-out folds it read the unheard voice worse than the running mean (george 23.3% vs 19.9%, nicolas 20.6% vs
# 15.8%, the same number of steps), so it is off by default.
# Checkpoints saved before these options existed have no such keys and are read with the old values.
# ``ceps`` > 0: the encoder reads the first ``ceps`` cepstral coefficients (an orthonormal DCT-II of the normalised
# log-mel frame, i.e. MFCCs) instead of all bands; dropping the higher ones smooths away the pitch harmonics that
# the narrow low-frequency bands resolve, which mostly tell speakers apart, not digits.
# ``log_floor``: added to the mel power before the log. 1e-6 (the first models) flattens speech below about -50 dBFS
# into the floor, so a quiet microphone read as silence (61% digit errors at -40 dB); 1e-10 keeps its spectrum.
# ``remove_dc``: each frame's mean is subtracted before the window, so a DC offset does not fill the lowest bands.
# ``dropout``: on the encoder's input projection and between its GRU layers (training only).
# ``frontend="conv"``: each encoder frame's stacked bands go through a convolution along the frequency axis and a
# max-pool over neighbouring bands before the projection (as in CNN acoustic models): a formant that sits a band
# higher or lower for another speaker gives nearly the same features.
# Neither these three nor fmin moved the unheard-speaker error beyond the run-to-run spread on 11-minute
# leave-one-out folds (README), so all are off by default.
LEGACY_CONFIG: dict = dict(
    norm="global",
    norm_prior=100,
    norm_gate=False,
    fmin=20.0,
    ceps=0,
    dropout=0.0,
    frontend="linear",
    flush_s=FLUSH_S,
    log_floor=1e-6,
    remove_dc=False,
)
CONV_FILTERS, CONV_KERNEL, CONV_POOL = 32, 7, 3
PCEN_S, PCEN_ALPHA, PCEN_DELTA, PCEN_R, PCEN_EPS, PCEN_CHUNK = 0.025, 0.98, 2.0, 0.5, 1e-12, 64
# Offline variant: a bidirectional encoder, so every block is decoded only after the whole utterance is heard.
# (block=0 makes the whole utterance one block: a plain attention seq2seq, much slower to train here.)
OFFLINE_CONFIG: dict = dict(DEFAULT_CONFIG, bidirectional=True)

Alignment = list[list[int]]  # digits emitted in each block


def dct_matrix(n: int, k: int) -> torch.Tensor:
    """(n, k) orthonormal DCT-II basis: ``x @ dct_matrix(n, k)`` gives the first k coefficients of x."""
    i = torch.arange(n, dtype=torch.float64).view(n, 1)
    j = torch.arange(k, dtype=torch.float64).view(1, k)
    m = torch.cos(math.pi / n * (i + 0.5) * j) * math.sqrt(2.0 / n)
    m[:, 0] /= math.sqrt(2.0)
    return m.float()


def build(config: dict):
    """A Transducer from its config, or an :class:`Ensemble` from ``{"ensemble": [member configs]}``."""
    if config and "ensemble" in config:
        return Ensemble([build(c) for c in config["ensemble"]])
    cfg = dict(DEFAULT_CONFIG)
    if config:
        cfg.update(LEGACY_CONFIG)
    cfg.update(config or {})
    return Transducer(cfg)


class Transducer(nn.Module):
    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.cfg = dict(cfg)
        c = self.cfg
        for k, v in LEGACY_CONFIG.items():
            c.setdefault(k, v)
        if c["norm"] not in ("global", "causal", "pcen"):
            raise ValueError(f"norm must be 'global', 'causal' or 'pcen', not {c['norm']!r}")
        if c["attention"] not in ("mlp", "dot"):
            raise ValueError(f"attention must be 'mlp' or 'dot', not {c['attention']!r}")
        self.logmel = LogMel(
            FeatureConfig(
                n_mels=c["n_mels"], fmin=float(c["fmin"]), floor=float(c["log_floor"]), remove_dc=bool(c["remove_dc"])
            )
        )
        self.register_buffer("feat_mean", torch.zeros(c["n_mels"]))
        self.register_buffer("feat_std", torch.ones(c["n_mels"]))
        n_in = c["n_mels"]
        if c["ceps"]:
            if not 0 < int(c["ceps"]) <= c["n_mels"]:
                raise ValueError(f"ceps must be between 1 and n_mels ({c['n_mels']}), not {c['ceps']!r}")
            n_in = int(c["ceps"])
            self.register_buffer("dct", dct_matrix(c["n_mels"], n_in), persistent=False)
        if c["frontend"] not in ("linear", "conv"):
            raise ValueError(f"frontend must be 'linear' or 'conv', not {c['frontend']!r}")
        if c["frontend"] == "conv":
            self.fconv = nn.Conv1d(c["stack"], CONV_FILTERS, CONV_KERNEL, padding=CONV_KERNEL // 2)
            n_flat = CONV_FILTERS * (n_in // CONV_POOL)
        else:
            n_flat = n_in * c["stack"]
        self.inp = nn.Linear(n_flat, c["enc_hidden"])
        self.drop = nn.Dropout(float(c["dropout"]))
        self.enc = nn.GRU(
            c["enc_hidden"],
            c["enc_hidden"],
            c["enc_layers"],
            batch_first=True,
            bidirectional=bool(c["bidirectional"]),
            dropout=float(c["dropout"]) if c["enc_layers"] > 1 else 0.0,
        )
        H = self.enc_dim
        D = c["dec_hidden"]
        self.embed = nn.Embedding(12, c["embed"])
        self.cell1 = nn.GRUCell(c["embed"] + H, D)
        if c["attention"] == "mlp":
            self.att_s = nn.Linear(D, c["att_hidden"])
            self.att_h = nn.Linear(H, c["att_hidden"], bias=False)
            self.att_v = nn.Linear(c["att_hidden"], 1, bias=False)
        else:
            self.att_q = nn.Linear(D, H)
        self.cell2 = nn.GRUCell(H + D, D)
        self.out = nn.Linear(D, N_OUT)

    # ------------------------------------------------------------------ properties
    @property
    def config(self) -> dict:
        """The model config under the name the training core reads (it goes into resume files)."""
        return self.cfg

    @property
    def enc_dim(self) -> int:
        return self.cfg["enc_hidden"] * (2 if self.cfg["bidirectional"] else 1)

    @property
    def online(self) -> bool:
        return self.cfg["block"] > 0 and not self.cfg["bidirectional"]

    @property
    def M(self) -> int:
        return int(self.cfg["max_per_block"])

    @property
    def frame_seconds(self) -> float:
        """Seconds per encoder frame."""
        return self.logmel.cfg.hop * self.cfg["stack"] / self.logmel.cfg.sample_rate

    def block_frames(self, n_enc: int) -> int:
        """W for this utterance (the whole utterance for the offline variant)."""
        return self.cfg["block"] if self.cfg["block"] > 0 else max(1, n_enc)

    def n_blocks(self, n_enc: int) -> int:
        W = self.block_frames(n_enc)
        return max(1, math.ceil(n_enc / W))

    def block_end_sample(self, b: int, n_enc: int) -> int:
        """The audio sample at which block b is complete (its last frame's window has arrived)."""
        W = self.block_frames(n_enc)
        last_enc = min((b + 1) * W, n_enc) - 1
        last_feat = (last_enc + 1) * self.cfg["stack"] - 1
        fc = self.logmel.cfg
        return last_feat * fc.hop + fc.win

    # ------------------------------------------------------------------ features / encoder
    @property
    def flush_samples(self) -> int:
        """Samples of silence that follow the end of every input (see FLUSH_S)."""
        return int(round(float(self.cfg.get("flush_s", 0.0)) * self.logmel.cfg.sample_rate))

    def with_flush(self, audio: torch.Tensor) -> torch.Tensor:
        """1-D audio followed by the end-of-input silence."""
        n = self.flush_samples
        return torch.cat([audio, audio.new_zeros(n)]) if n else audio

    def features(self, audios: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """List of 1-D audio tensors (whole inputs: each is followed by the end-of-input silence) -> normalised
        log-mel (B, T, n_mels) zero-padded, lengths (B,)."""
        feats = [self.logmel(self.with_flush(a.to(self.feat_mean.device))[None])[0] for a in audios]
        return self.pad_normalize(feats)

    def pad_normalize(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw log-mel (T_i, n_mels) list -> normalised (B, T, n_mels) and lengths (B,); padding comes after each
        utterance's end, so it changes none of its frames (both normalisations are causal)."""
        lengths = torch.tensor([f.shape[0] for f in feats])
        x = nn.utils.rnn.pad_sequence(feats, batch_first=True)
        return self.normalize(x), lengths

    def normalize(self, feats: torch.Tensor, state: dict | None = None) -> torch.Tensor:
        """Raw log-mel (..., T, n_mels) -> normalised. With ``norm="causal"`` frame t is centred on the mean of
        frames 1..t (plus the prior); ``state`` (a dict, for streaming) carries the running sum and count
        between calls, so chunked and whole-utterance normalisation agree. ``norm="pcen"``: :meth:`pcen`."""
        if self.cfg["norm"] == "pcen":
            return self.pcen(feats, state) / self.feat_std
        if self.cfg["norm"] != "causal":
            return (feats - self.feat_mean) / self.feat_std
        n0 = float(self.cfg["norm_prior"])
        T = feats.shape[-2]
        prev_sum = self.feat_mean * n0
        prev_n = torch.tensor(n0, dtype=feats.dtype, device=feats.device)
        if state is not None and "sum" in state:
            prev_sum, prev_n = state["sum"].to(feats.device), state["n"].to(feats.device)
        w = self.live_frames(feats).to(feats.dtype)
        csum = torch.cumsum(feats * w, dim=-2) + prev_sum
        count = prev_n + torch.cumsum(w, dim=-2)
        mean = csum / count
        if state is not None and T:
            state["sum"] = csum[..., -1, :].detach()
            state["n"] = count[..., -1, 0].detach()
        return (feats - mean) / self.feat_std

    def live_frames(self, feats: torch.Tensor) -> torch.Tensor:
        """(..., T, 1) bool: False for frames of digital silence (every band at the log floor) when ``norm_gate``
        is on; they are left out of the running mean and hold PCEN's smoother."""
        if not self.cfg["norm_gate"]:
            return torch.ones_like(feats[..., :1], dtype=torch.bool)
        return feats.mean(-1, keepdim=True) > math.log(self.logmel.cfg.floor) + 1.0

    def pcen(self, feats: torch.Tensor, state: dict | None = None) -> torch.Tensor:
        """Raw log-mel (..., T, n_mels) -> PCEN (before the per-band scale). The smoother
        M_t = a_t M_(t-1) + (1 - a_t) E_t (a_t = 1 - PCEN_S, or 1 on digital silence; M_(-1) = E_0) is computed
        in closed form over chunks of ``PCEN_CHUNK`` frames (cumulative products stay well above underflow) and
        carried in ``state`` between calls, so chunked and whole-utterance features agree."""
        E = feats.double().exp()
        if state is not None and "m" in state:
            m = state["m"].to(E.device)
        elif E.shape[-2]:
            m = E[..., 0, :]  # the smoother starts at the first frame, so any input level settles at once
        else:
            return feats
        live = self.live_frames(feats).double()
        out = []
        for t0 in range(0, E.shape[-2], PCEN_CHUNK):
            e, g = E[..., t0 : t0 + PCEN_CHUNK, :], live[..., t0 : t0 + PCEN_CHUNK, :]
            a = 1.0 - PCEN_S * g
            P = torch.cumprod(a, dim=-2)
            M = P * (m.unsqueeze(-2) + torch.cumsum((1.0 - a) * e / P, dim=-2))
            out.append(M)
            m = M[..., -1, :]
        M = torch.cat(out, dim=-2) if out else E
        if state is not None and E.shape[-2]:
            state["m"] = m.detach()
        y = (E / (PCEN_EPS + M) ** PCEN_ALPHA + PCEN_DELTA) ** PCEN_R - PCEN_DELTA**PCEN_R
        return y.to(feats.dtype)

    def stack_frames(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> (B, T // stack, F * stack); trailing frames that do not fill a stack are dropped."""
        s = self.cfg["stack"]
        T = x.shape[1] // s
        return x[:, : T * s].reshape(x.shape[0], T, s * x.shape[2])

    def encode(self, x: torch.Tensor, lengths: torch.Tensor | None = None, hidden=None):
        """Normalised features (B, T, F) -> encoder outputs (B, T', H), attention keys, T' lengths, hidden."""
        if self.cfg["ceps"]:
            x = x @ self.dct
        z = self.stack_frames(x)
        if self.cfg["frontend"] == "conv":
            b, t = z.shape[:2]
            f = torch.relu(self.fconv(z.reshape(b * t, self.cfg["stack"], -1)))  # (B*T', filters, bands)
            z = F.max_pool1d(f, CONV_POOL).reshape(b, t, -1)
        z = self.drop(torch.relu(self.inp(z)))
        enc_len = None if lengths is None else torch.div(lengths, self.cfg["stack"], rounding_mode="floor")
        if self.cfg["bidirectional"] and enc_len is not None and z.shape[0] > 1:
            packed = nn.utils.rnn.pack_padded_sequence(
                z, enc_len.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
            )
            out, hidden = self.enc(packed, hidden)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=z.shape[1])
        else:
            out, hidden = self.enc(z, hidden)  # causal: padding after the end does not change earlier outputs
        return out, self.keys(out), enc_len, hidden

    def keys(self, enc: torch.Tensor) -> torch.Tensor:
        return self.att_h(enc) if self.cfg["attention"] == "mlp" else enc

    # ------------------------------------------------------------------ transducer step
    def init_state(self, n: int):
        D, H = self.cfg["dec_hidden"], self.enc_dim
        z = self.feat_mean.new_zeros
        return (z(n, D), z(n, D), z(n, H), torch.full((n,), SOS, dtype=torch.long, device=self.feat_mean.device))

    def step(self, state, hb: torch.Tensor, kb: torch.Tensor, mb: torch.Tensor):
        """One transducer step over the current blocks.

        state = (s, h', c, y_prev); hb (n, W, H) block encodings, kb (n, W, A) their keys, mb (n, W) valid frames.
        Returns log-probs (n, 11), attention weights (n, W) and the new (s, h', c) (feed a token to finish).
        """
        s, h2, c, y = state
        s = self.cell1(torch.cat([c, self.embed(y)], -1), s)
        if self.cfg["attention"] == "mlp":
            e = self.att_v(torch.tanh(kb + self.att_s(s)[:, None, :]))[..., 0]
        else:
            e = (kb * self.att_q(s)[:, None, :]).sum(-1) / math.sqrt(hb.shape[-1])
        e = e.masked_fill(~mb, -1e9)
        a = torch.softmax(e, -1)
        c = (a[..., None] * hb).sum(1)
        h2 = self.cell2(torch.cat([c, s], -1), h2)
        return torch.log_softmax(self.out(h2), -1), a, (s, h2, c)

    @staticmethod
    def feed(pre, tokens: torch.Tensor):
        s, h2, c = pre
        return (s, h2, c, tokens)

    # ------------------------------------------------------------------ blocks
    def blockify(self, enc: torch.Tensor, keys: torch.Tensor, enc_len: torch.Tensor):
        """Pad to whole blocks: (B, NB, W, H), (B, NB, W, A), valid (B, NB, W), W, n_blocks per item."""
        B, T, H = enc.shape
        if self.cfg["block"] > 0:
            W = self.cfg["block"]
        else:
            W = max(1, int(enc_len.max()))
        NB = max(1, math.ceil(T / W)) if self.cfg["block"] > 0 else 1
        pad = NB * W - T
        if pad > 0:
            enc = F.pad(enc, (0, 0, 0, pad))
            keys = F.pad(keys, (0, 0, 0, pad))
        elif pad < 0:
            enc, keys = enc[:, : NB * W], keys[:, : NB * W]
        valid = torch.arange(NB * W, device=enc.device)[None, :] < enc_len.to(enc.device)[:, None]
        nb = [self.n_blocks(int(n)) for n in enc_len]
        return (enc.reshape(B, NB, W, H), keys.reshape(B, NB, W, keys.shape[-1]), valid.reshape(B, NB, W), W, nb)

    # ------------------------------------------------------------------ training loss
    def alignment_nll(self, enc, keys, enc_len, alignments: Sequence[Alignment]) -> tuple[torch.Tensor, int]:
        """Sum of -log p(alignment) over the batch and the number of predicted tokens."""
        eb, kb, vb, W, nb = self.blockify(enc, keys, enc_len)
        B = enc.shape[0]
        seqs, blks = [], []
        for i, al in enumerate(alignments):
            assert len(al) == nb[i], f"alignment has {len(al)} blocks, utterance has {nb[i]}"
            t, bl = [], []
            for b, ds in enumerate(al):
                t += list(ds) + [EOB]
                bl += [b] * (len(ds) + 1)
            seqs.append(t)
            blks.append(bl)
        L = max(len(t) for t in seqs)
        dev = enc.device
        tgt = torch.full((B, L), EOB, dtype=torch.long, device=dev)
        blk = torch.zeros((B, L), dtype=torch.long, device=dev)
        mask = torch.zeros((B, L), dtype=torch.bool, device=dev)
        for i, (t, bl) in enumerate(zip(seqs, blks)):
            tgt[i, : len(t)] = torch.tensor(t)
            blk[i, : len(bl)] = torch.tensor(bl)
            blk[i, len(bl) :] = bl[-1]
            mask[i, : len(t)] = True
        ar = torch.arange(B, device=dev)
        state = self.init_state(B)
        total = enc.new_zeros(())
        for m in range(L):
            b = blk[:, m]
            logp, _, pre = self.step(state, eb[ar, b], kb[ar, b], vb[ar, b])
            nll = -logp.gather(1, tgt[:, m : m + 1])[:, 0]
            total = total + (nll * mask[:, m]).sum()
            state = self.feed(pre, tgt[:, m])
        return total, int(mask.sum())


# ---------------------------------------------------------------------- ensembles
# Geometry the members of an ensemble must share: same features, frame rate, blocks and tokens per block.
_SHARED = ("n_mels", "fmin", "stack", "block", "max_per_block", "bidirectional")


class Ensemble(nn.Module):
    """Several transducers trained apart, decoded in lockstep as one: at every step each member reads the same
    block of audio and the same emitted prefix, and the ensemble's next-token distribution is the mean of the
    members' probabilities. Looks like a :class:`Transducer` to decoding, evaluation and streaming (inference
    only). The members may differ in sizes, normalisation and recipe, not in the ``_SHARED`` geometry.

    Why: models trained without a speaker disagree on that speaker far more than their training loss suggests
    (two runs of one recipe: 17.6% and 23.5% digit errors on george), so averaging them removes part of the
    error that comes from which run you happened to train, not from what the data can teach.

    Encoder outputs, keys and transducer states are the members' concatenated along the feature axis, so the
    block decoder's code is unchanged. ``normalize`` only applies member 0's fixed training statistics (what the
    panel draws); each member's own (causal) normalisation runs inside ``encode``, its state carried with the
    encoder's hidden state, so chunked streaming still equals whole-file decoding."""

    def __init__(self, members: Sequence[Transducer]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        first = members[0].cfg
        for m in members[1:]:
            bad = [k for k in _SHARED if m.cfg[k] != first[k]]
            if bad:
                raise ValueError(
                    "ensemble members differ in " + ", ".join(f"{k} ({first[k]} vs {m.cfg[k]})" for k in bad)
                )
        self.members = nn.ModuleList(members)
        self.cfg = dict(first)  # member 0's geometry (shared by all), read by decoding and streaming
        self.logmel = members[0].logmel
        self.register_buffer("feat_mean", members[0].feat_mean.clone(), persistent=False)
        self.register_buffer("feat_std", members[0].feat_std.clone(), persistent=False)
        self._enc_dims = [m.enc_dim for m in members]
        self._key_dims = [m.cfg["att_hidden"] if m.cfg["attention"] == "mlp" else m.enc_dim for m in members]
        self._dec_dims = [m.cfg["dec_hidden"] for m in members]

    online = Transducer.online
    M = Transducer.M
    frame_seconds = Transducer.frame_seconds
    block_frames = Transducer.block_frames
    n_blocks = Transducer.n_blocks
    block_end_sample = Transducer.block_end_sample
    blockify = Transducer.blockify
    features = Transducer.features
    flush_samples = Transducer.flush_samples
    with_flush = Transducer.with_flush
    pad_normalize = Transducer.pad_normalize
    feed = staticmethod(Transducer.feed)

    def normalize(self, feats: torch.Tensor, state: dict | None = None) -> torch.Tensor:
        return (feats - self.feat_mean) / self.feat_std

    def encode(self, x: torch.Tensor, lengths: torch.Tensor | None = None, hidden=None):
        raw = x * self.feat_std + self.feat_mean
        hidden = hidden or [(None, {}) for _ in self.members]
        encs, keys, new = [], [], []
        enc_len = None
        for m, (h, norm_state) in zip(self.members, hidden):
            e, k, enc_len, h = m.encode(m.normalize(raw, norm_state), lengths, h)
            encs.append(e)
            keys.append(k)
            new.append((h, norm_state))
        return torch.cat(encs, -1), torch.cat(keys, -1), enc_len, new

    def init_state(self, n: int):
        states = [m.init_state(n) for m in self.members]
        return tuple(torch.cat([st[i] for st in states], -1) for i in range(3)) + (states[0][3],)

    def step(self, state, hb: torch.Tensor, kb: torch.Tensor, mb: torch.Tensor):
        s, h2, c, y = state
        parts = zip(
            self.members,
            s.split(self._dec_dims, -1),
            h2.split(self._dec_dims, -1),
            c.split(self._enc_dims, -1),
            hb.split(self._enc_dims, -1),
            kb.split(self._key_dims, -1),
        )
        logps, atts, pres = [], [], []
        for m, s_k, h2_k, c_k, hb_k, kb_k in parts:
            lp, a, pre = m.step((s_k, h2_k, c_k, y), hb_k, kb_k, mb)
            logps.append(lp)
            atts.append(a)
            pres.append(pre)
        logp = torch.logsumexp(torch.stack(logps), 0) - math.log(len(logps))
        pre = tuple(torch.cat([p[i] for p in pres], -1) for i in range(3))
        return logp, torch.stack(atts).mean(0), pre


def index_state(state, idx: torch.Tensor):
    """The rows ``idx`` of a transducer state (or of the pre-state that ``step`` returns)."""
    return tuple(t[idx] for t in state)
