"""Decoding: from audio to digits, one block at a time.

:class:`BlockDecoder` decodes (greedy or beam) a block of encoder frames and only ever reads that block;
:func:`decode_utterance` runs a whole file through it; :class:`StreamingRecognizer` is fed audio chunks
(microphone, a file at real-time pace): features are computed incrementally (identical to the batch features), the
encoder GRU carries its hidden state across chunks, and a block is decoded as soon as its W encoder frames exist,
so nothing is ever decoded from audio beyond the current block.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .features import SAMPLE_RATE, StreamingLogMel
from .model import EOB, Transducer, index_state


# ---------------------------------------------------------------------- decoding
class BlockDecoder:
    """Greedy or beam decoding one block at a time; reads only the block it is given."""

    def __init__(self, model: Transducer, beam: int = 1) -> None:
        self.model = model
        self.beam = max(1, int(beam))
        self.reset()

    def reset(self) -> None:
        # each hypothesis: (logp, digits [(digit, block, attention)], state)
        self.hyps = [(0.0, [], self.model.init_state(1))]
        self.block = 0

    @torch.no_grad()
    def push_block(self, hb: torch.Tensor, kb: torch.Tensor, mb: torch.Tensor) -> list[tuple[int, list[float]]]:
        """Decode one block (hb (W, H), kb (W, A), mb (W,)); returns the best hypothesis' new digits."""
        m = self.model
        M = m.M
        frontier = [(lp, ds, st, 0) for lp, ds, st in self.hyps]
        closed: dict[tuple[int, ...], tuple[float, list, tuple]] = {}
        for k in range(M):
            if not frontier:
                break
            st = tuple(torch.cat([f[2][i] for f in frontier]) for i in range(4))
            n = len(frontier)
            logp, att, pre = m.step(st, hb[None].expand(n, -1, -1), kb[None].expand(n, -1, -1), mb[None].expand(n, -1))
            lp = logp.cpu()
            cands = []
            for r, (flp, ds, _, _) in enumerate(frontier):
                ri = torch.tensor([r])
                end_lp = flp + float(lp[r, EOB])
                key = tuple(d for d, _, _ in ds)
                if self.beam == 1:
                    tok = int(lp[r].argmax()) if k < M - 1 else EOB
                    if tok == EOB:
                        closed[key] = (end_lp, ds, self.model.feed(index_state(pre, ri), torch.tensor([EOB])))
                    else:
                        cands.append(
                            (
                                flp + float(lp[r, tok]),
                                ds + [(tok, self.block, att[r].cpu().tolist())],
                                self.model.feed(index_state(pre, ri), torch.tensor([tok])),
                                k + 1,
                            )
                        )
                    continue
                if key not in closed or end_lp > closed[key][0]:
                    closed[key] = (end_lp, ds, self.model.feed(index_state(pre, ri), torch.tensor([EOB])))
                if k < M - 1:
                    top = torch.topk(lp[r, :EOB], min(self.beam, 10))
                    for v, d in zip(top.values.tolist(), top.indices.tolist()):
                        cands.append(
                            (
                                flp + v,
                                ds + [(d, self.block, att[r].cpu().tolist())],
                                self.model.feed(index_state(pre, ri), torch.tensor([d])),
                                k + 1,
                            )
                        )
            cands.sort(key=lambda c: -c[0])
            frontier = cands[: self.beam]
        ranked = sorted(closed.values(), key=lambda h: -h[0])[: self.beam]
        self.hyps = [(lp, ds, st) for lp, ds, st in ranked]
        self.block += 1
        return [(d, a) for d, b, a in self.hyps[0][1] if b == self.block - 1]

    @property
    def digits(self) -> list[int]:
        return [d for d, _, _ in self.hyps[0][1]]

    @property
    def emissions(self) -> list[tuple[int, int]]:
        """(digit, block) of the best hypothesis."""
        return [(d, b) for d, b, _ in self.hyps[0][1]]


@torch.no_grad()
def decode_utterance(model: Transducer, audio: torch.Tensor, beam: int = 1):
    """Whole-file decode (same computation as streaming, block by block). Returns digits and (digit, block)."""
    x, lengths = model.features([audio])
    enc, keys, enc_len, _ = model.encode(x, lengths)
    eb, kb, vb, W, nb = model.blockify(enc, keys, enc_len)
    dec = BlockDecoder(model, beam)
    for b in range(nb[0]):
        dec.push_block(eb[0, b], kb[0, b], vb[0, b])
    return dec.digits, dec.emissions, int(enc_len[0])


class StreamingRecognizer:
    def __init__(self, model: Transducer, beam: int = 1) -> None:
        if not model.online:
            raise ValueError("the offline variant cannot stream")
        self.model = model
        self.beam = beam
        self.sample_rate = SAMPLE_RATE
        self.W = model.cfg["block"]
        self.reset()

    def reset(self) -> None:
        self.feat = StreamingLogMel(self.model.logmel)
        self._norm_state: dict = {}
        self.decoder = BlockDecoder(self.model, self.beam)
        self._stack = torch.zeros(0, self.model.cfg["n_mels"])
        self._enc: list[torch.Tensor] = []
        self._keys: list[torch.Tensor] = []
        self._hidden = None
        self.samples_in = 0
        self.frames_out = 0
        self.compute_s = 0.0
        self.blocks_done = 0

    @property
    def digits(self) -> list[int]:
        return self.decoder.digits

    @torch.no_grad()
    def accept(self, samples: np.ndarray) -> dict:
        """Feed audio (float32 mono at 8 kHz). Returns new normalised log-mel frames and finished blocks."""
        t0 = time.perf_counter()
        m = self.model
        dev = m.feat_mean.device
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.samples_in += len(samples)
        raw = self.feat.push(samples).to(dev)
        frames = m.normalize(raw, self._norm_state)
        start = self.frames_out
        self.frames_out += frames.shape[0]
        blocks = []
        if frames.shape[0]:
            self._stack = torch.cat([self._stack.to(dev), frames])
            s = m.cfg["stack"]
            n = self._stack.shape[0] // s
            if n:
                enc, keys, _, self._hidden = m.encode(self._stack[None, : n * s], None, self._hidden)
                self._stack = self._stack[n * s :]
                self._enc += list(enc[0])
                self._keys += list(keys[0])
                while len(self._enc) >= self.W:
                    blocks.append(self._decode_block(self.W))
        self.compute_s += time.perf_counter() - t0
        return {"frames": frames.cpu().numpy(), "frame_start": start, "blocks": blocks}

    def _decode_block(self, n: int) -> dict:
        m = self.model
        W = self.W
        hb = torch.stack(self._enc[:n])
        kb = torch.stack(self._keys[:n])
        if n < W:
            hb = torch.cat([hb, hb.new_zeros(W - n, hb.shape[1])])
            kb = torch.cat([kb, kb.new_zeros(W - n, kb.shape[1])])
        mb = torch.arange(W, device=hb.device) < n
        del self._enc[:n], self._keys[:n]
        b = self.blocks_done
        new = self.decoder.push_block(hb, kb, mb)
        self.blocks_done += 1
        fs = m.frame_seconds
        t_end = min(m.block_end_sample(b, 10**9), self.samples_in) / SAMPLE_RATE
        return {
            "block": b,
            "start_s": b * W * fs,
            "end_s": (b * W + n) * fs,
            "time_s": t_end,
            "digits": [d for d, _ in new],
            "attention": [a for _, a in new],
            "frames": n,
            "transcript": "".join(str(d) for d in self.decoder.digits),
        }

    @torch.no_grad()
    def finish(self) -> dict:
        """End of input: the end-of-input silence goes through like audio, then the last, partial block is decoded,
        exactly as the whole-file decode does. The silence's frames are not returned, and the blocks it completes
        are reported as ending with the audio (nothing was heard after it)."""
        n = self.model.flush_samples
        samples_in = self.samples_in
        out = (
            self.accept(np.zeros(n, np.float32))
            if n
            else {
                "frames": np.zeros((0, self.model.cfg["n_mels"]), np.float32),
                "frame_start": self.frames_out,
                "blocks": [],
            }
        )
        self.samples_in = samples_in  # the silence was not heard: block times stay within the audio
        end_s = samples_in / SAMPLE_RATE
        out["frames"] = np.zeros((0, self.model.cfg["n_mels"]), np.float32)
        out["frame_start"] = self.frames_out
        t0 = time.perf_counter()
        if self._enc:
            out["blocks"].append(self._decode_block(len(self._enc)))
        for b in out["blocks"]:
            for k in ("time_s", "end_s", "start_s"):
                b[k] = min(b[k], end_s)
        self.compute_s += time.perf_counter() - t0
        return out
