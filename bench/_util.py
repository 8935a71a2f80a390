"""What every bench script shares: the ``--quick`` option, a clean skip, a scratch folder, one-line errors."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def add_quick(parser: argparse.ArgumentParser, what: str) -> None:
    """``--quick``: tiny sizes for a smoke run (seconds on one thread); ``what`` says what it does here."""
    parser.add_argument("--quick", action="store_true", help=f"smoke run in seconds on one thread: {what}")


def skip(reason: str) -> int:
    """Print why the script did nothing (one line) and return exit status 0."""
    print(f"skipped: {reason}", flush=True)
    return 0


def required(parser: argparse.ArgumentParser, args, option: str, hint: str) -> int | None:
    """None when ``--option`` was given; else a ``--quick`` run skips with ``hint`` (status 0) and a full run stops
    with argparse's one-line error."""
    if getattr(args, option.lstrip("-").replace("-", "_")) is not None:
        return None
    if args.quick:
        return skip(hint)
    parser.error(f"{option} is required")


def scratch(name: str) -> Path:
    """A fresh temporary folder for a quick run's outputs (never the repository's files)."""
    return Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))


def run(main: Callable[[], int | None]) -> None:
    """``sys.exit(main())``, a UserError (bad file, missing data) as one line on stderr and exit status 2."""
    from explorer.core.errors import UserError

    try:
        rc = main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        rc = 2
    sys.exit(rc or 0)
