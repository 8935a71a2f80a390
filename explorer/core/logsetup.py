"""Logging: a rotating log file in the user log folder; tracebacks go there (and to stderr with --debug)."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from .paths import log_dir

_configured: Path | None = None


class _OneLine(logging.Formatter):
    """The terminal's formatter without --debug: the message only; a traceback attached to the record goes to the
    log file alone."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            text = super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved
        return text.splitlines()[0] + (" (details in the log file)" if saved[0] else "")


def setup_logging(debug: bool = False) -> Path | None:
    global _configured
    root = logging.getLogger()
    if _configured is not None:
        return _configured
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
    path: Path | None = None
    try:
        d = log_dir()
        d.mkdir(parents=True, exist_ok=True)
        path = d / "nips-explorer.log"
        fh = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=2, encoding="utf-8")
        fh.setFormatter(fmt)
        root.addHandler(fh)
    except OSError:
        path = None
    sh = logging.StreamHandler()
    sh.setLevel(logging.DEBUG if debug else logging.WARNING)
    sh.setFormatter(
        logging.Formatter("%(levelname)s: %(message)s") if debug else _OneLine("%(levelname)s: %(message)s")
    )
    root.addHandler(sh)
    _configured = path or Path("(no log file)")
    return path


def log_file() -> Path | None:
    return _configured
