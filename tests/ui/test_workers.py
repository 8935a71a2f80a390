"""The runner's outcomes: every task ends with exactly one of result / error / cancelled, then on_finished."""

from __future__ import annotations

import threading

import pytest

from explorer.ui.workers import TaskRunner

from .test_shell import _slow


@pytest.fixture
def runner():
    errors = []
    r = TaskRunner(on_error=lambda exc, tb: errors.append(exc))
    r.default_errors = errors
    yield r
    r.shutdown()


def _recorder(events, tag):
    return dict(
        on_result=lambda v: events.append((tag, "result", v)),
        on_error=lambda exc, tb: events.append((tag, "error", str(exc))),
        on_cancelled=lambda: events.append((tag, "cancelled")),
        on_finished=lambda: events.append((tag, "finished")),
    )


def _boom():
    raise ValueError("kaboom")


def test_result_then_finished(runner, qtbot):
    events = []
    runner.submit(lambda: 7, **_recorder(events, "a"))
    qtbot.waitUntil(lambda: ("a", "finished") in events, timeout=5000)
    assert events == [("a", "result", 7), ("a", "finished")]
    assert not runner.is_busy()


def test_error_then_finished(runner, qtbot):
    events = []
    runner.submit(_boom, **_recorder(events, "a"))
    qtbot.waitUntil(lambda: ("a", "finished") in events, timeout=5000)
    assert events == [("a", "error", "kaboom"), ("a", "finished")]
    assert runner.default_errors == []  # the task's own handler took it


def test_cancel_gives_the_cancelled_outcome_once(runner, qtbot):
    events, progress = [], []
    task = runner.submit(_slow, 10_000, on_progress=lambda f, m: progress.append(f), **_recorder(events, "a"))
    qtbot.waitUntil(lambda: len(progress) > 2, timeout=5000)
    task.cancel()
    qtbot.waitUntil(lambda: ("a", "finished") in events, timeout=5000)
    qtbot.wait(50)
    assert events == [("a", "cancelled"), ("a", "finished")]
    assert not task.superseded and task.outcome == "cancelled"
    assert not runner.is_busy()


def test_runner_cancel_by_key(runner, qtbot):
    events = []
    runner.submit(_slow, 10_000, key="k", **_recorder(events, "a"))
    runner.cancel("k")
    qtbot.waitUntil(lambda: ("a", "finished") in events, timeout=5000)
    assert events == [("a", "cancelled"), ("a", "finished")]
    assert runner.latest_cancelled("k")


def test_latest_wins_cancels_the_replaced_tasks(runner, qtbot):
    events = []
    tasks = [runner.submit(_slow, n, key="slider", **_recorder(events, n)) for n in (300, 200, 5)]
    qtbot.waitUntil(lambda: not runner.is_busy(), timeout=20000)
    qtbot.wait(50)
    # exactly one outcome each, then finished; only the newest one's result reaches the panel
    assert [e[1:] for e in events if e[0] == 300] == [("cancelled",), ("finished",)]
    assert [e[1:] for e in events if e[0] == 200] == [("cancelled",), ("finished",)]
    assert [e[1:] for e in events if e[0] == 5] == [("result", 5), ("finished",)]
    assert tasks[0].superseded and tasks[1].superseded and not tasks[2].superseded
    assert not runner.latest_cancelled("slider")  # the newest one was not cancelled: it reported a result


def test_a_result_that_arrives_after_the_cancel_counts_as_cancelled(runner, qtbot):
    events = []
    task = runner.submit(lambda: 1, **_recorder(events, "a"))
    task.thread.join(5)  # the worker has emitted its result; the GUI has not seen it yet
    task.cancel()
    qtbot.waitUntil(lambda: ("a", "finished") in events, timeout=5000)
    assert events == [("a", "cancelled"), ("a", "finished")]


def test_an_error_after_the_cancel_counts_as_cancelled(runner, qtbot):
    events = []
    go = threading.Event()

    def fails_late():
        go.wait(5)
        raise OSError("device gone")  # e.g. a stream whose source was closed by the cancel

    task = runner.submit(fails_late, **_recorder(events, "a"))
    task.cancel()
    go.set()
    qtbot.waitUntil(lambda: ("a", "finished") in events, timeout=5000)
    assert events == [("a", "cancelled"), ("a", "finished")]
    assert runner.default_errors == []


def test_errors_without_a_handler_go_to_the_default_one(runner, qtbot):
    finished = []
    runner.submit(_boom, on_finished=lambda: finished.append(1))
    qtbot.waitUntil(lambda: bool(finished), timeout=5000)
    assert [str(e) for e in runner.default_errors] == ["kaboom"]


def test_generator_cancelled_between_yields(runner, qtbot):
    from explorer.core.tasks import Progress

    events, partials = [], []
    gate = threading.Event()

    def gen(token=None):
        yield "first"
        gate.wait(5)
        yield Progress(0.5, "never shown")
        return "never returned"

    task = runner.submit(gen, on_partial=partials.append, **_recorder(events, "g"))
    qtbot.waitUntil(lambda: partials == ["first"], timeout=5000)
    task.cancel()
    gate.set()
    qtbot.waitUntil(lambda: ("g", "finished") in events, timeout=5000)
    assert events == [("g", "cancelled"), ("g", "finished")] and partials == ["first"]


def test_no_callbacks_after_shutdown(qtbot):
    r = TaskRunner()
    events = []
    r.submit(_slow, 10_000, **_recorder(events, "a"))
    assert r.shutdown(5.0)
    qtbot.wait(100)
    assert events == []


def test_on_finished_runs_even_when_the_outcome_handler_raises(runner, qtbot):
    finished = []

    def bad(_v):
        raise RuntimeError("a bug in a panel")

    runner.submit(lambda: 1, on_result=bad, on_finished=lambda: finished.append(1))
    with qtbot.captureExceptions() as exceptions:
        qtbot.waitUntil(lambda: bool(finished), timeout=5000)
    assert finished == [1]
    assert exceptions and "a bug in a panel" in str(exceptions[0][1])


def test_tasks_run_on_qts_thread_pool(runner, qtbot):
    """Every task is a QRunnable on the shared QThreadPool (a Qt thread, not the GUI thread), which C++ owns: no
    destructor of it waits for the threads at exit."""
    import shiboken6
    from PySide6.QtCore import QThread

    from explorer.ui.workers import worker_pool

    seen = []

    def on_thread():
        me = QThread.currentThread()
        return me, threading.current_thread().name

    runner.submit(on_thread, on_result=seen.append)
    qtbot.waitUntil(lambda: bool(seen), timeout=5000)
    thread, name = seen[0]
    assert thread != QThread.currentThread()  # not the GUI thread
    assert name.startswith("explorer-worker-") and name.endswith("on_thread")
    pool = worker_pool()
    assert pool.maxThreadCount() >= 16
    assert not shiboken6.Shiboken.ownedByPython(pool)


def test_a_task_stuck_in_native_code_does_not_hold_up_the_exit(tmp_path):
    """shutdown() gives up on it after its timeout and the process still ends (as with daemon threads)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import ctypes, os, sys
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        from PySide6.QtCore import QCoreApplication
        app = QCoreApplication([])
        from explorer.ui.workers import TaskRunner, running_worker_threads
        libc = ctypes.CDLL(None)
        started = __import__("threading").Event()
        def stuck():
            started.set()
            libc.sleep(600)          # a native call that never checks the cancel token
        r = TaskRunner()
        r.submit(stuck)
        started.wait(10)
        print("stopped", r.shutdown(0.2), "left", len(running_worker_threads()), flush=True)
        sys.exit(0)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "stopped False left 1" in proc.stdout
