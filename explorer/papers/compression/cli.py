"""Command line of the conceptual compression tab (no torch at import time).

    nips-explorer train compression [--dataset photos|fashion] [--minutes M] ...
    nips-explorer eval compression --images DIR [--checkpoint F] [--json]
    nips-explorer compress IMAGE --iterations K --out FILE.png [--checkpoint F]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from explorer.core.errors import UserError
from explorer.core.validate import MINUTES, POSITIVE, POSITIVE_INT, SEED, number

PAPER = "compression"


def _default_checkpoint() -> Path:
    from explorer.core.paths import bundled

    from . import SPEC

    return bundled(SPEC.default_checkpoint)


# ----- train ----------------------------------------------------------------------------------------------
def configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=("photos", "fashion"), default="photos",
                        help="photos: random crops of Debian's photographic wallpapers (4 held out); "
                             "fashion: Fashion-MNIST (default photos)")
    parser.add_argument("--out", metavar="FILE.safetensors", default=None,
                        help="where to save (default models/compression_<dataset>.safetensors)")
    parser.add_argument("--minutes", type=MINUTES, default=None, help="wall-clock budget (default: preset)")
    parser.add_argument("--steps", type=POSITIVE_INT, default=100000, help="upper bound on optimiser steps")
    parser.add_argument("--batch", type=POSITIVE_INT, default=None, help="minibatch size")
    parser.add_argument("--crop", type=POSITIVE_INT, default=None, help="training crop size in pixels (photos)")
    parser.add_argument("--hidden", type=POSITIVE_INT, default=None, help="conv-LSTM channels")
    parser.add_argument("--z-channels", type=POSITIVE_INT, default=None, help="latent channels per iteration")
    parser.add_argument("--iterations", type=POSITIVE_INT, default=None, help="DRAW iterations T")
    parser.add_argument("--lr", type=POSITIVE, default=2e-3, help="peak Adam learning rate (cosine decay)")
    parser.add_argument("--seed", type=SEED, default=0)
    parser.add_argument("--init", metavar="CHECKPOINT", default=None,
                        help="start from this checkpoint's weights (same architecture)")


def train(args) -> int:
    import torch

    from explorer.core.checkpoints import load_model, save_checkpoint
    from explorer.core.devices import choose_device, configure_threads
    from explorer.core.paths import training_output
    from explorer.core.progress import TerminalProgress

    from .model import build
    from .train import PRESETS, TrainConfig, fit, make_data

    configure_threads(for_gui=False)
    device = choose_device(getattr(args, "device", "auto"))
    preset = PRESETS[args.dataset]
    mcfg = dict(preset["model"])
    for key, val in (("hidden", args.hidden), ("z_channels", args.z_channels), ("iterations", args.iterations)):
        if val is not None:
            if val < 1:
                raise UserError(f"--{key.replace('_', '-')} must be positive")
            mcfg[key] = val
    tcfg = dict(preset["train"])
    if args.batch is not None:
        tcfg["batch"] = args.batch
    if args.crop is not None:
        if args.crop % mcfg["stride"]:
            raise UserError(f"--crop must be a multiple of {mcfg['stride']}")
        tcfg["crop"] = args.crop
    if args.minutes is not None:
        tcfg["time_limit_s"] = args.minutes * 60.0
    out = Path(args.out) if args.out else training_output(preset["file"])
    data = make_data(args.dataset, tcfg["crop"], seed=args.seed)
    if args.init:
        model, _ = load_model(args.init, PAPER, build, device)
        mcfg = model.config()
    else:
        torch.manual_seed(args.seed)
        model = build(mcfg)
    cfg = TrainConfig(steps=args.steps, time_limit_s=tcfg["time_limit_s"], batch=tcfg["batch"], lr=args.lr,
                      seed=args.seed)
    argv = sys.argv[1:]
    tail = argv[argv.index(PAPER) + 1:] if PAPER in argv else ["--dataset", args.dataset]
    command = "nips-explorer train compression " + " ".join(tail)

    def save(m, info):
        metrics = {"headline": "val_bits_per_dim", **{k: v for k, v in info.items()}}
        save_checkpoint(out, m.state_dict(), paper=PAPER, model_config=m.config(), metrics=metrics,
                        data={**data.description, "dataset": args.dataset},
                        extra={"train_command": command, "train_config": {**cfg.__dict__, "crop": tcfg["crop"]}})

    with TerminalProgress(f"train compression ({args.dataset})") as bar:
        result = fit(model, data, device, cfg, progress=bar, on_checkpoint=save)
    f = result["final"]
    print(f"saved {out}: {f['steps']} steps in {f['train_wall_s']:.0f} s, held-out {f['val_bits_per_dim']:.3f} "
          f"bits/dim, KL {f['val_kl_bpp_total']:.3f} bpp over {mcfg['iterations']} iterations", file=sys.stderr)
    return 0


# ----- eval -----------------------------------------------------------------------------------------------
def configure_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", metavar="DIR", default=None,
                        help="folder of PNG/JPEG images (default: the bundled held-out samples: 4 photo crops, "
                             "or 2 Fashion-MNIST test mosaics for a grey model)")
    parser.add_argument("--checkpoint", metavar="FILE", default=None, help="default: the bundled photo model")
    parser.add_argument("--max-side", type=number(int, 16, 16384), default=768,
                        help="images larger than this are scaled down first (default 768)")
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
        folder = folder / "fashion"          # the Fashion-MNIST model: its held-out test mosaics
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
    parser.add_argument("--iterations", "-k", type=POSITIVE_INT, required=True,
                        help="send the latents of the first K iterations (1..T)")
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
        print(f"{out}: k={res['k']} of {res['iterations']} iterations, {res['bpp']:.4f} bpp "
              f"(ideal code length, {res['bytes']:.0f} bytes), PSNR {res['psnr']:.2f} dB, "
              f"SSIM {res['ssim']:.4f}{note}")
    return 0


def commands():
    return [("compress", "conceptual compression of one image with conv DRAW (writes the reconstruction)",
             _configure_compress, _run_compress)]
