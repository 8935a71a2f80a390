"""Replay a planner schedule on a recurrent step function: the one interpreter of the actions, shared by
:func:`explorer.papers.bptt.executor.run_schedule` (measurements) and :func:`explorer.papers.bptt.api.checkpointed_rnn`
(training).

The caller supplies two functions:

* ``forward(k, state, graph) -> Step``: compute step k from ``state`` (the tuple h_{k-1}). With ``graph`` the
  step must keep its autograd graph (rooted at ``Step.leaves``) because the schedule stores its internal state
  or backpropagates it next; without, it runs under ``torch.no_grad``;
* ``backward(step)``: backward step k through ``step``'s graph (consuming it) and carry the gradient.

The interpreter keeps the stored hidden states (detached tuples), the stored internal states (``Step`` objects
whose graph is alive) and the working register, exactly as the schedule says, and nothing else. It can stop just
before the first backward action (``run(stop_before_backward=True)``) and be resumed later: that is how the
training API splits the schedule into an autograd forward and backward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .schedule import DH, DI, SH, SI, B, F, Schedule


class Step:
    """One computed step: ``out`` is the state tuple h_k; ``leaves`` are the detached copies of h_{k-1} the
    graph starts from (``None`` when the step has no graph or its graph was consumed); ``extra`` is free for
    the caller (e.g. the input leaf)."""

    __slots__ = ("k", "out", "leaves", "extra")

    def __init__(self, k: int, out: tuple, leaves: tuple | None = None, extra=None) -> None:
        self.k, self.out, self.leaves, self.extra = k, out, leaves, extra


def needs_graph(ops: Sequence[int]) -> list[bool]:
    """For each action: is it an F whose graph is used (the next action other than SH/DH/DI is SI or B)?"""
    need = [False] * len(ops)
    nxt = None
    for i in range(len(ops) - 1, -1, -1):
        op = ops[i]
        if op == F:
            need[i] = nxt in (SI, B)
        if op not in (SH, DH, DI):
            nxt = op
    return need


class Replay:
    """Execute a schedule's actions, possibly in two parts (up to the first backward step, then the rest).

    ``tracker`` (optional) is told about every stored state: ``add(tensors)`` on SH/SI, ``remove(tensors)`` on
    DH/DI (see :class:`explorer.papers.bptt.executor.MemoryTracker`).
    """

    def __init__(
        self,
        schedule: Schedule,
        h0: tuple,
        forward: Callable[[int, tuple, bool], Step],
        backward: Callable[[Step], None],
        tracker=None,
        need: list[bool] | None = None,
    ) -> None:
        self.ops: list[int] = schedule.ops.tolist()
        self.ks: list[int] = schedule.ks.tolist()
        self.need = need if need is not None else needs_graph(self.ops)
        self.forward = forward
        self.backward = backward
        self.tracker = tracker
        self.stored_h: dict[int, tuple] = {0: tuple(h0)}
        self.stored_i: dict[int, Step] = {}
        self.reg: Step | None = None
        self.pos = 0
        if tracker is not None:
            tracker.add(self.stored_h[0])

    @property
    def done(self) -> bool:
        return self.pos >= len(self.ops)

    def step_holding(self, k: int) -> Step:
        """The register or stored internal state that holds step k's outputs."""
        if self.reg is not None and self.reg.k == k:
            return self.reg
        return self.stored_i[k]

    def run(self, stop_before_backward: bool = False, token=None, progress=None) -> None:
        ops, ks, need = self.ops, self.ks, self.need
        n = len(ops)
        every = max(1, n // 200)
        tracker = self.tracker
        stored_h, stored_i = self.stored_h, self.stored_i
        while self.pos < n:
            i = self.pos
            op, k = ops[i], ks[i]
            if op == B and stop_before_backward:
                return
            if token is not None and i % 64 == 0:
                token.check()
            if progress is not None and i % every == 0:
                progress(i / n, f"action {i:,}/{n:,}")
            if op == F:
                reg = self.reg
                if reg is not None and reg.k == k - 1:
                    state = reg.out
                elif k - 1 in stored_h:
                    state = stored_h[k - 1]
                else:
                    state = stored_i[k - 1].out
                self.reg = None  # the old register is dropped before the new step is computed
                del reg
                self.reg = self.forward(k, state, need[i])
                del state
            elif op == SH:
                h = tuple(s.detach() for s in self.reg.out)
                stored_h[k] = h
                if tracker is not None:
                    tracker.add(h)
            elif op == SI:
                stored_i[k] = self.reg
                if tracker is not None:
                    tracker.add(self.reg.out)
            elif op == DH:
                h = stored_h.pop(k)
                if tracker is not None:
                    tracker.remove(h)
            elif op == DI:
                st = stored_i.pop(k)
                if tracker is not None:
                    tracker.remove(st.out)
                del st
            elif op == B:
                reg = self.reg
                st = reg if (reg is not None and reg.k == k and reg.leaves is not None) else stored_i[k]
                del reg
                self.backward(st)
                st.leaves = None  # the graph is consumed; the outputs stay while I_k is stored
                st.extra = None
                self.reg = None
                del st
            self.pos += 1

    def release(self) -> None:
        """Drop everything still held (states stored at the end, the register)."""
        if self.tracker is not None:
            for h in self.stored_h.values():
                self.tracker.remove(h)
            for st in self.stored_i.values():
                self.tracker.remove(st.out)
        self.stored_h.clear()
        self.stored_i.clear()
        self.reg = None
