"""Draw an attract-mode soak (`python -m bench.attract_soak --out FILE.json`) into a PNG: resident memory and the
GUI timer's worst lateness per sample over the hour.

    python -m bench.figures.attract_soak bench/results/attract_soak_hour.json resources/screenshots/attract_soak.png
    python -m bench.figures.attract_soak --quick

Prints the summary after the figure. ``--quick``: the committed hour-long soak drawn into a temporary folder.
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("soak", nargs="?", default=str(ROOT / "bench/results/attract_soak_hour.json"))
    p.add_argument("out", nargs="?", default="")
    p.add_argument("--quick", action="store_true", help="draw the committed soak into a temporary folder")
    a = p.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = json.loads(Path(a.soak).read_text())
    s = d["samples"]
    t = [x["t_s"] / 60 for x in s]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    ax1.plot(t, [x["rss_mb"] for x in s], label="resident memory")
    ax1.plot(t, [x["heap_used_mb"] for x in s], label="Python/C heap in use")
    ax1.set_ylabel("MB")
    ax1.legend(loc="upper left", bbox_to_anchor=(0, 1.3), ncol=2, frameon=False)
    ax2.plot(t, [x["worst_ms"] for x in s], ".", ms=3, label="worst lateness per sample")
    ax2.plot(t, [x["p99_ms"] for x in s], ".", ms=3, label="99th percentile")
    ax2.axhline(100, color="grey", lw=0.8, ls="--")
    ax2.set_yscale("log")
    ax2.set_ylabel("GUI timer late (ms)")
    ax2.set_xlabel("minutes in attract mode (every tab 20 s in turn)")
    ax2.legend(loc="upper right", frameon=False, fontsize=8)
    fig.tight_layout()
    out = a.out or (os.path.join(tempfile.mkdtemp(), "attract_soak.png") if a.quick else "attract_soak.png")
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    print(json.dumps(d["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
