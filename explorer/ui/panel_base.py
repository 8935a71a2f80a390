"""Base class of every paper tab's panel.

Gives each panel: an error banner, a TaskRunner whose errors land in the banner, checkpoint loading in a
worker (a wrong file leaves the previous model loaded), timing reports for the status bar, and the hooks
the shell calls (default demo, VTK views for screenshots, shutdown).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from ..core.errors import UserError
from ..core.registry import PaperSpec, load_attr
from .context import AppContext
from .messages import exception_text, plain, tab_titles
from .widgets.banner import ErrorBanner
from .workers import TaskRunner

log = logging.getLogger(__name__)


class PaperPanel(QWidget):
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
        self.runner = TaskRunner(self, on_error=self.show_exception)
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
    def show_error(self, message: str, details: str = "") -> None:
        if not self._closed:
            self.banner.show_message(message, details)

    def clear_error(self) -> None:
        self.banner.clear()

    def show_exception(self, exc: BaseException, tb: str = "") -> None:
        if isinstance(exc, UserError):
            msg = self.plain(str(exc))
        else:
            msg = f"Something went wrong: {exception_text(exc)}"
        self.show_error(msg, tb or f"{type(exc).__name__}: {exc}")

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
            self.show_error(f"The {self.spec.short_title} tab does not use checkpoints.")
            return
        ref = self.spec.loader
        context = self.context
        path = Path(path)

        def load(token=None):
            # the loader's module (model code, torch) is imported here, in the worker, never on the GUI thread
            return load_attr(ref)(str(path), context.device())

        def ok(result):
            model, meta = result
            self.model, self.model_meta = model, meta
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
            reason = self.plain(str(exc) if isinstance(exc, UserError) else exception_text(exc), path.name)
            msg = f"Could not open {path.name}: {reason.rstrip('.')}.{prev}"
            self.show_error(msg, tb)
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
            self.show_error(
                f"The bundled checkpoint {p.name} is missing from {p.parent}. Train it with "
                f"'nips-explorer train {self.spec.id}' or open a checkpoint file."
            )
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
                    msg = self.banner.message()
                    self.load_bundled(
                        on_done=lambda ok2: (self._start_demo(ok2), self.show_error(msg) if msg and ok2 else None)
                    )

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
