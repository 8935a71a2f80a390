"""One mechanism for background work in the whole app.

``TaskRunner.submit(fn, *args, key=..., on_result=..., on_progress=..., on_partial=...)`` runs ``fn`` in a
worker thread. ``fn`` is plain Python (no Qt): if its signature has ``token`` / ``progress`` parameters they
are passed a :class:`~explorer.core.tasks.CancelToken` and a ``progress(fraction, message)`` callable. If
``fn`` returns a generator, each yielded :class:`~explorer.core.tasks.Progress` is a progress report and any
other yielded value a partial result; the token is checked between yields; the generator's return value is
the result.

Every callback runs on the GUI thread (signals are queued to a QObject living there). With a ``key``, a new
submission cancels the previous task of that key and its late results are dropped ("latest wins").
Exceptions go to ``on_error`` or, by default, to the runner's error handler (the panel's banner) and the log.
``shutdown()`` cancels everything and waits a bounded time; worker threads are daemon threads, so a stuck
native call can never abort the process at exit.
"""
from __future__ import annotations

import inspect
import itertools
import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from PySide6.QtCore import QObject, Signal, Slot

from ..core.errors import Cancelled
from ..core.tasks import CancelToken, Progress

log = logging.getLogger(__name__)
THREAD_PREFIX = "explorer-worker"
_ids = itertools.count(1)


def running_worker_threads() -> List[threading.Thread]:
    """Worker threads of any runner that are still alive (used by tests and on exit)."""
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX) and t.is_alive()]


@dataclass(eq=False)
class Task:
    id: int
    key: Optional[str]
    generation: int
    token: CancelToken
    name: str
    on_result: Optional[Callable[[Any], None]] = None
    on_progress: Optional[Callable[[Optional[float], str], None]] = None
    on_partial: Optional[Callable[[Any], None]] = None
    on_error: Optional[Callable[[BaseException, str], None]] = None
    on_finished: Optional[Callable[[], None]] = None
    thread: Optional[threading.Thread] = None
    started: float = field(default_factory=time.perf_counter)
    elapsed_ms: float = 0.0
    done: bool = False
    cancelled_result: bool = False

    def cancel(self) -> None:
        self.token.cancel()

    @property
    def cancelled(self) -> bool:
        return self.token.cancelled


class _Bridge(QObject):
    """Lives in the GUI thread; worker threads emit, Qt queues the call to the GUI thread."""

    progress = Signal(object, object)
    partial = Signal(object, object)
    result = Signal(object, object)
    error = Signal(object, object)
    finished = Signal(object)


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

    def __init__(self, parent: Optional[QObject] = None,
                 on_error: Optional[Callable[[BaseException, str], None]] = None) -> None:
        super().__init__(parent)
        self._default_error = on_error
        self._bridge = _Bridge()  # parentless: owned by Python, outlives a deleted parent while threads run
        self._bridge.progress.connect(self._on_progress)
        self._bridge.partial.connect(self._on_partial)
        self._bridge.result.connect(self._on_result)
        self._bridge.error.connect(self._on_error)
        self._bridge.finished.connect(self._on_finished)
        self._tasks: Dict[int, Task] = {}
        self._latest: Dict[str, int] = {}
        self._closed = False
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- submit
    def submit(self, fn: Callable, *args: Any, key: Optional[str] = None, name: Optional[str] = None,
               on_result: Optional[Callable[[Any], None]] = None,
               on_progress: Optional[Callable[[Optional[float], str], None]] = None,
               on_partial: Optional[Callable[[Any], None]] = None,
               on_error: Optional[Callable[[BaseException, str], None]] = None,
               on_finished: Optional[Callable[[], None]] = None, **kwargs: Any) -> Optional[Task]:
        if self._closed:
            log.debug("runner closed; task %s not started", name or fn)
            return None
        generation = 0
        if key is not None:
            generation = self._latest.get(key, 0) + 1
            self._latest[key] = generation
            for t in list(self._tasks.values()):
                if t.key == key and not t.done:
                    t.cancel()
        task = Task(id=next(_ids), key=key, generation=generation, token=CancelToken(),
                    name=name or getattr(fn, "__name__", "task"), on_result=on_result, on_progress=on_progress,
                    on_partial=on_partial, on_error=on_error, on_finished=on_finished)
        if _accepts(fn, "token"):
            kwargs["token"] = task.token
        if _accepts(fn, "progress"):
            bridge = self._bridge

            def progress(fraction: Optional[float] = None, message: str = "", _t=task) -> None:
                _t.token.check()
                _emit(bridge.progress, _t, (fraction, message))

            kwargs["progress"] = progress
        thread = threading.Thread(target=self._run, args=(task, fn, args, kwargs),
                                  name=f"{THREAD_PREFIX}-{task.id}-{task.name}", daemon=True)
        task.thread = thread
        with self._lock:
            self._tasks[task.id] = task
        was_busy = len(self._tasks) > 1
        thread.start()
        if not was_busy:
            self.busy_changed.emit(True)
        return task

    def _run(self, task: Task, fn: Callable, args: tuple, kwargs: dict) -> None:
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
            _emit(bridge.result, task, out)
        except Cancelled:
            task.cancelled_result = True
        except BaseException as exc:  # noqa: BLE001 - everything reaches the banner and the log
            tb = traceback.format_exc()
            _emit(bridge.error, task, (exc, tb))
        finally:
            _emit(bridge.finished, task)

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

    @Slot(object, object)
    def _on_result(self, task: Task, payload: Any) -> None:
        if self._stale(task):
            log.debug("dropping stale result of %s", task.name)
            return
        self.task_timed.emit(task.name, task.elapsed_ms)
        if task.on_result is not None:
            task.on_result(payload)

    @Slot(object, object)
    def _on_error(self, task: Task, payload: Any) -> None:
        exc, tb = payload
        log.error("task %s failed:\n%s", task.name, tb)
        if self._stale(task):
            return
        handler = task.on_error or self._default_error
        if handler is not None:
            handler(exc, tb)

    @Slot(object)
    def _on_finished(self, task: Task) -> None:
        task.done = True
        with self._lock:
            self._tasks.pop(task.id, None)
            idle = not self._tasks
        if task.on_finished is not None and not self._closed:
            try:
                task.on_finished()
            except Exception:  # noqa: BLE001
                log.exception("on_finished of %s failed", task.name)
        if idle and not self._closed:
            self.busy_changed.emit(False)

    # ------------------------------------------------------------ control
    def cancel(self, key: Optional[str] = None) -> None:
        """Cancel every task (or those of ``key``)."""
        for t in list(self._tasks.values()):
            if key is None or t.key == key:
                t.cancel()

    def active_count(self, key: Optional[str] = None) -> int:
        with self._lock:
            return sum(1 for t in self._tasks.values() if not t.done and (key is None or t.key == key))

    def is_busy(self, key: Optional[str] = None) -> bool:
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
                    log.warning("worker %s did not stop within %.1fs (daemon thread, left behind)", t.name, timeout)
        return ok


def _emit(signal: Any, *args: Any) -> None:
    try:
        signal.emit(*args)
    except RuntimeError:  # the bridge's C++ object is gone (app closing): nothing left to notify
        pass
