"""Command line of the conceptual compression tab (no torch at import time).

nips-explorer train compression [--dataset photos|fashion | --data DIR] [--minutes M] [--resume F] ...
torchrun --nproc_per_node N -m explorer train compression ...      (DDP; the global --batch is kept)
nips-explorer eval compression --images DIR [--checkpoint F] [--json]
nips-explorer compress IMAGE (--bpp B | --iterations K) --out FILE.cdraw [--model F] [--preview P.png]
nips-explorer decompress FILE.cdraw --out IMAGE.png [--model F]
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
    parser.add_argument(
        "--stride",
        type=int,
        choices=(2, 4, 8),
        default=None,
        help="the latents' grid is this many times coarser than the image (default 4 photos, 2 fashion)",
    )
    parser.add_argument(
        "--io-channels",
        type=number(int, 0, 512),
        default=None,
        metavar="C",
        help="read and write through small convolutional pyramids with C channels (stride-2 convolutions down to "
        "the latents' grid and transposed ones back up), instead of one linear map per grid cell (default 0)",
    )
    parser.add_argument("--lr", type=POSITIVE, default=2e-3, help="peak Adam learning rate (cosine decay)")
    parser.add_argument(
        "--distortion",
        choices=("logistic", "mse"),
        default="logistic",
        help="logistic: the ELBO with a discretized logistic likelihood (the paper; default); mse: bits per pixel "
        "+ LAMBDA x mean squared error on the 0..255 scale, the rate-distortion loss of learned codecs, for "
        "what PSNR measures (the likelihood's scale is still fitted, on the side)",
    )
    parser.add_argument(
        "--lmbda",
        type=number(float, 0, 100, low_open=True),
        default=0.005,
        metavar="LAMBDA",
        help="--distortion mse: weight of the squared error (larger: more bits, higher PSNR; default 0.005)",
    )
    parser.add_argument(
        "--quant-step",
        type=number(float, 0, 16),
        default=None,
        metavar="D",
        help="train the latents for the real codec: uniform noise of width D stands for rounding to a grid of "
        "step D, and the rate is the code length under the prior discretised to that grid (0: Gaussian "
        "posteriors and the KL, as in the paper; default: the --init model's, else 0)",
    )
    parser.add_argument(
        "--progressive",
        type=number(float, 0, 100),
        default=0.0,
        metavar="W",
        help="add W times the mean negative log-likelihood of the canvases after iterations 1..T-1 to the loss, "
        "so that every prefix of iterations is a good picture (default 0: the plain ELBO)",
    )
    parser.add_argument(
        "--rate-weight",
        type=number(float, 0, 100, low_open=True),
        default=1.0,
        metavar="BETA",
        help="weigh the latents' code length by BETA in the loss (above 1: fewer bits, a lower-rate operating "
        "point for lossy coding; default 1: the ELBO)",
    )
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
    for key, val in (
        ("hidden", args.hidden),
        ("z_channels", args.z_channels),
        ("iterations", args.iterations),
        ("stride", args.stride),
        ("io_channels", args.io_channels),
    ):
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
        else:
            model = build(mcfg)
        if args.quant_step is not None:
            model.quant_step = float(args.quant_step)
        mcfg = model.config()
        cfg = TrainConfig(
            steps=args.steps,
            time_limit_s=minutes * 60.0,
            batch=tcfg["batch"],
            lr=args.lr,
            seed=args.seed,
            progressive=args.progressive,
            rate_weight=args.rate_weight,
            distortion=args.distortion,
            lmbda=args.lmbda,
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
            "progressive": args.progressive,
            "rate_weight": args.rate_weight,
        }
        if args.distortion != "logistic":  # only when set, so that older runs' resume files still match
            options.update(distortion=args.distortion, lmbda=args.lmbda)

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
    parser.add_argument(
        "--holdout",
        type=number(float, 0, 0.5, low_open=True),
        default=None,
        metavar="F",
        help="with --images DIR: only the files that 'train compression --data DIR --val-fraction F' holds out "
        "(by a hash of their names; subfolders searched)",
    )
    parser.add_argument(
        "--bpp",
        type=number(float, 0, 24, low_open=True),
        nargs="+",
        default=None,
        metavar="B",
        help="target rates in bits per pixel (default 0.1 0.25 0.5): per image, the best .cdraw file of at most "
        "B bpp and each peer's largest file no larger than it",
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
    import torch

    from explorer.core.paths import resources_dir
    from explorer.core.progress import TerminalProgress

    from .codec import model_name
    from .data import folder_images, list_images, split_by_name_hash
    from .evaluate import TARGETS, evaluate_files, format_table
    from .infer import load

    torch.set_num_threads(1)  # the codec's arithmetic is defined on one CPU thread
    ckpt = Path(args.checkpoint) if args.checkpoint else _default_checkpoint()
    model, meta = load(ckpt, "cpu")
    folder = Path(args.images) if args.images else resources_dir() / "compression"
    if not args.images and model.in_channels == 1:
        folder = folder / "fashion"  # the Fashion-MNIST model: its held-out test mosaics
    root, rule = None, None
    if args.holdout is not None:
        if not args.images:
            raise UserError("--holdout goes with --images DIR")
        found, _ = folder_images(folder)
        _, hold, rule = split_by_name_hash(found, folder, args.holdout)
        files, root = list(hold.values()), folder
    else:
        files = list_images(folder)
    targets = tuple(args.bpp) if args.bpp else TARGETS
    with TerminalProgress("eval compression") as bar:
        result = evaluate_files(model, files, args.max_side, targets, progress=bar, root=root, name=model_name(ckpt))
    head = {"checkpoint": str(ckpt), "images_folder": str(folder), "max_side": args.max_side}
    if rule:
        head["holdout_rule"] = rule
        head["holdout_files"] = sorted(f.relative_to(folder).as_posix() for f in files)
    result = {**head, **result}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result))
    return 0 if result["images"] else 2


# ----- compress / decompress -------------------------------------------------------------------------------
def _configure_compress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="a PNG or JPEG image (RGB or grey; any size)")
    rate = parser.add_mutually_exclusive_group(required=True)
    rate.add_argument(
        "--bpp",
        type=number(float, 0, 24, low_open=True),
        metavar="B",
        help="the best file (highest PSNR over the iterations sent and the quantisation step) whose real size, "
        "header included, is at most B bits per pixel",
    )
    rate.add_argument("--iterations", "-k", type=POSITIVE_INT, help="send the latents of the first K iterations (1..T)")
    parser.add_argument(
        "--step",
        type=number(float, 0.01, 100),
        default=None,
        metavar="D",
        help="--iterations: the latents' quantisation step (default: the model's own, 1 for a model trained "
        "without quantisation)",
    )
    parser.add_argument("--out", required=True, metavar="FILE.cdraw", help="where to write the compressed file")
    parser.add_argument("--preview", metavar="FILE.png", default=None, help="also write the decoded picture")
    parser.add_argument(
        "--checkpoint",
        "--model",
        dest="checkpoint",
        metavar="FILE",
        default=None,
        help="default: the bundled photo model",
    )
    parser.add_argument(
        "--max-side",
        type=number(int, 0, 65535),
        default=0,
        help="scale images larger than this down first (default 0: code the image at its own size)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON to stdout")


def _run_compress(args) -> int:
    import time

    import torch

    from .codec import SUFFIX, encode, encode_within, model_name
    from .data import fit_max_side, load_image
    from .infer import load, match_channels

    torch.set_num_threads(1)  # the format is defined by one thread's float32 arithmetic on the CPU
    out = Path(args.out)
    if out.suffix.lower() != SUFFIX:
        raise UserError(f"{out.name}: --out must be a {SUFFIX} file (use --preview FILE.png for the picture)")
    if args.step is not None and args.bpp is not None:
        raise UserError("--step goes with --iterations (--bpp chooses the step itself)")
    preview = Path(args.preview) if args.preview else None
    if preview is not None and preview.suffix.lower() != ".png":
        raise UserError(f"{preview.name}: --preview must be a .png file (lossless)")
    ckpt = Path(args.checkpoint) if args.checkpoint else _default_checkpoint()
    model, _ = load(ckpt, "cpu")
    img = load_image(args.image, channels=model.in_channels)
    note = None
    if args.max_side:
        img, note = fit_max_side(img, args.max_side)
    img = match_channels(img, model.in_channels)
    h, w = img.shape[:2]
    t0 = time.perf_counter()
    if args.bpp is not None:
        coded = encode_within(model, img, int(args.bpp * h * w / 8.0), name=model_name(ckpt))
    else:
        coded = encode(model, img, args.iterations, step=args.step, name=model_name(ckpt))
    seconds = time.perf_counter() - t0
    _write(out, coded.data, "compressed file")
    if preview is not None:
        _save_png(preview, coded.image)
    res = _report(args.image, out, coded, img, seconds, model.iterations)
    if note:
        res["note"] = note
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(
            f"{out}: {res['bytes']} bytes, {res['bpp']:.4f} bpp ({w}x{h}, k={res['k']} of {res['iterations']}, "
            f"step {res['step']:.3g}), decodes to PSNR {res['psnr']:.2f} dB, SSIM {res['ssim']:.4f}"
            + (f" ({note})" if note else "")
        )
    return 0


def _report(image, out: Path, coded, img, seconds: float, iterations: int) -> dict:
    from .baselines import psnr, ssim

    h = coded.header
    return {
        "image": str(image),
        "out": str(out),
        "width": h.width,
        "height": h.height,
        "k": h.k,
        "iterations": iterations,
        "step": h.step,
        "bytes": coded.nbytes,
        "bpp": coded.bpp,
        "psnr": psnr(img, coded.image),
        "ssim": ssim(img, coded.image),
        "seconds": round(seconds, 3),
        "model": h.model_name,
        "model_id": h.model_id.hex(),
    }


def _write(path: Path, data: bytes, what: str) -> None:
    from explorer.core.validate import atomic_output

    with atomic_output(path, what) as tmp:
        Path(tmp).write_bytes(data)


def _save_png(path: Path, img) -> None:
    from PIL import Image

    from explorer.core.validate import atomic_output

    with atomic_output(path, "image file") as tmp:
        Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img).save(tmp, format="PNG")


def _configure_decompress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.cdraw", help="a file written by 'nips-explorer compress'")
    parser.add_argument("--out", required=True, metavar="IMAGE.png", help="where to write the decoded picture")
    parser.add_argument(
        "--model",
        "--checkpoint",
        dest="checkpoint",
        metavar="FILE",
        default=None,
        help="the checkpoint the file was made with (default: found among the bundled models by the weights' hash)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON to stdout")


def _run_decompress(args) -> int:
    import time

    import torch

    from explorer.core.paths import models_dir
    from explorer.core.validate import regular_file

    from .codec import decode, find_model, read_header
    from .infer import load

    torch.set_num_threads(1)
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UserError(f"{out.name}: --out must be a .png file (lossless, so the picture is what was decoded)")
    src = regular_file(args.file, "compressed file")
    data = src.read_bytes()
    header, _ = read_header(data, src.name)
    ckpt = Path(args.checkpoint) if args.checkpoint else find_model(header, [models_dir()], src.name)
    model, _ = load(ckpt, "cpu")
    t0 = time.perf_counter()
    img, header = decode(model, data, src.name)
    seconds = time.perf_counter() - t0
    _save_png(out, img)
    res = {
        "file": str(src),
        "out": str(out),
        "bytes": len(data),
        "bpp": 8.0 * len(data) / (header.width * header.height),
        "width": header.width,
        "height": header.height,
        "k": header.k,
        "step": header.step,
        "model": str(ckpt),
        "seconds": round(seconds, 3),
    }
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(
            f"{out}: {header.width}x{header.height} from {len(data)} bytes ({res['bpp']:.4f} bpp, k={header.k}, "
            f"model {Path(ckpt).name})"
        )
    return 0


def commands():
    return [
        (
            "compress",
            "compress an image into a .cdraw file with conv DRAW (real bits: quantised latents, range-coded)",
            _configure_compress,
            _run_compress,
        ),
        (
            "decompress",
            "rebuild the picture from a .cdraw file",
            _configure_decompress,
            _run_decompress,
        ),
    ]
