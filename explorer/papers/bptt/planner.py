"""The paper's dynamic programs for BPTT-HSM, BPTT-ISM and BPTT-MSM, and schedule generation.

Conventions: see :mod:`explorer.papers.bptt.schedule` (cost Q = forward step computations including the one
before each backward step; memory in hidden-state units including the h_0 slot; internal state = ``alpha``).
``C(t, m)`` is the least cost of backpropagating through ``t`` steps from a stored start state with budget
``m`` (the start's slot included). For t >= 1 three moves exist:

* fused:  run all t steps and backpropagate step t from the register:  ``t + C(t-1, m)``;
* store h (HSM, MSM), 1 <= y < t:  ``y + C(t-y, m-1) + C(y, m)``;
* store I (ISM, MSM), 1 <= y < t:  ``y + C(t-y, m-alpha) + C(y-1, m)``;

with ``C(0, m) = 0`` and budgets below 1 infeasible. HSM only uses the first two and gives C(t,1) = t(t+1)/2
and 2t-1 with unlimited memory; the fused move equals storing h_{t-1}, so this is the paper's recurrence
``min_{1<=y<t} y + C(t-y, m-1) + C(y, m)``. For ISM the fused move is the paper's ``y = t`` term.

Speed. HSM and ISM have closed forms (HSM's is Griewank's binomial "Revolve" optimum; ISM's follows from
the same run-length argument and is checked against the DP in the tests), so their whole cost curve and their
schedules cost nothing even at T = 10000. MSM mixes both and has no closed form here. Its two split moves share
the left part, so each budget column is one self-referential min-plus convolution
``C(t, m) = min_y [y + C(y, m)] + M_m(t - y)`` with ``M_m(z) = min(C(z, m-1), 1 + C(z-1, m-alpha))`` known from
smaller budgets (:func:`msm_table`): every row's minimum is searched only inside a window proved to hold it
(prefix maxima and suffix minima of the increments, read off their few levels; exact, no assumption), all rows
of a column at once in cache-sized blocks, and a column is iterated from the next-smaller budget's until it is a
fixed point (unique: row t only reads rows < t); values only fall, so a pass re-reads only the rows whose window
holds a split point that fell. The whole curve at T = 10000 (alpha 4.5) takes about half a second of one core.
:func:`dp_table` is the plain row-by-row numpy DP of the recurrences (kept as the tests' second reference).
The budget grid is in units of 1/q of a hidden state (alpha rounded *up* to p/q when it is not a multiple of
1/q: plans always fit), and the MSM table stops where the ISM closed form reaches a lower bound (``cut_cells``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .schedule import DH, DI, SH, SI, B, F, Schedule, full_bptt_memory

POLICIES: tuple[str, ...] = ("hsm", "ism", "msm")
POLICY_NAMES = {"hsm": "BPTT-HSM (hidden states)", "ism": "BPTT-ISM (internal states)", "msm": "BPTT-MSM (mixed)"}
GRID_CHOICES = (1, 2, 4, 5, 8, 10)
MAX_SCHEDULE_ACTIONS = 30_000_000
MSM_MAX_CELLS = 40_000_000  # (T+1) x (budget grid) table cells for MSM
EPS = 1e-9


class InfeasibleBudget(ValueError):
    """The memory budget is below what any schedule needs (1 slot for h_0)."""


# --------------------------------------------------------------------------------------------- closed forms
def revolve_beta(s: int, r: int) -> int:
    """Griewank's beta(s, r) = C(s+r, s): the longest chain reversible with s snapshots and r sweeps."""
    if s < 0 or r < 0:
        return 0
    return math.comb(s + r, s)


def numforw(length: int, snaps: int) -> int:
    """Griewank & Walther's minimal number of *extra* forward steps (Revolve's ``numforw``).

    r is the smallest integer with beta(s, r) >= l; numforw = r*l - beta(s+1, r-1).
    """
    if length <= 1:
        return 0
    if snaps < 1:
        raise InfeasibleBudget("Revolve needs at least one snapshot")
    r = 0
    while revolve_beta(snaps, r) < length:
        r += 1
    return r * length - revolve_beta(snaps + 1, r - 1)


@lru_cache(maxsize=4096)
def _hsm_breaks(m: int, tmax: int) -> tuple[np.ndarray, np.ndarray]:
    """For m slots: beta_r = C(m+r, m) for r = 0.. until >= tmax, and C(m+r, m+1)."""
    betas, tails = [], []
    r = 0
    while True:
        b = math.comb(m + r, m)
        betas.append(b)
        tails.append(math.comb(m + r, m + 1))
        if b >= tmax:
            break
        r += 1
    return np.asarray(betas, dtype=np.int64), np.asarray(tails, dtype=np.int64)


def hsm_costs(ts: np.ndarray, m: int) -> np.ndarray:
    """Closed-form HSM cost for an array of lengths at ``m`` hidden slots (h_0's included).

    C(t, m) = (r+1) t - C(m+r, m+1) with r the smallest integer such that C(m+r, m) >= t.
    """
    ts = np.asarray(ts, dtype=np.int64)
    if m < 1:
        return np.where(ts == 0, 0, np.iinfo(np.int64).max // 4)
    tmax = int(ts.max()) if ts.size else 1
    if m == 1:
        return ts * (ts + 1) // 2
    betas, tails = _hsm_breaks(m, max(tmax, 1))
    r = np.searchsorted(betas, ts, side="left")
    return (r + 1) * ts - tails[r]


def hsm_cost(t: int, m: int) -> int:
    if t == 0:
        return 0
    if m < 1:
        raise InfeasibleBudget("a budget of at least 1 hidden-state slot (h_0) is needed")
    if m == 1:
        return t * (t + 1) // 2
    r = 0
    while math.comb(m + r, m) < t:
        r += 1
    return (r + 1) * t - math.comb(m + r, m + 1)


@lru_cache(maxsize=4096)
def _ism_breaks(s: int, tmax: int) -> tuple[np.ndarray, np.ndarray]:
    """L_r = C(s+r+1, s+1) - 1 (steps whose cost increment is <= r) and base_r = (s+1) C(s+r, s+2)."""
    ls, bases = [], []
    r = 0
    while True:
        ls.append(math.comb(s + r + 1, s + 1) - 1)
        bases.append((s + 1) * math.comb(s + r, s + 2))
        if ls[-1] >= tmax:
            break
        r += 1
    return np.asarray(ls, dtype=np.int64), np.asarray(bases, dtype=np.int64)


def ism_costs(ts: np.ndarray, s: int) -> np.ndarray:
    """Closed-form ISM cost for lengths ``ts`` with ``s`` internal-state slots (besides h_0's slot).

    The increments C(t,s) - C(t-1,s) equal r on a run of C(s+r, s) consecutive t (r = 1, 2, ...), hence
    C(t, s) = (s+1) C(s+r, s+2) + r (t - L_{r-1}) with L_r = C(s+r+1, s+1) - 1 and r minimal with L_r >= t.
    """
    ts = np.asarray(ts, dtype=np.int64)
    if s < 0:
        return np.where(ts == 0, 0, np.iinfo(np.int64).max // 4)
    if s == 0:
        return ts * (ts + 1) // 2
    tmax = int(ts.max()) if ts.size else 1
    ls, bases = _ism_breaks(s, max(tmax, 1))
    r = np.searchsorted(ls, ts, side="left")
    r = np.maximum(r, 1)
    out = bases[r] + r * (ts - ls[r - 1])
    return np.where(ts == 0, 0, out)


def ism_cost(t: int, s: int) -> int:
    return int(ism_costs(np.asarray([t]), s)[0])


def ism_costs_over_slots(t: int, slots: np.ndarray) -> np.ndarray:
    """ISM(t, s) for one length and an array of slot counts (the closed form above, vectorised over s).

    For s >= 64 the run index r is small (C(s+r+1, r) grows like s^r), so C(s+r+1, r) is built exactly in int64
    by the product formula; smaller s use :func:`ism_cost`."""
    s = np.asarray(slots, dtype=np.int64)
    out = np.empty(s.shape, dtype=np.int64)
    small = s < 64
    for sv in np.unique(s[small]).tolist():
        out[s == sv] = ism_cost(t, int(sv)) if sv >= 0 else (0 if t == 0 else np.iinfo(np.int64).max // 4)
    big = np.flatnonzero(~small)
    if big.size:
        sb = s[big]
        # L_r = C(s+r+1, r) - 1; find the least r >= 1 with L_r >= t; C(s+r, r-1) and C(s+r, r-2) on the way
        c_prev2 = np.zeros(sb.size, dtype=np.int64)  # C(s+r, r-2)
        res = np.zeros(sb.size, dtype=np.int64)
        todo = np.ones(sb.size, dtype=bool)
        c_r1 = np.ones(sb.size, dtype=np.int64)  # C(s+r, r-1): C(s+1, 0) = 1 for r = 1
        for rr in range(1, 64):
            # C(s+rr+1, rr) = C(s+rr, rr-1) * (s+rr+1) / rr
            c_new = c_r1 * (sb + rr + 1) // rr
            hit = todo & (c_new - 1 >= t)
            if hit.any():
                # cost = (s+1) C(s+rr, s+2) + rr (t - L_{rr-1}),
                # C(s+rr, s+2) = C(s+rr, rr-2), L_{rr-1} = C(s+rr, rr-1) - 1
                c_rm2 = c_prev2[hit] if rr >= 2 else np.zeros(int(hit.sum()), dtype=np.int64)
                res[hit] = (sb[hit] + 1) * c_rm2 + rr * (t - (c_r1[hit] - 1))
                todo &= ~hit
                if not todo.any():
                    break
            # shift: for rr+1, C(s+rr+1, rr-1) = C(s+rr, rr-1) * (s+rr+1) / (s+2)
            c_prev2 = c_r1 * (sb + rr + 1) // (sb + 2)
            c_r1 = c_new
        if todo.any():  # pragma: no cover - only for astronomically long t
            for i in np.flatnonzero(todo).tolist():
                res[i] = ism_cost(t, int(sb[i]))
        out[big] = np.where(t == 0, 0, res)
    return out


# --------------------------------------------------------------------------------------------- grids
@dataclass(frozen=True)
class Grid:
    """Budget grid of 1/q hidden units; a hidden state is q cells, an internal state p cells (p/q >= alpha)."""

    alpha: float
    q: int
    p: int

    @property
    def alpha_used(self) -> float:
        return self.p / self.q

    @property
    def exact(self) -> bool:
        return abs(self.p - self.alpha * self.q) < 1e-9

    def cells(self, memory: float) -> int:
        return int(math.floor(memory * self.q + 1e-9))


def make_grid(alpha: float, max_q: int = 4) -> Grid:
    """The coarsest grid on which alpha is exact (q in 1, 2, 4, 5, 8, 10, at most max_q);
    otherwise q = max_q with alpha rounded up to a multiple of 1/q."""
    alpha = float(alpha)
    if not math.isfinite(alpha) or alpha < 1.0 - EPS:
        raise ValueError("alpha must be a finite number >= 1")
    for q in GRID_CHOICES:
        if q > max_q:
            break
        if abs(alpha * q - round(alpha * q)) < 1e-9:
            return Grid(alpha, q, int(round(alpha * q)))
    q = max(1, max_q)
    return Grid(alpha, q, int(math.ceil(alpha * q - 1e-9)))


# --------------------------------------------------------------------------------------------- DP tables
def reference_table(T: int, G: int, q: int, p: int, policy: str) -> list[list[float]]:
    """Plain-Python O(T^2 G) DP straight from the recurrences (tests only). Budget cells g in 0..G."""
    inf = float("inf")
    C = [[inf] * (G + 1) for _ in range(T + 1)]
    for g in range(q, G + 1):
        C[0][g] = 0
    for t in range(1, T + 1):
        for g in range(q, G + 1):
            best = t + C[t - 1][g]
            for y in range(1, t):
                if policy in ("hsm", "msm") and g - q >= q:
                    best = min(best, y + C[t - y][g - q] + C[y][g])
                if policy in ("ism", "msm") and g - p >= q:
                    best = min(best, y + C[t - y][g - p] + C[y - 1][g])
            C[t][g] = best
    return C


def dp_table(
    T: int,
    G: int,
    q: int,
    p: int,
    policy: str = "msm",
    prune: bool = True,
    progress: Callable[[float | None, str], None] | None = None,
    token=None,
) -> np.ndarray:
    """Vectorised exact DP table C[t, g] (t = 0..T, budget g = 0..G cells of 1/q); huge values = infeasible.

    Loops over t only; each iteration takes the min over all split points y for all budgets at once.
    For ISM/MSM a budget at or above q + (t-1)p holds every internal state (cost t). With ``prune`` a split
    y is only scanned where y <= UB(t, g) - t + 1 (UB = min of the HSM and ISM closed forms and the fused
    move), in blocks of budgets, which is exact because every split's cost is at least t + y - 1.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}")
    big_cost = T * (T + 1) // 2
    dtype = np.int32 if big_cost < (1 << 28) else np.int64
    inf = np.array((1 << 29) if dtype == np.int32 else (1 << 60), dtype=dtype)
    C = np.full((T + 1, G + 1), inf, dtype=dtype)
    C[0, q:] = 0
    ys = np.arange(1, T + 1, dtype=dtype)[:, None]
    use_h = policy in ("hsm", "msm")
    use_i = policy in ("ism", "msm")
    ubh = ubi = slots = islots = None
    if prune:
        ubh, ubi, slots, islots = _upper_bounds(T, G, q, p, use_h, use_i)
    step = max(1, T // 100)
    for t in range(1, T + 1):
        if token is not None and t % 16 == 0:
            token.check()
        if progress is not None and t % step == 0:
            progress(t / T, f"DP row {t}/{T}")
        hi = G + 1
        if use_i:
            sat = q + (t - 1) * p
            if sat <= G:
                C[t, max(sat, q) :] = t
                hi = max(sat, q)
        lo = q
        if hi <= lo:
            continue
        best = (t + C[t - 1, lo:hi]).astype(dtype)
        if t > 1:
            if prune:
                ub = best.astype(np.int64)
                if ubh is not None:
                    ub = np.minimum(ub, ubh[t, slots[lo:hi]])
                if ubi is not None:
                    ub = np.minimum(ub, ubi[t, islots[lo:hi]])
                # UB is the cost of an HSM / ISM schedule (a policy of this class), so it is achievable
                best = np.minimum(best, ub).astype(dtype)
                # lower bound: at the time of B t at most n_I internal states are stored, every other step
                # k < t is computed again afterwards (HSM: every step k < t)
                if use_i:
                    n_i = np.maximum(islots[lo:hi] - 1, 0)
                    lb = t + np.maximum(0, t - 1 - n_i)
                else:
                    lb = np.full(hi - lo, 2 * t - 1)
                ymax = np.where(ub <= lb, 0, np.clip(ub - t + 1, 0, t - 1))
            else:
                ymax = np.full(hi - lo, t - 1)
            for kind, shift, yoff in (("H", q, 0), ("I", p, 1)):
                if (kind == "H" and not use_h) or (kind == "I" and not use_i):
                    continue
                a = max(lo, q + shift)
                if a >= hi:
                    continue
                # budgets a..hi-1; split blocks where ymax (non-increasing in g) drops a lot
                j = a
                while j < hi:
                    y0 = int(ymax[j - lo])
                    if y0 <= 0:
                        nz = np.flatnonzero(ymax[j - lo : hi - lo] > 0)
                        if nz.size == 0:
                            break
                        j += int(nz[0])
                        continue
                    # extend block while ymax stays above 0.7 * y0 (and cap width)
                    seg = ymax[j - lo : hi - lo]
                    stop = (
                        int(np.argmax(seg < max(1, int(0.7 * y0)))) if (seg < max(1, int(0.7 * y0))).any() else seg.size
                    )
                    stop = max(1, min(stop, 4096))
                    e = j + stop
                    left = C[1 - yoff : y0 + 1 - yoff, j:e]  # C[y, g] (H) or C[y-1, g] (I)
                    right = (
                        C[t - 1 : t - 1 - y0 : -1, j - shift : e - shift]
                        if t - 1 - y0 >= 0
                        else C[t - 1 :: -1, j - shift : e - shift][:y0]
                    )
                    v = left + right
                    v += ys[:y0]
                    np.minimum(best[j - lo : e - lo], v.min(axis=0), out=best[j - lo : e - lo])
                    j = e
        C[t, lo:hi] = best
    if progress is not None:
        progress(1.0, "DP done")
    return C


# --------------------------------------------------------------------------------------------- fast exact MSM table
# MSM's two split moves share their left part: with y' = y - 1 the internal-state move is
# y' + C(y', m) + [1 + C(t-1-y', m-alpha)], and the fused move is the same with C(0, .) = 0, so
#     C(t, m) = min_{0 <= y < t}  [y + C(y, m)] + M_m(t - y),    M_m(z) = min(C(z, m-1), 1 + C(z-1, m-alpha))
# (y = 0 gives C(t, m-1) >= C(t, m): harmless). One min-plus convolution per budget column, whose right
# factor M_m is known from smaller budgets; the left factor is the column itself (a prefix of it).
_EVAL_CELLS = 1 << 16  # split points evaluated per block of rows (two int32 blocks stay in the CPU cache)
_WIDTHS = np.array(sorted({1 << k for k in range(2, 40)} | {3 << k for k in range(1, 40)}), dtype=np.int64)
_MAX_LEVELS = 8  # up to this many levels per envelope, windows come straight from the levels (else: searches)
_BLOCK_ROWS = 256  # first block of the block-by-block first pass (blocks then double)
_BLOCK_WIDE = 4  # ... used when the last column's windows were this wide on average (else one pass over all rows)


def _window_hi(sf: np.ndarray, pm1: np.ndarray, t: np.ndarray, big: int) -> np.ndarray:
    """For each t: the first u in [0, t-2] with sf[u] >= pm(t-u-1) (t-1 when there is none).

    ``sf`` is non-decreasing (a suffix minimum), ``pm1[z-1] = pm(z)`` (z >= 1) non-decreasing (a prefix maximum);
    both are step functions with few steps, so the search runs over their levels: u in the level of sf starting
    at a_k qualifies from u >= t - zb_k on (zb_k = first z with pm(z) > the level), and a_k + zb_k increases with
    k, so the answer is min(a_k, t - zb_{k-1}) for the first level k with a_k + zb_k >= t (sentinels: big)."""
    a = np.flatnonzero(sf[1:] != sf[:-1])
    a += 1
    a = np.concatenate((np.zeros(1, dtype=a.dtype), a, np.full(1, big, dtype=a.dtype)))  # first u of each level
    zb = np.empty(a.size, dtype=a.dtype)
    zb[0] = -big
    zb[1:] = np.searchsorted(pm1, sf[a[:-1]], "right")
    zb[1:] += 1  # zb[k + 1]: first z with pm(z) > level k
    k = np.searchsorted(a[:-1] + zb[1:], t, "left")
    hi = t - zb[k]
    np.minimum(hi, a[k], out=hi)
    np.minimum(hi, t - 1, out=hi)
    return hi


def _window_lo(pf: np.ndarray, sm1: np.ndarray, t: np.ndarray, big: int) -> np.ndarray:
    """For each t: 1 + the last u in [0, t-2] with pf[u] <= sm(t-u-1) (0 when there is none); ``pf``
    non-decreasing (a prefix maximum), ``sm1[z-1] = sm(z)`` non-decreasing (a suffix minimum)."""
    c = np.flatnonzero(pf[1:] != pf[:-1])
    c = np.concatenate((np.full(1, -1, dtype=c.dtype), c, np.full(1, pf.size - 1, dtype=c.dtype)))
    ze = np.empty(c.size, dtype=c.dtype)  # ze[k]: first z with sm(z) >= level k-1 (the level ending at c[k])
    ze[:-1] = np.searchsorted(sm1, pf[c[1:]], "left")
    ze[:-1] += 1
    ze[-1] = big
    k = np.searchsorted(c[1:] + ze[:-1], t - 1, "left")
    lo = t - 1 - ze[k]
    np.maximum(lo, c[k], out=lo)
    np.minimum(lo, t - 2, out=lo)
    lo += 1
    return lo


def _levels(DA: np.ndarray, cap: int) -> tuple[list[int], list[int], list[int], list[int]] | None:
    """The steps of DA's suffix minimum sf and prefix maximum pf, found without scanning them whole:
    (first u of each level of sf, its value, last u of each level of pf, its value), values increasing;
    None when either has more than ``cap`` levels."""
    n = DA.size
    a: list[int] = []
    av: list[int] = []
    rev = DA[::-1].copy()  # rev[: n - s] is DA[s:] backwards
    s = 0
    while s < n:
        if len(a) == cap:
            return None
        last = n - 1 - int(rev[: n - s].argmin())  # the last place of the rest's minimum ends its level
        a.append(s)
        av.append(int(DA[last]))
        s = last + 1
    c: list[int] = []
    cv: list[int] = []
    s = 0
    v = int(DA[0])
    while True:
        if len(c) == cap:
            return None
        cv.append(v)
        nxt = int((DA[s:] > v).argmax())  # the next new maximum (0: none)
        if nxt == 0:
            c.append(n - 1)
            return a, av, c, cv
        c.append(s + nxt - 1)
        s += nxt
        v = int(DA[s])


class _MSteps:
    """The right factor's side of the windows for one column, from D_M(z) = DM1[z-1] (z >= 1):
    zb(v) = first z with max(D_M(1..z)) > v and ze(v) = first z with min(D_M(z..)) >= v (T when none),
    looked up per level value (memoised); the prefix maximum / suffix minimum arrays only when needed."""

    def __init__(self, DM1: np.ndarray) -> None:
        self.DM1 = DM1
        self.rev = DM1[::-1].copy()
        self.T = DM1.size + 1
        self._zb: dict[int, int] = {}
        self._ze: dict[int, int] = {}
        self._env: tuple[np.ndarray, np.ndarray] | None = None

    def zb(self, v: int) -> int:
        r = self._zb.get(v)
        if r is None:
            above = self.DM1 > v
            i = int(above.argmax())
            r = self._zb[v] = i + 1 if above[i] else self.T
        return r

    def ze(self, v: int) -> int:
        r = self._ze.get(v)
        if r is None:
            below = self.rev < v
            i = int(below.argmax())  # from the end: the last z with D_M(z) < v is z = DM1.size - i
            r = self._ze[v] = self.DM1.size - i + 1 if below[i] else 1
        return r

    def envelopes(self) -> tuple[np.ndarray, np.ndarray]:
        if self._env is None:
            self._env = (np.maximum.accumulate(self.DM1), np.minimum.accumulate(self.DM1[::-1])[::-1])
        return self._env


def _conv_windows(
    A: np.ndarray, ms: _MSteps, t: np.ndarray, lev: tuple[list[int], list[int], list[int], list[int]] | None, big: int
) -> tuple[np.ndarray, np.ndarray]:
    """For ``min_{0 <= y < t} A[y] + M[t-y]`` (A, M increasing integer arrays): a window (lo, hi) per t that holds
    the minimum, in [lo, hi] when lo <= hi, else at lo or hi. ``lev``: :func:`_levels` of A's increments.

    With D_A(u) = A[u+1] - A[u] and D_M(z) = M[z+1] - M[z], cost(y+1) - cost(y) = D_A(y) - D_M(t-y-1). Every
    y above hi costs at least cost(hi): from hi on, the least later D_A is at least the largest earlier D_M
    (``_window_hi``); every y below lo costs at least cost(lo): up to lo, the largest D_A is at most the least
    later D_M (``_window_lo``). Both come from prefix maxima / suffix minima (exact bounds, no assumption); the
    window is one or two points where the costs are convex and a band where their increments mix. With few
    levels: hi = min over the levels (a_k, v_k) of sf of max(a_k, t - zb(v_k)), and lo = 1 + max(-1, max over the
    levels (c_k, v_k) of pf of min(c_k, t - 1 - ze(v_k))), the same numbers as the searches.
    """
    if lev is None:
        DA = A[1:] - A[:-1]
        pm1, sm1 = ms.envelopes()
        hi = _window_hi(np.minimum.accumulate(DA[::-1])[::-1], pm1, t, big)
        lo = _window_lo(np.maximum.accumulate(DA, out=DA), sm1, t, big)
        return lo, hi
    a, av, c, cv = lev
    hi = np.maximum(t - ms.zb(av[0]), a[0])
    for aj, vj in zip(a[1:], av[1:]):
        np.minimum(hi, np.maximum(t - ms.zb(vj), aj), out=hi)
    tm1 = t - 1
    lo = np.minimum(tm1 - ms.ze(cv[0]), c[0])
    for cj, vj in zip(c[1:], cv[1:]):
        np.maximum(lo, np.minimum(tm1 - ms.ze(vj), cj), out=lo)
    np.maximum(lo, -1, out=lo)
    lo += 1
    return lo, hi


def _conv_eval(Ab: np.ndarray, Mb: np.ndarray, T: int, t: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """min of A[y] + M[t-y] over each row's window (see :func:`_conv_windows`).

    ``Ab`` is A and ``Mb`` is M reversed (``Mb[T - z] = M[z]``), both followed by at least 2T+2 huge values.
    Rows with a wide window are grouped by width (steps of 1.5x-2x) and read as whole rows of sliding-window
    views of Ab and Mb, a block of rows at a time (small enough for the CPU cache). A row may read more split
    points than its window: those up to t-1 are valid and cannot change the minimum, those from t on read the
    huge padding."""
    base = T - t
    best = np.minimum(Ab.take(hi) + Mb.take(base + hi), Ab.take(lo) + Mb.take(base + lo))
    w = hi - lo
    wide = (w > 1).nonzero()[0]
    if not wide.size:
        return best
    bucket = np.searchsorted(_WIDTHS, w[wide] + 1, "left")
    order = np.argsort(bucket, kind="stable")
    wide, bucket = wide[order], bucket[order]
    cuts = np.flatnonzero(bucket[1:] != bucket[:-1]) + 1
    starts = np.concatenate((np.zeros(1, dtype=cuts.dtype), cuts))
    ends = np.concatenate((cuts, np.full(1, wide.size, dtype=cuts.dtype)))
    item = Ab.itemsize
    res = np.empty(wide.size, dtype=best.dtype)
    for s0, e0 in zip(starts.tolist(), ends.tolist()):
        W = int(_WIDTHS[bucket[s0]])
        n_view = Ab.size - W + 1
        Av = np.ndarray((n_view, W), dtype=Ab.dtype, buffer=Ab, strides=(item, item))
        Mv = np.ndarray((n_view, W), dtype=Mb.dtype, buffer=Mb, strides=(item, item))
        ia = lo[wide[s0:e0]]
        ib = base[wide[s0:e0]] + ia
        step = max(1, _EVAL_CELLS // W)
        for s in range(0, e0 - s0, step):
            x = Av[ia[s : s + step]]
            x += Mv[ib[s : s + step]]
            x.min(axis=1, out=res[s0 + s : s0 + s + x.shape[0]])
    best[wide] = np.minimum(best[wide], res)
    return best


def msm_table(
    T: int, G: int, q: int, p: int, progress: Callable[[float | None, str], None] | None = None, token=None
) -> np.ndarray:
    """The exact MSM table C[t, g] (t = 0..T, budget cells g = 0..G of 1/q unit), as :func:`dp_table` computes
    it, in far less time; huge values = infeasible. Returns a (T+1, G+1) view of a budget-major array.

    Budget by budget (column by column): below one internal state plus a hidden slot only hidden states fit
    (Revolve's closed form); above, the rows where the ISM closed form meets the lower bound t + (t-1-s) are
    exact, and the rest solves C = F(C), F(C)(t) = min_y [y + C(y)] + M(t-y) (see above), by passes from
    U = min(column of one cell less, HSM and ISM closed forms): each pass evaluates F exactly for all t at once
    (:func:`_conv_windows`, :func:`_conv_eval`), and the column is done when a pass changes nothing. The
    recurrence is causal (row t depends on rows < t only), so its fixed point is unique: the result is the DP's,
    not an approximation. F is monotone and F(U) <= U for that start (a cell more budget, or the closed forms'
    own moves, never cost more), so the passes only lower values; hence after the first pass a row's minimum can
    only move to a split point whose value just fell: only rows whose window holds one are evaluated again
    (the windows themselves are recomputed only when the levels of A's increments changed). Where windows are
    wide (small budgets) the first pass goes block by block, rows [b, 2b) at a time, each block reading the
    values this pass gave the blocks below (Gauss-Seidel; the same fixed point), so that few rows change later.
    """
    big_cost = T * (T + 1) // 2
    dtype = np.int32 if big_cost < (1 << 28) else np.int64
    inf = (1 << 29) if dtype == np.int32 else (1 << 60)
    out = np.empty((G + 1, T + 1), dtype=dtype)  # every column below is written whole
    out[:q] = inf
    ts = np.arange(T + 1, dtype=dtype)
    ts64 = np.arange(T + 1, dtype=np.int64)
    big = 3 * (T + 2)  # index sentinel for the window searches
    Ab = np.full(3 * (T + 1), inf, dtype=dtype)  # A = t + C(t) then padding (see _conv_eval)
    Mb = np.full(3 * (T + 1), inf, dtype=dtype)  # M reversed then padding
    A = Ab[: T + 1]
    M = np.empty(T + 1, dtype=dtype)
    fell = np.zeros(T + 1, dtype=bool)  # rows whose value fell in the last pass
    n_fell = np.zeros(T + 2, dtype=np.int64)
    hsm: dict[int, np.ndarray] = {}  # the closed forms of the current budget, as budgets grow
    ism: dict[int, tuple[np.ndarray, int]] = {}
    ub: dict[tuple[int, int], np.ndarray] = {}
    n_cols = max(1, G + 1 - q)
    wide_prev = True
    for g in range(q, G + 1):
        if token is not None:
            token.check()
        if progress is not None and (g - q) % 16 == 0:
            progress((g - q) / n_cols, f"MSM budget {g}/{G}")
        m = g // q
        if m not in hsm:
            hsm.clear()
            hsm[m] = np.minimum(hsm_costs(ts64, m), inf).astype(dtype)
        if g < q + p or T < 2:  # no internal state fits beside h_0's slot: hidden states only
            out[g] = hsm[m]
            continue
        s = (g - q) // p
        if s not in ism:
            ism.clear()
            ic = ism_costs(ts64, s)
            over = np.flatnonzero(ic != ts64 + np.maximum(0, ts64 - 1 - s))
            ism[s] = ic.astype(dtype), (max(int(over[0]), 2) if over.size else -1)
        ic_d, t0 = ism[s]
        if t0 < 0:  # ISM meets the lower bound on every row
            out[g] = ic_d
            continue
        if (s, m) not in ub:
            ub.clear()
            ub[(s, m)] = np.minimum(ic_d, hsm[m])
        U = out[g]
        np.minimum(out[g - 1], ub[(s, m)], out=U)  # an upper bound, exact below t0
        M[0] = 0
        np.add(out[g - p, :-1], 1, out=M[1:])
        np.minimum(M[1:], out[g - q, 1:], out=M[1:])
        M[1] = 1
        Mb[: T + 1] = M[::-1]
        ms = _MSteps(M[2:] - M[1:-1])
        rows = ts64[t0:]
        np.add(ts, U, out=A)
        since: np.ndarray | None = None
        if wide_prev:
            # first pass block by block, rows [b, 2b) at a time (Gauss-Seidel): a row's window mostly ends below
            # half its length, where this pass has already lowered the values, so few rows change afterwards
            R = U[t0:].copy()
            since = np.empty(rows.size, dtype=np.int64)  # where each row's block starts
            b1 = t0
            while b1 <= T:
                b2 = min(T + 1, max(2 * b1, b1 + _BLOCK_ROWS))
                if T + 1 - b2 < _BLOCK_ROWS:
                    b2 = T + 1
                rb = rows[b1 - t0 : b2 - t0]
                lob, hib = _conv_windows(A[:b2], ms, rb, _levels(A[1:b2] - A[: b2 - 1], _MAX_LEVELS), big)
                Rb = R[b1 - t0 : b2 - t0] = _conv_eval(Ab, Mb, T, rb, lob, hib)
                since[b1 - t0 : b2 - t0] = b1
                np.add(ts[b1:b2], Rb, out=A[b1:b2])  # the next blocks read the lowered values
                b1 = b2
        lev = _levels(A[1:] - A[:-1], _MAX_LEVELS)
        lo, hi = _conv_windows(A, ms, rows, lev, big)
        if since is None:
            R = _conv_eval(Ab, Mb, T, rows, lo, hi)
        while True:  # passes until nothing changes
            changed = R != U[t0:]
            if not changed.any():
                break
            if token is not None:
                token.check()
            U[t0:] = R
            np.add(ts[t0:], R, out=A[t0:])
            lev2 = _levels(A[1:] - A[:-1], _MAX_LEVELS)
            if lev2 is None or lev2 != lev:
                lo, hi = _conv_windows(A, ms, rows, lev2, big)
            lev = lev2
            # a row's minimum can only change if a split point in its window fell after the row was evaluated
            # (after the block pass: in the row's own block)
            fell[t0:] = changed
            wide = (hi - lo > 1).nonzero()[0]
            if wide.size:
                np.cumsum(fell, out=n_fell[1:])  # n_fell[y + 1] = number of rows <= y that fell
            if since is None:
                redo = fell.take(lo) | fell.take(hi)
                if wide.size:
                    redo[wide] |= n_fell.take(hi[wide] + 1) != n_fell.take(lo[wide])
            else:
                redo = (fell.take(lo) & (lo >= since)) | (fell.take(hi) & (hi >= since))
                if wide.size:
                    redo[wide] |= n_fell.take(hi[wide] + 1) > n_fell.take(np.maximum(lo[wide], since[wide]))
                since = None
            redo = redo.nonzero()[0]
            if redo.size:
                R = R.copy()
                R[redo] = _conv_eval(Ab, Mb, T, rows[redo], lo[redo], hi[redo])
        fell[t0:] = False
        wide_prev = bool(np.maximum(hi - lo, 0).sum() > _BLOCK_WIDE * rows.size)
    if progress is not None:
        progress(1.0, "MSM table done")
    return out.T


def _upper_bounds(T: int, G: int, q: int, p: int, use_h: bool, use_i: bool):
    """Closed-form HSM / ISM cost tables indexed [t, slots] and each budget cell's slot counts."""
    g_all = np.arange(G + 1)
    ts = np.arange(T + 1, dtype=np.int64)
    big = np.int64(1 << 40)
    slots = np.clip(g_all // q, 0, T)  # hidden slots (more than T never help)
    islots = np.clip(np.where(g_all >= q, (g_all - q) // p, -1), -1, T) + 1  # +1: column 0 = infeasible
    ubh = ubi = None
    if use_h:
        ubh = np.full((T + 1, int(slots.max()) + 1), big, dtype=np.int64)
        for m in range(1, ubh.shape[1]):
            ubh[:, m] = hsm_costs(ts, m)
    if use_i:
        ubi = np.full((T + 1, int(islots.max()) + 1), big, dtype=np.int64)
        for s in range(0, ubi.shape[1] - 1):
            ubi[:, s + 1] = ism_costs(ts, s)
    return ubh, ubi, slots, islots


# The MSM table does not depend on T: C(t, g) for t <= T is the same for every longer sequence. The largest table
# built recently on each budget grid is kept (read-only; at most TABLE_CACHE_GRIDS grids, the least recently used
# goes first), so shorter lengths and smaller budgets on that grid are views of it (the tab recomputes its curves
# whenever T changes; going from T=10000 down costs nothing).
TABLE_CACHE_GRIDS = 2
_TABLE_CACHE: dict[tuple[int, int], np.ndarray] = {}
_TABLE_LOCK = threading.Lock()


def _cached_table(T: int, G: int, q: int, p: int) -> np.ndarray | None:
    with _TABLE_LOCK:
        C = _TABLE_CACHE.pop((q, p), None)
        if C is not None:
            _TABLE_CACHE[(q, p)] = C  # most recently used last
    if C is not None and C.shape[0] > T and C.shape[1] > G:
        return C[: T + 1, : G + 1]
    return None


def _keep_table(C: np.ndarray, q: int, p: int) -> None:
    C.flags.writeable = False
    with _TABLE_LOCK:
        old = _TABLE_CACHE.pop((q, p), None)
        _TABLE_CACHE[(q, p)] = C if old is None or C.size >= old.size else old
        while len(_TABLE_CACHE) > TABLE_CACHE_GRIDS:
            _TABLE_CACHE.pop(next(iter(_TABLE_CACHE)))


def clear_table_cache() -> None:
    """Forget the kept MSM table (benchmarks time cold builds)."""
    with _TABLE_LOCK:
        _TABLE_CACHE.clear()


# --------------------------------------------------------------------------------------------- the planner
@dataclass
class Plan:
    length: int
    memory: float
    policy: str
    alpha: float
    alpha_used: float
    cost: int
    schedule: Schedule

    @property
    def peak_memory(self) -> float:
        return self.schedule.peak_memory

    def to_json(self, with_schedule: bool = True) -> dict:
        out = {
            "length": self.length,
            "memory": self.memory,
            "policy": self.policy,
            "alpha": self.alpha,
            "cost": self.cost,
            "peak_memory": self.peak_memory,
        }
        if self.alpha_used != self.alpha:
            out["alpha_used"] = self.alpha_used
        if with_schedule:
            out["schedule"] = self.schedule.actions()
        return out


class Planner:
    """Optimal BPTT schedules for one (length, policy, alpha).

    ``cost(M)`` / ``curve()`` give the optimal cost for budgets; ``plan(M)`` builds the schedule. HSM and
    ISM use closed forms (``method='closed'``) or the DP table (``method='table'``, for tests); MSM always
    uses the DP table, built on first use (``build(progress, token)`` builds it explicitly) or taken from the
    largest MSM table built recently on the same budget grid (``cache=False``: always build).
    """

    def __init__(
        self,
        length: int,
        policy: str = "hsm",
        alpha: float = 1.0,
        method: str = "auto",
        max_q: int = 4,
        table_budget: float | None = None,
        cache: bool = True,
    ) -> None:
        if int(length) < 1:
            raise ValueError("the sequence length must be at least 1")
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r} (choose one of {', '.join(POLICIES)})")
        self.T = int(length)
        self.policy = policy
        self.alpha = float(alpha)
        self.grid = make_grid(alpha, max_q) if policy != "hsm" else Grid(self.alpha, 1, 1)
        self.method = method if method != "auto" else ("table" if policy == "msm" else "closed")
        if self.policy == "msm" and self.method != "table":
            raise ValueError("MSM has no closed form; use method='table'")
        self._table: np.ndarray | None = None
        self._cut: int | None = None
        self._table_cells = None if table_budget is None else self.grid.cells(table_budget)
        self.cache = bool(cache)  # MSM: reuse (and keep) the largest table built on this grid

    # ---- budgets
    @property
    def alpha_used(self) -> float:
        if self.policy == "hsm":
            return self.alpha
        if self.policy == "ism" and self.method == "closed":
            return self.alpha
        return self.grid.alpha_used

    @property
    def saturation(self) -> float:
        """The smallest budget at which the cost stops falling (2T-1 for HSM, T for ISM and MSM)."""
        T = self.T
        if self.policy == "hsm":
            return float(max(1, T - 1))
        return 1.0 + (T - 1) * self.alpha_used

    @property
    def full_memory(self) -> float:
        return full_bptt_memory(self.T, self.alpha)

    def budgets(self) -> np.ndarray:
        """Every distinct budget from 1 to the saturation point on this policy's grid."""
        q = self.grid.q
        top = int(math.ceil(self.saturation * q - 1e-9))
        return np.arange(q, top + 1) / q

    # ---- the table
    @property
    def cut_cells(self) -> int | None:
        """MSM only: from this budget cell on, the ISM closed form equals a lower bound, so it is optimal
        (C(t, g) = ISM(t, (g - q) // p) for every t <= T) and the table need not go further."""
        if self.policy != "msm":
            return None
        if self._cut is None:
            T, q, p = self.T, self.grid.q, self.grid.p
            s = 0
            while ism_cost(T, s) > T + max(0, T - 1 - s):
                s += 1
            self._cut = q + s * p
        return self._cut

    def build(self, progress=None, token=None, cells: int | None = None) -> np.ndarray:
        need = (
            cells
            if cells is not None
            else (
                self._table_cells
                if self._table_cells is not None
                else int(math.ceil(self.saturation * self.grid.q - 1e-9))
            )
        )
        need = max(need, self.grid.q)
        if self.cut_cells is not None:
            need = min(need, self.cut_cells)
        if self._table is not None and self._table.shape[1] - 1 >= need:
            return self._table
        if (self.T + 1) * (need + 1) > MSM_MAX_CELLS:
            raise InfeasibleBudget(
                f"the {self.policy.upper()} table for T={self.T} up to {need / self.grid.q:g} units would need "
                f"{(self.T + 1) * (need + 1) / 1e6:.0f}M cells; use a shorter sequence or a smaller budget"
            )
        if self.policy == "msm":
            q, p = self.grid.q, self.grid.p
            C = _cached_table(self.T, need, q, p) if self.cache else None
            if C is None:
                C = msm_table(self.T, need, q, p, progress=progress, token=token)
                if self.cache:
                    _keep_table(C, q, p)
            self._table = C
        else:
            self._table = dp_table(self.T, need, self.grid.q, self.grid.p, self.policy, progress=progress, token=token)
        return self._table

    def _costs(self, ts: np.ndarray, g: int) -> np.ndarray:
        """Table costs C[ts, g] (int64), falling back to the ISM closed form beyond the MSM cut."""
        ts = np.asarray(ts, dtype=np.int64)
        q, p = self.grid.q, self.grid.p
        if g < q:
            return np.where(ts == 0, 0, np.int64(1) << 40)
        C = self._table
        if g < C.shape[1]:
            return C[ts, g].astype(np.int64)
        if self.cut_cells is None or g < self.cut_cells:  # pragma: no cover - guarded by build()
            raise AssertionError("budget outside the DP table")
        return ism_costs(ts, (g - q) // p)

    def _check(self, memory: float) -> None:
        if not math.isfinite(memory) or memory < 1.0 - EPS:
            raise InfeasibleBudget(
                f"a memory budget of {memory:g} is infeasible: at least 1 hidden-state slot is needed for h_0"
            )

    # ---- costs
    def cost(self, memory: float) -> int:
        self._check(memory)
        memory = min(memory, self.saturation)
        if self.method == "closed":
            if self.policy == "hsm":
                return hsm_cost(self.T, int(math.floor(memory + EPS)))
            return ism_cost(self.T, int(math.floor((memory - 1) / self.alpha + EPS)))
        g = self.grid.cells(memory)
        self.build(cells=max(g, self._table_cells or 0))
        return int(self._costs(np.asarray([self.T]), g)[0])

    def curve(self, progress=None, token=None) -> tuple[np.ndarray, np.ndarray]:
        """(budgets, costs) for every budget from 1 to the saturation point."""
        bud = self.budgets()
        if self.method == "closed":
            if self.policy == "hsm":
                costs = np.array([hsm_cost(self.T, int(m)) for m in np.floor(bud + EPS)], dtype=np.int64)
            else:
                s = np.floor((bud - 1) / self.alpha + EPS).astype(np.int64)
                u, inv = np.unique(s, return_inverse=True)
                costs = ism_costs_over_slots(self.T, u)[inv]
            return bud, costs
        C = self.build(progress=progress, token=token)
        g = (bud * self.grid.q + EPS).astype(np.int64)
        costs = np.empty(g.size, dtype=np.int64)
        inside = g < C.shape[1]
        costs[inside] = C[self.T, g[inside]]
        if (~inside).any():
            s_out = (g[~inside] - self.grid.q) // self.grid.p
            u, inv = np.unique(s_out, return_inverse=True)
            costs[~inside] = ism_costs_over_slots(self.T, u)[inv]
        return bud, costs

    # ---- schedules
    def _choose(self, t: int, b, total: int) -> tuple[str, int]:
        """('fused'|'H'|'I', y) for a segment of t steps with budget b (slots / I-slots / cells)."""
        if t <= 1:
            return "fused", t
        ys = np.arange(1, t, dtype=np.int64)
        if self.method == "closed":
            if self.policy == "hsm":
                m = b
                if m <= 1:
                    return "fused", t
                fused = t + hsm_costs(np.asarray([t - 1]), m)[0]
                v = ys + hsm_costs(ys, m) + hsm_costs(t - ys, m - 1)
                kind = "H"
            else:
                s = b
                if s <= 0:
                    return "fused", t
                fused = t + ism_costs(np.asarray([t - 1]), s)[0]
                v = ys + ism_costs(ys - 1, s) + ism_costs(t - ys, s - 1)
                kind = "I"
            j = int(np.argmin(v))
            return ("fused", t) if fused <= v[j] else (kind, j + 1)
        q, p = self.grid.q, self.grid.p
        g = b
        fused = t + int(self._costs(np.asarray([t - 1]), g)[0])
        best_kind, best_y, best_v = "fused", t, fused
        if self.policy in ("hsm", "msm") and g - q >= q:
            v = ys + self._costs(ys, g) + self._costs(t - ys, g - q)
            j = int(np.argmin(v))
            if v[j] < best_v:
                best_kind, best_y, best_v = "H", j + 1, int(v[j])
        if self.policy in ("ism", "msm") and g - p >= q:
            v = ys + self._costs(ys - 1, g) + self._costs(t - ys, g - p)
            j = int(np.argmin(v))
            if v[j] < best_v:
                best_kind, best_y, best_v = "I", j + 1, int(v[j])
        return best_kind, best_y

    def plan(self, memory: float, token=None) -> Plan:
        """The optimal schedule for a budget (hidden units, h_0's slot included)."""
        self._check(memory)
        M = float(memory)
        cost = self.cost(M)
        if cost > MAX_SCHEDULE_ACTIONS:
            raise InfeasibleBudget(f"this schedule has {cost:,} forward steps, too many to list; give more memory")
        eff = min(M, self.saturation)
        if self.method == "closed":
            root = int(math.floor(eff + EPS)) if self.policy == "hsm" else int(math.floor((eff - 1) / self.alpha + EPS))
            h_cost, i_cost = 1, 1
        else:
            root = self.grid.cells(eff)
            self.build(cells=max(root, self._table_cells or 0))
            h_cost, i_cost = self.grid.q, self.grid.p
        # events: (op, a, b): F runs a..b, or single actions with a == b
        ev_op: list[int] = []
        ev_a: list[int] = []
        ev_b: list[int] = []
        stack: list[tuple] = [("node", 0, self.T, root)]
        n = 0
        while stack:
            item = stack.pop()
            if item[0] == "emit":
                ev_op.append(item[1])
                ev_a.append(item[2])
                ev_b.append(item[2])
                continue
            _, k0, t, b = item
            if t == 0:
                continue
            n += 1
            if token is not None and n % 512 == 0:
                token.check()
            kind, y = self._choose(t, b, self.T)
            if kind == "fused":
                ev_op += [F, B]
                ev_a += [k0 + 1, k0 + t]
                ev_b += [k0 + t, k0 + t]
                stack.append(("node", k0, t - 1, b))
            elif kind == "H":
                ev_op += [F, SH]
                ev_a += [k0 + 1, k0 + y]
                ev_b += [k0 + y, k0 + y]
                right_b = b - (1 if self.method == "closed" else h_cost)
                stack.append(("node", k0, y, b))
                stack.append(("emit", DH, k0 + y))
                stack.append(("node", k0 + y, t - y, right_b))
            else:  # "I"
                ev_op += [F, SI]
                ev_a += [k0 + 1, k0 + y]
                ev_b += [k0 + y, k0 + y]
                right_b = b - (1 if self.method == "closed" else i_cost)
                stack.append(("node", k0, y - 1, b))
                stack.append(("emit", DI, k0 + y))
                stack.append(("emit", B, k0 + y))
                stack.append(("node", k0 + y, t - y, right_b))
        sched = _expand(ev_op, ev_a, ev_b, self.T, self.alpha)
        if sched.cost != cost:  # pragma: no cover - a planner bug, caught by the tests
            raise AssertionError(f"schedule cost {sched.cost} != DP cost {cost}")
        return Plan(self.T, M, self.policy, self.alpha, self.alpha_used, cost, sched)


def _expand(ev_op: list[int], ev_a: list[int], ev_b: list[int], T: int, alpha: float) -> Schedule:
    op = np.asarray(ev_op, dtype=np.uint8)
    a = np.asarray(ev_a, dtype=np.int64)
    b = np.asarray(ev_b, dtype=np.int64)
    lens = np.where(op == F, b - a + 1, 1)
    keep = lens > 0
    op, a, lens = op[keep], a[keep], lens[keep]
    ops = np.repeat(op, lens)
    starts = np.cumsum(lens) - lens
    within = np.arange(int(lens.sum()), dtype=np.int64) - np.repeat(starts, lens)
    ks = np.repeat(a, lens) + within
    return Schedule(T, float(alpha), ops, ks)


def time_ratio(cost: float, length: int, backward_ratio: float = 2.0) -> float:
    """Time per iteration relative to standard BPTT when a backward step costs ``backward_ratio`` forwards."""
    return (cost + backward_ratio * length) / ((1.0 + backward_ratio) * length)


def make_plan(length: int, memory: float, policy: str, alpha: float = 1.0, token=None) -> Plan:
    return Planner(length, policy, alpha, table_budget=memory if policy == "msm" else None).plan(memory, token)
