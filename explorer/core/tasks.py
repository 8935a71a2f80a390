"""Cancellation and progress, as plain Python objects that cross the Qt boundary.

Headless code (training, evaluation, inference) accepts ``token`` and ``progress`` arguments:

* ``token.check()`` raises :class:`Cancelled` once cancel() was called; call it between steps.
* ``progress(fraction, message)`` reports progress (fraction in [0, 1] or None when unknown).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from .errors import Cancelled

__all__ = ["CancelToken", "Cancelled", "Progress", "ProgressFn", "null_progress"]


class CancelToken:
    """A thread-safe cancel flag. ``check()`` raises Cancelled once cancelled."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; return True (early) if cancelled meanwhile."""
        return self._event.wait(seconds)


@dataclass(frozen=True)
class Progress:
    """A progress report yielded by generator tasks (or passed to a progress callback)."""

    fraction: float | None = None
    message: str = ""


ProgressFn = Callable[[float | None, str], None]


def null_progress(fraction: float | None = None, message: str = "") -> None:  # noqa: D401
    """A progress callback that ignores everything."""
