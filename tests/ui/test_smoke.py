"""Open every registered tab in a separate process, wait for each default demo, and fail on any traceback."""

import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import sys, time
from PySide6.QtWidgets import QApplication
from explorer.ui.app import _make_app, build_window
app = _make_app()
w = build_window(device="cpu")
w.context.settings.persist = False
w.resize(1280, 800); w.show()
for pid, page in w.pages.items():
    w.show_tab(pid)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        app.processEvents()
        if page.build_error or (page.panel is not None and page.panel.demo_done and not page.panel.runner.is_busy()):
            break
        time.sleep(0.02)
    err = page.build_error or (page.panel.banner.message() if page.panel else "")
    done = page.panel is not None and page.panel.demo_done
    print(f"TAB {pid} built={page.panel is not None} done={done} error={err!r}", flush=True)
ok = w.shutdown(10.0)
w.close(); app.processEvents()
print("SHUTDOWN", ok, flush=True)
"""


@pytest.mark.slow  # every tab's default demo, one after the other
def test_every_tab_opens_without_traceback():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=900, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Traceback" not in out, out
    tabs = [line for line in r.stdout.splitlines() if line.startswith("TAB ")]
    assert tabs, out
    for line in tabs:
        assert "built=True done=True error=''" in line, line
    assert "SHUTDOWN True" in r.stdout, out
