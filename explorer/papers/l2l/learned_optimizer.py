"""``LearnedOptimizer``: the meta-trained LSTM optimizer as a drop-in ``torch.optim.Optimizer``.

Example::

    import torch
    from explorer.papers.l2l import LearnedOptimizer

    model = torch.nn.Sequential(torch.nn.Linear(784, 20), torch.nn.Sigmoid(), torch.nn.Linear(20, 10))
    opt = LearnedOptimizer(model.parameters())          # bundled MNIST-trained LSTM optimizer
    for x, y in batches:                                # e.g. 100 minibatches of 128 images
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    torch.save(opt.state_dict(), "opt.pt")              # the per-coordinate LSTM states; load_state_dict restores

The LSTM is applied to every parameter coordinate independently (its own hidden state per coordinate), so it
works for any model size; it was meta-trained for 100-step runs of small sigmoid MLPs (or 10-D quadratics with
``checkpoint="models/l2l_quadratic.safetensors"``) and, as the paper shows, it may fail on other regimes
(e.g. ReLU networks). There is no learning rate: the step size is what the LSTM outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch


class LearnedOptimizer(torch.optim.Optimizer):
    """A torch.optim-compatible optimizer whose update rule is a meta-trained coordinatewise LSTM.

    Args:
        params: iterable of tensors or parameter-group dicts, as for any torch optimizer.
        checkpoint: an l2l ``.safetensors`` checkpoint; default the bundled ``models/l2l_mnist.safetensors``.
        scale: optional multiplier on the LSTM's proposed step (1.0 = as meta-trained).

    ``state_dict()`` holds each parameter's LSTM hidden and cell states (``h0, c0, h1, c1, ...``) and its step
    count; the LSTM weights themselves come from the checkpoint, whose file name is kept in the param groups.
    """

    def __init__(self, params: Iterable[Any], checkpoint: str | Path | None = None, scale: float = 1.0) -> None:
        from .infer import load_learned

        defaults = {"scale": float(scale)}
        super().__init__(params, defaults)
        self.net, self.meta = load_learned(checkpoint, device="cpu")
        self.net.eval()
        self._devices: dict = {}
        self.checkpoint_name = self.meta.name

    def _net_for(self, device: torch.device):
        if device.type == "cpu":
            return self.net
        if device not in self._devices:
            import copy

            self._devices[device] = copy.deepcopy(self.net).to(device)
        return self._devices[device]

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("LearnedOptimizer does not support sparse gradients")
                net = self._net_for(p.device)
                state = self.state[p]
                n = p.numel()
                if "h0" not in state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    for i, (h, c) in enumerate(net.initial_state(n, device=p.device, dtype=torch.float32)):
                        state[f"h{i}"], state[f"c{i}"] = h.clone(), c.clone()
                hc = [(state[f"h{i}"].float(), state[f"c{i}"].float()) for i in range(net.layers)]
                grad = p.grad.detach().reshape(-1).float()
                update, new = net(grad, hc)
                for i, (h, c) in enumerate(new):
                    state[f"h{i}"], state[f"c{i}"] = h, c
                state["step"] += 1
                p.add_(update.view_as(p).to(p.dtype), alpha=group["scale"])
        return loss
