"""Messages for people: tabs named by their titles (never by internal ids), a file named once, no class names.

The headless code (checkpoints, loaders) words its errors for the command line, where the paper ids are what
one types (``nips-explorer train srnn``); the app rewords them here before they reach a banner.
"""

from __future__ import annotations

import re

_WRONG_TAB = re.compile(r"this checkpoint is for the '([\w-]+)' tab, not '([\w-]+)'")
_ID_TAB = re.compile(r"'([\w-]+)' tab")


def tab_titles(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Paper id -> the tab's title as the user sees it (``extra`` adds or overrides, e.g. a test paper)."""
    titles: dict[str, str] = {}
    try:
        from ..core.registry import all_specs

        titles = {s.id: s.short_title for s in all_specs()}
    except Exception:  # noqa: BLE001 - a message must never fail to be shown
        pass
    titles.update(extra or {})
    return titles


def tab_name(paper_id: str, titles: dict[str, str]) -> str:
    """“SRNN (music)” tab, or words for a paper this app does not have."""
    title = titles.get(paper_id)
    return f"the “{title}” tab" if title else f"a tab this app does not have ('{paper_id}')"


def plain(text: str, file_name: str = "", titles: dict[str, str] | None = None) -> str:
    """``text`` with internal tab ids replaced by tab titles and a leading ``file_name:`` dropped (when the
    caller names the file itself)."""
    titles = tab_titles() if titles is None else titles
    text = str(text).strip()
    if file_name:
        while text.startswith(f"{file_name}:"):
            text = text[len(file_name) + 1 :].lstrip()
    text = _WRONG_TAB.sub(
        lambda m: f"it is a checkpoint for {tab_name(m.group(1), titles)}, not for {tab_name(m.group(2), titles)}", text
    )
    text = _ID_TAB.sub(lambda m: f"“{titles[m.group(1)]}” tab" if m.group(1) in titles else m.group(0), text)
    return text


def exception_text(exc: BaseException) -> str:
    """An unexpected error in words: its message, or what kind of error it was when it has none."""
    if isinstance(exc, MemoryError):
        return "the computer ran out of memory"
    msg = str(exc).strip()
    return msg or f"an unexpected error ({type(exc).__name__})"
