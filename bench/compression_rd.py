"""Rate-distortion of the bundled conv DRAW against JPEG and JPEG 2000 on the held-out photos.

    python -m bench.compression_rd [--checkpoint models/compression_photos.safetensors]
        [--images DIR] [--json OUT.json] [--png OUT.png] [--quick]

Without --images, the four held-out photos (Kite, Path, Garden, LadyBird; never trained on) are taken from
the Debian packages plasma-workspace-wallpapers and mate-backgrounds, scaled to a short side of 400 pixels
(the training scale, 640x400) and written to a temporary folder. Needs matplotlib for the PNG.
``--quick``: one of the same photos as bundled (resources/compression/kite.png, 256x256) scaled to 96x96;
the JSON and PNG go to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench._util import ROOT, add_quick, run, scratch


def holdout_folder() -> Path:
    from PIL import Image

    from explorer.papers.compression import data as D

    _, hold = D.split_photos()
    out = Path(tempfile.mkdtemp(prefix="compression-holdout-"))
    for name, arr in D.load_photo_set(hold).items():
        Image.fromarray(arr).save(out / f"{name}.png")
    return out


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
    styles = {
        "": ("conv DRAW (ideal code length)", "tab:blue", "o"),
        "jpeg_": ("JPEG", "tab:red", "s"),
        "jpeg2000_": ("JPEG 2000", "tab:green", "^"),
    }
    for ax, metric in zip(axes, ("psnr", "ssim")):
        for pre, (label, color, marker) in styles.items():
            for im in result["images"]:
                pts = [(p[f"{pre}bpp"], p[f"{pre}{metric}"]) for p in im["points"] if p.get(f"{pre}bpp")]
                pts.sort()
                ax.plot([a for a, _ in pts], [b for _, b in pts], color=color, alpha=0.18, lw=1)
            pts = sorted((p[f"{pre}bpp"], p[f"{pre}{metric}"]) for p in result["mean"] if p.get(f"{pre}bpp"))
            ax.plot([a for a, _ in pts], [b for _, b in pts], color=color, marker=marker, lw=2, label=label)
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel("PSNR (dB)" if metric == "psnr" else "SSIM")
        ax.grid(alpha=0.3)
        ax.axvspan(0.1, 0.3, color="0.9", zorder=0)
    axes[0].legend(loc="lower right")
    n = len(result["images"])
    fig.suptitle(f"Held-out photos ({n}, 640x400): mean over images (bold), each image (thin); k = 1..T")
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "models" / "compression_photos.safetensors"))
    ap.add_argument("--images", default=None)
    ap.add_argument("--json", default="/tmp/compression_rd.json")
    ap.add_argument("--png", default="/tmp/compression_rd.png")
    add_quick(ap, "the bundled Kite crop at 96x96; outputs in a temporary folder")
    args = ap.parse_args(argv)
    if args.quick:
        tmp = scratch("compression-rd-out")
        args.json, args.png = str(tmp / "compression_rd.json"), str(tmp / "compression_rd.png")
    import torch

    from explorer.papers.compression.evaluate import evaluate_folder, format_table, interpolate_psnr
    from explorer.papers.compression.infer import load

    torch.set_num_threads(1)
    folder = Path(args.images) if args.images else quick_folder() if args.quick else holdout_folder()
    model, meta = load(args.checkpoint, "cpu")
    t0 = time.time()
    result = {"checkpoint": args.checkpoint, **evaluate_folder(model, folder, "cpu")}
    result["eval_wall_s"] = round(time.time() - t0, 1)
    summary = {}
    for bpp in (0.1, 0.15, 0.2, 0.25, 0.3):
        summary[str(bpp)] = {
            name: (round(v, 3) if v is not None else None)
            for name, v in (
                ("draw_psnr", interpolate_psnr(result["mean"], bpp, "")),
                ("jpeg_psnr", interpolate_psnr(result["mean"], bpp, "jpeg_")),
                ("jpeg2000_psnr", interpolate_psnr(result["mean"], bpp, "jpeg2000_")),
            )
        }
    result["psnr_at_bpp_mean_curve"] = summary
    Path(args.json).write_text(json.dumps(result, indent=2))
    try:
        plot(result, Path(args.png))
        print(f"wrote {args.png}")
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)
    print(format_table(result))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    run(main)
