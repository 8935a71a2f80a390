"""Cold start to first window, in seconds (process spawn to the window shown), median of N runs.

    python -m bench.startup [--runs 5] [--quick]

Runs `python -m explorer.cli` offscreen with NIPS_EXPLORER_STARTUP_PROBE=1, which prints once the main
window is shown and quits. Also reports whether torch / VTK were imported before the window appeared
(they must not be: they load in the background afterwards). ``--quick``: one run.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench._util import add_quick, run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    add_quick(p, "one run")
    args = p.parse_args(argv)
    runs = 1 if args.quick else args.runs
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        NIPS_EXPLORER_STARTUP_PROBE="1",
        NIPS_EXPLORER_CONFIG_DIR=tempfile.mkdtemp(),
    )
    times = []
    for i in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "explorer.cli"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line = proc.stdout.readline()
        t1 = time.perf_counter()
        proc.communicate(timeout=60)
        if not line.startswith("first-window-seconds"):
            sys.exit(f"probe failed: {line!r}")
        times.append(t1 - t0)
        print(f"run {i + 1}: {t1 - t0:.3f} s to first window (in-process after imports: {line.split()[1]} s)")
    code = (
        "import sys, time\nt=time.perf_counter()\nfrom explorer.ui.app import build_window, _make_app\n"
        "app=_make_app(); w=build_window(); w.show()\n"
        "print('torch' in sys.modules, 'vtkmodules' in sys.modules)"
    )
    heavy = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip()
    print(
        f"median cold start to first window: {statistics.median(times):.3f} s over {len(times)} runs "
        f"(min {min(times):.3f}, max {max(times):.3f}); torch/VTK imported before first window: {heavy}"
    )
    return 0


if __name__ == "__main__":
    run(main)
