"""Run a BPTT schedule on a real PyTorch recurrent core (LSTMCell / GRUCell) and measure it honestly.

The training signal is ``L = sum_k <h_k, g_k>`` for fixed random ``g_k`` (any per-step loss reaches the core
only through dL/dh_k, so this is general). Three ways to get dL/dparams:

* :func:`run_schedule` executes a planner schedule action by action: a forward step keeps its autograd graph
  only if the schedule stores its internal state or backpropagates it next; ``B k`` calls
  ``torch.autograd.grad`` on step k alone and carries dL/dh_{k-1} backward;
* :func:`full_bptt` is ordinary autograd over the whole unrolled sequence;
* :func:`uniform_checkpoint` uses ``torch.utils.checkpoint`` on uniform segments (Chen et al.'s scheme).

Memory is measured with ``torch.autograd.graph.saved_tensors_hooks``: every tensor autograd saves, and every
state the executor stores, is counted once per underlying storage while it is alive (parameters, inputs x and
the loss weights g are excluded: all methods hold them anyway). On CUDA ``torch.cuda.max_memory_allocated``
is reported as well.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn

from .replay import Replay, Step
from .schedule import Schedule

CORES = ("lstm", "gru")


# --------------------------------------------------------------------------------------------- the problem
class Core(nn.Module):
    """A recurrent core with a uniform interface: ``state`` is a tuple ((h, c) for LSTM, (h,) for GRU)."""

    def __init__(self, kind: str, input_size: int, hidden: int) -> None:
        super().__init__()
        if kind not in CORES:
            raise ValueError(f"unknown core {kind!r} (choose lstm or gru)")
        self.kind = kind
        self.hidden = hidden
        self.cell = nn.LSTMCell(input_size, hidden) if kind == "lstm" else nn.GRUCell(input_size, hidden)
        self.calls = 0

    def initial_state(self, batch: int, generator: torch.Generator, dtype, device) -> tuple[torch.Tensor, ...]:
        n = 2 if self.kind == "lstm" else 1
        return tuple(
            (0.5 * torch.randn(batch, self.hidden, generator=generator, dtype=dtype)).to(device) for _ in range(n)
        )

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        self.calls += 1
        if self.kind == "lstm":
            h, c = self.cell(x, (state[0], state[1]))
            return (h, c)
        return (self.cell(x, state[0]),)


@dataclass
class Problem:
    core: Core
    xs: torch.Tensor  # (T, batch, input)
    gs: torch.Tensor  # (T, batch, hidden): dL/dh_k of the per-step loss
    h0: tuple[torch.Tensor, ...]

    @property
    def length(self) -> int:
        return int(self.xs.shape[0])


def make_problem(
    kind: str = "lstm",
    length: int = 100,
    hidden: int = 64,
    batch: int = 8,
    input_size: int = 32,
    dtype=torch.float32,
    device="cpu",
    seed: int = 0,
) -> Problem:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    core = Core(kind, input_size, hidden)
    with torch.no_grad():
        for p in core.parameters():
            p.copy_(torch.empty_like(p).uniform_(-1.0, 1.0, generator=gen) / hidden**0.5)
    core = core.to(device=device, dtype=dtype)
    xs = torch.randn(length, batch, input_size, generator=gen, dtype=dtype).to(device)
    gs = (torch.randn(length, batch, hidden, generator=gen, dtype=dtype) / length**0.5).to(device)
    h0 = core.initial_state(batch, gen, dtype, device)
    return Problem(core, xs, gs, h0)


# --------------------------------------------------------------------------------------------- accounting
def _key(t: torch.Tensor) -> tuple[int, int]:
    st = t.untyped_storage()
    return st.data_ptr(), st.nbytes()


class _Packed:
    __slots__ = ("tensor", "tracker", "key")

    def __init__(self, tensor: torch.Tensor, tracker: MemoryTracker, key) -> None:
        self.tensor = tensor
        self.tracker = tracker
        self.key = key

    def __del__(self) -> None:  # autograd released the saved tensor (after backward or with its graph)
        try:
            self.tracker._release(self.key)
        except Exception:
            pass


class MemoryTracker:
    """Live bytes of saved activations and stored states, each storage counted once, with the peak."""

    def __init__(self, exclude: Sequence[torch.Tensor] = ()) -> None:
        self._excluded = {_key(t)[0] for t in exclude}
        self._live: dict[tuple[int, int], int] = {}
        self.current = 0
        self.peak = 0
        self.packs = 0

    def _hold(self, key) -> None:
        n = self._live.get(key, 0)
        if n == 0:
            self.current += key[1]
            self.peak = max(self.peak, self.current)
        self._live[key] = n + 1

    def _release(self, key) -> None:
        n = self._live.get(key, 0)
        if n <= 1:
            if n == 1:
                del self._live[key]
                self.current -= key[1]
        else:
            self._live[key] = n - 1

    def add(self, tensors: Sequence[torch.Tensor]) -> None:
        for t in tensors:
            k = _key(t)
            if k[0] not in self._excluded:
                self._hold(k)

    def remove(self, tensors: Sequence[torch.Tensor]) -> None:
        for t in tensors:
            k = _key(t)
            if k[0] not in self._excluded:
                self._release(k)

    def hooks(self):
        def pack(t: torch.Tensor):
            k = _key(t)
            if k[0] in self._excluded:
                return t
            self.packs += 1
            self._hold(k)
            return _Packed(t.detach(), self, k)  # detached: a saved output would make a cycle

        def unpack(obj):
            return obj.tensor if isinstance(obj, _Packed) else obj

        return torch.autograd.graph.saved_tensors_hooks(pack, unpack)


def _exclusions(pb: Problem) -> list[torch.Tensor]:
    return list(pb.core.parameters()) + [pb.xs, pb.gs]


def measure_alpha(pb: Problem) -> dict[str, float]:
    """alpha = bytes of one step's internal state (its saved activations and outputs) / bytes of a hidden state."""
    tr = MemoryTracker(_exclusions(pb))
    leaves = tuple(s.detach().clone().requires_grad_(True) for s in pb.h0)
    with torch.enable_grad(), tr.hooks():
        out = pb.core(pb.xs[0], leaves)
    tr.add(out)
    state_bytes = sum(s.numel() * s.element_size() for s in pb.h0)
    internal = tr.current
    del out, leaves
    return {"alpha": internal / state_bytes, "internal_bytes": internal, "state_bytes": state_bytes}


# --------------------------------------------------------------------------------------------- results
@dataclass
class RunResult:
    method: str
    grads: dict[str, torch.Tensor]
    grad_h0: tuple[torch.Tensor, ...]
    forward_steps: int
    peak_bytes: int
    seconds: float
    cuda_peak_bytes: int | None = None
    info: dict = field(default_factory=dict)


def _cuda_reset(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _cuda_peak(device, base: int) -> int | None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - base)
    return None


def run_schedule(pb: Problem, schedule: Schedule, token=None, progress=None) -> RunResult:
    """Execute a planner schedule; return gradients, forward count and the measured memory peak."""
    core, xs, gs = pb.core, pb.xs, pb.gs
    T = pb.length
    if schedule.length != T:
        raise ValueError(f"the schedule is for T={schedule.length}, the problem has T={T}")
    device = xs.device
    params = list(core.parameters())
    names = [n for n, _ in core.named_parameters()]
    tr = MemoryTracker(_exclusions(pb))
    base = torch.cuda.memory_allocated() if device.type == "cuda" else 0
    _cuda_reset(device)
    core.calls = 0
    acc = [torch.zeros_like(p) for p in params]
    carry: list[tuple[torch.Tensor, ...] | None] = [None]
    hooks = tr.hooks()

    def forward(k: int, state, graph: bool) -> Step:
        if graph:
            leaves = tuple(s.detach().requires_grad_(True) for s in state)
            with torch.enable_grad(), hooks:
                out = core(xs[k - 1], leaves)
            return Step(k, out, leaves)
        with torch.no_grad():
            out = core(xs[k - 1], state)
        return Step(k, out)

    def backward(step: Step) -> None:
        k, c = step.k, carry[0]
        grad_out = [gs[k - 1] + (c[0] if c is not None else 0)]
        for j in range(1, len(step.out)):
            grad_out.append(c[j] if c is not None else torch.zeros_like(step.out[j]))
        res = torch.autograd.grad(step.out, list(step.leaves) + params, grad_outputs=grad_out, allow_unused=True)
        carry[0] = tuple(r.detach() for r in res[: len(step.leaves)])
        for a, g in zip(acc, res[len(step.leaves) :]):
            if g is not None:
                a.add_(g)

    t0 = time.perf_counter()
    replay = Replay(schedule, pb.h0, forward, backward, tracker=tr)
    replay.run(token=token, progress=progress)
    seconds = time.perf_counter() - t0
    cuda = _cuda_peak(device, base)
    result = RunResult(
        "schedule", dict(zip(names, acc)), carry[0], core.calls, tr.peak, seconds, cuda, {"actions": len(schedule)}
    )
    replay.release()
    return result


def full_bptt(pb: Problem) -> RunResult:
    """Ordinary BPTT: one forward pass keeping the whole graph, one backward pass."""
    core = pb.core
    device = pb.xs.device
    params = list(core.parameters())
    names = [n for n, _ in core.named_parameters()]
    tr = MemoryTracker(_exclusions(pb))
    base = torch.cuda.memory_allocated() if device.type == "cuda" else 0
    _cuda_reset(device)
    core.calls = 0
    t0 = time.perf_counter()
    h0 = tuple(s.detach().requires_grad_(True) for s in pb.h0)
    tr.add(h0)
    with torch.enable_grad(), tr.hooks():
        state = h0
        loss = 0
        for k in range(pb.length):
            state = core(pb.xs[k], state)
            loss = loss + (state[0] * pb.gs[k]).sum()
    grads = torch.autograd.grad(loss, params + list(h0))
    seconds = time.perf_counter() - t0
    cuda = _cuda_peak(device, base)
    return RunResult(
        "full", dict(zip(names, grads[: len(params)])), tuple(grads[len(params) :]), core.calls, tr.peak, seconds, cuda
    )


def uniform_checkpoint(pb: Problem, segments: int) -> RunResult:
    """``torch.utils.checkpoint`` over ``segments`` uniform segments (reentrant variant, so that the saved
    segment inputs and the recomputed activations pass through the saved-tensor hooks)."""
    from torch.utils.checkpoint import checkpoint

    core = pb.core
    device = pb.xs.device
    T = pb.length
    params = list(core.parameters())
    names = [n for n, _ in core.named_parameters()]
    segments = max(1, min(int(segments), T))
    bounds = [round(i * T / segments) for i in range(segments + 1)]
    tr = MemoryTracker(_exclusions(pb))
    base = torch.cuda.memory_allocated() if device.type == "cuda" else 0
    _cuda_reset(device)
    core.calls = 0

    def run(a: int, b: int, *state):
        loss = state[0].new_zeros(())
        for k in range(a, b):
            state = core(pb.xs[k], state)
            loss = loss + (state[0] * pb.gs[k]).sum()
        return (*state, loss)

    t0 = time.perf_counter()
    h0 = tuple(s.detach().requires_grad_(True) for s in pb.h0)
    tr.add(h0)
    with torch.enable_grad(), tr.hooks():
        state = h0
        total = 0
        for a, b in zip(bounds[:-1], bounds[1:]):
            out = checkpoint(partial(run, a, b), *state, use_reentrant=True, preserve_rng_state=False)
            state, total = out[:-1], total + out[-1]
        del state, out
        for p_ in params:
            p_.grad = None
        packs_forward = tr.packs
        total.backward()  # reentrant checkpointing does not support autograd.grad
    seconds = time.perf_counter() - t0
    cuda = _cuda_peak(device, base)
    grads = {n: p_.grad.detach().clone() for n, p_ in zip(names, params)}
    for p_ in params:
        p_.grad = None
    return RunResult(
        "checkpoint",
        grads,
        tuple(s.grad for s in h0),
        core.calls,
        tr.peak,
        seconds,
        cuda,
        {"segments": segments, "packs_forward": packs_forward, "packs_total": tr.packs},
    )


def max_abs_diff(a: RunResult, b: RunResult) -> float:
    d = 0.0
    for name in a.grads:
        d = max(d, float((a.grads[name] - b.grads[name]).abs().max()))
    for x, y in zip(a.grad_h0, b.grad_h0):
        d = max(d, float((x - y).abs().max()))
    return d
