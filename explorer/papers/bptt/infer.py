"""What the BPTT tab runs in its workers: the planners and their cost curves, one plan with the arrays its plots
draw, alpha measured on a real core, and a real run of the plan beside full BPTT and torch.utils.checkpoint.

Plain numpy and torch, no Qt. Every function takes the runner's ``token`` (and ``progress`` where it reports any);
torch is imported inside the functions that need it, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from .planner import POLICIES, InfeasibleBudget, Planner, time_ratio
from .schedule import SH, SI, B, F, full_bptt_memory

# A real run also runs full BPTT (the gradient check and the measured baseline), which keeps every step's
# activations: about 224 bytes per step and hidden unit for nn.LSTMCell with batch 8 (measured: 115 MB at T=2000
# and 573 MB at T=10000, hidden 256; that run took 55 s on a shared CPU for full BPTT, the plan and
# torch.utils.checkpoint). The run is offered while T x hidden stays under this.
RUN_MAX_T_X_HIDDEN = 1_280_000  # T=5000 at hidden 256, T=10000 at hidden 128 (about 300 MB for full BPTT)
BYTES_PER_STEP_AND_UNIT = 224  # full BPTT's activations, LSTM, batch 8 (see above)
MAX_MARKERS = 20000  # store markers drawn per kind (evenly thinned beyond)
DRAW_FULL_POINTS = 200_000  # longer polylines are drawn from their corners only (the same lines, fewer points)


def run_allowed(length: int, hidden: int) -> bool:
    return length * hidden <= RUN_MAX_T_X_HIDDEN


# ----------------------------------------------------------------------------------------- planning
def staircase(budgets: np.ndarray, costs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The budgets where the (staircase) cost curve changes, with the last one, and their costs."""
    keep = np.ones(budgets.size, dtype=bool)
    keep[1:] = np.diff(costs) != 0
    if keep.size:
        keep[-1] = True
    return budgets[keep], costs[keep]


def compute_curves(length: int, alpha: float, token=None, progress=None) -> dict:
    """Planners of the three policies for one (T, alpha) and their cost curves: ``curves[policy]`` is (budget as a
    fraction of full BPTT's memory, optimal cost), at the budgets where the cost changes. MSM's table is built here
    (with ``progress``); one too large for memory leaves MSM out, with a note."""
    out: dict = {"length": length, "alpha": alpha, "planners": {}, "curves": {}, "notes": []}
    full = full_bptt_memory(length, alpha)
    out["full"] = full
    for policy in POLICIES:
        if token is not None:
            token.check()
        pl = Planner(length, policy, alpha)
        if policy == "msm":
            try:
                pl.build(progress=progress, token=token)
            except InfeasibleBudget as exc:  # a table too large for memory: the other policies are shown
                out["notes"].append(f"MSM is not computed: {exc}")
                continue
        out["planners"][policy] = pl
        bud, costs = staircase(*pl.curve(token=token))
        out["curves"][policy] = (bud / full, costs)
    return out


def thin_polyline(
    x: np.ndarray, y: np.ndarray, connect: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same polyline from fewer points: the ends of each connected piece and its corners (a point between two
    collinear segments is dropped). ``connect[i]``: point i joins point i+1 (all True when None; the last entry is
    ignored). Returns (x, y, connect) of the kept points."""
    n = x.size
    conn = np.ones(n, dtype=bool) if connect is None else np.asarray(connect, dtype=bool).copy()
    if n:
        conn[-1] = False
    if n < 3:
        return x, y, conn
    dx, dy = np.diff(x), np.diff(y)
    keep = np.ones(n, dtype=bool)
    inner = conn[:-2] & conn[1:-1]  # point i+1 is joined on both sides
    collinear = (dx[:-1] * dy[1:] == dx[1:] * dy[:-1]) & (dx[:-1] * dx[1:] + dy[:-1] * dy[1:] > 0)
    keep[1:-1] = ~(inner & collinear)
    return x[keep], y[keep], conn[keep]


def compute_plan(planner: Planner, memory: float, token=None) -> dict:
    """The optimal schedule at ``memory`` and what the schedule and memory plots draw (``draw``): forward steps
    (x, y, connect: consecutive steps of one sweep are joined), backward steps, store markers (evenly thinned
    beyond MAX_MARKERS), the stored memory after each action; polylines over DRAW_FULL_POINTS points are given by
    their corners (:func:`thin_polyline`)."""
    plan = planner.plan(memory, token=token)
    sched = plan.schedule
    occ = sched.occupancy()
    if token is not None:
        token.check()
    idx = np.arange(len(sched), dtype=np.float64)
    ops, ks = sched.ops, sched.ks.astype(np.float64)
    f = ops == F
    xf, yf = idx[f], ks[f]
    # connect consecutive forward steps of one sweep (adjacent F k, F k+1 with only stores between)
    conn = np.zeros(xf.size, dtype=bool)
    if xf.size > 1:
        conn[:-1] = (np.diff(yf) == 1) & (np.diff(xf) <= 2)
    mem_x, mem_y = idx, occ
    if xf.size > DRAW_FULL_POINTS:
        xf, yf, conn = thin_polyline(xf, yf, conn)
    if mem_x.size > DRAW_FULL_POINTS:
        mem_x, mem_y, _ = thin_polyline(mem_x, mem_y)
    b = ops == B
    draw = {"fwd": (xf, yf, conn), "bwd": (idx[b], ks[b]), "mem": (mem_x, mem_y)}
    for name, code in (("sh", SH), ("si", SI)):
        mask = ops == code
        step = max(1, int(np.ceil(mask.sum() / MAX_MARKERS)))  # evenly thinned, never cut off
        draw[name] = (idx[mask][::step], ks[mask][::step])
        draw[f"n_{name}"] = int(mask.sum())
    draw["actions"] = len(sched)
    draw["peak"] = float(occ.max()) if occ.size else 1.0
    return {"plan": plan, "occupancy": occ, "policy": planner.policy, "memory": memory, "draw": draw}


# ----------------------------------------------------------------------------------------- real cores
def measure_core_alpha(kind: str, hidden: int, token=None) -> float:
    """alpha (internal state over hidden state, in bytes) of a real ``kind`` core of this hidden size."""
    from .executor import make_problem, measure_alpha

    if token is not None:
        token.check()
    return measure_alpha(make_problem(kind, 2, hidden=hidden, batch=2, input_size=8))["alpha"]


@contextmanager
def cancellable_steps(core, token) -> Iterator[None]:
    """``token.check()`` before every step of ``core`` meanwhile, so that a cancel stops full BPTT and
    torch.utils.checkpoint (which take no token) within a step instead of after the whole run."""
    if token is None:
        yield
        return
    handle = core.register_forward_pre_hook(lambda _module, _args: token.check())
    try:
        yield
    finally:
        handle.remove()


def run_real(
    kind: str,
    length: int,
    hidden: int,
    policy: str,
    fraction: float,
    device=None,
    token=None,
    progress=None,
    backward_ratio: float = 2.0,
) -> dict:
    """Plan for the core's own alpha at the same fraction of full BPTT's memory, run it, compare.

    Besides the raw figures it returns the model's and the measured memory and time, each relative to full BPTT
    on the same core: memory as the plan's peak plus the working step (the step being computed, which every
    method holds and the planner's budget leaves out) over full BPTT's, the same way; time as (Q + bT) / (1 + b)T
    with b = ``backward_ratio``; measured: saved-tensor bytes at the peak and wall time, planned run over full
    BPTT's. The run itself is :func:`evaluate.measure_plan`, as ``nips-explorer eval bptt`` measures it."""
    import torch

    from .evaluate import measure_plan
    from .executor import full_bptt, make_problem, measure_alpha

    prog = progress or (lambda f=None, m="": None)
    device = device or torch.device("cpu")
    prog(0.0, "building the problem")
    pb = make_problem(kind, length, hidden=hidden, batch=8, input_size=32, device=device, seed=0)
    a = measure_alpha(pb)
    full_units = full_bptt_memory(length, a["alpha"])
    memory = max(1.0, fraction * full_units)
    plan = Planner(length, policy, a["alpha"]).plan(memory, token)
    with cancellable_steps(pb.core, token):
        prog(0.05, "full BPTT")
        ref = full_bptt(pb)
        m = measure_plan(
            pb, ref, plan, a["state_bytes"], token=token, progress=lambda f, msg="": prog(0.1 + 0.9 * (f or 0), msg)
        )
    prog(1.0, "done")
    res, ck = m["run"], m["checkpoint"]
    return {
        "kind": kind,
        "length": length,
        "hidden": hidden,
        "alpha": a["alpha"],
        "policy": plan.policy,
        "memory": memory,
        "fraction": fraction,
        "cost": plan.cost,
        "forward_steps": res.forward_steps,
        "grad_diff": m["grad_max_abs_diff"],
        "ck_grad_diff": m["checkpoint_grad_max_abs_diff"],
        "predicted_bytes": plan.peak_memory * a["state_bytes"],
        "register_bytes": a["internal_bytes"],
        "peak_bytes": res.peak_bytes,
        "full_bytes": ref.peak_bytes,
        "seconds": res.seconds,
        "full_seconds": ref.seconds,
        "ck_segments": m["segments"],
        "ck_bytes": ck.peak_bytes,
        "ck_seconds": ck.seconds,
        "ck_forward": ck.forward_steps,
        "model_ratio": time_ratio(plan.cost, length, backward_ratio),
        "backward_ratio": backward_ratio,
        "device": str(device),
        "model_memory_fraction": (plan.peak_memory + a["alpha"]) / (full_units + a["alpha"]),
        "measured_memory_fraction": res.peak_bytes / ref.peak_bytes,
        "measured_time_ratio": res.seconds / ref.seconds,
        "ck_memory_fraction": ck.peak_bytes / ref.peak_bytes,
        "ck_time_ratio": ck.seconds / ref.seconds,
    }
