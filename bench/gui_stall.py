"""Worst GUI-thread stall while a worker runs a CPU-heavy torch job (QTimer probe).

    python -m bench.gui_stall [--seconds 10] [--threads N] [--job lstm|enroll|tabs] [--quick]

A 10 ms QTimer on the GUI thread records how late each tick fires while a TaskRunner worker runs matrix
products and an LSTM training loop (``--job enroll``: the Neural Transducer's enrollment, i.e. the bundled model
fine-tuned on tone 'digits' with ``adapt.adapt`` for the given time, as "Teach it my voice" runs it).
Reports the worst and 99th percentile lateness in ms, with the app's
thread setting (one core left to the GUI) and, for comparison, with torch's default thread count.

``--job tabs``: the app's real window instead; every tab in turn is shown for the first time (built, checkpoint
loaded, default demo run) and the worst and p99 lateness while each one builds and runs its demo are printed per
tab (torch is not imported beforehand, as at a real start), with how many ticks were over 50 and 100 ms late.
``--train``: the same while an LSTM trains in a worker all along (started once the app's warm-up has loaded torch;
the first tab is then already built).
``--tabs ID[,ID]``: only these tabs (e.g. ``--tabs bptt``), shown once the app's warm-up has loaded torch and the
window has painted (as for a tab that is not the first).
``--after S``: keep measuring S seconds after each tab's demo is done (a 3D tab's frames may come later).
``--turn S``: then turn the tab's 3D views for S seconds with synthetic mouse drags (one move every 16 ms, as a
visitor's drag) and print the worst and p99 lateness meanwhile, with how many frames the views showed.
``--explain MS``: also sample the GUI thread's Python stack and print, for each stall over MS ms, what ran on it
meanwhile (a stall with a single sample: another thread held the GIL meanwhile).

The other jobs import their libraries first, as the app's warm-up does (then freeze them for the garbage collector:
explorer/core/warmup.py).
"""

import argparse
import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from bench._util import add_quick, run  # noqa: E402


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: the app's setting)")
    p.add_argument("--baseline", action="store_true", help="no worker: the probe alone (machine noise)")
    p.add_argument("--job", choices=("lstm", "enroll", "tabs"), default="lstm")
    p.add_argument("--timeout", type=float, default=180.0, help="--job tabs: seconds to wait for each tab's demo")
    p.add_argument(
        "--train",
        action="store_true",
        help="--job tabs: an LSTM trains in a worker all along (as a training or an adaptation would)",
    )
    p.add_argument("--tabs", default="", help="--job tabs: only these tab ids, comma-separated (default: all)")
    p.add_argument(
        "--explain",
        type=float,
        default=0.0,
        metavar="MS",
        help="--job tabs: sample the GUI thread's stack and print what ran during each stall over MS ms",
    )
    p.add_argument("--after", type=float, default=0.0, help="--job tabs: seconds measured after each demo is done")
    p.add_argument("--turn", type=float, default=0.0, help="--job tabs: seconds of dragging the tab's 3D views")
    add_quick(p, "the job runs 2 s (--job tabs: not shortened)")
    args = p.parse_args(argv)
    if args.quick and args.job != "tabs":
        args.seconds = min(args.seconds, 2.0)
    return args


def heavy(seconds, token=None, progress=None):
    import torch

    lstm = torch.nn.LSTM(256, 512, batch_first=True)
    opt = torch.optim.Adam(lstm.parameters())
    x = torch.randn(16, 100, 256)
    t0 = time.perf_counter()
    steps = 0
    while time.perf_counter() - t0 < seconds:
        token.check()
        out, _ = lstm(x)
        out.pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
        a = torch.randn(512, 512)
        (a @ a).sum().item()
        steps += 1
    return steps


def enroll(seconds, token=None, progress=None):
    import numpy as np

    from explorer.core.checkpoints import load_model
    from explorer.core.paths import bundled
    from explorer.papers.transducer.adapt import adapt, enrollment_clips
    from explorer.papers.transducer.model import build

    model, _ = load_model(bundled("transducer_fsdd_online.safetensors"), "transducer", build, "cpu")
    np.random.default_rng(0)
    t = np.arange(int(0.35 * 8000)) / 8000
    takes = {
        d: [(0.3 * np.sin(2 * np.pi * (300 + 250 * d) * t) * np.hanning(len(t))).astype(np.float32)] for d in range(10)
    }
    _, hist = adapt(
        model, enrollment_clips(takes), "cpu", {"steps": 10**6, "minutes": seconds / 60}, progress=progress, token=token
    )
    return hist["steps_done"]


def tab_stalls(args) -> None:
    """--job tabs: per-tab worst GUI-thread lateness while the tab is built and runs its default demo."""
    from bench.gui_probe import LatenessProbe, StackSampler
    from explorer.ui.app import _make_app, build_window

    app = _make_app()
    window = build_window(device="cpu")
    window.context.settings.persist = False
    window.resize(1280, 800)
    window.show()

    def settled(page) -> bool:
        panel = page.panel if page is not None else None
        return page is None or page.build_error is not None or (panel is not None and panel.demo_done)

    if args.train or args.tabs:  # once the app has warmed up (torch loaded): as for a tab that is not the first
        t0 = time.perf_counter()
        first = window.current_page()  # the tab the window opened on (built at start)
        while (
            window.device_label.text().startswith("Device: loading")
            or time.perf_counter() - t0 < 1.0
            or (args.tabs and not settled(first))
        ) and time.perf_counter() - t0 < 120:
            app.processEvents()
            time.sleep(0.01)
    if args.train:  # as a training a visitor starts would run
        window.runner.submit(heavy, 1e9, name="bench training")

    probe = LatenessProbe()
    sampler = StackSampler() if args.explain else None
    rows = []
    wanted = {t.strip() for t in args.tabs.split(",") if t.strip()}
    for spec in window.specs:
        if wanted and spec.id not in wanted:
            continue
        probe.take()
        t0 = time.perf_counter()
        page = window.show_tab(spec.id)
        while time.perf_counter() - t0 < args.timeout:
            app.processEvents()
            panel = page.panel
            if page.build_error is not None or (panel is not None and panel.demo_done and not panel.runner.is_busy()):
                break
            time.sleep(0.002)
        t1 = time.perf_counter()
        while time.perf_counter() - t1 < args.after:
            app.processEvents()
            time.sleep(0.002)
        worst, p99 = probe.take()
        long = probe.take_stalls(50)
        rows.append((spec.id, time.perf_counter() - t0, worst, p99))
        print(
            f"{spec.id:12s} built and demo done in {rows[-1][1]:5.1f} s: worst stall {worst} ms, "
            f"p99 {rows[-1][3]} ms, stalls over 50 ms: {len(long)}, over 100 ms: "
            f"{sum(1 for s in long if s[0] > 100)}",
            flush=True,
        )
        if sampler is not None:
            sampler.explain([s for s in long if s[0] > args.explain])
        if args.turn and page.panel is not None and page.panel.vtk_views():
            turn_views(app, probe, page.panel.vtk_views(), args.turn)
    window.shutdown(10.0)
    print(f"worst over all tabs: {max(r[2] for r in rows)} ms ({max(rows, key=lambda r: r[2])[0]})")


def turn_views(app, probe, views, seconds: float) -> None:
    """Drag across each view (left button), a move every 16 ms for ``seconds``, as a visitor turning the shape."""
    from PySide6.QtCore import QEvent, QPointF, Qt
    from PySide6.QtGui import QMouseEvent

    def send(view, kind, x, y, button, buttons):
        p = QPointF(x, y)
        app.sendEvent(view, QMouseEvent(kind, p, view.mapToGlobal(p), button, buttons, Qt.NoModifier))

    frames0 = [getattr(v, "frames", 0) for v in views]
    targets = [getattr(v, "interactor", v) for v in views]  # (before issue 25's render thread: its VTK widget)
    probe.take()
    probe.take_stalls(50)
    t0 = time.perf_counter()
    moves = 0
    for v in targets:
        send(v, QEvent.MouseButtonPress, 20, v.height() / 2, Qt.LeftButton, Qt.LeftButton)
    while time.perf_counter() - t0 < seconds:
        moves += 1
        for v in targets:
            x = 20 + (moves * 4) % max(40, v.width() - 40)
            send(v, QEvent.MouseMove, x, v.height() / 2 + (moves % 7), Qt.NoButton, Qt.LeftButton)
        t1 = time.perf_counter()
        while time.perf_counter() - t1 < 0.016:
            app.processEvents()
            time.sleep(0.002)
    for v in targets:
        send(v, QEvent.MouseButtonRelease, 20, v.height() / 2, Qt.LeftButton, Qt.NoButton)
    t1 = time.perf_counter()
    while time.perf_counter() - t1 < 0.5:  # the last frame
        app.processEvents()
        time.sleep(0.002)
    worst, p99 = probe.take()
    long = probe.take_stalls(50)
    frames = sum(getattr(v, "frames", 0) for v in views) - sum(frames0)
    print(
        f"{'  turning':12s} {moves} drag moves in {seconds:.1f} s, {frames} frames shown: worst stall {worst} ms, "
        f"p99 {p99} ms, stalls over 50 ms: {len(long)}, over 100 ms: {sum(1 for s in long if s[0] > 100)}",
        flush=True,
    )


def main(argv=None) -> int:
    args = parse(argv)
    if args.job == "tabs":
        tab_stalls(args)
        return 0
    from PySide6.QtCore import QElapsedTimer, QTimer
    from PySide6.QtWidgets import QApplication

    from explorer.core.warmup import quiet_gc

    with quiet_gc():  # as the app's start-up warm-up: the libraries imported, then the objects they made frozen
        import torch

        from explorer.core.checkpoints import loader_imports
        from explorer.core.devices import configure_threads
        from explorer.core.warmup import import_quietly
        from explorer.ui.main_window import LAZY_LIBRARIES
        from explorer.ui.workers import TaskRunner

        import_quietly(loader_imports() + list(LAZY_LIBRARIES) + ["explorer.papers.transducer.panel"])

    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        configure_threads()
    from explorer.ui.app import GIL_SWITCH_S

    sys.setswitchinterval(GIL_SWITCH_S)  # as the app sets it
    app = QApplication(sys.argv)

    lateness = []
    when = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.elapsed()]

    def tick():
        now = clock.elapsed()
        if now > 500:  # skip the first half second (thread start, first allocations)
            lateness.append(max(0, now - last[0] - 10))
            when.append(now)
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    runner = TaskRunner()
    result = {}
    if args.baseline:
        QTimer.singleShot(int(args.seconds * 1000), app.quit)
    else:
        runner.submit(
            enroll if args.job == "enroll" else heavy,
            args.seconds,
            on_result=lambda s: (result.setdefault("steps", s), app.quit()),
        )
    timer.start()
    app.exec()
    runner.shutdown()
    worst_at = when[lateness.index(max(lateness))] / 1000 if lateness else 0
    top = sorted(zip(lateness, when), reverse=True)[:5]
    lat = sorted(lateness)
    p99 = lat[int(0.99 * (len(lat) - 1))]
    print(
        f"torch threads {torch.get_num_threads()}, cores {os.cpu_count()}: {len(lat)} ticks, worst stall "
        f"{lat[-1]} ms, p99 {p99} ms, mean {sum(lat) / len(lat):.2f} ms; worker did {result.get('steps')} steps "
        f"in {args.seconds:.0f} s; worst stall at t={worst_at:.2f} s"
    )
    print("five worst stalls (ms @ s): " + ", ".join(f"{a} @ {b / 1000:.2f}" for a, b in top))
    return 0


if __name__ == "__main__":
    run(main)
