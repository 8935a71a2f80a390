"""Attract-mode soak: the app left alone at a booth for a long time.

    python -m bench.attract_soak [--minutes 60] [--dwell 20] [--size 1280x800] [--out soak.json] [--quick]
        [--tabs srnn,compression]

Opens the real window (offscreen unless a display is set), turns attract mode on after 1 s, and lets it cycle every
tab with its demo every ``--dwell`` seconds. Every 30 s it records the process's resident memory (RSS) and, from a
10 ms QTimer on the GUI thread, how late the timer fired (worst and 99th percentile over that interval): a flat
memory line and no long stall are the goal. Prints one row per interval and a summary (memory at 2 minutes, at the
end, and the growth; the worst stall after the first full cycle, when every tab is built). ``--quick``: 8 s,
2 s per tab, a sample every 3 s.

To tell a leak from the allocator keeping freed memory, each row also has glibc's heap: ``heap_used_mb`` (allocated)
and ``heap_free_mb`` (freed, held by malloc: resident until trimmed; see explorer/core/memory.py), and the summary
fits a line to the memory after the first full cycle (``*_slope_mb_per_h``). ``--tabs a,b``: cycle only these tabs
(one tab's growth on its own). ``NIPS_EXPLORER_NO_MALLOC_TRIM=1`` turns the app's heap trim off (before/after).
"""

import argparse
import json
import os
import resource
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from bench._util import add_quick, run  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def slope_per_hour(rows, key):
    """Least-squares slope of ``key`` against time, in MB per hour (None with fewer than 3 samples)."""
    pts = [(r["t_s"], r[key]) for r in rows if r.get(key) is not None]
    if len(pts) < 3:
        return None
    n = len(pts)
    mt = sum(t for t, _ in pts) / n
    mv = sum(v for _, v in pts) / n
    var = sum((t - mt) ** 2 for t, _ in pts)
    if var == 0:
        return None
    return round(sum((t - mt) * (v - mv) for t, v in pts) / var * 3600, 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--dwell", type=float, default=20.0, help="seconds per tab")
    p.add_argument("--size", default="1280x800")
    p.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    p.add_argument("--out", default=None, help="write the samples as JSON")
    p.add_argument("--tabs", default=None, help="comma-separated tab ids: cycle only these (default: every tab)")
    add_quick(p, "8 s, 2 s per tab, a sample every 3 s")
    args = p.parse_args(argv)
    if args.quick:
        args.minutes, args.dwell, args.every = min(args.minutes, 0.13), min(args.dwell, 2.0), min(args.every, 3.0)

    from PySide6.QtCore import QTimer

    from bench.gui_probe import LatenessProbe
    from explorer.core.memory import heap_stats, trim_enabled
    from explorer.ui.app import _make_app, build_window

    app = _make_app()
    w, h = (int(v) for v in args.size.split("x"))
    window = build_window(device="cpu", kiosk=False, attract_s=1.0)
    window.context.settings.persist = False
    window.attract._cycle.setInterval(int(args.dwell * 1000))
    if args.tabs:
        ids = [t.strip() for t in args.tabs.split(",") if t.strip()]
        unknown = sorted(set(ids) - set(window.pages))
        if unknown:
            from explorer.core.errors import UserError

            raise UserError(f"--tabs: no tab {', '.join(unknown)} (tabs: {', '.join(window.pages)})")
        window.attract.tab_ids = ids
    window.resize(w, h)
    window.show()

    probe = LatenessProbe()
    samples = []
    t0 = time.monotonic()

    def sample():
        worst, p99 = probe.take()
        # the probe keeps every tick for take_stalls(): taking them each time keeps the bench's own memory flat
        # (it grew 100 tuples a second, about 40 MB an hour, before)
        stalls = len(probe.take_stalls(100))
        heap = heap_stats() or {}
        row = {
            "t_s": round(time.monotonic() - t0, 1),
            "rss_mb": round(rss_mb(), 1),
            "worst_ms": worst,
            "p99_ms": p99,
            "stalls_over_100ms": stalls,
            "heap_used_mb": heap.get("used"),
            "heap_free_mb": heap.get("free"),
            "tab": window.current_page().spec.id,
            "attract": window.attract.active,
            "steps": window.attract.steps,
        }
        samples.append(row)
        print(json.dumps(row), flush=True)
        if time.monotonic() - t0 >= args.minutes * 60:
            app.quit()

    sampler = QTimer(interval=int(args.every * 1000))
    sampler.timeout.connect(sample)
    sampler.start()
    app.exec()
    window.shutdown(10.0)

    n_tabs = len(window.attract.tab_ids) if window.attract.tab_ids else window.tabs.count()
    cycle_s = args.dwell * n_tabs + 30
    after = [s for s in samples if s["t_s"] >= cycle_s] or samples
    base = next((s for s in samples if s["t_s"] >= 120), samples[0])
    summary = {
        "minutes": args.minutes,
        "dwell_s": args.dwell,
        "tabs_shown": samples[-1]["steps"],
        "rss_at_2min_mb": base["rss_mb"],
        "rss_end_mb": samples[-1]["rss_mb"],
        "rss_growth_mb": round(samples[-1]["rss_mb"] - base["rss_mb"], 1),
        "worst_stall_after_first_cycle_ms": max(s["worst_ms"] for s in after),
        "p99_after_first_cycle_ms": max(s["p99_ms"] for s in after),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "tabs": args.tabs or "all",
        "malloc_trim": trim_enabled(),
    }
    for key in ("rss_mb", "heap_used_mb", "heap_free_mb"):
        summary[key.replace("_mb", "_slope_mb_per_h")] = slope_per_hour(after, key)
    print(json.dumps(summary))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"summary": summary, "samples": samples}, fh, indent=1)
    return 0


if __name__ == "__main__":
    run(main)
