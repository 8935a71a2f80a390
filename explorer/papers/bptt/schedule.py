"""Schedules (lists of actions) for memory-limited BPTT and the validator every emitted schedule must pass.

Conventions (the issue's, used everywhere in this package):

* ``T`` steps; step k maps h_{k-1} to h_k and produces the internal state I_k that backward step k needs;
  h_0 is given and occupies a stored slot from the start.
* Cost ``Q`` = number of forward step computations (``F``), including the one run just before a backward
  step; plain BPTT costs ``Q = T``. Backward steps are the same for every policy and are not counted.
* Memory in hidden-state units, including the slot holding h_0. A stored hidden state costs 1, a stored
  internal state costs ``alpha`` (>= 1, may be fractional). The working register (the outputs and internal
  state of the step computed last) and the gradient carried backward are not counted.
* An internal state I_k contains the step's output h_k, so a stored I_k can also restart the forward pass
  at step k+1 (this is what the paper's ISM/MSM recurrences assume).

Actions are ``(op, k)`` with op one of::

    F  k   forward step k: needs h_{k-1} in the register (the previous action chain computed step k-1),
           stored as a hidden state, or inside a stored I_{k-1}; puts step k in the register
    SH k   store h_k from the register (the register must hold step k)
    SI k   store I_k; only directly after ``F k``
    DH k   drop the stored h_k        DI k   drop the stored I_k
    B  k   backward step k: needs I_k in the register or stored; must come in the order T, T-1, ..., 1;
           it consumes the register
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

OPS: tuple[str, ...] = ("F", "SH", "SI", "DH", "DI", "B")
OP_CODE = {name: i for i, name in enumerate(OPS)}
F, SH, SI, DH, DI, B = range(6)
EPS = 1e-9


class ScheduleError(ValueError):
    """A schedule broke one of the rules (memory, availability, backward order)."""


@dataclass
class Schedule:
    """A schedule as two parallel arrays (op codes and step indices) plus its context."""

    length: int
    alpha: float
    ops: np.ndarray  # uint8 codes into OPS
    ks: np.ndarray  # int64 step indices

    def __len__(self) -> int:
        return int(self.ops.size)

    @classmethod
    def from_actions(cls, actions: Iterable[Sequence], length: int, alpha: float) -> Schedule:
        ops, ks = [], []
        for a in actions:
            op, k = a[0], a[1]
            if op not in OP_CODE:
                raise ScheduleError(f"unknown operation {op!r} (use one of {', '.join(OPS)})")
            ops.append(OP_CODE[op])
            ks.append(int(k))
        return cls(length, float(alpha), np.asarray(ops, dtype=np.uint8), np.asarray(ks, dtype=np.int64))

    def actions(self) -> list[list]:
        names = [OPS[c] for c in self.ops.tolist()]
        return [[n, k] for n, k in zip(names, self.ks.tolist())]

    @property
    def cost(self) -> int:
        return int(np.count_nonzero(self.ops == F))

    def occupancy(self) -> np.ndarray:
        """Stored memory (hidden units, h_0 slot included) after each action."""
        delta = np.zeros(self.ops.size, dtype=np.float64)
        delta[self.ops == SH] = 1.0
        delta[self.ops == SI] = self.alpha
        delta[self.ops == DH] = -1.0
        delta[self.ops == DI] = -self.alpha
        return 1.0 + np.cumsum(delta)

    @property
    def peak_memory(self) -> float:
        occ = self.occupancy()
        return float(max(1.0, occ.max())) if occ.size else 1.0


@dataclass
class ValidationReport:
    cost: int
    peak_memory: float
    n_actions: int
    stored_at_end: list[str] = field(default_factory=list)


def validate(schedule: Schedule, memory: float | None = None) -> ValidationReport:
    """Check a schedule; raise ScheduleError naming the first offending action.

    Checks: known ops and step indices in range; stored memory (h_0 slot included) never above ``memory``;
    F reads an available h_{k-1}; SH/SI store what the register holds (SI only right after F k); drops name
    stored states; B k has I_k and comes in the order T..1; every step is backpropagated exactly once.
    """
    T = int(schedule.length)
    alpha = float(schedule.alpha)
    if T < 1:
        raise ScheduleError("the sequence length must be at least 1")
    if alpha < 1.0 - EPS:
        raise ScheduleError("alpha (internal-state size in hidden-state units) must be >= 1")
    stored_h = {0}
    stored_i = set()
    mem = 1.0
    peak = 1.0
    reg: int | None = None  # step whose outputs / internal state are in the working register
    prev_op, prev_k = None, None
    next_b = T
    cost = 0
    ops = schedule.ops.tolist()
    ks = schedule.ks.tolist()
    for i, (op, k) in enumerate(zip(ops, ks)):
        where = f"action {i} ({OPS[op] if 0 <= op < len(OPS) else op} {k})"
        if not 0 <= op < len(OPS):
            raise ScheduleError(f"{where}: unknown operation code")
        if not 0 <= k <= T:
            raise ScheduleError(f"{where}: step index out of range 0..{T}")
        if next_b == 0 and op not in (DH, DI):
            raise ScheduleError(f"{where}: every step was already backpropagated")
        if op == F:
            if k < 1:
                raise ScheduleError(f"{where}: forward steps are numbered 1..{T}")
            if k > next_b:
                raise ScheduleError(f"{where}: step {k} is already backpropagated")
            if not (reg == k - 1 or (k - 1) in stored_h or (k - 1) in stored_i):
                raise ScheduleError(f"{where}: h_{k - 1} is neither in the register nor stored")
            reg = k
            cost += 1
        elif op == SH:
            if reg != k:
                raise ScheduleError(f"{where}: the register does not hold step {k}")
            if k in stored_h:
                raise ScheduleError(f"{where}: h_{k} is already stored")
            stored_h.add(k)
            mem += 1.0
        elif op == SI:
            if prev_op != F or prev_k != k or reg != k:
                raise ScheduleError(f"{where}: SI k must come directly after F k")
            if k in stored_i:
                raise ScheduleError(f"{where}: I_{k} is already stored")
            stored_i.add(k)
            mem += alpha
        elif op == DH:
            if k not in stored_h:
                raise ScheduleError(f"{where}: h_{k} is not stored")
            stored_h.discard(k)
            mem -= 1.0
        elif op == DI:
            if k not in stored_i:
                raise ScheduleError(f"{where}: I_{k} is not stored")
            stored_i.discard(k)
            mem -= alpha
        elif op == B:
            if k != next_b:
                raise ScheduleError(f"{where}: expected backward step {next_b}")
            if not (reg == k or k in stored_i):
                raise ScheduleError(f"{where}: I_{k} is neither in the register nor stored")
            next_b -= 1
            reg = None
        if memory is not None and mem > memory + EPS:
            raise ScheduleError(f"{where}: stored memory {mem:g} exceeds the budget {memory:g}")
        peak = max(peak, mem)
        prev_op, prev_k = op, k
    if next_b != 0:
        raise ScheduleError(f"the schedule ends before backward step {next_b}")
    left = [f"h_{k}" for k in sorted(stored_h)] + [f"I_{k}" for k in sorted(stored_i)]
    return ValidationReport(cost=cost, peak_memory=peak, n_actions=len(ops), stored_at_end=left)


def full_bptt_schedule(length: int, alpha: float) -> Schedule:
    """Standard BPTT as a schedule: one forward sweep storing every internal state, then T backward steps."""
    acts: list[tuple[str, int]] = []
    for k in range(1, length + 1):
        acts.append(("F", k))
        if k < length:
            acts.append(("SI", k))
    acts.append(("B", length))
    for k in range(length - 1, 0, -1):
        acts += [("B", k), ("DI", k)]
    return Schedule.from_actions(acts, length, alpha)


def full_bptt_memory(length: int, alpha: float) -> float:
    """Memory of standard BPTT under the conventions: h_0 plus I_1..I_{T-1} (I_T stays in the register)."""
    return 1.0 + (length - 1) * float(alpha)
