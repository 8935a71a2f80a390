"""GUI-thread probes for the benches (bench.gui_stall, bench.attract_soak import them).

* :class:`LatenessProbe`: a 10 ms QTimer on the GUI thread that records how late each tick fires (ms).
* :class:`StackSampler`: a helper thread that samples the GUI thread's Python stack every few ms, so each stall the
  probe saw can be attributed to the code that ran on the GUI thread meanwhile (``explain``).

Run on its own, it measures the machine's noise: the lateness of the probe on an idle GUI thread.

    python -m bench.gui_probe [--seconds 10] [--quick]
"""

import argparse
import collections
import os
import sys
import threading
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QElapsedTimer, QTimer  # noqa: E402


class LatenessProbe:
    def __init__(self, interval_ms: int = 10) -> None:
        self.interval = interval_ms
        self.late = []
        self.stalls = []  # (lateness ms, start perf_counter, end perf_counter) of every tick
        self._clock = QElapsedTimer()
        self._clock.start()
        self._last = self._clock.elapsed()
        self._last_pc = time.perf_counter()
        self._timer = QTimer(interval=interval_ms)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    def _tick(self) -> None:
        now = self._clock.elapsed()
        pc = time.perf_counter()
        late = max(0, now - self._last - self.interval)
        self.late.append(late)
        self.stalls.append((late, self._last_pc, pc))
        self._last = now
        self._last_pc = pc

    def take(self):
        """(worst, p99) lateness since the last call, in ms; starts a new interval."""
        lat = sorted(self.late) or [0]
        self.late.clear()
        return lat[-1], lat[int(0.99 * (len(lat) - 1))]

    def take_stalls(self, over_ms: float):
        """The stalls over ``over_ms`` since the last call, as (lateness, start, end); starts a new interval."""
        out = [s for s in self.stalls if s[0] > over_ms]
        self.stalls.clear()
        return out


_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _short(frame) -> str:
    code = frame.f_code
    path = code.co_filename
    if path.startswith(_HERE):
        path = os.path.relpath(path, _HERE)
    else:
        parts = path.split(os.sep)
        path = os.sep.join(parts[-2:])
    return f"{path}:{frame.f_lineno}({code.co_name})"


class StackSampler:
    """Samples the main thread's stack every ``interval_s`` (a daemon thread; it needs the GIL, so a long C call
    holding the GIL shows as the Python line that made it, sampled right after it returns)."""

    def __init__(self, interval_s: float = 0.004) -> None:
        self.interval = interval_s
        self.samples = collections.deque(maxlen=200_000)  # (perf_counter, tuple of frames, leaf first)
        self._main = threading.main_thread().ident
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stack-sampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            frame = sys._current_frames().get(self._main)
            stack = []
            while frame is not None and len(stack) < 60:
                stack.append(_short(frame))
                frame = frame.f_back
            self.samples.append((time.perf_counter(), tuple(stack)))

    def stop(self) -> None:
        self._stop.set()

    def explain(self, stalls, depth: int = 14, out=sys.stdout) -> None:
        """For each (lateness, start, end) stall: the stacks sampled on the GUI thread meanwhile, most frequent
        first (project frames and the innermost library frames)."""
        samples = list(self.samples)  # one C-level copy: the sampler thread cannot append meanwhile
        for late, t0, t1 in stalls:
            stacks = [s for t, s in samples if t0 <= t <= t1 + self.interval]
            counts = collections.Counter(_condense(s, depth) for s in stacks)
            print(f"  stall {late} ms ({len(stacks)} samples):", file=out)
            for stack, n in counts.most_common(3):
                print(f"    {n} x " + " <- ".join(stack), file=out)


def _condense(stack, depth):
    """The innermost 3 frames, then only the project's own frames (explorer/, bench/), up to ``depth``."""
    keep = list(stack[:3])
    for f in stack[3:]:
        if f.startswith(("explorer", "bench")) and len(keep) < depth:
            keep.append(f)
    return tuple(keep)


def main(argv=None) -> int:
    from PySide6.QtWidgets import QApplication

    from bench._util import add_quick

    ap = argparse.ArgumentParser(description="Lateness of a 10 ms timer on an idle GUI thread (the machine's noise)")
    ap.add_argument("--seconds", type=float, default=10.0)
    add_quick(ap, "1 second")
    args = ap.parse_args(argv)
    seconds = 1.0 if args.quick else args.seconds
    app = QApplication.instance() or QApplication(sys.argv[:1])
    probe = LatenessProbe()
    QTimer.singleShot(int(seconds * 1000), app.quit)
    app.exec()
    ticks = len(probe.late)
    worst, p99 = probe.take()
    print(
        f"idle GUI thread, {seconds:g} s: {ticks} ticks of a {probe.interval} ms timer, "
        f"worst {worst} ms late, p99 {p99} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
