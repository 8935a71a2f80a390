"""Terminal progress for the headless train/eval commands (tqdm), with the same callable shape as the GUI's."""

from __future__ import annotations

import sys


class TerminalProgress:
    """``progress(fraction, message)`` drawing a tqdm bar on stderr; use as a context manager."""

    def __init__(self, desc: str = "", total: int = 1000, disable: bool | None = False) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=total,
            desc=desc,
            file=sys.stderr,
            disable=disable,
            dynamic_ncols=True,
            bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}",
        )
        self._total = total

    def __call__(self, fraction: float | None = None, message: str = "") -> None:
        if fraction is not None:
            n = int(max(0.0, min(1.0, fraction)) * self._total)
            if n > self._bar.n:
                self._bar.update(n - self._bar.n)
        if message:
            self._bar.set_postfix_str(message, refresh=True)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> TerminalProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
