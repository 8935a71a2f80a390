"""`nips-explorer train l2l ...` and `nips-explorer eval l2l ...` (torch is imported inside the functions)."""

from __future__ import annotations

import json

from explorer.core.errors import UserError
from explorer.core.validate import POSITIVE, POSITIVE_INT

TRAIN_PROBLEMS = ("quadratic", "mnist", "mnist-mix", "style")
EVAL_PROBLEM_NAMES = ("quadratic", "mnist", "mnist-40", "mnist-2layer", "mnist-relu", "mnist-200steps", "fashion")
STYLE_EVAL = ("style", "style-128", "style-newstyle")  # neural art (fair protocol only; not part of 'all')
EVAL_CHOICES = (*EVAL_PROBLEM_NAMES, *STYLE_EVAL, "transfer", "all")


def configure_train(parser) -> None:
    from explorer.core.training import add_training_options

    parser.add_argument(
        "--problem",
        choices=TRAIN_PROBLEMS,
        default="quadratic",
        help="meta-training problem: random 10-D quadratics, the MNIST MLP, mnist-mix: the MNIST MLP on 28x28 "
        "images in half the runs and on 14x14 / 7x7 average-pooled ones in the others (inputs of other sizes), or "
        "style: neural art on the pixels of 64x64 photos (BSDS500 train_ photos from $NIPS_EXPLORER_PHOTOS) "
        "(default quadratic)",
    )
    parser.add_argument(
        "--epochs",
        type=POSITIVE_INT,
        default=None,
        metavar="N",
        help="optimizee runs (episodes) to meta-train on in all; one run = 100 optimizee steps = 5 "
        "meta-steps (default 2000 quadratic, 400 mnist)",
    )
    parser.add_argument(
        "--steps",
        type=POSITIVE_INT,
        default=None,
        metavar="N",
        help="meta-steps (Adam steps of the LSTM, one per truncated unroll) in all; the run stops "
        "at --epochs or --steps, whichever comes first (default: no limit of its own)",
    )
    parser.add_argument(
        "--batch",
        type=POSITIVE_INT,
        default=None,
        metavar="N",
        help="optimizees per meta-step over all processes, split evenly among them: random "
        "quadratics (default 128) or MNIST MLPs (default 1)",
    )
    parser.add_argument("--meta-lr", type=POSITIVE, default=None, help="Adam learning rate of the LSTM's weights")
    parser.add_argument(
        "--unroll", type=POSITIVE_INT, default=None, help="truncation length of the unrolls (default 20)"
    )
    parser.add_argument(
        "--val-every", type=POSITIVE_INT, default=None, help="validate (and checkpoint the best) every N runs"
    )
    parser.add_argument(
        "--val-runs",
        type=POSITIVE_INT,
        default=None,
        help="optimizee runs per validation (default 128 quadratic, 3 mnist)",
    )
    parser.add_argument(
        "--select",
        choices=("avg", "final"),
        default=None,
        help="keep the weights with the best validation loss averaged over the steps (avg, the meta-training "
        "objective; the default of quadratic and mnist) or after the last step (final; the default of style)",
    )
    parser.add_argument(
        "--weighting",
        choices=("uniform", "ramp", "final"),
        default=None,
        help="meta-loss weight of each step: uniform (the paper's sum of the losses; default), ramp (2t/T, "
        "leaning to the late steps that a final-loss comparison reports) or final (the loss after the last step "
        "alone; use it with --unroll equal to the run's steps)",
    )
    parser.add_argument(
        "--init",
        default=None,
        metavar="CHECKPOINT",
        help="start from this l2l checkpoint's weights (fresh Adam, new optimizees) instead of "
        "from scratch; --resume continues an interrupted run instead",
    )
    parser.add_argument(
        "--horizon",
        type=POSITIVE_INT,
        default=None,
        metavar="T",
        help="optimizee steps per meta-training run (default 100, the runs it is measured on; validation stays at "
        "100): a longer horizon counters the short-horizon bias of truncated unrolls",
    )
    parser.add_argument(
        "--preprocess-p",
        type=POSITIVE,
        default=None,
        metavar="P",
        help="the gradient preprocessing's p (paper, Appendix A): gradients of magnitude at least e^-P enter as "
        "(log|g|/P, sign g), smaller ones as (-1, e^P g); default 10 (the paper's), 16 for style, whose pixel "
        "gradients fall to 1e-6 and below late in a run. With --init the first layer is rescaled so gradients "
        "above both thresholds give the same steps",
    )
    add_training_options(
        parser,
        steps=None,
        epochs=None,
        minutes=None,
        seed=0,
        out_help="checkpoint path (default models/l2l_<problem>.safetensors); its resume file is "
        "<out>.resume.safetensors",
    )


def train(args) -> int:
    from explorer.core.paths import training_output
    from explorer.core.training import init_world

    from .train import DEFAULT_TRAIN, train_problem

    out = args.out or str(training_output(f"l2l_{args.problem}.safetensors"))
    if not str(out).endswith(".safetensors"):
        raise UserError("--out must end in .safetensors")
    cfg = dict(DEFAULT_TRAIN[args.problem])
    for key, val in (
        ("epochs", args.epochs),
        ("meta_lr", args.meta_lr),
        ("unroll", args.unroll),
        ("val_every", args.val_every),
        ("val_runs", args.val_runs),
        ("batch", args.batch),
    ):
        if val is not None:
            if val <= 0:
                raise UserError(f"--{key.replace('_', '-')} must be positive")
            cfg[key] = val
    if getattr(args, "horizon", None):
        cfg["val_steps"], cfg["steps"] = cfg["steps"], int(args.horizon)
    cfg["select"] = args.select or cfg.get("select", "avg")
    cfg["weighting"] = args.weighting or cfg.get("weighting", "uniform")
    cfg["seed"] = int(args.seed)
    cfg["time_limit_s"] = 60.0 * float(args.minutes) if args.minutes else 0.0
    p = getattr(args, "preprocess_p", None)
    model_config = {"p": float(p)} if p else None  # default: the problem's (train.DEFAULT_P), else the paper's 10
    world = init_world(getattr(args, "device", "auto"), args.threads)
    try:
        hist = train_problem(
            args.problem,
            world.device,
            cfg,
            out,
            init=getattr(args, "init", None),
            model_config=model_config,
            world=world,
            resume=args.resume,
            minutes=args.minutes,
            steps=args.steps,
            checkpoint_every=args.checkpoint_every,
            log=print,
        )
        if world.is_main:
            best = hist.get("best") or {}
            print(
                json.dumps(
                    {
                        "checkpoint": str(out),
                        "resume_file": hist.get("resume_file"),
                        "epochs": hist["epochs_done"],
                        "steps": hist["steps"],
                        "stop": hist["stop"],
                        "processes": world.world_size,
                        "wall_s": hist["wall_s"],
                        "best": best,
                    },
                    indent=2,
                )
            )
    finally:
        world.close()
    return 0


def configure_eval(parser) -> None:
    parser.add_argument(
        "--problem",
        choices=EVAL_CHOICES,
        default="quadratic",
        help="evaluation problem (held-out seeds/images); 'all' runs every one; 'transfer': the learned optimizer "
        "as a plain torch.optim optimizer on small sigmoid MLPs over real data sets it never saw (Fashion-MNIST, "
        "digits, breast cancer, wine) against the baselines at their best rates (always the fair protocol); "
        "style, style-128, style-newstyle: neural art on held-out photos (fair protocol, with L-BFGS)",
    )
    parser.add_argument(
        "--protocol",
        choices=("legacy", "fair"),
        default="legacy",
        help="fair: every optimizer (baseline learning rates on a widened grid, the learned checkpoint among "
        "several --checkpoint) is selected on tuning problems (other seeds, other images) by the metric it is "
        "reported on, for final loss and averaged loss separately; legacy (default): the original comparison "
        "(rates tuned for final loss only, on the held-out images)",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        action="append",
        help="learned optimizer to use (default: the bundled one for the problem's family); with --protocol "
        "fair, repeat it to let the tuning problems choose among several",
    )
    parser.add_argument(
        "--runs",
        type=POSITIVE_INT,
        default=None,
        help="problems to average over (default 100 quadratics / 10 MNIST runs)",
    )
    parser.add_argument("--tune-runs", type=POSITIVE_INT, default=None, help="tuning problems per learning rate")
    parser.add_argument(
        "--save", action="store_true", help="store the results (and tuned rates) in the checkpoint's metrics"
    )
    parser.add_argument("--curves", default=None, help="also write the mean loss curves to this .json file")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def evaluate(args) -> int:
    from explorer.core.devices import choose_device, configure_threads
    from explorer.core.progress import TerminalProgress

    from .evaluate import evaluate_fair_problems, evaluate_problems, format_fair_table, format_table

    configure_threads(for_gui=False)
    device = choose_device(getattr(args, "device", "auto"))
    if args.runs is not None and args.runs <= 0:
        raise UserError("--runs must be positive")
    checkpoints = list(args.checkpoint or [])
    protocol = getattr(args, "protocol", "legacy")
    if protocol == "legacy" and len(checkpoints) > 1:
        raise UserError("several --checkpoint need --protocol fair (which chooses among them on tuning problems)")
    names = list(EVAL_PROBLEM_NAMES) if args.problem == "all" else [args.problem]
    if args.problem in STYLE_EVAL and protocol != "fair":
        raise UserError("the neural-art problems are evaluated with --protocol fair")
    if args.problem == "transfer":
        from .transfer import evaluate_transfer, format_transfer_table

        with TerminalProgress("eval transfer") as bar:
            results = evaluate_transfer(
                checkpoints=checkpoints or None, runs=args.runs or 10, tune_runs=args.tune_runs or 5, progress=bar
            )
        print(json.dumps(results, indent=2) if args.json else format_transfer_table(results))
        return 0
    with TerminalProgress(f"eval {args.problem}") as bar:
        if protocol == "fair":
            results = evaluate_fair_problems(
                names,
                device,
                checkpoints=checkpoints or None,
                runs=args.runs,
                tune_runs=args.tune_runs,
                save=args.save,
                curves_path=args.curves,
                progress=bar,
            )
        else:
            results = evaluate_problems(
                names,
                device,
                checkpoint=checkpoints[0] if checkpoints else None,
                runs=args.runs,
                tune_runs=args.tune_runs,
                save=args.save,
                curves_path=args.curves,
                progress=bar,
            )
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(format_fair_table(results) if protocol == "fair" else format_table(results))
    return 0


def commands():
    return []
