"""`nips-explorer train l2l ...` and `nips-explorer eval l2l ...` (torch is imported inside the functions)."""
from __future__ import annotations

import json

from explorer.core.errors import UserError
from explorer.core.validate import POSITIVE, POSITIVE_INT, SEED

TRAIN_PROBLEMS = ("quadratic", "mnist")
EVAL_CHOICES = ("quadratic", "mnist", "mnist-40", "mnist-2layer", "mnist-relu", "mnist-200steps", "fashion", "all")


def configure_train(parser) -> None:
    parser.add_argument("--problem", choices=TRAIN_PROBLEMS, default="quadratic",
                        help="meta-training problem: random 10-D quadratics or the MNIST MLP (default quadratic)")
    parser.add_argument("--epochs", type=POSITIVE_INT, default=None, help="optimizee runs to meta-train on (one run = 100 steps)")
    parser.add_argument("--time-limit", type=POSITIVE, default=None,
                        help="stop after this many seconds (default: no limit); the best weights so far are kept")
    parser.add_argument("--meta-lr", type=POSITIVE, default=None, help="Adam learning rate of the LSTM's weights")
    parser.add_argument("--unroll", type=POSITIVE_INT, default=None, help="truncation length of the unrolls (default 20)")
    parser.add_argument("--val-every", type=POSITIVE_INT, default=None, help="validate (and checkpoint the best) every N runs")
    parser.add_argument("--seed", type=SEED, default=0)
    parser.add_argument("--out", default=None, help="checkpoint path (default models/l2l_<problem>.safetensors)")
    parser.add_argument("--init", default=None, metavar="CHECKPOINT",
                        help="continue meta-training from this l2l checkpoint's weights instead of from scratch")


def train(args) -> int:
    from explorer.core.devices import choose_device, configure_threads
    from explorer.core.paths import training_output
    from explorer.core.progress import TerminalProgress

    from .train import DEFAULT_TRAIN, train_problem

    configure_threads(for_gui=False)
    device = choose_device(getattr(args, "device", "auto"))
    cfg = dict(DEFAULT_TRAIN[args.problem])
    for key, val in (("epochs", args.epochs), ("meta_lr", args.meta_lr), ("unroll", args.unroll),
                     ("val_every", args.val_every)):
        if val is not None:
            if val <= 0:
                raise UserError(f"--{key.replace('_', '-')} must be positive")
            cfg[key] = val
    cfg["time_limit_s"] = float(args.time_limit or 0.0)   # 0: no limit (the argument itself must be > 0)
    cfg["seed"] = int(args.seed)
    out = args.out or str(training_output(f"l2l_{args.problem}.safetensors"))
    if not str(out).endswith(".safetensors"):
        raise UserError("--out must end in .safetensors")
    with TerminalProgress(f"meta-train {args.problem}") as bar:
        hist = train_problem(args.problem, device, cfg, out, progress=bar, init=getattr(args, "init", None))
    best = hist.get("best") or {}
    print(json.dumps({"checkpoint": str(out), "epochs": hist["epochs_done"], "wall_s": hist["wall_s"],
                      "best": best}, indent=2))
    return 0


def configure_eval(parser) -> None:
    parser.add_argument("--problem", choices=EVAL_CHOICES, default="quadratic",
                        help="evaluation problem (held-out seeds/images); 'all' runs every one")
    parser.add_argument("--checkpoint", default=None,
                        help="learned optimizer to use (default: the bundled one for the problem's family)")
    parser.add_argument("--runs", type=POSITIVE_INT, default=None,
                        help="problems to average over (default 100 quadratics / 10 MNIST runs)")
    parser.add_argument("--tune-runs", type=POSITIVE_INT, default=None, help="tuning problems per learning rate")
    parser.add_argument("--save", action="store_true",
                        help="store the results (and tuned rates) in the checkpoint's metrics")
    parser.add_argument("--curves", default=None, help="also write the mean loss curves to this .json file")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def evaluate(args) -> int:
    from explorer.core.devices import choose_device, configure_threads
    from explorer.core.progress import TerminalProgress

    from .evaluate import evaluate_problems, format_table

    configure_threads(for_gui=False)
    device = choose_device(getattr(args, "device", "auto"))
    if args.runs is not None and args.runs <= 0:
        raise UserError("--runs must be positive")
    names = list(EVAL_CHOICES[:-1]) if args.problem == "all" else [args.problem]
    with TerminalProgress(f"eval {args.problem}") as bar:
        results = evaluate_problems(names, device, checkpoint=args.checkpoint, runs=args.runs,
                                    tune_runs=args.tune_runs, save=args.save, curves_path=args.curves,
                                    progress=bar)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(format_table(results))
    return 0


def commands():
    return []
