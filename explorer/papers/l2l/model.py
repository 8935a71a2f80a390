"""The coordinatewise LSTM optimizer m(∇, h; φ) of Andrychowicz et al. (2016).

One small 2-layer LSTM (20 units per layer) with shared weights is applied to every parameter coordinate of
the optimizee independently: the coordinates form the LSTM's batch dimension, so coordinate i's update only
ever sees coordinate i's gradient and its own hidden state. The input gradient is preprocessed as in the
paper's Appendix A (log-magnitude and sign, p = 10) and the linear output is multiplied by a fixed scale.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

DEFAULT_CONFIG: dict[str, Any] = {
    "hidden": 20,
    "layers": 2,
    "preprocess": True,
    "p": 10.0,
    "out_scale": 0.1,
}

State = list[tuple[torch.Tensor, torch.Tensor]]


def preprocess_gradient(grad: torch.Tensor, p: float = 10.0) -> torch.Tensor:
    """Paper, Appendix A: ∇ ↦ (log|∇| / p, sgn ∇) if |∇| ≥ e^{-p}, else (-1, e^p ∇).

    ``grad`` has shape (n,); returns (n, 2). Exact at zero (gives (-1, 0)) and finite for huge values.
    """
    grad = grad.reshape(-1)
    mag = grad.abs()
    big = mag >= math.exp(-p)
    # clamp before the log so the unselected branch never produces -inf (keeps autograd NaN-free too)
    log_part = torch.where(big, torch.log(mag.clamp_min(math.exp(-p))) / p, torch.full_like(grad, -1.0))
    sign_part = torch.where(big, torch.sign(grad), grad * math.exp(p))
    return torch.stack([log_part, sign_part], dim=1)


class LSTMOptimizer(nn.Module):
    """Coordinatewise deep LSTM optimizer. ``forward(grad, state) -> (update, new_state)``.

    ``grad``: flat tensor (n,) of optimizee gradients (treated as an input: callers pass it detached, so
    no second derivatives flow). ``update``: (n,) step to *add* to the parameters: θ ← θ + update.
    """

    def __init__(
        self,
        hidden: int = 20,
        layers: int = 2,
        preprocess: bool = True,
        p: float = 10.0,
        out_scale: float = 0.1,
        **_ignored: Any,
    ) -> None:
        super().__init__()
        self.hidden = int(hidden)
        self.layers = int(layers)
        self.preprocess = bool(preprocess)
        self.p = float(p)
        self.out_scale = float(out_scale)
        in_dim = 2 if self.preprocess else 1
        self.cells = nn.ModuleList(
            nn.LSTMCell(in_dim if i == 0 else self.hidden, self.hidden) for i in range(self.layers)
        )
        self.out = nn.Linear(self.hidden, 1)

    def config(self) -> dict[str, Any]:
        return {
            "hidden": self.hidden,
            "layers": self.layers,
            "preprocess": self.preprocess,
            "p": self.p,
            "out_scale": self.out_scale,
        }

    def initial_state(self, n: int, device: Any = None, dtype: torch.dtype | None = None) -> State:
        ref = self.out.weight
        z = torch.zeros(n, self.hidden, device=device or ref.device, dtype=dtype or ref.dtype)
        return [(z, z) for _ in range(self.layers)]

    def forward(self, grad: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        g = grad.reshape(-1)
        x = preprocess_gradient(g, self.p) if self.preprocess else g.unsqueeze(1)
        x = x.to(self.out.weight.dtype)
        new_state: State = []
        for cell, (h, c) in zip(self.cells, state):
            h, c = cell(x, (h, c))
            new_state.append((h, c))
            x = h
        return self.out(x).squeeze(1) * self.out_scale, new_state


def build(config: dict[str, Any]) -> LSTMOptimizer:
    """Rebuild the network from a checkpoint's model_config (extra keys such as the problem are ignored)."""
    cfg = dict(DEFAULT_CONFIG)
    cfg.update({k: v for k, v in (config or {}).items() if k in DEFAULT_CONFIG})
    return LSTMOptimizer(**cfg)


def detach_state(state: State) -> State:
    return [(h.detach(), c.detach()) for h, c in state]
