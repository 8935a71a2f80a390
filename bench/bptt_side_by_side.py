"""Full BPTT vs torch.utils.checkpoint vs checkpointed_rnn on one training iteration of an LSTM.

    python -m bench.bptt_side_by_side [--length 1000] [--hidden 512] [--batch 32] [--input 64] [--classes 64]
                                      [--fractions 0.05,0.1,0.25] [--rounds 5] [--threads 1] [--device cpu]
                                      [--only NAME,NAME...] [--profile NAME] [--save FILE.json] [--quick]

The task: nn.LSTMCell(input -> hidden) over T steps, a linear read-out at every step and cross-entropy against
random classes, averaged over steps and batch (one iteration = forward + backward, no optimizer step). Two
families of methods:

outputs returned, read-out outside: every method produces ``outputs [T, B, H]`` and applies the same read-out to
it (one matmul over all steps):

* ``full``: full BPTT, the Python loop under autograd (the reference of every memory fraction and time ratio);
* ``ckpt:sqrt``, ``ckpt:F``: torch.utils.checkpoint (non-reentrant, RNG not preserved) over S uniform segments,
  with S = round(sqrt(T)) (Chen et al.'s rule) and, for each budget F, the fewest segments whose predicted peak
  (S stored states + one segment's activations) fits the budget;
* ``api:F``: checkpointed_rnn (MSM) at each budget, as a fraction of full BPTT's stored memory;
* ``floor``: the outputs computed without any graph, then the same read-out and loss (what every method of this
  family pays outside the recurrence); "recurrence's part" is a method's peak minus this floor.

read-out and loss inside the steps (the outputs never exist whole):

* ``fullstep``: full BPTT with the loss computed in the loop, step by step (the reference order of operations);
* ``ckptloss:F``: torch.utils.checkpoint whose segments include each step's read-out and loss (each segment
  returns its summed loss and its last state), S the fewest segments whose predicted peak, read-out included,
  fits the budget F (``ckptloss:min``: the S of least predicted memory);
* ``apiloss:F``: checkpointed_rnn(..., step_loss=...) (MSM) at budget F.

Each configuration's memory is measured in a fresh process of its own: after one warm-up iteration, the
peak increase of one iteration: resident memory (VmHWM reset through /proc/self/clear_refs, glibc's mmap
threshold fixed at 16 KiB so that freed tensors leave the resident set) on CPU, torch.cuda.max_memory_allocated
on CUDA. It includes everything the iteration allocates: the outputs, their gradient, the read-out's logits,
the parameter gradients, not only what the recurrence stores. Time: one more process (normal allocator) runs
every configuration interleaved, a warm-up iteration of each and then --rounds rounds of one iteration of each
in turn, as wall time and as the process's CPU time (user + system); a configuration's ratio to full BPTT is
the median over the rounds of its time divided by full BPTT's in the same round (paired, so that a busy spell
of the machine weighs on both); the gradient error is ||g - g_full|| / ||g_full|| over all parameters (LSTM
and read-out), against ``full`` (and, for the read-out inside, against ``fullstep`` too).

``--profile NAME`` (e.g. ``apiloss:0.05``) runs that configuration in a fresh process: one iteration timed plainly
(wall, user and system time, page faults), then one under torch.profiler, and prints the operators' self time
(the cell's matmuls forward and backward, the read-out's, ``_CheckpointedRNNBackward`` for the Python side of
checkpointed_rnn's backward). Single iterations vary by 20-30% on a shared machine: compare within one run.

``--quick``: T=40, hidden 32, batch 4, budget 25%, one round, only full BPTT and checkpointed_rnn (unless --only
is given).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench._util import ROOT, add_quick, run


# --------------------------------------------------------------------------------------------- worker
def _hwm_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM"):
                return int(line.split()[1])
    return 0


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _rss_kb() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def fewest_segments(budget_slots: float, length: int, alpha: float, beta: float = 0.0) -> int:
    """The fewest uniform segments whose predicted peak fits the budget (slots): S stored segment inputs, one
    segment's internal states (consecutive steps share their hidden states: alpha - 1 each, plus beta for each
    step's read-out and loss when they are inside the segments) and the step being backpropagated; the
    smallest-memory count when none fits. (Uniform checkpointing recomputes every step once whatever S is, so
    fewer segments only means fewer stored states.)"""
    for S in range(1, length + 1):
        if predicted_segments_memory(S, length, alpha, beta) <= budget_slots:
            return S
    return min(range(1, length + 1), key=lambda S: predicted_segments_memory(S, length, alpha, beta))


def predicted_segments_memory(S: int, length: int, alpha: float, beta: float = 0.0) -> float:
    return S + math.ceil(length / S) * (max(alpha - 1.0, 1.0) + beta) + alpha + beta


def worker(args) -> dict:
    import torch
    from torch import nn
    from torch.utils.checkpoint import checkpoint

    from explorer.papers.bptt.api import checkpointed_rnn, memory_probe, plan_for
    from explorer.papers.bptt.executor import MemoryTracker
    from explorer.papers.bptt.schedule import full_bptt_memory

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    T, B, H, I, V = args.length, args.batch, args.hidden, args.input, args.classes
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    cell = nn.LSTMCell(I, H).to(device)
    readout = nn.Linear(H, V).to(device)
    params = [*cell.parameters(), *readout.parameters()]
    x = torch.randn(T, B, I, generator=g).to(device)
    y = torch.randint(0, V, (T, B), generator=g).to(device)
    h0 = (torch.zeros(B, H, device=device), torch.zeros(B, H, device=device))
    calls = [0]

    class Counting(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, xt, state):
            calls[0] += 1
            return self.inner(xt, state)

    ccell = Counting(cell)

    def step_loss(h, t):
        return nn.functional.cross_entropy(readout(h), y[t])

    # alpha (internal-state size in slots) as checkpointed_rnn measures it, on two steps
    with memory_probe() as rec:
        o, _ = checkpointed_rnn(cell, x[:2], h0, memory=1)
    alpha = rec[0].alpha
    state_bytes = rec[0].state_bytes
    del o, rec
    full_units = full_bptt_memory(T, alpha)
    # beta: what one step's read-out and loss save for backward, in slots (measured the same way)
    # (h itself excluded: it is the step's output, already counted in alpha)
    hl = h0[0].clone().requires_grad_(True)
    tracker = MemoryTracker([*readout.parameters(), y, hl])
    with tracker.hooks():
        lk = step_loss(hl, 0)
    beta = tracker.current / state_bytes
    del lk, hl, tracker

    def rnn_full():
        state, outs = h0, []
        for t in range(T):
            state = ccell(x[t], state)
            outs.append(state[0])
        return torch.stack(outs)

    def rnn_checkpoint(S):
        bounds = [round(i * T / S) for i in range(S + 1)]

        def run(a, b, h, c):
            state, outs = (h, c), []
            for t in range(a, b):
                state = ccell(x[t], state)
                outs.append(state[0])
            return torch.stack(outs), state[0], state[1]

        h, c = h0
        parts = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            seg, h, c = checkpoint(run, a, b, h, c, use_reentrant=False, preserve_rng_state=False)
            parts.append(seg)
        out = torch.cat(parts)
        del parts
        return out

    def loss_fullstep():
        state, total = h0, 0
        for t in range(T):
            state = ccell(x[t], state)
            total = total + step_loss(state[0], t)
        return total / T

    def loss_checkpoint(S):
        bounds = [round(i * T / S) for i in range(S + 1)]

        def run(a, b, h, c):
            state, total = (h, c), 0
            for t in range(a, b):
                state = ccell(x[t], state)
                total = total + step_loss(state[0], t)
            return total, state[0], state[1]

        h, c = h0
        total = 0
        for a, b in zip(bounds[:-1], bounds[1:]):
            seg, h, c = checkpoint(run, a, b, h, c, use_reentrant=False, preserve_rng_state=False)
            total = total + seg
        return total / T

    def rnn_floor():
        """The outputs without any graph: what the read-out and loss cost on top of any recurrence."""
        with torch.no_grad():
            out = rnn_full()
        return out.requires_grad_(True)

    def build(name: str):
        """The iteration of one configuration and what to report about it."""
        method, spec = name.split(":")
        info = {"method": method, "spec": spec}
        rnn = loss_fn = None
        if method == "full":
            rnn = rnn_full
        elif method == "fullstep":
            loss_fn = loss_fullstep
        elif method == "ckptloss":
            if spec == "min":
                S = min(range(1, T + 1), key=lambda n: predicted_segments_memory(n, T, alpha, beta))
                info["fits"] = True
            else:
                S = fewest_segments(float(spec) * full_units, T, alpha, beta)
                info["fits"] = predicted_segments_memory(S, T, alpha, beta) <= float(spec) * full_units + 1e-9
            info["segments"] = S
            loss_fn = lambda: loss_checkpoint(S)  # noqa: E731
        elif method == "apiloss":
            frac = float(spec)
            plan = plan_for(T, alpha, frac, policy="msm")
            info.update(plan_cost=plan.cost, plan_peak_slots=plan.peak_memory)

            def loss_fn():
                return (
                    checkpointed_rnn(
                        ccell,
                        x,
                        h0,
                        memory_fraction=frac,
                        policy="msm",  # noqa: E731
                        step_loss=step_loss,
                        loss_params=readout,
                    )[0]
                    / T
                )
        elif method == "floor":
            rnn = rnn_floor
        elif method == "ckpt":
            if spec == "sqrt":
                S = max(1, round(math.sqrt(T)))
            else:
                S = fewest_segments(float(spec) * full_units, T, alpha)
                info["fits"] = predicted_segments_memory(S, T, alpha) <= float(spec) * full_units + 1e-9
            info["segments"] = S
            rnn = lambda: rnn_checkpoint(S)  # noqa: E731
        else:
            frac = float(spec)
            plan = plan_for(T, alpha, frac, policy="msm")
            info.update(plan_cost=plan.cost, plan_peak_slots=plan.peak_memory)
            rnn = lambda: checkpointed_rnn(ccell, x, h0, memory_fraction=frac, policy="msm")[0]  # noqa: E731

        def iteration():
            for p in params:
                p.grad = None
            if loss_fn is not None:
                loss = loss_fn()
            else:
                out = rnn()
                loss = nn.functional.cross_entropy(readout(out).flatten(0, 1), y.flatten())
                del out
            loss.backward()
            return float(loss.detach())

        return iteration, info

    if args.mode == "time":
        return time_interleaved(args, [build(n)[0] for n in args.worker.split(",")], device)

    iteration, info = build(args.worker)
    method, spec = info.pop("method"), info.pop("spec")

    if args.mode == "profile":
        return profile_iteration(iteration, args)

    # memory: a warm-up iteration (lazy initialisations), memory handed back, then one measured iteration
    iteration()
    for p in params:
        p.grad = None
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        _trim()
        exact = _reset_hwm()
        base = _rss_kb() if exact else _hwm_kb()
    calls[0] = 0
    loss = iteration()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = (_hwm_kb() - base) * 1024
    steps = calls[0]
    torch.save(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).detach().cpu().clone() for p in params],
        args.out + ".pt",
    )
    return {
        "method": method,
        "spec": spec,
        "peak_bytes": int(peak),
        "forward_steps": steps,
        "loss": loss,
        "alpha": alpha,
        "beta": beta,
        "state_bytes": state_bytes,
        "full_units": full_units,
        **info,
    }


def time_interleaved(args, iterations, device) -> dict:
    """Every configuration in one process, interleaved: a warm-up iteration of each, then --rounds rounds of one
    iteration of each in turn, so that the configurations share the machine's busy and quiet spells (the times
    of one round are close in time; their ratios are paired)."""
    import torch

    for it in iterations:
        it()
    wall = [[] for _ in iterations]
    cpu = [[] for _ in iterations]
    for _ in range(args.rounds):
        for i, it in enumerate(iterations):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            it()
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall[i].append(time.perf_counter() - t0)
            cpu[i].append(time.process_time() - c0)
    return {"seconds": wall, "cpu_seconds": cpu}


def profile_iteration(iteration, args) -> dict:
    """One iteration (after a warm-up) under torch.profiler: self CPU time per operator, grouped."""
    import resource

    import torch
    from torch.profiler import ProfilerActivity, profile

    iteration()
    # first one iteration without the profiler: wall, user and system time, page faults
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    iteration()
    plain = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        iteration()
    wall = time.perf_counter() - t0
    rows = []
    for e in prof.key_averages():
        rows.append(
            {"name": e.key, "count": e.count, "self_s": e.self_cpu_time_total / 1e6, "total_s": e.cpu_time_total / 1e6}
        )
    rows.sort(key=lambda r: -r["self_s"])
    return {
        "wall_s_profiled": wall,
        "wall_s": plain,
        "user_s": r1.ru_utime - r0.ru_utime,
        "sys_s": r1.ru_stime - r0.ru_stime,
        "minor_faults": r1.ru_minflt - r0.ru_minflt,
        "ops": rows[:40],
        "sum_self_s": sum(r["self_s"] for r in rows),
        "threads": torch.get_num_threads(),
    }


# --------------------------------------------------------------------------------------------- parent
def run_memory(args, name: str, tmp: str) -> dict:
    out = os.path.join(tmp, name.replace(":", "_"))
    res = _child(
        args,
        name,
        out,
        "memory",
        # a fixed mmap threshold: every tensor above 16 KiB is mapped and unmapped, so resident memory
        # follows the live tensors (glibc would otherwise keep freed blocks in its heaps)
        {"MALLOC_MMAP_THRESHOLD_": "16384", "MALLOC_TRIM_THRESHOLD_": "65536"},
    )
    res["grads_file"] = out + ".pt"
    res["seconds"], res["cpu_seconds"] = [], []
    return res


def run_time(args, names, tmp: str, rows) -> None:
    res = _child(args, ",".join(names), os.path.join(tmp, "time"), "time", {})
    for row, wall, cpu in zip(rows, res["seconds"], res["cpu_seconds"]):
        row["seconds"], row["cpu_seconds"] = wall, cpu


def _child(args, name: str, out: str, mode: str, extra_env: dict) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "bench.bptt_side_by_side",
        "--worker",
        name,
        "--out",
        out,
        "--mode",
        mode,
        "--length",
        str(args.length),
        "--hidden",
        str(args.hidden),
        "--batch",
        str(args.batch),
        "--input",
        str(args.input),
        "--classes",
        str(args.classes),
        "--rounds",
        str(args.rounds),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra_env)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"{name} ({mode}) failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--length", type=int, default=1000)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--input", type=int, default=64)
    ap.add_argument("--classes", type=int, default=64)
    ap.add_argument("--fractions", default="0.05,0.1,0.25")
    ap.add_argument("--rounds", type=int, default=5, help="timed iterations of each configuration (interleaved)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", default="", help="comma-separated configurations to run (full:- is always run)")
    ap.add_argument("--profile", default="", help="profile one iteration of this configuration, e.g. apiloss:0.05")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--save", default="", help="also write the rows as JSON to this file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=("memory", "time", "profile"), help=argparse.SUPPRESS)
    add_quick(ap, "T=40, hidden 32, batch 4, budget 25%%, one round, full BPTT and checkpointed_rnn only")
    args = ap.parse_args(argv)
    if args.quick:
        args.length, args.hidden, args.batch, args.input, args.classes = 40, 32, 4, 8, 8
        args.fractions, args.rounds = "0.25", 1
        args.only = args.only or "api:0.25"
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    if args.profile:
        print_profile(args)
        return 0

    import torch

    fracs = sorted((float(f) for f in args.fractions.split(",") if f.strip()), reverse=True)
    names = (
        ["full:-", "floor:-", "ckpt:sqrt"]
        + [f"ckpt:{f:g}" for f in fracs]
        + [f"api:{f:g}" for f in fracs]
        + ["fullstep:-", "ckptloss:min"]
        + [f"ckptloss:{f:g}" for f in fracs]
        + [f"apiloss:{f:g}" for f in fracs]
    )
    if args.only:
        keep = {n.strip() for n in args.only.split(",")} | {"full:-"}
        names = [n for n in names if n in keep] + sorted(keep - set(names))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            print(f"... {name} (memory)", file=sys.stderr, flush=True)
            rows.append(run_memory(args, name, tmp))
        timed = [(n, r) for n, r in zip(names, rows) if r["method"] != "floor"]
        print(f"... time: {len(timed)} configurations interleaved, {args.rounds} rounds", file=sys.stderr, flush=True)
        run_time(args, [n for n, _ in timed], tmp, [r for _, r in timed])

        def rel_err(got, ref):
            return math.sqrt(
                sum(float((a.double() - b.double()).norm() ** 2) for a, b in zip(got, ref))
                / sum(float(r.double().norm() ** 2) for r in ref)
            )

        ref = torch.load(rows[0]["grads_file"])
        step_row = next((r for r in rows if r["method"] == "fullstep"), None)
        ref_step = torch.load(step_row["grads_file"]) if step_row else None
        for row in rows:
            got = torch.load(row.pop("grads_file"))
            if row["method"] == "floor":
                row["grad_rel_err"] = None
                continue
            row["grad_rel_err"] = rel_err(got, ref)
            if ref_step is not None and row["method"] in ("fullstep", "ckptloss", "apiloss"):
                row["grad_rel_err_vs_fullstep"] = rel_err(got, ref_step)
            row["median_seconds"] = statistics.median(row["seconds"])
            row["median_cpu_seconds"] = statistics.median(row["cpu_seconds"])
            row["wall_ratios"] = [a / b for a, b in zip(row["seconds"], rows[0]["seconds"])]
            row["cpu_ratios"] = [a / b for a, b in zip(row["cpu_seconds"], rows[0]["cpu_seconds"])]
    result = {"setting": vars(args), "rows": rows}
    if args.save:
        with open(args.save, "w") as fh:
            json.dump(result, fh, indent=2)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print_table(args, rows)
    return 0


def print_table(args, rows) -> None:
    full = rows[0]
    print(
        f"LSTMCell({args.input} -> {args.hidden}), batch {args.batch}, T={args.length}, linear read-out to "
        f"{args.classes} classes with cross-entropy at every step; {args.device}, {args.threads} thread(s); "
        f"alpha = {full['alpha']:g}, read-out beta = {full['beta']:.3f}; one slot (h, c) = "
        f"{full['state_bytes'] / 1e6:.3f} MB; full BPTT stores {full['full_units']:g} slots = "
        f"{full['full_units'] * full['state_bytes'] / 1e6:.1f} MB"
    )
    print()
    floor = next((r for r in rows if r["method"] == "floor"), None)
    rec_full = full["peak_bytes"] - floor["peak_bytes"] if floor else None
    print(
        "| method | read-out | budget | forward steps / T | peak MB | vs full | recurrence's part MB (vs full) "
        "| time s (median, range) | vs full (median, range) | CPU time vs full (median, range) | "
        "grad rel. error |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        m, spec = row["method"], row["spec"]
        inside = m in ("fullstep", "ckptloss", "apiloss")
        where = "inside the steps" if inside else "outside, on the outputs"
        if m == "floor":
            print(
                f"| read-out only (no recurrence graph) | {where} | - | 1.000 | {row['peak_bytes'] / 1e6:.1f} | "
                f"{row['peak_bytes'] / full['peak_bytes']:.3f} | 0 | - | - | - | - |"
            )
            continue
        if m in ("full", "fullstep"):
            label, budget = "full BPTT", "all"
        elif m in ("ckpt", "ckptloss"):
            label = "torch.utils.checkpoint"
            budget = (
                f"S = {row['segments']} (sqrt T)"
                if spec == "sqrt"
                else f"S = {row['segments']} (least predicted memory)"
                if spec == "min"
                else f"S = {row['segments']} (fits {float(spec):.0%})"
                if row["fits"]
                else f"S = {row['segments']} (least memory; {float(spec):.0%} does not fit)"
            )
        else:
            label = "checkpointed_rnn (MSM)"
            budget = (
                f"{float(spec):.0%} = {row['plan_peak_slots']:.0f} slots "
                f"({row['plan_peak_slots'] * row['state_bytes'] / 1e6:.1f} MB)"
            )
        if inside or rec_full is None:
            rec_txt = "-"
        else:
            rec = row["peak_bytes"] - floor["peak_bytes"]
            rec_txt = f"{rec / 1e6:.1f} ({rec / rec_full:.3f})"
        secs, wr, cr = row["seconds"], row["wall_ratios"], row["cpu_ratios"]
        print(
            f"| {label} | {where} | {budget} | {row['forward_steps'] / args.length:.3f} | "
            f"{row['peak_bytes'] / 1e6:.1f} | {row['peak_bytes'] / full['peak_bytes']:.3f} | {rec_txt} | "
            f"{row['median_seconds']:.2f} ({min(secs):.2f}-{max(secs):.2f}) | "
            f"{statistics.median(wr):.2f} ({min(wr):.2f}-{max(wr):.2f}) | "
            f"{statistics.median(cr):.2f} ({min(cr):.2f}-{max(cr):.2f}) | {row['grad_rel_err']:.1e}"
            + (f" ({row['grad_rel_err_vs_fullstep']:.1e})" if "grad_rel_err_vs_fullstep" in row else "")
            + " |"
        )
    print()
    print(
        "peak memory: increase of one iteration (forward + backward) in a fresh process, "
        + ("torch.cuda.max_memory_allocated" if args.device.startswith("cuda") else "resident set (VmHWM)")
        + "; it includes the parameter gradients and, for the read-out outside, the outputs [T, B, H], their "
        "gradient and the logits, which every method of that family has (the read-out-only row: outputs "
        "computed without a graph); recurrence's part = peak - that row; time: "
        f"{args.rounds} iterations of each configuration, interleaved in one process; 'vs full': the median "
        "and range over the rounds of the time divided by full BPTT's in the same round; CPU time: the "
        "process's user + system time (less sensitive than wall time to other "
        "jobs on the machine); gradient error against full BPTT with the read-out outside (in brackets: against "
        "full BPTT with the loss inside the loop, the same operations in the same order)"
    )


def print_profile(args) -> None:
    """Profile one iteration of one configuration (in a fresh process) and print where the time goes."""
    with tempfile.TemporaryDirectory() as tmp:
        res = _child(args, args.profile, os.path.join(tmp, "p"), "profile", {})
    ops = res["ops"]
    print(
        f"{args.profile}: one iteration takes {res['wall_s']:.2f} s wall ({res['user_s']:.2f} s user, "
        f"{res['sys_s']:.2f} s system, {res['minor_faults']:,} minor page faults); under torch.profiler "
        f"{res['wall_s_profiled']:.2f} s (profiler overhead included), operators' self CPU time summing to "
        f"{res['sum_self_s']:.2f} s"
    )
    print()
    print("| operator | calls | self s | share of all operators' self time |")
    print("|---|---|---|---|")
    for r in ops[:25]:
        print(f"| {r['name']} | {r['count']} | {r['self_s']:.3f} | {r['self_s'] / res['sum_self_s']:.1%} |")


if __name__ == "__main__":
    run(main)
