"""Command line of the conceptual compression tab (no torch at import time).

nips-explorer train compression [--dataset photos|fashion | --data DIR] [--minutes M] [--resume F] ...
torchrun --nproc_per_node N -m explorer train compression ...      (DDP; the global --batch is kept)
nips-explorer eval compression --images DIR [--checkpoint F] [--json]
nips-explorer compress IMAGE --iterations K --out FILE.png [--checkpoint F]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from explorer.core.errors import UserError
from explorer.core.validate import COUNT, POSITIVE, POSITIVE_INT, number

PAPER = "compression"


def _default_checkpoint() -> Path:
    from explorer.core.paths import bundled

    from . import SPEC

    return bundled(SPEC.default_checkpoint)


# ----- train ----------------------------------------------------------------------------------------------
def configure_train(parser: argparse.ArgumentParser) -> None:
    from explorer.core.training import add_training_options

    parser.add_argument(
        "--dataset",
        choices=("photos", "fashion"),
        default="photos",
        help="photos: random crops of Debian's photographic wallpapers (4 held out), or of the "
        "photos in --data; fashion: Fashion-MNIST (default photos)",
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        default=None,
        help="train the photo model on the images in this folder and its subfolders (PNG, JPEG, "
        "...: random crops); a fixed part of the files, chosen by a hash of their names, "
        "is held out for validation and listed in the checkpoint",
    )
    parser.add_argument(
        "--val-fraction",
        type=number(float, 0, 0.5, low_open=True),
        default=0.1,
        metavar="F",
        help="--data: share of the files held out for validation (default 0.1; at least one)",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="--data: leave out files whose name matches (e.g. 'test_*', to keep them for your "
        "own evaluation); repeatable",
    )
    parser.add_argument(
        "--short-side",
        type=COUNT,
        default=None,
        metavar="PX",
        help="photos are scaled down to this short side before cropping (default 400; 0 keeps them as they are)",
    )
    parser.add_argument(
        "--batch",
        type=POSITIVE_INT,
        default=None,
        help="minibatch size, all processes together (default: 8 photos, 12 fashion)",
    )
    parser.add_argument("--crop", type=POSITIVE_INT, default=None, help="training crop size in pixels (photos)")
    parser.add_argument("--hidden", type=POSITIVE_INT, default=None, help="conv-LSTM channels")
    parser.add_argument("--z-channels", type=POSITIVE_INT, default=None, help="latent channels per iteration")
    parser.add_argument("--iterations", type=POSITIVE_INT, default=None, help="DRAW iterations T")
    parser.add_argument("--lr", type=POSITIVE, default=2e-3, help="peak Adam learning rate (cosine decay)")
    parser.add_argument(
        "--init", metavar="CHECKPOINT", default=None, help="start from this checkpoint's weights (same architecture)"
    )
    add_training_options(
        parser,
        steps=100000,
        minutes=None,
        seed=0,
        out_help="where to save (default models/compression_<dataset>.safetensors)",
    )
    minutes = parser._option_string_actions["--minutes"]
    minutes.help = (
        "wall-clock budget in minutes; the run stops after the current step, saves a resume file and "
        "its checkpoint (default: the preset's, 25 for photos, 7 for fashion)"
    )
    parser._option_string_actions[
        "--steps"
    ].help = (
        "upper bound on optimiser steps, resumed ones included (default 100000: the time budget usually ends the run)"
    )


def train(args) -> int:
    from explorer.core.checkpoints import load_model
    from explorer.core.paths import training_output
    from explorer.core.training import Run, init_world, seed_all

    from .model import build
    from .train import PRESETS, TrainConfig, fit, make_data

    preset = PRESETS[args.dataset]
    if args.data is not None and args.dataset != "photos":
        raise UserError("--data is a folder of photos for the colour model; leave out --dataset fashion")
    if args.data is None and (args.exclude or args.val_fraction != 0.1):
        raise UserError("--exclude and --val-fraction go with --data DIR")
    mcfg = dict(preset["model"])
    for key, val in (("hidden", args.hidden), ("z_channels", args.z_channels), ("iterations", args.iterations)):
        if val is not None:
            mcfg[key] = val
    tcfg = dict(preset["train"])
    if args.batch is not None:
        tcfg["batch"] = args.batch
    if args.crop is not None:
        if args.crop % mcfg["stride"]:
            raise UserError(f"--crop must be a multiple of {mcfg['stride']}")
        tcfg["crop"] = args.crop
    minutes = args.minutes if args.minutes is not None else tcfg["time_limit_s"] / 60.0
    out = Path(args.out) if args.out else training_output(preset["file"])

    world = init_world(getattr(args, "device", "auto"), args.threads)
    try:

        def log(msg: str) -> None:
            if world.is_main:
                print(msg, file=sys.stderr, flush=True)

        world.split_batch(tcfg["batch"])  # refuse an uneven split before loading anything
        data = make_data(
            args.dataset,
            tcfg["crop"],
            seed=args.seed,
            folder=args.data,
            val_fraction=args.val_fraction,
            exclude=args.exclude,
            short_side=args.short_side,
            rank=world.rank,
            world_size=world.world_size,
            log=log,
        )
        if args.data is not None:
            d = data.description
            log(
                f"{d['folder']}: {d['train_files']} photos to train on, {d['holdout_files']} held out"
                + (f", {d['excluded']['files']} excluded" if d["excluded"]["files"] else "")
                + (f", {len(d['unreadable'])} unreadable (skipped)" if d["unreadable"] else "")
            )
        seed_all(args.seed)  # identical initial weights on every rank
        if args.init:
            model, _ = load_model(args.init, PAPER, build, world.device)
            mcfg = model.config()
        else:
            model = build(mcfg)
        cfg = TrainConfig(
            steps=args.steps, time_limit_s=minutes * 60.0, batch=tcfg["batch"], lr=args.lr, seed=args.seed
        )
        argv = sys.argv[1:]
        tail = argv[argv.index(PAPER) + 1 :] if PAPER in argv else ["--dataset", args.dataset]
        command = "nips-explorer train compression " + " ".join(tail)
        what = "photos from " + Path(args.data).name if args.data else args.dataset
        run = Run(
            world,
            paper=PAPER,
            out=out,
            minutes=minutes,
            steps=args.steps,
            checkpoint_every_min=args.checkpoint_every,
            log=log,
            progress_desc=f"train compression ({what})",
            seed=args.seed,
        )
        options = {
            "model": dict(model.config()),
            "dataset": args.dataset,
            "data": args.data,
            "val_fraction": args.val_fraction if args.data else None,
            "exclude": list(args.exclude),
            "short_side": args.short_side,
            "batch": tcfg["batch"],
            "crop": tcfg["crop"],
            "lr": args.lr,
        }

        def save(m, info):
            metrics = {"headline": "val_bits_per_dim", **info}
            run.save_model(
                out,
                m.state_dict(),
                model_config=m.config(),
                metrics=metrics,
                data={**data.description, "dataset": args.dataset},
                extra={
                    "train_command": command,
                    "train_config": {
                        **cfg.__dict__,
                        "crop": tcfg["crop"],
                        "minutes": minutes,
                        "world_size": world.world_size,
                    },
                },
            )

        result = fit(model, data, world.device, cfg, on_checkpoint=save, run=run, resume=args.resume, options=options)
        f = result["final"]
        if world.is_main:
            print(
                f"saved {out}: {f['steps']} steps in {f['train_wall_s']:.0f} s, held-out "
                f"{f['val_bits_per_dim']:.3f} bits/dim, KL {f['val_kl_bpp_total']:.3f} bpp over "
                f"{mcfg['iterations']} iterations",
                file=sys.stderr,
            )
    finally:
        world.close()
    return 0


# ----- eval -----------------------------------------------------------------------------------------------
def configure_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--images",
        metavar="DIR",
        default=None,
        help="folder of PNG/JPEG images (default: the bundled held-out samples: 4 photo crops, "
        "or 2 Fashion-MNIST test mosaics for a grey model)",
    )
    parser.add_argument("--checkpoint", metavar="FILE", default=None, help="default: the bundled photo model")
    parser.add_argument(
        "--max-side",
        type=number(int, 16, 16384),
        default=768,
        help="images larger than this are scaled down first (default 768)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON to stdout")


def evaluate(args) -> int:
    from explorer.core.devices import choose_device, configure_threads
    from explorer.core.paths import resources_dir
    from explorer.core.progress import TerminalProgress

    from .evaluate import evaluate_folder, format_table
    from .infer import load

    configure_threads(for_gui=False)
    device = choose_device(getattr(args, "device", "auto"))
    ckpt = Path(args.checkpoint) if args.checkpoint else _default_checkpoint()
    model, meta = load(ckpt, device)
    folder = Path(args.images) if args.images else resources_dir() / "compression"
    if not args.images and model.in_channels == 1:
        folder = folder / "fashion"  # the Fashion-MNIST model: its held-out test mosaics
    with TerminalProgress("eval compression") as bar:
        result = evaluate_folder(model, folder, device, max_side=args.max_side, progress=bar)
    result = {"checkpoint": str(ckpt), **result}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result))
    return 0 if result["images"] else 2


# ----- compress -------------------------------------------------------------------------------------------
def _configure_compress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="a PNG or JPEG image (RGB or grey)")
    parser.add_argument(
        "--iterations", "-k", type=POSITIVE_INT, required=True, help="send the latents of the first K iterations (1..T)"
    )
    parser.add_argument("--out", required=True, metavar="FILE.png", help="where to write the reconstruction")
    parser.add_argument("--checkpoint", metavar="FILE", default=None, help="default: the bundled photo model")
    parser.add_argument("--max-side", type=number(int, 16, 16384), default=1024, help="scale larger images down first")
    parser.add_argument("--json", action="store_true", help="print JSON to stdout")


def _run_compress(args) -> int:
    from explorer.core.devices import choose_device, configure_threads

    from .infer import compress_file, load

    configure_threads(for_gui=False)
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UserError(f"{out.name}: --out must be a .png file (lossless, so the reconstruction is what you see)")
    device = choose_device(getattr(args, "device", "auto"))
    ckpt = Path(args.checkpoint) if args.checkpoint else _default_checkpoint()
    model, _ = load(ckpt, device)
    res = compress_file(model, args.image, args.iterations, out, device, max_side=args.max_side)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        note = f" ({res['note']})" if res.get("note") else ""
        print(
            f"{out}: k={res['k']} of {res['iterations']} iterations, {res['bpp']:.4f} bpp "
            f"(ideal code length, {res['bytes']:.0f} bytes), PSNR {res['psnr']:.2f} dB, "
            f"SSIM {res['ssim']:.4f}{note}"
        )
    return 0


def commands():
    return [
        (
            "compress",
            "conceptual compression of one image with conv DRAW (writes the reconstruction)",
            _configure_compress,
            _run_compress,
        )
    ]
