"""``checkpointed_rnn``: train any recurrent cell within a memory budget, with the gradients of full BPTT.

The forward pass runs the cell over the sequence without building an autograd graph and keeps only what an
optimal schedule of the planner (:mod:`explorer.papers.bptt.planner`, Gruslys et al. 2016) says to keep:
some hidden states (the recurrent state between steps), some internal states (one step's graph with its saved
activations) and the last step's graph. The backward pass replays the rest of the schedule
(:class:`explorer.papers.bptt.replay.Replay`): it recomputes forward segments from the stored states with grad
enabled and backpropagates one step at a time with ``torch.autograd.grad``, carrying the gradient of the state
backward and summing the parameter gradients in the same order as ordinary BPTT.

With ``step_loss`` a per-step loss (e.g. a read-out and its cross-entropy) is evaluated inside every step as well:
once without a graph during forward (for the value) and once more, with its graph, in the backward step of that
step, so neither the outputs ``[T, B, H]`` nor the read-out's activations ever exist for the whole sequence.

Tests and benchmarks can look inside with :func:`memory_probe`.
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from .executor import MemoryTracker
from .planner import MAX_SCHEDULE_ACTIONS, POLICIES, InfeasibleBudget, Plan, Planner
from .replay import Replay, Step, needs_graph
from .schedule import full_bptt_memory

State = torch.Tensor | tuple[torch.Tensor, ...]
LossParams = None | nn.Module | torch.Tensor | Iterable[nn.Module | torch.Tensor]
EPS = 1e-9

__all__ = ["checkpointed_rnn", "memory_probe", "plan_for", "CallRecord"]


# --------------------------------------------------------------------------------------------- public API
def checkpointed_rnn(
    cell: nn.Module,
    inputs: torch.Tensor,
    state: State,
    memory_fraction: float | None = None,
    policy: str = "msm",
    memory: float | None = None,
    *,
    step_loss: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    loss_params: LossParams = None,
) -> tuple[torch.Tensor, State]:
    """Run ``cell`` over ``inputs`` like a Python loop, storing only what a memory budget allows.

    Equivalent to::

        outputs = []
        for x_t in inputs:
            state = cell(x_t, state)
            outputs.append(state if torch.is_tensor(state) else state[0])
        return torch.stack(outputs), state

    and, with ``step_loss=fn``, to::

        loss = 0
        for t, x_t in enumerate(inputs):
            state = cell(x_t, state)
            loss = loss + fn(state if torch.is_tensor(state) else state[0], t)
        return loss, state

    but trained by memory-efficient backpropagation through time (Gruslys et al., NIPS 2016): the forward pass
    builds no autograd graph and keeps only the hidden states and internal states that the optimal schedule for
    the budget keeps; the backward pass recomputes the rest from them. Any loss of ``outputs`` and
    ``final_state`` back-propagates to ``inputs``, the initial ``state`` and the cell's parameters with the
    gradients of ordinary full BPTT (the same operations in the same order; equal to rounding).

    Args:
        cell: any ``nn.Module`` called as ``cell(x_t, state) -> state``, with ``state`` a tensor or a tuple of
            tensors of fixed shapes (as ``nn.GRUCell``, and ``nn.LSTMCell`` with ``(h, c)``). It must be
            deterministic: steps are computed again during backward, so dropout inside the cell must be off
            (``cell.eval()``) or use a mask drawn outside (e.g. multiplied into ``inputs``); a cell that draws
            random numbers on its first step is refused with a ``ValueError``. Gradients reach only the cell's
            parameters, ``inputs`` and ``state``: a cell using any other tensor that requires grad is refused.
        inputs: ``[T, B, ...]``; step t receives ``inputs[t]``.
        state: the initial state (tensor or tuple of tensors), e.g. zeros or the detached state of the previous
            chunk of a long sequence.
        memory_fraction: the budget as a fraction of what full BPTT stores, ``1 + (T - 1) * alpha`` slots,
            where ``alpha`` is the size of one step's internal state (its saved activations and outputs) in
            slots, measured on the first step (4.5 for ``nn.LSTMCell``, 8 for ``nn.GRUCell`` on CPU).
        policy: ``"msm"`` (store hidden and/or internal states, the cheapest; default), ``"hsm"`` (hidden
            states only, i.e. Revolve's binomial checkpointing) or ``"ism"`` (internal states only).
        memory: the budget in slots instead, one slot being the size of ``state`` (all its tensors); the slot
            holding the initial state counts, so ``memory=1`` is the least (and recomputes quadratically).
            Give exactly one of ``memory_fraction`` and ``memory``.
        step_loss: a per-step loss ``fn(output_t, t) -> scalar tensor`` evaluated inside every step, with
            ``output_t`` the first state tensor of step ``t`` (``h_t`` for an LSTM; ``t`` counts from 0, so the
            caller can index its targets with it). The call then returns the summed loss instead of the
            outputs, and the outputs are never materialised: ``fn`` runs once per step during forward, without
            a graph, for the value, and once more with its graph in that step's backward step, where its
            gradient joins the state's (so ``fn`` is called ``2T`` times, in the order of the schedule: keep
            side effects such as accumulating metrics out of it). Like the cell it must be deterministic (no
            dropout in training mode, checked on the first step). Its trainable tensors must come from
            ``loss_params`` (or from ``fn`` itself when it is an ``nn.Module``) or from the cell; a loss that
            reaches any other tensor requiring grad is refused (checked on every step), since that tensor's
            gradient would be lost.
        loss_params: the ``nn.Module`` (e.g. the read-out), tensor, or iterable of modules and tensors whose
            parameters ``step_loss`` uses; they receive their gradients like the cell's.

    Returns:
        ``(outputs, final_state)``: ``outputs`` is ``[T, *state[0].shape]``, the first state tensor of every
        step (``h`` for an LSTM). It is the result, not a stored activation: it holds no autograd graph and
        the schedule never reads it, but it does take ``T`` hidden states of memory (and so does its gradient
        during backward), which the budget does not count. ``final_state`` has the structure of ``state``.

        With ``step_loss``: ``(loss, final_state)``, ``loss`` the sum over the steps of ``fn(output_t, t)``
        (added in the order of ``t``, as the loop above; divide by ``T`` for a mean). Back-propagating
        ``loss`` (and/or ``final_state``) gives the cell's parameters, ``loss_params``, ``inputs`` and ``state``
        the gradients of full BPTT through the loop above.

    Raises:
        ValueError: no budget or two, an unknown policy, a budget no schedule fits (the message names the
            smallest feasible one), a cell returning a state of another structure, a random or open cell; a
            ``step_loss`` that returns no scalar, draws random numbers or uses a tensor requiring grad that is
            not in ``loss_params`` or the cell.

    Memory: between forward and backward the call holds the stored states of the plan (at most the budget)
    plus the last step's graph (``alpha`` slots); during backward, one more step's graph, and with
    ``step_loss`` one step's loss graph (e.g. the read-out's logits for one step; ``alpha`` and the budget count
    the cell only). Time: the plan's forward steps (``T`` for full BPTT, about ``2T`` at 5%) plus ``T``
    backward steps; ``step_loss`` runs ``2T`` times forward and ``T`` times backward. Plans are cached per
    (T, policy, alpha, budget). Under ``torch.no_grad()`` (or when nothing requires grad) the loop simply
    runs, with no plan. Under ``torch.autocast`` every step, also those recomputed during backward, runs with
    the caller's autocast settings but without its cache of cast weights (so each step's weight gradient is cast
    back and summed in float32). The backward runs once (``retain_graph=True`` is not supported) and is not
    itself differentiable.

    Example (a training loop with an LSTM cell and a linear read-out at every step)::

        >>> import torch
        >>> from torch import nn
        >>> from explorer.papers.bptt import checkpointed_rnn
        >>> _ = torch.manual_seed(0)
        >>> cell, readout = nn.LSTMCell(8, 32), nn.Linear(32, 5)
        >>> opt = torch.optim.Adam([*cell.parameters(), *readout.parameters()], lr=1e-2)
        >>> x, y = torch.randn(200, 4, 8), torch.randint(0, 5, (200, 4))     # [T, B, input], a class per step
        >>> state = (torch.zeros(4, 32), torch.zeros(4, 32))
        >>> for it in range(3):
        ...     outputs, (h, c) = checkpointed_rnn(cell, x, state, memory_fraction=0.05)
        ...     loss = nn.functional.cross_entropy(readout(outputs).flatten(0, 1), y.flatten())
        ...     opt.zero_grad()
        ...     loss.backward()
        ...     _ = opt.step()

    The same with the read-out and its loss inside the steps (the budget then holds for the whole iteration:
    the outputs ``[T, B, 32]``, the logits ``[T, B, 5]`` and their gradients never exist)::

        >>> ce = nn.functional.cross_entropy
        >>> for it in range(3):
        ...     loss, (h, c) = checkpointed_rnn(cell, x, state, memory_fraction=0.05,
        ...                                     step_loss=lambda h_t, t: ce(readout(h_t), y[t]), loss_params=readout)
        ...     opt.zero_grad()
        ...     (loss / len(x)).backward()                   # the mean over steps and batch, as above
        ...     _ = opt.step()
        >>> loss.shape, readout.weight.grad.shape
        (torch.Size([]), torch.Size([5, 32]))
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}: choose one of {', '.join(POLICIES)}")
    memory_fraction, memory = _check_budget_args(memory_fraction, memory)
    if not torch.is_tensor(inputs) or inputs.dim() < 1 or inputs.shape[0] < 1:
        raise ValueError("inputs must be a tensor [T, B, ...] with T >= 1")
    is_tensor = torch.is_tensor(state)
    states = (state,) if is_tensor else tuple(state)
    if not states or not all(torch.is_tensor(s) for s in states):
        raise ValueError("state must be a tensor or a non-empty tuple of tensors")
    if step_loss is None and loss_params is not None:
        raise ValueError("loss_params is given without step_loss")
    if step_loss is not None and not callable(step_loss):
        raise ValueError(f"step_loss must be a callable fn(output_t, t) -> scalar tensor, not {step_loss!r}")
    params = _unique(p for p in cell.parameters() if p.requires_grad)
    if step_loss is not None:
        params = _unique([*params, *_loss_parameters(step_loss, loss_params)])
    wants_grad = torch.is_grad_enabled() and (inputs.requires_grad or params or any(s.requires_grad for s in states))
    if not wants_grad:
        return _plain(cell, inputs, states, is_tensor, step_loss)
    spec = _Spec(
        cell, is_tensor, len(states), memory_fraction, memory, policy, inputs.requires_grad, list(_PROBES), step_loss
    )
    res = _CheckpointedRNN.apply(spec, inputs, *states, *params)
    outputs, final = res[0], tuple(res[1:])
    return outputs, (final[0] if is_tensor else final)


@dataclass
class CallRecord:
    """What one ``checkpointed_rnn`` call did (recorded inside :func:`memory_probe`).

    ``tracker`` counts the bytes of every stored state and every tensor saved by the call's own graphs, each
    storage once (parameters and ``inputs`` excluded), while they are alive; ``bytes_after_forward`` is what
    the call held between forward and backward, ``bytes_after_backward`` what was left after backward.
    With ``step_loss`` the tracker counts the tensors saved by each step's loss graph too, and
    ``loss_evaluations`` counts the calls of ``step_loss``.
    """

    length: int
    policy: str
    memory: float
    alpha: float
    state_bytes: int
    plan: Plan
    tracker: MemoryTracker
    forward_steps: int = 0
    loss_evaluations: int = 0
    bytes_after_forward: int = 0
    bytes_after_backward: int | None = None

    @property
    def full_memory(self) -> float:
        return full_bptt_memory(self.length, self.alpha)


@contextlib.contextmanager
def memory_probe():
    """Record every ``checkpointed_rnn`` call started inside the block as a :class:`CallRecord` (a test and
    benchmark hook: it adds saved-tensor hooks to every step, so it slows training down a little)."""
    records: list[CallRecord] = []
    _PROBES.append(records)
    try:
        yield records
    finally:
        _PROBES.remove(records)


def plan_for(
    length: int, alpha: float, memory_fraction: float | None = None, policy: str = "msm", memory: float | None = None
) -> Plan:
    """The plan ``checkpointed_rnn`` uses for a sequence length, an internal-state size ``alpha`` (in slots)
    and a budget (cached). Raises ``ValueError`` naming the smallest feasible budget when none fits."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}: choose one of {', '.join(POLICIES)}")
    memory_fraction, memory = _check_budget_args(memory_fraction, memory)
    return _plan(int(length), policy, round(max(1.0, float(alpha)), 9), memory_fraction, memory)[0]


# --------------------------------------------------------------------------------------------- budgets and plans
_PROBES: list[list[CallRecord]] = []


def _check_budget_args(memory_fraction, memory) -> tuple[float | None, float | None]:
    """Exactly one positive finite budget, returned as floats."""
    if (memory_fraction is None) == (memory is None):
        raise ValueError(
            "give exactly one budget: memory_fraction (a fraction of full BPTT's memory) or memory "
            "(in slots of the size of the state)"
        )
    v = memory_fraction if memory is None else memory
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0:
        name = "memory_fraction" if memory is None else "memory"
        raise ValueError(f"{name} must be a positive finite number, not {v!r}")
    return (None, float(memory)) if memory is not None else (float(memory_fraction), None)


@functools.lru_cache(maxsize=8)
def _planner(T: int, policy: str, alpha: float) -> Planner:
    return Planner(T, policy, alpha)


@functools.lru_cache(maxsize=64)
def _plan(T: int, policy: str, alpha: float, memory_fraction, memory) -> tuple[Plan, list[bool]]:
    full = full_bptt_memory(T, alpha)
    M = float(memory) if memory is not None else float(memory_fraction) * full
    asked = f"memory={M:.4g}" if memory is not None else f"memory_fraction={memory_fraction:.4g} ({M:.4g} slots)"
    if M < 1.0 - EPS:
        raise ValueError(
            f"the budget {asked} is infeasible for T={T}: the smallest feasible budget is memory=1 "
            f"slot (the initial state), i.e. memory_fraction={1.0 / full:.4g} of full BPTT's "
            f"{full:.4g} slots"
        )
    planner = _planner(T, policy, alpha)
    if planner.cost(M) > MAX_SCHEDULE_ACTIONS:
        least = _least_listable(planner)
        raise ValueError(
            f"the budget {asked} is infeasible for T={T} with policy {policy!r}: its plan needs "
            f"{planner.cost(M):,} forward steps, more than the {MAX_SCHEDULE_ACTIONS:,} this "
            f"implementation runs; the smallest feasible budget is memory={least:g} slots, i.e. "
            f"memory_fraction={least / full:.4g}"
        )
    try:
        plan = planner.plan(M)
    except InfeasibleBudget as exc:  # pragma: no cover - excluded by the checks above
        raise ValueError(str(exc)) from None
    return plan, needs_graph(plan.schedule.ops.tolist())


def _least_listable(planner: Planner) -> float:
    """The smallest budget on the planner's grid whose optimal cost is at most MAX_SCHEDULE_ACTIONS."""
    bud = planner.budgets()
    lo, hi = 0, bud.size - 1  # the cost is non-increasing in the budget; at saturation it is <= 2T
    while lo < hi:
        mid = (lo + hi) // 2
        if planner.cost(float(bud[mid])) <= MAX_SCHEDULE_ACTIONS:
            hi = mid
        else:
            lo = mid + 1
    return float(bud[lo])


# --------------------------------------------------------------------------------------------- the cell
def _call(
    cell: nn.Module, x: torch.Tensor, state: tuple[torch.Tensor, ...], is_tensor: bool
) -> tuple[torch.Tensor, ...]:
    out = cell(x, state[0] if is_tensor else state)
    if torch.is_tensor(out):
        return (out,)
    return tuple(out)


def _check_structure(out: tuple, states: tuple, is_tensor: bool) -> None:
    ok = len(out) == len(states) and all(torch.is_tensor(o) and o.shape == s.shape for o, s in zip(out, states))
    if not ok:
        got = ", ".join(f"{tuple(o.shape)}" if torch.is_tensor(o) else type(o).__name__ for o in out)
        want = ", ".join(f"{tuple(s.shape)}" for s in states)
        raise ValueError(
            f"the cell must return a state like the one it is given ({want}"
            f"{'' if not is_tensor else ', a tensor'}), it returned ({got})"
        )


def _unique(tensors) -> tuple[torch.Tensor, ...]:
    seen, out = set(), []
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return tuple(out)


def _loss_parameters(step_loss, loss_params: LossParams) -> list[torch.Tensor]:
    """The tensors requiring grad named by ``loss_params`` (modules' parameters, tensors) and, when
    ``step_loss`` is a module, its own parameters."""
    items: list = [step_loss] if isinstance(step_loss, nn.Module) else []
    if isinstance(loss_params, (nn.Module, torch.Tensor)):
        items.append(loss_params)
    elif loss_params is not None:
        try:
            items.extend(loss_params)
        except TypeError:
            raise ValueError(
                f"loss_params must be an nn.Module, a tensor or an iterable of them, not {type(loss_params).__name__}"
            ) from None
    out: list[torch.Tensor] = []
    for it in items:
        if isinstance(it, nn.Module):
            out.extend(it.parameters())
        elif torch.is_tensor(it):
            out.append(it)
        else:
            raise ValueError(f"loss_params must hold nn.Modules or tensors, not {type(it).__name__}")
    return [t for t in out if t.requires_grad]


def _check_loss_value(loss) -> None:
    if not torch.is_tensor(loss) or loss.dim() != 0 or not (loss.is_floating_point() or loss.is_complex()):
        got = (
            f"a tensor of shape {tuple(loss.shape)} and dtype {loss.dtype}"
            if torch.is_tensor(loss)
            else type(loss).__name__
        )
        raise ValueError(f"step_loss must return a scalar (0-dim) floating-point tensor, it returned {got}")


def _plain(cell, inputs, states, is_tensor, step_loss=None):
    """No gradient wanted: the plain loop, without a plan."""
    T = inputs.shape[0]
    with torch.no_grad():
        state = states
        outputs = total = None
        for k in range(T):
            out = _call(cell, inputs[k], state, is_tensor)
            if k == 0:
                _check_structure(out, states, is_tensor)
                if step_loss is None:
                    outputs = torch.empty((T,) + tuple(out[0].shape), dtype=out[0].dtype, device=out[0].device)
            if step_loss is None:
                outputs[k].copy_(out[0])
            else:
                loss = step_loss(out[0], k)
                if k == 0:
                    _check_loss_value(loss)
                total = loss if total is None else total + loss
            state = out
    return (outputs if step_loss is None else total), (state[0] if is_tensor else tuple(state))


def _leaf(s: torch.Tensor) -> torch.Tensor:
    t = s.detach()
    if t.is_floating_point() or t.is_complex():
        t.requires_grad_(True)
    return t


def _rng_snapshot(device: torch.device) -> list[torch.Tensor]:
    snaps = [torch.get_rng_state()]
    if device.type == "cuda":
        snaps.append(torch.cuda.get_rng_state(device))
    return snaps


def _autocast_state(device_type: str):
    """The caller's autocast settings (for ``device_type`` and the CPU), re-entered for every step so that steps
    recomputed during backward (outside the caller's ``torch.autocast`` block) compute as in forward."""
    out = []
    for dev in dict.fromkeys((device_type, "cpu")):
        if torch.amp.is_autocast_available(dev) and torch.is_autocast_enabled(dev):
            out.append((dev, torch.get_autocast_dtype(dev)))
    return tuple(out)


def _autocast(state) -> contextlib.AbstractContextManager:
    """Autocast without its weight cache: a cast cached by a step run without grad would carry no graph into
    the steps that need one (and a cast cached outside would be a tensor computed outside the cell)."""
    if not state:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    for dev, dtype in state:
        stack.enter_context(torch.autocast(dev, dtype=dtype, enabled=True, cache_enabled=False))
    return stack


def _sequence_nr() -> int:
    """The sequence number the next autograd node created on this thread will get (at least)."""
    with torch.enable_grad():
        return (torch.zeros((), requires_grad=True) * 1).grad_fn._sequence_nr()


def _check_closed(outs: Sequence[torch.Tensor], allowed: Sequence[torch.Tensor], first_seq: int, loss_of=None) -> None:
    """Refuse a step graph that reaches a tensor requiring grad other than the parameters, input and state
    (its gradient would be lost, and its graph freed after the first backward step). With ``loss_of`` (the step's
    output given to ``step_loss``) the graph is the loss's: the walk ends at that output."""
    allowed_ids = {id(t) for t in allowed}
    stop = loss_of.grad_fn if loss_of is not None else None
    seen = set()
    todo = [o.grad_fn for o in outs if o.grad_fn is not None]
    while todo:
        fn = todo.pop()
        if id(fn) in seen or (stop is not None and fn is stop):
            continue
        seen.add(id(fn))
        var = getattr(fn, "variable", None)
        if var is not None:  # AccumulateGrad: a leaf tensor
            if id(var) in allowed_ids:
                continue
            if loss_of is None:
                raise ValueError(
                    f"the cell uses a tensor of shape {tuple(var.shape)} that requires grad but is "
                    "none of its parameters, the input or the state; register it in the cell "
                    "(nn.Parameter) or pass it in through the inputs"
                )
            raise ValueError(
                f"step_loss uses a tensor of shape {tuple(var.shape)} that requires grad but is "
                "none of the parameters of loss_params or of the cell; pass the module (or the "
                "tensor) that holds it as loss_params, so that it receives its gradient"
            )
        if fn._sequence_nr() < first_seq:
            if loss_of is None:
                raise ValueError(
                    f"the cell uses a tensor computed outside it that requires grad ({fn.name()}); "
                    "compute it inside the cell or pass it in through the inputs"
                )
            raise ValueError(
                f"step_loss uses a tensor computed outside it that requires grad ({fn.name()}) "
                "other than the step's output; compute it inside step_loss (from parameters "
                "given as loss_params)"
            )
        todo.extend(nxt for nxt, _ in fn.next_functions if nxt is not None)


# --------------------------------------------------------------------------------------------- the function
class _Spec:
    __slots__ = ("cell", "is_tensor", "n_state", "memory_fraction", "memory", "policy", "x_grad", "probes", "step_loss")

    def __init__(
        self, cell, is_tensor, n_state, memory_fraction, memory, policy, x_grad, probes, step_loss=None
    ) -> None:
        self.cell, self.is_tensor, self.n_state = cell, is_tensor, n_state
        self.memory_fraction, self.memory, self.policy = memory_fraction, memory, policy
        self.x_grad, self.probes, self.step_loss = x_grad, probes, step_loss


class _Run:
    """The state of one call between its forward and its backward."""

    def __init__(self, spec: _Spec, xs: torch.Tensor, params: tuple[torch.Tensor, ...]) -> None:
        self.spec = spec
        self.xs = xs  # detached inputs
        self.params = params
        self.tracker = MemoryTracker(list(params) + [xs])
        self.hooks = self.tracker.hooks() if spec.probes else contextlib.nullcontext()
        self.amp = _autocast_state(xs.device.type)
        self.record: CallRecord | None = None
        self.calls = 0
        self.replay: Replay | None = None
        self.forward_phase = True
        self.outputs: torch.Tensor | None = None
        self.final: tuple | None = None
        self.first: Step | None = None
        self.carry: list[torch.Tensor | None] = []
        self.grad_outputs: torch.Tensor | None = None
        self.grad_inputs: torch.Tensor | None = None
        self.acc: list[torch.Tensor | None] = [None] * len(params)
        self.loss_total: torch.Tensor | None = None  # with step_loss: the sum of the steps' losses so far
        self.next_loss = 1  # the step whose loss value is added next
        self.grad_loss: torch.Tensor | None = None  # with step_loss: d(result)/d(each step's loss)
        self.loss_calls = 0

    def __del__(self) -> None:  # dropped without backward: tell the tracker
        try:
            if self.replay is not None:
                self.replay.release()
        except Exception:
            pass

    # ---- steps
    def step(self, k: int, state: tuple, graph: bool) -> Step:
        spec = self.spec
        self.calls += 1
        x = self.xs[k - 1]
        if not graph:
            with torch.no_grad(), _autocast(self.amp):
                return Step(k, _call(spec.cell, x, state, spec.is_tensor))
        leaves = tuple(_leaf(s) for s in state)
        xl = x.detach().requires_grad_(True) if spec.x_grad else x
        with torch.enable_grad(), _autocast(self.amp), self.hooks:
            out = _call(spec.cell, xl, leaves, spec.is_tensor)
        return Step(k, out, leaves, xl if spec.x_grad else None)

    def _first_step(self, h0: tuple) -> tuple[Step, float, int]:
        """Step 1 with its graph: the cell's structure, determinism and closure are checked, alpha measured."""
        spec = self.spec
        device = self.xs.device
        rng = _rng_snapshot(device)
        first_seq = _sequence_nr()
        leaves = tuple(_leaf(s) for s in h0)
        xl = self.xs[0].detach().requires_grad_(True) if spec.x_grad else self.xs[0]
        before = self.tracker.current
        with torch.enable_grad(), _autocast(self.amp), self.tracker.hooks():
            out = _call(spec.cell, xl, leaves, spec.is_tensor)
        self.calls += 1
        _check_structure(out, h0, spec.is_tensor)
        if any(not torch.equal(a, b) for a, b in zip(rng, _rng_snapshot(device))):
            raise ValueError(
                "the cell draws random numbers (dropout in training mode?); checkpointed_rnn "
                "computes steps again during backward, so the cell must be deterministic: call "
                "cell.eval() or apply a dropout mask drawn outside the cell"
            )
        _check_closed(out, list(self.params) + list(leaves) + ([xl] if spec.x_grad else []), first_seq)
        self.tracker.add(out)
        internal = self.tracker.current - before
        self.tracker.remove(out)
        state_bytes = sum(s.numel() * s.element_size() for s in h0)
        alpha = max(1.0, internal / max(1, state_bytes))
        return Step(1, out, leaves, xl if spec.x_grad else None), alpha, state_bytes

    def _forward_action(self, k: int, state: tuple, graph: bool) -> Step:
        if k == 1 and self.first is not None:
            st, self.first = self.first, None
            if not graph:  # the plan does not keep step 1's graph: drop it
                st = Step(1, tuple(o.detach() for o in st.out))
        else:
            st = self.step(k, state, graph)
        if self.forward_phase:
            if self.spec.step_loss is not None:
                self._add_loss_value(k, st.out[0])
            else:
                with torch.no_grad():
                    self.outputs[k - 1].copy_(st.out[0])
            if k == self.xs.shape[0]:
                self.final = tuple(o.detach() for o in st.out)
        return st

    def _add_loss_value(self, k: int, out0: torch.Tensor) -> None:
        """Forward: add step k's loss to the total (each step once, in order). On step 1 the loss is computed
        with its graph (then dropped) to check that it is a scalar, deterministic and uses only known
        parameters."""
        if k != self.next_loss:
            return
        fn = self.spec.step_loss
        self.loss_calls += 1
        if k == 1:
            leaf = _leaf(out0)
            rng = _rng_snapshot(self.xs.device)
            first_seq = _sequence_nr()
            with torch.enable_grad(), _autocast(self.amp), self.hooks:
                loss = fn(leaf, 0)
            _check_loss_value(loss)
            if any(not torch.equal(a, b) for a, b in zip(rng, _rng_snapshot(self.xs.device))):
                raise ValueError(
                    "step_loss draws random numbers (dropout in training mode?); checkpointed_rnn "
                    "computes it again during backward, so it must be deterministic: call .eval() on "
                    "its modules or apply a dropout mask drawn outside"
                )
            _check_closed([loss], list(self.params) + [leaf], first_seq, loss_of=leaf)
            value = loss.detach()
            del loss, leaf
        else:
            with torch.no_grad(), _autocast(self.amp):
                value = fn(out0, k - 1)
        self.loss_total = value if self.loss_total is None else self.loss_total + value
        self.next_loss += 1

    # ---- forward
    def forward(self, h0: tuple) -> tuple[torch.Tensor, tuple]:
        spec = self.spec
        T = self.xs.shape[0]
        first, alpha, state_bytes = self._first_step(h0)
        plan, need = _plan(T, spec.policy, round(alpha, 9), spec.memory_fraction, spec.memory)
        if spec.probes:
            self.record = CallRecord(T, spec.policy, plan.memory, alpha, state_bytes, plan, self.tracker)
            for records in spec.probes:
                records.append(self.record)
        if spec.step_loss is None:
            o = first.out[0]
            self.outputs = torch.empty((T,) + tuple(o.shape), dtype=o.dtype, device=o.device)
            del o
        self.first = first
        del first
        self.replay = Replay(
            plan.schedule, h0, self._forward_action, self._backward_action, tracker=self.tracker, need=need
        )
        self.replay.run(stop_before_backward=True)
        self.forward_phase = False
        if self.record is not None:
            self.record.bytes_after_forward = self.tracker.current
        if spec.step_loss is not None:
            assert self.next_loss == T + 1, "every step's loss is added once in forward"
            result, self.loss_total = self.loss_total, None
        else:
            result, self.outputs = self.outputs, None
        final, self.final = self.final, None
        return result, final

    # ---- backward
    def _backward_action(self, st: Step) -> None:
        k = st.k
        outs, grads = [], []
        for j, o in enumerate(st.out):
            g = self.carry[j]
            if j == 0 and self.grad_outputs is not None:
                gk = self.grad_outputs[k - 1]
                g = gk if g is None else gk + g
            if g is None or not o.requires_grad:
                continue
            outs.append(o)
            grads.append(g)
        leaves = st.leaves
        if self.grad_loss is not None:
            # step k's loss, recomputed on the step's output inside its graph: one backward call carries
            # d(loss_k)/d(h_k) + the carried gradient into the cell, and gives the loss's parameters theirs
            o0 = st.out[0]
            first_seq = _sequence_nr()
            with torch.enable_grad(), _autocast(self.amp), self.hooks:
                loss = self.spec.step_loss(o0, k - 1)
            self.loss_calls += 1
            _check_closed(
                [loss], list(self.params) + [leaf for leaf in leaves if leaf is not None], first_seq, loss_of=o0
            )
            if loss.requires_grad:
                outs.append(loss)
                grads.append(self.grad_loss)
            del loss
        targets = [leaf for leaf in leaves if leaf.requires_grad]
        n_leaves = len(targets)
        if st.extra is not None:
            targets.append(st.extra)
        targets.extend(self.params)
        if outs:
            res = torch.autograd.grad(outs, targets, grads, allow_unused=True)
        else:
            res = (None,) * len(targets)
        it = iter(res[:n_leaves])
        self.carry = [next(it) if leaf.requires_grad else None for leaf in leaves]
        if st.extra is not None:
            gx = res[n_leaves]
            if gx is not None:
                if self.grad_inputs is None:
                    self.grad_inputs = torch.zeros_like(self.xs)
                self.grad_inputs[k - 1].copy_(gx)
        for i, g in enumerate(res[len(targets) - len(self.params) :]):
            if g is not None:
                if self.acc[i] is None:
                    self.acc[i] = torch.zeros_like(self.params[i])
                self.acc[i].add_(g)

    def backward(self, grad_result: torch.Tensor | None, grad_final: Sequence[torch.Tensor | None]):
        if self.spec.step_loss is not None:
            self.grad_loss = grad_result
        else:
            self.grad_outputs = grad_result
        self.carry = list(grad_final)
        try:
            self.replay.run()
        finally:
            self.replay.release()
            self.replay = None
            self.grad_outputs = self.grad_loss = None
        if self.record is not None:
            self.record.forward_steps = self.calls
            self.record.loss_evaluations = self.loss_calls
            self.record.bytes_after_backward = self.tracker.current
        carry, self.carry = self.carry, []
        acc, self.acc = self.acc, []
        grad_inputs, self.grad_inputs = self.grad_inputs, None
        return grad_inputs, carry, acc


class _CheckpointedRNN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec: _Spec, inputs: torch.Tensor, *tensors: torch.Tensor):
        ctx.set_materialize_grads(False)
        n = spec.n_state
        run = _Run(spec, inputs.detach(), tuple(tensors[n:]))
        result, final = run.forward(tuple(t.detach() for t in tensors[:n]))
        if run.record is not None:
            run.record.forward_steps = run.calls
            run.record.loss_evaluations = run.loss_calls
        ctx.run = run
        ctx.save_for_backward(inputs)  # for autograd's in-place modification check only
        return (result, *final)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_result, *grad_final):
        run = ctx.run
        if run is None:
            raise RuntimeError(
                "checkpointed_rnn's backward can run only once per forward (retain_graph is not supported)"
            )
        ctx.run = None
        _ = ctx.saved_tensors  # raises if inputs were modified in place since forward
        grad_inputs, grad_h0, grad_params = run.backward(grad_result, grad_final)
        spec = run.spec
        grad_h0 = [g if need else None for g, need in zip(grad_h0, ctx.needs_input_grad[2 : 2 + spec.n_state])]
        if not ctx.needs_input_grad[1]:
            grad_inputs = None
        return (None, grad_inputs, *grad_h0, *grad_params)
