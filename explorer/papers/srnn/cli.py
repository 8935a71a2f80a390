"""`nips-explorer train srnn ...` and `nips-explorer eval srnn ...`. Imported at startup: no torch at top level."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from explorer.core.validate import COUNT, FRACTION, NON_NEGATIVE, POSITIVE, POSITIVE_INT, SEED, THREADS, number

DATASETS = ("jsb", "nottingham", "muse", "piano")


def default_checkpoint_name(dataset: str, model: str = "srnn", inference: str = "smooth", resq: bool = True) -> str:
    if model == "gru":
        return f"srnn_{dataset}_gru.safetensors"
    return f"srnn_{dataset}_{inference}{'_resq' if resq else ''}.safetensors"


def configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=DATASETS, default="jsb", help="music benchmark (default jsb)")
    parser.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="folder with the authors' <dataset>_raw_batchsize16_seqlen100.npz files",
    )
    parser.add_argument(
        "--model",
        choices=("srnn", "gru"),
        default="srnn",
        help="srnn (default) or the plain GRU baseline (the paper's 'RNN' row)",
    )
    parser.add_argument(
        "--inference",
        choices=("smooth", "filter"),
        default="smooth",
        help="inference network: backward GRU (smooth, default) or MLP without look-ahead (filter)",
    )
    parser.add_argument(
        "--resq",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="residual posterior mean mu_q = mu_p + NN (default on)",
    )
    parser.add_argument("--d-dim", type=POSITIVE_INT, default=300, help="deterministic GRU size (paper 300)")
    parser.add_argument("--z-dim", type=POSITIVE_INT, default=100, help="latent size (paper 100)")
    parser.add_argument("--a-dim", type=POSITIVE_INT, default=300, help="inference GRU/MLP size (paper 300)")
    parser.add_argument("--hidden", type=POSITIVE_INT, default=500, help="MLP width (paper 500)")
    parser.add_argument("--lr", type=POSITIVE, default=1e-3, help="Adam learning rate (paper 1e-3)")
    parser.add_argument(
        "--kl-epochs",
        type=NON_NEGATIVE,
        default=None,
        help="epochs of linear KL annealing from 0.2 to 1 (default 40%% of --epochs, as 20/50 in the authors' code)",
    )
    parser.add_argument(
        "--constant-epochs",
        type=NON_NEGATIVE,
        default=None,
        help="epochs at the initial learning rate before the exponential decay (default 40%%)",
    )
    parser.add_argument("--kl-start", type=FRACTION, default=0.2, help="initial KL weight of the annealing (paper 0.2)")
    parser.add_argument(
        "--init",
        default=None,
        metavar="CKPT",
        help="start from the weights of this checkpoint (same model options), e.g. to train longer",
    )
    parser.add_argument(
        "--lr-decay",
        type=number(float, 1),
        default=1.2,
        help="learning-rate divisor per epoch after the constant phase (paper code 1.2)",
    )
    parser.add_argument(
        "--iwae-samples",
        type=COUNT,
        default=32,
        help="importance samples for the final test evaluation (0: skip the test evaluation)",
    )
    parser.add_argument(
        "--bptt-memory",
        type=number(float, 0, 1, low_open=True),
        default=None,
        metavar="F",
        help="train the GRUs by memory-efficient BPTT (Gruslys et al.) storing at most this fraction "
        "of full BPTT's activations, e.g. 0.1; same gradients, slower (default: plain BPTT)",
    )
    from explorer.core.training import add_training_options

    add_training_options(
        parser,
        epochs=50,
        seed=123,
        out_help="checkpoint to write (default models/srnn_<dataset>_<variant>.safetensors); the "
        "resume file goes beside it",
    )


def _setup(args):
    import torch

    from explorer.core.devices import choose_device, configure_threads

    if getattr(args, "threads", None):
        torch.set_num_threads(max(1, args.threads))
    else:
        configure_threads(for_gui=False)
    return choose_device(getattr(args, "device", "auto"))


def train(args) -> int:
    from explorer.core.paths import training_output
    from explorer.core.training import init_world, seed_all

    from . import data as data_mod
    from .evaluate import evaluate_test
    from .model import build, count_parameters, make_config
    from .train import fit, train_config

    world = init_world(getattr(args, "device", "auto"), args.threads)
    try:
        say = (lambda s: print(s, file=sys.stderr, flush=True)) if world.is_main else (lambda s: None)
        data = data_mod.load(args.data, args.dataset)
        cfg = make_config(
            kind=args.model,
            inference=args.inference,
            resq=bool(args.resq),
            d_dim=args.d_dim,
            z_dim=args.z_dim,
            a_dim=args.a_dim,
            hidden=args.hidden,
        )
        seed_all(args.seed)
        model = build(cfg)
        if args.init:
            from explorer.core.errors import UserError

            from .infer import load_model_file

            init, init_meta = load_model_file(args.init, "cpu")
            if init.config != model.config:
                raise UserError(
                    f"--init {args.init}: its model options differ from this run's ({init.config} vs {model.config})"
                )
            model.load_state_dict(init.state_dict())
            say(f"starting from the weights of {init_meta.name}")
        out = (
            Path(args.out)
            if args.out
            else training_output(default_checkpoint_name(args.dataset, args.model, args.inference, bool(args.resq)))
        )
        tcfg = train_config(
            epochs=args.epochs,
            lr=args.lr,
            seed=args.seed,
            lr_decay=args.lr_decay,
            bptt_memory=args.bptt_memory,
            kl_start=args.kl_start,
            kl_frac=None if args.kl_epochs is None else args.kl_epochs / max(1, args.epochs),
            no_decay_frac=None if args.constant_epochs is None else args.constant_epochs / max(1, args.epochs),
        )
        say(
            f"training {args.model} on {data.title}: {count_parameters(model):,} parameters, {tcfg['epochs']} "
            f"epochs, {world.describe()}, out {out}"
        )
        info = data.describe()
        info.pop("source", None)
        summary = fit(
            model,
            data,
            world.device,
            tcfg,
            out_path=out,
            log=say,
            data_info=info,
            resume=args.resume,
            world=world,
            minutes=args.minutes,
            checkpoint_every_min=args.checkpoint_every,
        )
        world.close()  # training is over for every process; rank 0 evaluates alone
        if not world.is_main:
            return 0
        say(
            f"{summary['stop']}: {summary['epochs_run']} epochs in {summary['wall_s']:.0f} s; best valid ELBO/step "
            f"{summary['best_valid_elbo_per_step']:.4f}"
        )
        if not summary["stopped_early"] and args.iwae_samples > 0 and out.exists():
            from explorer.core.checkpoints import update_metrics
            from explorer.core.progress import TerminalProgress

            from .infer import load_model_file

            best, _ = load_model_file(out, world.device)
            with TerminalProgress("test") as bar:
                res = evaluate_test(best, data, world.device, samples=args.iwae_samples, progress=bar)
            update_metrics(out, _metrics_from(res, summary))
            print(json.dumps(res, indent=2))
        return 0
    finally:
        world.close()


def _metrics_from(res, summary=None):
    m = {"headline": "test_elbo_per_step"}
    for k in (
        "test_elbo_per_step",
        "test_iwae_per_step",
        "iwae_samples",
        "test_kl_per_step",
        "test_elbo_per_step_pooled",
        "test_iwae_per_step_pooled",
        "paper_per_step",
        "steps",
        "sequences",
    ):
        m[k] = res[k]
    for k in ("test_predictive_per_step", "predictive_particles"):
        if k in res:
            m[k] = res[k]
    if summary is not None:
        m["train_wall_s"] = summary["wall_s"]
        m["epochs_run"] = summary["epochs_run"]
    return m


def configure_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=DATASETS, default="jsb")
    parser.add_argument("--data", required=True, metavar="DIR", help="folder with the authors' npz files")
    parser.add_argument(
        "--checkpoint", default=None, help="checkpoint file (default: the bundled SRNN smooth+Resq model of --dataset)"
    )
    parser.add_argument("--samples", type=POSITIVE_INT, default=32, help="importance samples K for the IWAE bound")
    parser.add_argument("--seed", type=SEED, default=0)
    parser.add_argument("--threads", type=THREADS, default=None, help="torch CPU threads")
    parser.add_argument(
        "--particles",
        type=COUNT,
        default=0,
        metavar="K",
        help="also the one-step predictive log p(x_t | x_<t) per step by a particle filter with K "
        "particles (exact for the GRU; 0: skip, the default)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--record", action="store_true", help="write the numbers into the checkpoint's metrics")


def evaluate(args) -> int:
    from explorer.core.errors import UserError
    from explorer.core.paths import models_dir
    from explorer.core.progress import TerminalProgress

    from . import data as data_mod
    from .evaluate import evaluate_test
    from .infer import load_model_file

    if args.samples < 0:
        raise UserError("--samples must be 0 or more")
    device = _setup(args)
    ckpt = Path(args.checkpoint) if args.checkpoint else models_dir() / default_checkpoint_name(args.dataset)
    if not ckpt.exists():
        raise UserError(
            f"{ckpt}: no such checkpoint (train one with `nips-explorer train srnn --dataset "
            f"{args.dataset} --data DIR`, or pass --checkpoint)"
        )
    model, meta = load_model_file(ckpt, device)
    trained_on = (meta.data or {}).get("name")
    data = data_mod.load(args.data, args.dataset)
    with TerminalProgress(f"eval {args.dataset}") as bar:
        res = evaluate_test(model, data, device, samples=args.samples, seed=args.seed, progress=bar)
    if args.particles:
        from .evaluate import predictive_test

        with TerminalProgress(f"one-step predictive, {args.particles} particles") as bar:
            res.update(predictive_test(model, data, device, particles=args.particles, seed=args.seed, progress=bar))
    res["checkpoint"] = ckpt.name
    if trained_on and trained_on != args.dataset:
        res["warning"] = f"the checkpoint was trained on '{trained_on}', evaluated on '{args.dataset}'"
    if args.record:
        from explorer.core.checkpoints import update_metrics

        update_metrics(ckpt, _metrics_from(res))
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{res['model']} on {data.title} test ({res['sequences']} pieces, {res['steps']} steps):")
        print(f"  ELBO per step       {res['test_elbo_per_step']:.4f}")
        if res["iwae_samples"]:
            print(f"  IWAE ({res['iwae_samples']}) per step   {res['test_iwae_per_step']:.4f}")
        if "test_predictive_per_step" in res:
            print(
                f"  one-step predictive {res['test_predictive_per_step']:.4f} "
                f"({res['predictive_particles'] or 'exact'} particles)"
            )
        print(f"  paper ({res['paper_row']}): {res['paper_per_step']}")
    return 0


def commands():
    return []


def main(argv=None) -> int:
    """Stand-alone entry (``python -m explorer.papers.srnn.cli train|eval ...``), same options as the shell's."""
    from explorer.core.errors import UserError

    parser = argparse.ArgumentParser(prog="python -m explorer.papers.srnn.cli")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, conf in (("train", configure_train), ("eval", configure_eval)):
        p = sub.add_parser(name)
        if name == "eval":  # train has --device among the shared training options
            p.add_argument("--device", default="auto")
        p.add_argument("--debug", action="store_true")
        conf(p)
    args = parser.parse_args(argv)
    try:
        return train(args) if args.cmd == "train" else evaluate(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
