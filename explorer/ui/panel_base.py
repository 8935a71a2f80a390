"""Base class of every paper tab's panel.

Gives each panel: an error banner, a TaskRunner whose errors land in the banner, checkpoint loading in a
worker (a wrong file leaves the previous model loaded), timing reports for the status bar, and the hooks
the shell calls (default demo, VTK views for screenshots, shutdown).

The two conventions every panel follows:

* **Jobs and the device.** The work a panel starts is a plain function of its paper's ``infer.py`` (no Qt), sent
  with ``self.runner.submit(infer.f, ...)``. A job that computes on the device declares a ``device`` parameter and
  the panel leaves it out: the panel's runner passes ``device=`` the app's device (``context.device()``), resolved
  in the worker when the job starts, never on the GUI thread (the first call imports torch and may initialise
  CUDA). A panel never calls ``self.context.device()`` itself nor hands the function to a job.
* **Declared messages.** The banner's messages are declared in one table per panel, a nested ``Messages`` class
  (``class Messages(PaperPanel.Messages): no_model = Msg("No model is loaded: ...")``, see ui/messages.py) that
  inherits the generic kinds (checkpoint unreadable, wrong tab, out of memory, unexpected error, cancelled, ...).
  ``self.show_msg(self.Messages.no_model, **fields)`` shows one; ``self.banner.kind`` tells which is shown, so
  tests assert the kind, not the wording. ``show_exception`` picks the generic kind of a worker's failure.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from ..core.errors import UserError
from ..core.registry import PaperSpec, load_attr
from .context import AppContext
from .messages import Messages, Msg, exception_text, out_of_memory, plain, tab_name, tab_titles, wrong_tab_ids
from .widgets.banner import ErrorBanner
from .workers import TaskRunner

log = logging.getLogger(__name__)
_RUNNER_OPTIONS = frozenset(inspect.signature(TaskRunner.submit).parameters) - {"self", "fn", "args", "kwargs"}


def wants_device(fn: Callable, args: tuple = (), kwargs: dict | None = None) -> bool:
    """True when ``fn`` has a ``device`` parameter that ``args``/``kwargs`` leave unset."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    if "device" not in sig.parameters:
        return False
    try:
        bound = sig.bind_partial(*args, **(kwargs or {}))
    except TypeError:
        return False  # the call itself is wrong: it fails in the worker with its own error
    return "device" not in bound.arguments


class PanelRunner(TaskRunner):
    """A panel's TaskRunner: a job with a ``device`` parameter left unset is called with ``device=device_fn()``,
    evaluated in the worker thread as the job starts (see the module's docstring)."""

    def __init__(self, parent: Any, on_error: Any, device_fn: Callable[[], Any]) -> None:
        super().__init__(parent, on_error=on_error)
        self._device_fn = device_fn

    def submit(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        job_kwargs = {k: v for k, v in kwargs.items() if k not in _RUNNER_OPTIONS}
        if wants_device(fn, args, job_kwargs):
            fn = _with_device(fn, self._device_fn)
        return super().submit(fn, *args, **kwargs)


def _with_device(fn: Callable, device_fn: Callable[[], Any]) -> Callable:
    @functools.wraps(fn)  # keeps its name and signature (the runner looks for token/progress parameters in it)
    def job(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, device=device_fn(), **kwargs)

    return job


def _cpu() -> str:
    return "cpu"


class PaperPanel(QWidget):
    Messages = Messages  # the generic kinds; a panel declares its own in a subclass of this table

    checkpoint_changed = Signal(object)  # CheckpointMeta
    checkpoint_failed = Signal(str)  # message
    timing = Signal(str, float)  # what, milliseconds
    demo_finished = Signal()

    def __init__(self, spec: PaperSpec, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.spec = spec
        self.context = context
        self.model: Any = None
        self.model_meta = None
        self.demo_done = False
        self._demo_started = False
        self._closed = False
        self._later: deque = deque()
        self._checkpoint_waiters: list = []  # on_done of loads a newer load replaced: they get its outcome
        self.banner = ErrorBanner(self)
        self.runner = PanelRunner(self, self.show_exception, getattr(context, "device", None) or _cpu)
        self.runner.task_timed.connect(self._on_task_timed)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.banner)
        self.body = QVBoxLayout()
        outer.addLayout(self.body, 1)

    def build_steps(self) -> Iterator[None]:
        """Override: build the panel's widgets in pieces, ``yield`` between them. The shell runs one piece per
        event-loop turn behind the tab's placeholder, so no turn builds a whole tab (a pyqtgraph plot costs
        20-60 ms to make on a slow CPU); the constructor only sets attributes. Nothing here may wait on a model,
        an import or a file: start worker jobs for those (the checkpoint is loaded after the build)."""
        return iter(())

    def later(self, fn, *args: Any) -> None:
        """Run ``fn(*args)`` in a later turn of the event loop: queued calls run in order, one per turn, so a
        result that redraws many plots can be drawn piece by piece with Qt painting in between (none after
        shutdown)."""
        self._later.append((fn, args))
        if len(self._later) == 1:
            QTimer.singleShot(0, self._run_later)

    def reveal_later(self, *plots: Any) -> None:
        """Draw these pyqtgraph plots (PlotItems or PlotWidgets) one per event-loop turn once the tab shows (call it
        in the last piece of ``build_steps``): they are transparent until then, so the tab's first paint does not
        draw every plot and axis at once (8 plots took 200-400 ms). Their layout is final from the start."""
        for p in plots:
            item = p.getPlotItem() if hasattr(p, "getPlotItem") else p
            item.setOpacity(0.0)
            self.later(item.setOpacity, 1.0)

    def _run_later(self) -> None:
        if self._closed or not self._later:
            self._later.clear()
            return
        fn, args = self._later.popleft()
        try:
            fn(*args)
        finally:
            if self._later:
                QTimer.singleShot(0, self._run_later)

    # ------------------------------------------------------------ messages
    def show_msg(self, kind: Msg, details: str = "", **fields: Any) -> str:
        """Show the declared message ``kind`` (filled with ``fields``) in the banner; returns its words."""
        text = kind.text(**fields)
        if not self._closed:
            self.banner.show_message(text, details, kind=kind, fields=fields)
        return text

    def show_error(self, message: str, details: str = "") -> None:
        """Words no table declares (panels not yet ported to declared messages): ``Messages.undeclared``."""
        self.show_msg(self.Messages.undeclared, details, text=message)

    def clear_error(self) -> None:
        self.banner.clear()

    def clear_msg(self, *kinds: Msg) -> None:
        """Hide the banner if it shows one of ``kinds`` (any message when none is given)."""
        if not kinds or self.banner.kind in kinds:
            self.banner.clear()

    def show_exception(self, exc: BaseException, tb: str = "") -> None:
        details = tb or f"{type(exc).__name__}: {exc}"
        memory = out_of_memory(exc)
        if isinstance(exc, UserError):
            self.show_msg(self.Messages.user_error, details, reason=self.plain(str(exc)))
        elif memory:
            self.show_msg(self.Messages.out_of_memory, details, what=memory)
        else:
            self.show_msg(self.Messages.unexpected, details, reason=exception_text(exc))

    def plain(self, text: str, file_name: str = "") -> str:
        """A message for people: tabs named by their titles, ``file_name`` said once (see ui/messages.py)."""
        return plain(text, file_name, tab_titles({self.spec.id: self.spec.short_title}))

    def report_timing(self, ms: float, what: str = "inference") -> None:
        self.timing.emit(what, float(ms))

    def _on_task_timed(self, name: str, ms: float) -> None:
        self.timing.emit(name, ms)

    # ---------------------------------------------------------- checkpoints
    @property
    def uses_checkpoint(self) -> bool:
        return bool(self.spec.loader)

    def bundled_checkpoint(self) -> Path | None:
        from ..core.paths import bundled

        return bundled(self.spec.default_checkpoint) if self.spec.default_checkpoint else None

    def open_checkpoint(self, path: str | Path, on_done=None) -> None:
        """Load a checkpoint in a worker; on failure show why and keep the previous model."""
        if not self.spec.loader:
            self.show_msg(self.Messages.no_checkpoints, tab=self.spec.short_title)
            return
        ref = self.spec.loader
        path = Path(path)

        def load(device, token=None):
            # the loader's module (model code, torch) is imported here, in the worker, never on the GUI thread
            return load_attr(ref)(str(path), device)

        def ok(result):
            model, meta = result
            self.model, self.model_meta = model, meta
            if self.banner.kind not in self.Messages.sticky():  # a problem the load does not fix stays shown
                self.clear_error()
            try:
                self.on_model_loaded(model, meta)
            finally:
                self.checkpoint_changed.emit(self.checkpoint_in_use() or meta)
                if on_done:
                    on_done(True)
                self._checkpoint_settled(True)

        def failed(exc, tb):
            in_use = self.checkpoint_in_use() if self.model_meta else None
            prev = f" The previous model ({in_use.name}) is still loaded." if in_use else ""
            ids = wrong_tab_ids(str(exc)) if isinstance(exc, UserError) else None
            if ids:
                titles = tab_titles({self.spec.id: self.spec.short_title})
                msg = self.show_msg(
                    self.Messages.wrong_tab,
                    tb,
                    file=path.name,
                    other_tab=tab_name(ids[0], titles),
                    this_tab=tab_name(ids[1], titles),
                    previous=prev,
                )
            else:
                reason = self.plain(str(exc) if isinstance(exc, UserError) else exception_text(exc), path.name)
                msg = self.show_msg(
                    self.Messages.checkpoint_unreadable, tb, file=path.name, reason=reason.rstrip("."), previous=prev
                )
            self.checkpoint_failed.emit(msg)
            if on_done:
                on_done(False)
            self._checkpoint_settled(self.model is not None)

        def cancelled():
            # Replaced by a newer load (another file opened before this one was read): whoever waited for this
            # one (the default demo, say) waits for that one instead, or hears now if it has already finished.
            if on_done is None:
                return
            if self.runner.is_busy("checkpoint"):
                self._checkpoint_waiters.append(on_done)
            else:
                on_done(self.model is not None)

        self.runner.submit(
            load, key="checkpoint", name="load checkpoint", on_result=ok, on_error=failed, on_cancelled=cancelled
        )

    def _checkpoint_settled(self, ok: bool) -> None:
        waiters, self._checkpoint_waiters = self._checkpoint_waiters, []
        for fn in waiters:
            fn(ok)

    def load_bundled(self, on_done=None) -> None:
        p = self.bundled_checkpoint()
        if p is None:
            if on_done:
                on_done(False)
            return
        if not p.exists():
            self.show_msg(self.Messages.bundled_missing, file=p.name, folder=str(p.parent), paper=self.spec.id)
            if on_done:
                on_done(False)
            return
        self.open_checkpoint(p, on_done=on_done)

    # --------------------------------------------------------------- hooks
    def activate(self, checkpoint: str | None = None) -> None:
        """Called by the shell when the tab is first shown: the given (or bundled) model, then the default demo.

        If a given checkpoint fails to load, the bundled one is loaded instead (the banner says why).
        """
        if self._demo_started:
            return
        self._demo_started = True
        if not self.uses_checkpoint:
            self._start_demo(True)
        elif checkpoint:

            def after_user(ok: bool) -> None:
                if ok:
                    self._start_demo(True)
                else:
                    shown = (self.banner.kind, self.banner.fields, self.banner.details()) if self.banner.kind else None

                    def after_bundled(ok2: bool) -> None:
                        self._start_demo(ok2)
                        if shown and ok2:  # why the given file was not used stays on screen
                            kind, fields, details = shown
                            self.show_msg(kind, details, **fields)

                    self.load_bundled(on_done=after_bundled)

            self.open_checkpoint(checkpoint, on_done=after_user)
        else:
            self.load_bundled(on_done=lambda ok: self._start_demo(ok))

    def _start_demo(self, ok: bool) -> None:
        if self._closed:
            return
        if self.uses_checkpoint and self.model is None:
            self.mark_demo_done()  # nothing to show without a model; the banner explains
            return
        try:
            self.start_default_demo()
        except Exception as exc:  # noqa: BLE001
            import traceback

            log.exception("default demo of %s failed", self.spec.id)
            self.show_exception(exc, traceback.format_exc())
            self.mark_demo_done()

    def on_model_loaded(self, model: Any, meta: Any) -> None:
        """Override: a checkpoint finished loading (GUI thread)."""

    def checkpoint_in_use(self) -> Any:
        """The checkpoint (CheckpointMeta) the tab's views come from, for the checkpoint bar.

        Override when that is not simply the opened file (e.g. a bundle holding several); emit
        ``checkpoint_changed`` with it whenever it changes."""
        return self.model_meta

    def start_default_demo(self) -> None:
        """Override: start the tab's default demo; call mark_demo_done() when its results are shown."""
        self.mark_demo_done()

    def attract_step(self) -> None:
        """Attract mode (a booth with nobody at it) shows this tab: override to show something new each time; by
        default the default demo runs again."""
        self.start_default_demo()

    def mark_demo_done(self) -> None:
        if not self.demo_done:
            self.demo_done = True
            self.demo_finished.emit()

    def vtk_views(self) -> list[QWidget]:
        """Override: VTK views (with a ``capture()`` method) to compose into screenshots."""
        return []

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Stop all work (idempotent). Subclasses stop their timers/audio and call super()."""
        self._closed = True
        return self.runner.shutdown(timeout)
