"""Start the GUI: QApplication, main window; torch loads in the background after the first paint."""

from __future__ import annotations

import os
import sys
import time

_T0 = time.perf_counter()
DEFAULT_ATTRACT_S = 60.0  # --kiosk: attract mode after a minute without a touch


GIL_SWITCH_S = 0.001  # see _make_app


def _make_app(argv=None):
    os.environ.setdefault("QT_LOGGING_RULES", "qt.multimedia.*=false")
    from ..core.memory import fixed_mmap_threshold

    fixed_mmap_threshold()  # big temporaries go back to the system when freed (issue 25: memory creeping up)
    # A thread that wants Python's lock waits up to the switch interval (5 ms by default) before the holder must
    # let go; the GUI thread gives the lock up at most Qt calls, so while a worker trains, a paint of a few dozen
    # calls queued behind it again and again (a 1 ms interval: the GUI thread waits at most 1 ms each time).
    sys.setswitchinterval(GIL_SWITCH_S)
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        QApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(argv or [sys.argv[0]])
        app.setApplicationName("NIPS Explorer")
        app.setOrganizationName("nips-explorer")
    return app


def build_window(
    device: str = "auto",
    kiosk: bool = False,
    tab: str | None = None,
    checkpoint: str | None = None,
    reset_settings: bool = False,
    attract_s: float = 0.0,
):
    from ..core.settings import Settings
    from .context import AppContext
    from .main_window import MainWindow

    settings = Settings(persist=not kiosk)
    if reset_settings:
        settings.reset()
    context = AppContext(settings, device_preference=device, kiosk=kiosk, attract_s=attract_s)
    return MainWindow(context, initial_tab=tab, initial_checkpoint=checkpoint)


def fit_to_screen(window, share: float = 0.92, largest=(1700, 1050)) -> None:
    """First start (no saved geometry): most of the screen's free area, at most ``largest``, centred; the
    minimum size shrinks to the screen so a small one (1024x600, say) still shows the whole window."""
    screen = window.screen()
    if screen is None:
        window.resize(1280, 800)
        return
    avail = screen.availableGeometry()
    window.setMinimumSize(min(window.minimumWidth(), avail.width()), min(window.minimumHeight(), avail.height()))
    w = max(window.minimumWidth(), min(largest[0], int(avail.width() * share)))
    h = max(window.minimumHeight(), min(largest[1], int(avail.height() * share)))
    window.resize(w, h)
    window.move(avail.x() + (avail.width() - w) // 2, avail.y() + (avail.height() - h) // 2)


def run_gui(args) -> int:
    app = _make_app()
    attract = args.attract if args.attract is not None else (DEFAULT_ATTRACT_S if args.kiosk else 0.0)
    window = build_window(
        device=args.device,
        kiosk=args.kiosk,
        tab=args.tab,
        checkpoint=args.checkpoint,
        reset_settings=args.reset_settings,
        attract_s=attract,
    )
    if args.kiosk:
        window.showFullScreen()
    else:
        if not getattr(window, "geometry_restored", False):
            fit_to_screen(window)
        window.show()
    if os.environ.get("NIPS_EXPLORER_STARTUP_PROBE"):
        # bench/startup.py: report time to the first shown window, then quit
        from PySide6.QtCore import QTimer

        def probe():
            print(f"first-window-seconds {time.perf_counter() - _T0:.3f}", flush=True)
            window.shutdown(2.0)
            app.quit()

        QTimer.singleShot(0, probe)
    code = app.exec()
    window.shutdown(5.0)
    return code


SCREENSHOT_SIZES = ((320, 8192), (240, 8192))  # width, height bounds: a bigger surface would not fit in memory


def parse_size(text: str):
    """'WIDTHxHEIGHT' within SCREENSHOT_SIZES, or UserError (before any window or pixmap is made)."""
    from ..core.errors import UserError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--size must look like 1280x800, not '{text}'") from None
    (w0, w1), (h0, h1) = SCREENSHOT_SIZES
    if not (w0 <= w <= w1 and h0 <= h <= h1):
        raise UserError(f"--size {text}: width must be {w0}-{w1} and height {h0}-{h1} pixels")
    return w, h


def run_screenshot(args) -> int:
    from ..core.validate import output_file

    w, h = parse_size(args.size)
    output_file(args.out, "picture")
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    app = _make_app()
    window = build_window(device=args.device, kiosk=False, tab=args.tab, checkpoint=getattr(args, "checkpoint", None))
    window.context.settings.persist = False
    window.resize(w, h)
    window.show()
    from .screenshot import take_screenshot

    try:
        info = take_screenshot(window, args.tab, args.out, timeout=args.timeout)
    finally:
        window.shutdown(5.0)
        window.close()
        app.processEvents()
    msg = f"saved {info['out']} ({w}x{h}, tab {info['tab']}, {info['seconds']:.1f} s)"
    if info["error"]:
        msg += f"; the tab shows an error: {info['error']}"
    print(msg)
    return 0
