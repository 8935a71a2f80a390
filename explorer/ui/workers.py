"""One mechanism for background work in the whole app.

``TaskRunner.submit(fn, *args, key=..., on_result=..., on_error=..., on_cancelled=..., on_progress=...,
on_partial=..., on_finished=...)`` runs ``fn`` in a worker thread. ``fn`` is plain Python (no Qt): if its
signature has ``token`` / ``progress`` parameters they are passed a
:class:`~explorer.core.tasks.CancelToken` and a ``progress(fraction, message)`` callable. If
``fn`` returns a generator, each yielded :class:`~explorer.core.tasks.Progress` is a progress report and any
other yielded value a partial result; the token is checked between yields; the generator's return value is
the result.

Every callback runs on the GUI thread (signals are queued to a QObject living there). Every task ends with
exactly one outcome, then ``on_finished``:

* ``on_result(value)``: it returned and was not cancelled meanwhile;
* ``on_error(exc, traceback)``: it raised (by default the runner's error handler, i.e. the panel's banner;
  always logged);
* ``on_cancelled()``: its token was cancelled (``task.cancel()``, ``runner.cancel(key)``), or it was replaced by
  a newer submission of the same ``key`` ("latest wins"; ``task.superseded`` is then True). A result or an
  error that arrives after the cancel counts as cancelled too, and progress/partials stop at the cancel.

When ``on_cancelled``/``on_finished`` run, the task no longer counts in ``is_busy()``; ``latest_cancelled(key)``
tells a handler whether the newest task of its key was cancelled (a user's Cancel) or whether a newer one took
over (which reports its own outcome). After ``shutdown()`` (the panel is closing) no callback runs any more.
``shutdown()`` cancels everything and waits a bounded time.

The threads are Qt's: every task is a QRunnable on one QThreadPool shared by all runners (threads are reused, and
started on demand up to ``MAX_THREADS``, so a task never waits for a free thread in practice; idle ones wait for the
next task). The pool is a child
of the main thread's QThread object, which Qt never deletes before the process ends: no pool destructor waits for
its threads at exit, so a task stuck in a native call cannot hang (or abort) the process on quit, as with daemon
threads. ``task.thread`` is a small handle (``is_alive()``, ``join(timeout)``, ``name``) of the task's run, and
``running_worker_threads()`` lists those of the runs not finished yet.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, QThread, QThreadPool, Signal, Slot

from ..core.errors import Cancelled
from ..core.tasks import CancelToken, Progress

log = logging.getLogger(__name__)
THREAD_PREFIX = "explorer-worker"
MAX_THREADS = 64  # tasks running at once (as before, when each had its own thread); idle threads wait
_ids = itertools.count(1)
_pool: QThreadPool | None = None
_running: set[WorkerRun] = set()
_running_lock = threading.Lock()


def worker_pool() -> QThreadPool:
    """The QThreadPool every runner's tasks run on (created on first use, in the GUI thread)."""
    global _pool
    if _pool is None:
        # Parented to the main thread's QThread object: owned by C++ and never deleted before the process ends, so
        # neither Python's nor Qt's exit waits for a stuck task (a Python-owned pool would, in its destructor).
        pool = QThreadPool(QThread.currentThread() if threading.current_thread() is threading.main_thread() else None)
        pool.setObjectName("explorer-workers")
        pool.setMaxThreadCount(MAX_THREADS)
        pool.setExpiryTimeout(-1)  # idle threads stay for the next task (Python keeps a record of every thread)
        _pool = pool
    return _pool


class WorkerRun:
    """The handle of one task's run on the pool (what ``task.thread`` is): alive from submission until the run has
    returned; ``join(timeout)`` waits for that."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._done = threading.Event()

    def is_alive(self) -> bool:
        return not self._done.is_set()

    def join(self, timeout: float | None = None) -> None:
        self._done.wait(timeout)

    def _finish(self) -> None:
        with _running_lock:
            _running.discard(self)
        self._done.set()

    def __repr__(self) -> str:
        return f"<WorkerRun {self.name} {'running' if self.is_alive() else 'done'}>"


def running_worker_threads() -> list[WorkerRun]:
    """Runs of any runner's tasks that have not finished (used by tests and on exit)."""
    with _running_lock:
        return [r for r in _running if r.is_alive()]


@dataclass(eq=False)
class Task:
    id: int
    key: str | None
    generation: int
    token: CancelToken
    name: str
    on_result: Callable[[Any], None] | None = None
    on_progress: Callable[[float | None, str], None] | None = None
    on_partial: Callable[[Any], None] | None = None
    on_error: Callable[[BaseException, str], None] | None = None
    on_cancelled: Callable[[], None] | None = None
    on_finished: Callable[[], None] | None = None
    thread: WorkerRun | None = None
    started: float = field(default_factory=time.perf_counter)
    elapsed_ms: float = 0.0
    done: bool = False
    superseded: bool = False  # replaced by a newer task of the same key
    outcome: str | None = None  # "result" | "error" | "cancelled" once delivered

    def cancel(self) -> None:
        self.token.cancel()

    @property
    def cancelled(self) -> bool:
        return self.token.cancelled


class _Bridge(QObject):
    """Lives in the GUI thread; worker threads emit, Qt queues the call to the GUI thread."""

    progress = Signal(object, object)
    partial = Signal(object, object)
    ended = Signal(object, object, object)  # task, "result" | "error" | "cancelled", payload


def _accepts(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


class TaskRunner(QObject):
    """Runs plain callables / generators in worker threads; see module doc."""

    busy_changed = Signal(bool)
    task_timed = Signal(str, float)  # task name, elapsed ms (for the status bar)

    def __init__(
        self, parent: QObject | None = None, on_error: Callable[[BaseException, str], None] | None = None
    ) -> None:
        super().__init__(parent)
        self._default_error = on_error
        self._bridge = _Bridge()  # parentless: owned by Python, outlives a deleted parent while threads run
        self._bridge.progress.connect(self._on_progress)
        self._bridge.partial.connect(self._on_partial)
        self._bridge.ended.connect(self._on_ended)
        self._tasks: dict[int, Task] = {}
        self._latest: dict[str, int] = {}
        self._newest: dict[str, CancelToken] = {}  # key -> token of its newest task
        self._closed = False
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- submit
    def submit(
        self,
        fn: Callable,
        *args: Any,
        key: str | None = None,
        name: str | None = None,
        on_result: Callable[[Any], None] | None = None,
        on_progress: Callable[[float | None, str], None] | None = None,
        on_partial: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException, str], None] | None = None,
        on_cancelled: Callable[[], None] | None = None,
        on_finished: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> Task | None:
        if self._closed:
            log.debug("runner closed; task %s not started", name or fn)
            return None
        generation = 0
        if key is not None:
            generation = self._latest.get(key, 0) + 1
            self._latest[key] = generation
            for t in list(self._tasks.values()):
                if t.key == key and not t.done:
                    t.superseded = True
                    t.cancel()
        task = Task(
            id=next(_ids),
            key=key,
            generation=generation,
            token=CancelToken(),
            name=name or getattr(fn, "__name__", "task"),
            on_result=on_result,
            on_progress=on_progress,
            on_partial=on_partial,
            on_error=on_error,
            on_cancelled=on_cancelled,
            on_finished=on_finished,
        )
        if key is not None:
            self._newest[key] = task.token
        if _accepts(fn, "token"):
            kwargs["token"] = task.token
        if _accepts(fn, "progress"):
            bridge = self._bridge

            def progress(fraction: float | None = None, message: str = "", _t=task) -> None:
                _t.token.check()
                _emit(bridge.progress, _t, (fraction, message))

            kwargs["progress"] = progress
        run = WorkerRun(f"{THREAD_PREFIX}-{task.id}-{task.name}")
        task.thread = run
        with self._lock:
            self._tasks[task.id] = task
        was_busy = len(self._tasks) > 1
        with _running_lock:
            _running.add(run)
        worker_pool().start(lambda: self._run(task, fn, args, kwargs))
        if not was_busy:
            self.busy_changed.emit(True)
        return task

    def _run(self, task: Task, fn: Callable, args: tuple, kwargs: dict) -> None:
        """The body of a task's QRunnable (a pool thread)."""
        me = threading.current_thread()
        me.name = task.thread.name if task.thread is not None else THREAD_PREFIX  # for the log and debuggers
        try:
            self._run_task(task, fn, args, kwargs)
        finally:
            me.name = f"{THREAD_PREFIX}-idle"
            if task.thread is not None:
                task.thread._finish()

    def _run_task(self, task: Task, fn: Callable, args: tuple, kwargs: dict) -> None:
        bridge = self._bridge
        try:
            out = fn(*args, **kwargs)
            if inspect.isgenerator(out):
                gen = out
                try:
                    while True:
                        task.token.check()
                        item = next(gen)
                        task.token.check()
                        if isinstance(item, Progress):
                            _emit(bridge.progress, task, (item.fraction, item.message))
                        else:
                            _emit(bridge.partial, task, item)
                except StopIteration as stop:
                    out = stop.value
                finally:
                    gen.close()
            task.token.check()
            task.elapsed_ms = (time.perf_counter() - task.started) * 1000.0
            kind, payload = "result", out
        except Cancelled:
            kind, payload = "cancelled", None
        except BaseException as exc:  # noqa: BLE001 - everything reaches the banner and the log
            kind, payload = "error", (exc, traceback.format_exc())
        _emit(bridge.ended, task, kind, payload)  # one signal: the outcome and the end cannot be split

    # ------------------------------------------------------------- GUI side
    def _stale(self, task: Task) -> bool:
        if self._closed or task.token.cancelled:
            return True
        return task.key is not None and self._latest.get(task.key) != task.generation

    @Slot(object, object)
    def _on_progress(self, task: Task, payload: Any) -> None:
        if not self._stale(task) and task.on_progress is not None:
            task.on_progress(*payload)

    @Slot(object, object)
    def _on_partial(self, task: Task, payload: Any) -> None:
        if not self._stale(task) and task.on_partial is not None:
            task.on_partial(payload)

    @Slot(object, object, object)
    def _on_ended(self, task: Task, kind: str, payload: Any) -> None:
        """Deliver exactly one outcome (result, error or cancelled), then on_finished."""
        task.done = True
        with self._lock:
            self._tasks.pop(task.id, None)
            idle = not self._tasks
        if kind == "error":
            exc, tb = payload
            if self._stale(task):
                log.info("task %s failed after it was cancelled (counted as cancelled):\n%s", task.name, tb)
            else:
                log.error("task %s failed:\n%s", task.name, tb)
        if self._closed:
            return
        if kind != "cancelled" and self._stale(task):
            log.debug("task %s ended after it was cancelled: dropping its %s", task.name, kind)
            kind = "cancelled"
        task.outcome = kind
        try:
            if kind == "result":
                self.task_timed.emit(task.name, task.elapsed_ms)
                if task.on_result is not None:
                    task.on_result(payload)
            elif kind == "error":
                handler = task.on_error or self._default_error
                if handler is not None:
                    handler(*payload)
            elif task.on_cancelled is not None:
                task.on_cancelled()
        finally:
            if task.on_finished is not None:
                try:
                    task.on_finished()
                except Exception:  # noqa: BLE001
                    log.exception("on_finished of %s failed", task.name)
            if idle and not self._closed:
                self.busy_changed.emit(False)

    # ------------------------------------------------------------ control
    def cancel(self, key: str | None = None) -> None:
        """Cancel every task (or those of ``key``)."""
        for t in list(self._tasks.values()):
            if key is None or t.key == key:
                t.cancel()

    def latest_cancelled(self, key: str) -> bool:
        """True when the newest task submitted with ``key`` was cancelled.

        A cancelled outcome of a task whose newer replacement was not cancelled means nothing to show: the newer
        task reports its own outcome.
        """
        token = self._newest.get(key)
        return token is not None and token.cancelled

    def active_count(self, key: str | None = None) -> int:
        with self._lock:
            return sum(1 for t in self._tasks.values() if not t.done and (key is None or t.key == key))

    def is_busy(self, key: str | None = None) -> bool:
        return self.active_count(key) > 0

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Cancel all tasks and wait up to ``timeout`` seconds in total. Idempotent. True if all stopped."""
        self._closed = True
        with self._lock:
            tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        deadline = time.monotonic() + timeout
        ok = True
        for t in tasks:
            if t.thread is not None:
                t.thread.join(max(0.0, deadline - time.monotonic()))
                if t.thread.is_alive():
                    ok = False
                    log.warning(
                        "worker %s did not stop within %.1fs (left behind; it cannot hold up the exit)", t.name, timeout
                    )
        return ok


def _emit(signal: Any, *args: Any) -> None:
    try:
        signal.emit(*args)
    except RuntimeError:  # the bridge's C++ object is gone (app closing): nothing left to notify
        pass
