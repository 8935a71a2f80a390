"""Shared fixtures: headless Qt, settings and logs in a temp folder, no worker may outlive its test."""

from __future__ import annotations

import os
import tempfile
import time

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("NIPS_EXPLORER_THREADS", "1")
os.environ.setdefault("QT_LOGGING_RULES", "qt.multimedia.*=false")
_tmp = tempfile.mkdtemp(prefix="nips-explorer-test-")
os.environ["NIPS_EXPLORER_CONFIG_DIR"] = os.path.join(_tmp, "config")
os.environ["NIPS_EXPLORER_LOG_DIR"] = os.path.join(_tmp, "log")


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("NIPS_EXPLORER_CONFIG_DIR", str(tmp_path / "config"))
    yield


@pytest.fixture(autouse=True)
def _no_leaked_workers(request):
    """Fail any test that leaves a worker thread running (after a bounded grace period)."""
    yield
    import sys

    if "explorer.ui.workers" not in sys.modules:
        return
    from explorer.ui.workers import running_worker_threads

    deadline = time.monotonic() + 10.0
    while running_worker_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    left = running_worker_threads()
    assert not left, f"worker threads still running after the test: {[t.name for t in left]}"


@pytest.fixture
def make_window(qtbot):
    """make_window(tab=None, specs=None) -> MainWindow (shown, offscreen); shut down after the test."""
    windows = []

    def make(tab=None, specs=None, device="cpu"):
        from explorer.core.settings import Settings
        from explorer.ui import main_window as mw
        from explorer.ui.context import AppContext

        if specs is not None:
            orig = mw.all_specs
            mw.all_specs = lambda: list(specs)
        try:
            ctx = AppContext(Settings(), device_preference=device)
            w = mw.MainWindow(ctx, initial_tab=tab)
        finally:
            if specs is not None:
                mw.all_specs = orig
        qtbot.addWidget(w)
        w.resize(1280, 800)
        w.show()
        windows.append(w)
        return w

    yield make
    for w in windows:
        w.shutdown(10.0)
        w.close()


@pytest.fixture
def make_panel(make_window, qtbot):
    """make_panel(paper_id, timeout=120) -> the paper's panel in a real window, after its default demo."""

    def make(paper_id, timeout=120.0):
        w = make_window(tab=paper_id)
        page = w.show_tab(paper_id)
        qtbot.waitUntil(lambda: page.panel is not None or page.build_error is not None, timeout=int(timeout * 1000))
        assert page.build_error is None, page.build_error
        panel = page.panel
        qtbot.waitUntil(lambda: panel.demo_done, timeout=int(timeout * 1000))
        return panel

    return make
