"""Command line of the BPTT tab: `eval bptt` and `bptt-plan`. No torch at import time."""

from __future__ import annotations

import argparse
import json

from explorer.core.errors import UserError
from explorer.core.validate import POSITIVE, POSITIVE_INT, number

DEFAULT_ALPHA = 4.5  # nn.LSTMCell: internal state / hidden state bytes (measured by the executor)


def configure_train(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "The bptt tab has no model of its own: it plans and runs schedules on any recurrent core. "
        "To train a real model within a memory budget: nips-explorer train srnn --bptt-memory F."
    )


def train(args) -> int:
    raise UserError(
        "the bptt tab has no model to train; to train a recurrent model within a memory budget use "
        "`nips-explorer train srnn --bptt-memory F` (or checkpointed_rnn from explorer.papers.bptt)"
    )


def configure_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--core", choices=("lstm", "gru"), default="lstm", help="recurrent core (default lstm)")
    parser.add_argument("--length", type=POSITIVE_INT, default=1000, help="sequence length T (default 1000)")
    parser.add_argument("--hidden", type=POSITIVE_INT, default=256, help="hidden size (default 256)")
    parser.add_argument("--batch", type=POSITIVE_INT, default=16, help="batch size (default 16)")
    parser.add_argument(
        "--fractions",
        default="0.05,0.1,0.25",
        help="MSM budgets as fractions of full BPTT's memory (default 0.05,0.1,0.25); "
        "HSM storing every hidden state is added",
    )
    parser.add_argument("--no-checkpoint", action="store_true", help="skip the torch.utils.checkpoint baseline")
    parser.add_argument("--json", action="store_true", help="print JSON to stdout")


def evaluate(args) -> int:
    from explorer.core.devices import choose_device, configure_threads
    from explorer.core.progress import TerminalProgress

    from .evaluate import cost_table, evaluate_executor, format_report

    if args.length < 2 or args.length > 5000:
        raise UserError("--length must be between 2 and 5000")
    if args.hidden < 1 or args.batch < 1:
        raise UserError("--hidden and --batch must be positive")
    try:
        fractions = [float(x) for x in args.fractions.split(",") if x.strip()]
    except ValueError:
        raise UserError("--fractions must be comma-separated numbers, e.g. 0.05,0.1") from None
    if any(not 0 < f <= 1 for f in fractions):
        raise UserError("--fractions must lie in (0, 1]")
    configure_threads(for_gui=False)
    device = choose_device(getattr(args, "device", "auto"))
    budgets = [("msm", f) for f in fractions] + [("hsm", "all_hidden")]
    with TerminalProgress("bptt eval") as bar:
        res = evaluate_executor(
            args.core,
            args.length,
            args.hidden,
            args.batch,
            budgets=budgets,
            device=device,
            checkpoint=not args.no_checkpoint,
            progress=bar,
        )
    res["cost_table"] = cost_table(args.length, res["alpha"])
    if args.json:
        print(json.dumps(res, indent=2, default=str))
    else:
        print(format_report(res))
    return 0


# ------------------------------------------------------------------------------------------------ bptt-plan
def _configure_plan(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--length", "-T", type=POSITIVE_INT, required=True, help="sequence length T")
    parser.add_argument(
        "--memory",
        "-M",
        type=POSITIVE,
        required=True,
        help="memory budget in hidden-state units, the slot of h_0 included",
    )
    parser.add_argument(
        "--policy",
        choices=("hsm", "ism", "msm"),
        default="msm",
        help="hsm: store hidden states; ism: internal states; msm: mixed (default)",
    )
    parser.add_argument(
        "--alpha",
        type=number(float, 1),
        default=DEFAULT_ALPHA,
        help=f"size of an internal state in hidden-state units, >= 1 (default {DEFAULT_ALPHA:g}, nn.LSTMCell)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print {length, memory, policy, alpha, cost, peak_memory, schedule} as JSON"
    )


def _run_plan(args) -> int:
    from .planner import InfeasibleBudget, Planner, time_ratio
    from .schedule import ScheduleError, full_bptt_memory, validate

    if args.length < 1:
        raise UserError("--length must be at least 1")
    if not (args.alpha >= 1.0) or args.alpha != args.alpha or args.alpha == float("inf"):
        raise UserError("--alpha must be a number >= 1 (internal-state size in hidden-state units)")
    if not args.memory >= 1.0:
        raise UserError(
            f"a memory budget of {args.memory:g} is infeasible: at least 1 unit is needed for the slot holding h_0"
        )
    try:
        planner = Planner(
            args.length, args.policy, args.alpha, table_budget=args.memory if args.policy == "msm" else None
        )
        plan = planner.plan(args.memory)
        validate(plan.schedule, args.memory)
    except InfeasibleBudget as exc:
        raise UserError(str(exc)) from None
    except ScheduleError as exc:  # pragma: no cover - would be a planner bug
        raise UserError(f"internal error: the planned schedule is invalid: {exc}") from None
    if args.json:
        d = plan.to_json()
        sched = d.pop("schedule")
        head = json.dumps(d, indent=2)
        print(head[:-2] + ',\n  "schedule": ' + json.dumps(sched, separators=(",", ":")) + "\n}")
        return 0
    full = full_bptt_memory(args.length, args.alpha)
    print(
        f"{args.policy.upper()}  T={args.length}  budget {args.memory:g} units "
        f"({100 * args.memory / full:.1f}% of full BPTT's {full:g})  alpha={args.alpha:g}"
        + (f" (planned with {plan.alpha_used:g})" if plan.alpha_used != args.alpha else "")
    )
    print(
        f"cost Q = {plan.cost} forward steps = {plan.cost / args.length:.3f} T   "
        f"peak memory {plan.peak_memory:g} units   "
        f"time vs BPTT (backward = 2 forwards): {time_ratio(plan.cost, args.length):.3f}x"
    )
    acts = plan.schedule.actions()
    n = len(acts)
    show = acts if n <= 24 else acts[:16] + [["...", n - 22]] + acts[-6:]
    print(f"schedule ({n} actions): " + " ".join(f"{op}{k}" if op != "..." else f"...({k} more)..." for op, k in show))
    return 0


def commands():
    return [
        (
            "bptt-plan",
            "plan memory-efficient BPTT (Gruslys et al.): optimal schedule for a memory budget",
            _configure_plan,
            _run_plan,
        )
    ]
