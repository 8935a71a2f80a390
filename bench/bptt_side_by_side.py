"""Full BPTT vs torch.utils.checkpoint vs checkpointed_rnn on one training iteration of an LSTM.

    python bench/bptt_side_by_side.py [--length 1000] [--hidden 512] [--batch 32] [--input 64] [--classes 64]
                                      [--fractions 0.05,0.1,0.25] [--repeats 3] [--threads 1] [--device cpu]

The task: nn.LSTMCell(input -> hidden) over T steps, a linear read-out at every step and cross-entropy against
random classes (one iteration = forward + backward, no optimizer step). Every method produces the same
``outputs [T, B, H]`` and applies the same read-out to it:

* full BPTT: the Python loop under autograd;
* torch.utils.checkpoint (non-reentrant, RNG not preserved) over S uniform segments, with S = round(sqrt(T))
  (Chen et al.'s rule) and, for each budget, the fewest segments whose predicted peak (S stored states + one
  segment's activations) fits the budget;
* checkpointed_rnn (MSM) at each budget, as a fraction of full BPTT's stored memory;
* a floor: the outputs computed without any graph, then the same read-out and loss (what every method pays
  outside the recurrence); "recurrence's part" is a method's peak minus this floor.

Each configuration runs in two fresh processes. Memory (first process, after one warm-up iteration) is the
peak increase of one iteration: resident memory (VmHWM reset through /proc/self/clear_refs, glibc's mmap
threshold fixed at 16 KiB so that freed tensors leave the resident set) on CPU, torch.cuda.max_memory_allocated
on CUDA. It includes everything the iteration allocates: the outputs, their gradient, the read-out's logits,
the parameter gradients, not only what the recurrence stores. Time (second process, normal allocator) is the
median of --repeats iterations after a warm-up; the gradient error is ||g - g_full|| / ||g_full|| over all
parameters (LSTM and read-out).
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def fewest_segments(budget_slots: float, length: int, alpha: float) -> int:
    """The fewest uniform segments whose predicted peak fits the budget (slots): S stored segment inputs, one
    segment's internal states (consecutive steps share their hidden states: alpha - 1 each) and the step being
    backpropagated; the smallest-memory count when none fits. (Uniform checkpointing recomputes every step once
    whatever S is, so fewer segments only means fewer stored states.)"""
    for S in range(1, length + 1):
        if predicted_segments_memory(S, length, alpha) <= budget_slots:
            return S
    return min(range(1, length + 1), key=lambda S: predicted_segments_memory(S, length, alpha))


def predicted_segments_memory(S: int, length: int, alpha: float) -> float:
    return S + math.ceil(length / S) * max(alpha - 1.0, 1.0) + alpha


def worker(args) -> dict:
    import torch
    from torch import nn
    from torch.utils.checkpoint import checkpoint

    from explorer.papers.bptt.api import checkpointed_rnn, memory_probe, plan_for
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
    method, spec = args.worker.split(":")
    info = {}

    # alpha (internal-state size in slots) as checkpointed_rnn measures it, on two steps
    with memory_probe() as rec:
        o, _ = checkpointed_rnn(cell, x[:2], h0, memory=1)
    alpha = rec[0].alpha
    state_bytes = rec[0].state_bytes
    del o, rec
    full_units = full_bptt_memory(T, alpha)

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

    def rnn_floor():
        """The outputs without any graph: what the read-out and loss cost on top of any recurrence."""
        with torch.no_grad():
            out = rnn_full()
        return out.requires_grad_(True)

    if method == "full":
        rnn = rnn_full
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
        out = rnn()
        loss = nn.functional.cross_entropy(readout(out).flatten(0, 1), y.flatten())
        del out
        loss.backward()
        return float(loss.detach())

    if args.mode == "time":
        iteration()                                  # warm-up
        times = []
        for _ in range(args.repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            iteration()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return {"seconds": times}

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
    torch.save([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().cpu().clone() for p in params],
               args.out + ".pt")
    return {"method": method, "spec": spec, "peak_bytes": int(peak), "forward_steps": steps, "loss": loss,
            "alpha": alpha, "state_bytes": state_bytes, "full_units": full_units, **info}


# --------------------------------------------------------------------------------------------- parent
def run_config(args, name: str, tmp: str) -> dict:
    out = os.path.join(tmp, name.replace(":", "_"))
    res = _child(args, name, out, "memory",
                 # a fixed mmap threshold: every tensor above 16 KiB is mapped and unmapped, so resident memory
                 # follows the live tensors (glibc would otherwise keep freed blocks in its heaps)
                 {"MALLOC_MMAP_THRESHOLD_": "16384", "MALLOC_TRIM_THRESHOLD_": "65536"})
    res.update(_child(args, name, out, "time", {}))
    res["grads_file"] = out + ".pt"
    return res


def _child(args, name: str, out: str, mode: str, extra_env: dict) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--out", out, "--mode", mode,
           "--length", str(args.length), "--hidden", str(args.hidden), "--batch", str(args.batch),
           "--input", str(args.input), "--classes", str(args.classes), "--repeats", str(args.repeats),
           "--threads", str(args.threads), "--device", args.device]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra_env)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{name} ({mode}) failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--length", type=int, default=1000)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--input", type=int, default=64)
    ap.add_argument("--classes", type=int, default=64)
    ap.add_argument("--fractions", default="0.05,0.1,0.25")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=("memory", "time"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    import torch

    fracs = [float(f) for f in args.fractions.split(",") if f.strip()]
    names = (["full:-", "floor:-", "ckpt:sqrt"] + [f"ckpt:{f:g}" for f in sorted(fracs, reverse=True)]
             + [f"api:{f:g}" for f in sorted(fracs, reverse=True)])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            print(f"... {name}", file=sys.stderr, flush=True)
            rows.append(run_config(args, name, tmp))
        ref = torch.load(rows[0]["grads_file"])
        den = math.sqrt(sum(float(r.double().norm() ** 2) for r in ref))
        for row in rows:
            got = torch.load(row["grads_file"])
            if row["method"] == "floor":
                row["grad_rel_err"] = None
                continue
            row["grad_rel_err"] = math.sqrt(sum(float((a.double() - b.double()).norm() ** 2)
                                                for a, b in zip(got, ref))) / den
            row["median_seconds"] = statistics.median(row["seconds"]) if row["seconds"] else float("nan")
            del row["grads_file"]
    full = rows[0]
    if args.json:
        print(json.dumps({"setting": vars(args), "rows": rows}, indent=2))
        return
    r0 = rows[0]
    print(f"LSTMCell({args.input} -> {args.hidden}), batch {args.batch}, T={args.length}, linear read-out to "
          f"{args.classes} classes with cross-entropy at every step; {args.device}, {args.threads} thread(s); "
          f"alpha = {r0['alpha']:g}; one slot (h, c) = {r0['state_bytes'] / 1e6:.3f} MB; full BPTT stores "
          f"{r0['full_units']:g} slots = {r0['full_units'] * r0['state_bytes'] / 1e6:.1f} MB")
    print()
    floor = next(r for r in rows if r["method"] == "floor")
    rec_full = full["peak_bytes"] - floor["peak_bytes"]
    print("| method | budget | forward steps / T | peak memory (MB) | vs full | recurrence's part (MB) | vs full "
          "| time (s) | vs full | grad rel. error |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        m, spec = row["method"], row["spec"]
        if m == "floor":
            print(f"| read-out only (no recurrence graph) | - | 1.000 | {row['peak_bytes'] / 1e6:.1f} | "
                  f"{row['peak_bytes'] / full['peak_bytes']:.3f} | 0 | 0 | - | - | - |")
            continue
        if m == "full":
            label, budget = "full BPTT", "all"
        elif m == "ckpt":
            label = "torch.utils.checkpoint"
            budget = (f"S = {row['segments']} (sqrt T)" if spec == "sqrt"
                      else f"S = {row['segments']} (fits {float(spec):.0%})" if row["fits"]
                      else f"S = {row['segments']} (least memory; {float(spec):.0%} does not fit)")
        else:
            label = "checkpointed_rnn (MSM)"
            budget = (f"{float(spec):.0%} = {row['plan_peak_slots']:.0f} slots "
                      f"({row['plan_peak_slots'] * row['state_bytes'] / 1e6:.1f} MB)")
        rec = row["peak_bytes"] - floor["peak_bytes"]
        print(f"| {label} | {budget} | {row['forward_steps'] / args.length:.3f} | {row['peak_bytes'] / 1e6:.1f} | "
              f"{row['peak_bytes'] / full['peak_bytes']:.3f} | {rec / 1e6:.1f} | {rec / rec_full:.3f} | "
              f"{row['median_seconds']:.2f} | "
              f"{row['median_seconds'] / full['median_seconds']:.2f} | {row['grad_rel_err']:.1e} |")
    print()
    print("peak memory: increase of one iteration (forward + backward) in a fresh process, "
          + ("torch.cuda.max_memory_allocated" if args.device.startswith("cuda") else "resident set (VmHWM)")
          + "; it includes the outputs [T, B, H], their gradient and the read-out, which every method has "
          "(the read-out-only row: outputs computed without a graph); recurrence's part = peak - that row; "
          f"time: median of {args.repeats} iterations")


if __name__ == "__main__":
    main()
