"""Neural art with the learned optimizer (issue 28): the held-out table and the picture grid.

    python -m bench.l2l_style [--checkpoint models/l2l_style.safetensors] [--grid resources/l2l/style_grid.png]

Prints the fair protocol's held-out results stored in the checkpoint's metrics (``eval l2l --protocol fair
--problem style|style-128|style-newstyle --save``) as markdown tables (mean +- standard error over the held-out
BSDS500 test_ photos, tuned learning rate in parentheses), and draws the grid: per row a content photo, the style,
the learned optimizer's result and Adam's (at its tuned rate) after the same number of steps, with their losses.
The grid's photos are the bundled Debian wallpapers (resources/compression/, never used in meta-training), not the
research photos, which are not shipped.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from bench._util import ROOT, add_quick, run, scratch, skip

VARIANTS = ("style", "style-128", "style-newstyle")
KINDS = ("learned", "sgd", "rmsprop", "adam", "nag", "lbfgs")
# (photo, style, size, which fair record holds Adam's rate)
GRID = (
    ("kite", "disco", 64, "style"),
    ("garden", "disco", 64, "style"),
    ("path", "disco", 128, "style-128"),
    ("ladybird", "colorwhirl", 64, "style-newstyle"),
    ("kite", "meltedcolors", 64, "style-newstyle"),
)


def fmt(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else "diverged"


def tables(meta) -> str:
    from explorer.papers.l2l.optimizer_runs import OPTIMIZER_LABELS

    fair = (meta.metrics or {}).get("fair") or {}
    out = []
    for metric, title in (("final", "Final loss after 100 steps"), ("avg", "Loss averaged over the 100 steps")):
        out.append(f"**{title}** (every optimizer selected by it on the tuning photos)\n")
        out.append("| problem (held-out runs) | " + " | ".join(OPTIMIZER_LABELS[k] for k in KINDS) + " |")
        out.append("|---" * (len(KINDS) + 1) + "|")
        for name in VARIANTS:
            rec = (fair.get(name) or {}).get(metric)
            if not rec:
                out.append(f"| {name} | " + " | ".join("not evaluated" for _ in KINDS) + " |")
                continue
            best = min(KINDS, key=lambda k: rec["mean"].get(k, math.inf))
            cells = []
            for k in KINDS:
                m, se = rec["mean"].get(k, math.inf), rec["se"].get(k, math.nan)
                cell = f"{fmt(m)} +- {se:.2g}" if math.isfinite(m) else "diverged (some runs)"
                cell += f" ({rec['lr'][k]:g})" if k in rec["lr"] else ""
                cells.append(f"**{cell}**" if k == best else cell)
            out.append(f"| {name} ({fair[name]['runs']}) | " + " | ".join(cells) + " |")
        out.append("")
        for name in VARIANTS:
            rec = (fair.get(name) or {}).get(metric)
            if rec:
                verdict = "below" if rec["mean"]["learned"] < rec["mean"]["adam"] else "NOT below"
                out.append(
                    f"- {name}: learned {fmt(rec['mean']['learned'])} {verdict} tuned Adam {fmt(rec['mean']['adam'])}"
                )
        out.append("")
    return "\n".join(out)


def grid(net, meta, path: Path, steps: int) -> list[str]:
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    from explorer.papers.l2l.infer import style_adam_rate, style_race

    torch.set_num_threads(1)
    cell, pad, head = 160, 6, 18
    rows, lines = [], []
    for photo, style, size, rec in GRID:
        lr, _ = style_adam_rate(meta, rec)
        gen = style_race(("bundled", photo), style, size, steps, net, lr, every=steps)
        pics: dict = {}
        try:
            while True:
                item = next(gen)
                if isinstance(item, tuple) and item[0] == "images":
                    pics["content"], pics["style"] = item[1], item[2]
                elif isinstance(item, tuple) and item[0] == "pictures":
                    pics.update(item[2])
        except StopIteration as stop:
            res = stop.value
        labels = {
            "content": f"{photo} ({size}x{size})",
            "style": style + (" (unseen)" if rec == "style-newstyle" else ""),
            "learned": f"LSTM: loss {fmt(res['learned']['final'])}",
            "adam": f"Adam lr {lr:g}: {fmt(res['adam']['final'])}",
        }
        lines.append(f"{photo} / {style} / {size}: " + ", ".join(labels[k] for k in ("learned", "adam")))
        row = Image.new("RGB", (4 * cell + 5 * pad, cell + head + pad), "white")
        d = ImageDraw.Draw(row)
        for i, key in enumerate(("content", "style", "learned", "adam")):
            im = Image.fromarray(np.asarray(pics[key])).resize((cell, cell), Image.NEAREST)
            x = pad + i * (cell + pad)
            row.paste(im, (x, head))
            d.text((x, 3), labels[key], fill="black")
        rows.append(row)
    title_h = 22
    out = Image.new("RGB", (rows[0].width, title_h + sum(r.height for r in rows)), "white")
    ImageDraw.Draw(out).text(
        (pad, 5),
        f"photo, style, learned optimizer, tuned Adam: {steps} steps each (same start, same loss)",
        fill="black",
    )
    y = title_h
    for r in rows:
        out.paste(r, (0, y))
        y += r.height
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path, optimize=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="default: the bundled models/l2l_style.safetensors")
    ap.add_argument("--grid", default=str(ROOT / "resources" / "l2l" / "style_grid.png"))
    ap.add_argument("--no-grid", action="store_true")
    ap.add_argument("--steps", type=int, default=100)
    add_quick(ap, "the grid at 3 steps into a temporary folder")
    args = ap.parse_args(argv)
    from explorer.core.paths import bundled
    from explorer.papers.l2l.infer import load_learned

    if args.checkpoint is None and not bundled("l2l_style.safetensors").exists():
        return skip("no models/l2l_style.safetensors (nips-explorer train l2l --problem style)")
    if args.quick:
        args.steps, args.grid = 3, str(scratch("l2l_style") / "style_grid.png")
    net, meta = load_learned(args.checkpoint, problem="style")
    print(tables(meta))
    if not args.no_grid:
        for line in grid(net, meta, Path(args.grid), args.steps):
            print(line)
        print(f"grid: {args.grid}")
    return 0


if __name__ == "__main__":
    run(main)
