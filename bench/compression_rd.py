"""Rate-distortion of the bundled conv DRAW codec against JPEG, JPEG 2000, WebP and AVIF, all in real bytes.

    python -m bench.compression_rd --images DIR [--holdout 0.05] [--bpp 0.1,0.25,0.5] [--max-side 768]
        [--checkpoint models/compression_photos.safetensors] [--json OUT.json] [--png OUT.png]
    python -m bench.compression_rd --from bench/results/compression_codec.json --png OUT.png   # draw a saved run
    python -m bench.compression_rd --quick

Every point is a real file: conv DRAW's ``.cdraw`` (header included, the best file at or under each target over
the iterations sent and the quantisation step) and each peer's largest file no larger than it (quality bisected),
decoded and compared with the original (PSNR, SSIM), averaged over the images (``eval compression`` computes the
same: explorer/papers/compression/evaluate.py). ``--holdout F``: only the files of DIR whose name hash is below F
(the photos a ``train compression --data DIR`` run held out). ``--quick``: the bundled Kite crop at 96x96, one
target; outputs in a temporary folder. Needs matplotlib for the PNG (the numbers are printed without it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench._util import ROOT, add_quick, run, scratch

NAMES = {"draw": "conv DRAW (.cdraw)", "jpeg": "JPEG", "jpeg2000": "JPEG 2000", "webp": "WebP", "avif": "AVIF"}
STYLE = {"draw": ("tab:blue", "o"), "jpeg": ("tab:red", "s"), "jpeg2000": ("tab:green", "^"),
         "webp": ("tab:purple", "D"), "avif": ("tab:orange", "v")}  # fmt: skip


def quick_folder() -> Path:
    """The bundled crop of the held-out Kite photo, at 96x96, in a temporary folder."""
    from PIL import Image

    from explorer.core.paths import resources_dir

    out = scratch("compression-rd")
    Image.open(resources_dir() / "compression" / "kite.png").convert("RGB").resize((96, 96), Image.LANCZOS).save(
        out / "kite.png"
    )
    return out


def plot(result: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, metric in zip(axes, ("psnr", "ssim")):
        for codec, label in NAMES.items():
            color, marker = STYLE[codec]
            n_all = len(result["images"])
            # like with like: a mean over fewer images (a peer that could not go that small on some) is left out
            pts = sorted(
                (r[codec]["bpp"], r[codec][metric])
                for r in result["mean"]
                if r[codec]["bpp"] and r[codec]["n"] == n_all
            )
            ax.plot([a for a, _ in pts], [b for _, b in pts], color=color, marker=marker, lw=2, label=label)
        ax.set_xlabel("bits per pixel (real file size, header included)")
        ax.set_ylabel("PSNR (dB)" if metric == "psnr" else "SSIM")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    n = len(result["images"])
    fig.suptitle(
        f"{n} held-out photo{'s' if n != 1 else ''} (max side {result.get('max_side', '?')}), mean over images;\n"
        "each peer at its largest file no larger than the .cdraw file; a target where a codec could not go that small "
        "on every image is not drawn for it",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "models" / "compression_photos.safetensors"))
    ap.add_argument("--images", default=None, help="folder of photos (required unless --from or --quick)")
    ap.add_argument("--holdout", type=float, default=None, help="only the files whose name hash is below this")
    ap.add_argument("--bpp", default="0.1,0.25,0.5", help="target bits per pixel, comma-separated")
    ap.add_argument("--max-side", type=int, default=768)
    ap.add_argument("--from", dest="source", default=None, help="draw a saved eval/bench JSON instead of measuring")
    ap.add_argument("--json", default="/tmp/compression_rd.json")
    ap.add_argument("--png", default="/tmp/compression_rd.png")
    add_quick(ap, "the bundled Kite crop at 96x96, one target; outputs in a temporary folder")
    args = ap.parse_args(argv)
    if args.quick:
        tmp = scratch("compression-rd-out")
        args.json, args.png, args.bpp = str(tmp / "compression_rd.json"), str(tmp / "compression_rd.png"), "0.5"
    if args.source:
        result = json.loads(Path(args.source).read_text())
    else:
        if not (args.images or args.quick):
            ap.error("--images DIR is required (or --from FILE, or --quick)")
        import torch

        from explorer.papers.compression.codec import model_name
        from explorer.papers.compression.data import folder_images, list_images, split_by_name_hash
        from explorer.papers.compression.evaluate import evaluate_files
        from explorer.papers.compression.infer import load

        torch.set_num_threads(1)  # the codec's arithmetic is defined on one CPU thread
        folder = quick_folder() if args.quick else Path(args.images)
        root, files = None, list_images(folder)
        if args.holdout is not None:
            found, _ = folder_images(folder)
            _, hold, _rule = split_by_name_hash(found, folder, args.holdout)
            files, root = list(hold.values()), folder
        model, _meta = load(args.checkpoint, "cpu")
        targets = tuple(float(b) for b in args.bpp.split(","))
        t0 = time.time()
        result = evaluate_files(model, files, args.max_side, targets, root=root, name=model_name(args.checkpoint))
        result = {"checkpoint": args.checkpoint, "max_side": args.max_side, **result}
        result["eval_wall_s"] = round(time.time() - t0, 1)
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    try:
        plot(result, Path(args.png))
        print(f"wrote {args.png}")
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)
    from explorer.papers.compression.evaluate import format_table

    print(format_table(result))
    return 0


if __name__ == "__main__":
    run(main)
