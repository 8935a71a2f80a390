import os
import pickle
import time

import pytest
import torch

from explorer.core.registry import all_specs
from explorer.ui.workers import TaskRunner, running_worker_threads

from . import dummy_paper


@pytest.fixture
def dummy_window(make_window, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("NIPS_EXPLORER_MODELS", str(tmp_path))
    dummy_paper.save(tmp_path / "dummy.safetensors", seed=0)
    w = make_window(tab="dummy", specs=[dummy_paper.SPEC])
    page = w.show_tab("dummy")
    qtbot.waitUntil(lambda: page.panel is not None and page.panel.demo_done, timeout=30000)
    assert page.panel.model is not None
    return w, page


def test_window_opens_with_every_registered_tab(make_window, qtbot):
    specs = all_specs()
    w = make_window()
    assert w.tabs.count() == len(specs)
    assert [w.tabs.tabText(i) for i in range(w.tabs.count())] == [s.short_title for s in specs]
    panels = {}
    for spec in specs:
        page = w.show_tab(spec.id)
        qtbot.waitUntil(lambda: page.panel is not None or page.build_error is not None, timeout=60000)
        assert page.build_error is None, page.build_error
        panels[spec.id] = page.panel
    for spec in specs:  # switching back does not rebuild
        page = w.show_tab(spec.id)
        assert page.panel is panels[spec.id]
    w.shutdown(10.0)
    w.close()
    deadline = time.monotonic() + 10
    while running_worker_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running_worker_threads()


def test_checkpoint_bar_shows_bundled(dummy_window):
    w, page = dummy_window
    assert "dummy.safetensors" in page.checkpoint_bar.name.text()
    assert "score 1" in page.checkpoint_bar.headline.text()
    assert page.panel.demo_result == 42


def _open_and_wait(qtbot, page, path, kind="checkpoint_unreadable"):
    from explorer.ui.panel_base import PaperPanel

    before = page.panel.model
    with qtbot.waitSignal(page.panel.checkpoint_failed, timeout=30000) as blocker:
        page.open_checkpoint(str(path))
    banner = page.panel.banner
    assert page.panel.model is before, "the previous model must stay loaded"
    assert banner.isVisible() and banner.kind is getattr(PaperPanel.Messages, kind), banner.kind
    assert banner.fields["file"] == path.name and "dummy.safetensors" in banner.fields["previous"]  # still loaded
    assert blocker.args[0] == banner.message()
    return blocker.args[0]


def test_bad_checkpoints_keep_previous_model(dummy_window, qtbot, tmp_path, monkeypatch):
    w, page = dummy_window
    # wrong paper
    dummy_paper.save(tmp_path / "other.safetensors", paper="srnn")
    msg = _open_and_wait(qtbot, page, tmp_path / "other.safetensors", kind="wrong_tab")
    # in words for people: the tabs by their titles (no internal ids), the file named once
    assert "a checkpoint for the “SRNN (music)” tab, not for the “Dummy” tab" in msg, msg
    assert "'srnn'" not in msg and "'dummy'" not in msg and msg.count("other.safetensors") == 1, msg
    # truncated
    data = (tmp_path / "dummy.safetensors").read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[:-7])
    assert "truncated" in _open_and_wait(qtbot, page, tmp_path / "trunc.safetensors")
    # shape mismatch
    dummy_paper.save(tmp_path / "wide.pt.safetensors", n_in=3)
    sd = dummy_paper.build({"n_in": 5, "n_out": 2}).state_dict()
    torch.save(sd, tmp_path / "wide.pth")
    assert "shape mismatch" in _open_and_wait(qtbot, page, tmp_path / "wide.pth")
    # missing
    assert "no such file" in _open_and_wait(qtbot, page, tmp_path / "missing.safetensors")
    # a pickle carrying code: refused, payload not run
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(tmp_path / "evil.pt", "wb") as fh:
        pickle.dump({"weight": Evil()}, fh)
    msg = _open_and_wait(qtbot, page, tmp_path / "evil.pt")
    assert "refused" in msg or "not a readable" in msg
    assert not marker.exists()
    # and a good one still loads afterwards
    dummy_paper.save(tmp_path / "good.safetensors", seed=3)
    with qtbot.waitSignal(page.panel.checkpoint_changed, timeout=30000):
        page.open_checkpoint(str(tmp_path / "good.safetensors"))
    assert "good.safetensors" in page.checkpoint_bar.name.text()
    assert not page.panel.banner.isVisible() and page.panel.banner.kind is None


def test_reset_to_bundled(dummy_window, qtbot, tmp_path):
    w, page = dummy_window
    dummy_paper.save(tmp_path / "good.safetensors", seed=3)
    with qtbot.waitSignal(page.panel.checkpoint_changed, timeout=30000):
        page.open_checkpoint(str(tmp_path / "good.safetensors"))
    with qtbot.waitSignal(page.panel.checkpoint_changed, timeout=30000):
        page.checkpoint_bar.reset_button.click()
    assert "dummy.safetensors" in page.checkpoint_bar.name.text()


def _slow(n, token=None, progress=None):
    for i in range(n):
        token.check()
        progress(i / n, "")
        time.sleep(0.01)
    return n


def test_worker_cancel_mid_run(qtbot):
    runner = TaskRunner()
    results = []
    task = runner.submit(_slow, 10_000, on_result=results.append)
    time.sleep(0.1)
    assert task.thread.is_alive()
    task.cancel()
    task.thread.join(5)
    assert not task.thread.is_alive()
    qtbot.wait(50)
    assert results == []
    runner.shutdown()


def test_latest_wins(qtbot):
    runner = TaskRunner()
    results = []
    for n in (300, 200, 5):
        runner.submit(_slow, n, key="slider", on_result=results.append)
    qtbot.waitUntil(lambda: not runner.is_busy(), timeout=20000)
    qtbot.wait(50)
    assert results == [5]
    runner.shutdown()


def _gen(token=None):
    from explorer.core.tasks import Progress

    yield Progress(0.5, "half")
    yield "partial"
    return "done"


def test_generator_tasks_deliver_partials(qtbot):
    runner = TaskRunner()
    got = {"p": [], "partial": [], "result": []}
    runner.submit(
        _gen,
        on_progress=lambda f, m: got["p"].append(f),
        on_partial=got["partial"].append,
        on_result=got["result"].append,
    )
    qtbot.waitUntil(lambda: got["result"] == ["done"], timeout=5000)
    assert got["p"] == [0.5] and got["partial"] == ["partial"]
    runner.shutdown()


def _boom():
    raise ValueError("kaboom")


def test_worker_exception_goes_to_banner_and_app_keeps_working(dummy_window, qtbot):
    w, page = dummy_window
    panel = page.panel
    panel.runner.submit(_boom)
    qtbot.waitUntil(lambda: panel.banner.isVisible(), timeout=5000)
    assert panel.banner.kind is panel.Messages.unexpected and panel.banner.fields["reason"] == "kaboom"
    assert panel.banner.message() == "Something went wrong: kaboom"
    assert "ValueError" not in panel.banner.message()  # words for people; the class is in Details
    assert panel.banner.details_button.isVisible() and "ValueError" in panel.banner._details
    results = []
    panel.runner.submit(_slow, 3, on_result=results.append)
    qtbot.waitUntil(lambda: results == [3], timeout=5000)


def test_shutdown_cancels_running_work(dummy_window, qtbot):
    w, page = dummy_window
    page.panel.runner.submit(_slow, 100_000)
    assert running_worker_threads()
    assert w.shutdown(5.0)
    assert not running_worker_threads()


def test_kiosk_refuses_plain_close(qtbot):
    from explorer.core.settings import Settings
    from explorer.ui import main_window as mw
    from explorer.ui.context import AppContext

    orig = mw.all_specs
    mw.all_specs = lambda: [dummy_paper.SPEC]
    try:
        w = mw.MainWindow(AppContext(Settings(persist=False), "cpu", kiosk=True))
    finally:
        mw.all_specs = orig
    qtbot.addWidget(w)
    w.show()
    w.close()
    assert w.isVisible()
    w._kiosk_quit()
    assert not w.isVisible()


def test_initial_checkpoint_option(make_window, qtbot, tmp_path, monkeypatch):
    """--checkpoint PATH opens that file (not the bundled one) in the first tab shown."""
    from explorer.core.settings import Settings
    from explorer.ui import main_window as mw
    from explorer.ui.context import AppContext

    monkeypatch.setenv("NIPS_EXPLORER_MODELS", str(tmp_path))
    dummy_paper.save(tmp_path / "dummy.safetensors", seed=0)
    dummy_paper.save(tmp_path / "mine.safetensors", seed=5)
    monkeypatch.setattr(mw, "all_specs", lambda: [dummy_paper.SPEC])
    w = mw.MainWindow(
        AppContext(Settings(), "cpu"), initial_tab="dummy", initial_checkpoint=str(tmp_path / "mine.safetensors")
    )
    qtbot.addWidget(w)
    w.show()
    page = w.pages["dummy"]
    qtbot.waitUntil(lambda: page.panel is not None and page.panel.demo_done, timeout=30000)
    assert page.panel.model_meta.name == "mine.safetensors"
    w.shutdown()


def test_a_tab_is_built_in_pieces_behind_its_placeholder(make_window, qtbot, tmp_path, monkeypatch):
    """The panel's module is imported in a worker, its build steps run one per event-loop turn while the
    placeholder shows, then the panel replaces the placeholder and its demo runs."""
    import threading

    from PySide6.QtCore import QTimer

    monkeypatch.setenv("NIPS_EXPLORER_MODELS", str(tmp_path))
    dummy_paper.save(tmp_path / "dummy.safetensors", seed=0)
    w = make_window(tab="dummy", specs=[dummy_paper.SPEC])
    page = w.pages["dummy"]
    page.ensure_built()
    assert page.panel is None and page.placeholder.isVisible()  # nothing was built in this turn
    ticker = QTimer(interval=0)  # counts event-loop turns

    def tick():
        p = page._pending or page.panel
        if p is not None:
            p.turn += 1

    ticker.timeout.connect(tick)
    ticker.start()
    qtbot.waitUntil(lambda: page.panel is not None and page.panel.demo_done, timeout=30000)
    ticker.stop()
    assert dummy_paper.CLASS_THREAD is not threading.main_thread()  # the module import ran in a worker
    turns = [t for t, _ in dummy_paper.BUILD_TURNS]
    assert len(turns) == 3 and len(set(turns)) == 3, turns  # one piece per turn
    assert not any(visible for _, visible in dummy_paper.BUILD_TURNS)  # hidden while built
    assert page.panel.isVisible() and page.panel.model is not None


def test_a_replaced_checkpoint_load_still_starts_the_demo(make_window, qtbot, tmp_path, monkeypatch):
    """The bundled model's load (which starts the default demo when it ends) is replaced by a file opened before
    it finished: its cancelled outcome hands the demo over to the newer load."""
    import threading

    monkeypatch.setenv("NIPS_EXPLORER_MODELS", str(tmp_path))
    dummy_paper.save(tmp_path / "dummy.safetensors", seed=0)
    dummy_paper.save(tmp_path / "mine.safetensors", seed=5)
    gate = threading.Event()
    monkeypatch.setattr(dummy_paper, "LOAD_GATE", gate)
    w = make_window(tab="dummy", specs=[dummy_paper.SPEC])
    page = w.show_tab("dummy")
    qtbot.waitUntil(lambda: page.panel is not None and page.panel.runner.is_busy("checkpoint"), timeout=30000)
    page.open_checkpoint(str(tmp_path / "mine.safetensors"))  # replaces the bundled load
    gate.set()
    qtbot.waitUntil(lambda: page.panel.demo_done, timeout=30000)
    assert page.panel.model_meta.name == "mine.safetensors" and page.panel.demo_result == 42


def test_a_long_training_data_note_is_cut_at_a_word_and_whole_in_the_tooltip():
    from explorer.ui.widgets.checkpoint_bar import DATA_CHARS, short_data

    assert short_data("FSDD digits") == "FSDD digits"
    long = "64x64 centre crops of the BSDS500 train_ photos (research images, not shipped) styled as disco"
    s = short_data(long)
    assert len(s) <= DATA_CHARS and s.endswith("…") and long.startswith(s[:-1])
    assert s[-2] != " " and long[len(s) - 1] in " ,;:()"  # cut at a word boundary


def test_the_checkpoint_bar_can_be_grabbed_on_its_own(qtbot):
    """Regression: a QLabel attribute named ``metric`` shadowed QWidget.metric(), and grabbing the bar crashed."""
    from explorer.ui.widgets.checkpoint_bar import CheckpointBar

    bar = CheckpointBar()
    qtbot.addWidget(bar)
    bar.resize(600, 30)
    bar.show()
    assert not bar.grab().isNull()
