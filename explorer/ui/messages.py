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


# ------------------------------------------------------------------------------------------ declared messages
class Msg:
    """One kind of message a panel can show in its banner: a template whose ``{fields}`` the caller fills.

    Declared in a panel's ``Messages`` table (in the spirit of Orange3's widget messages), so that code and tests
    name the kind (``panel.banner.kind is panel.Messages.no_model``), never its wording::

        class Messages(PaperPanel.Messages):
            bad_audio = Msg("Could not read {file}: {reason}.")

        self.show_msg(self.Messages.bad_audio, file=path.name, reason=why)
    """

    def __init__(self, template: str) -> None:
        self.template = template
        self.name = "?"
        self.owner = "?"

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.owner = owner.__qualname__

    def text(self, **fields: object) -> str:
        """The words shown: the template with ``fields`` filled in (a field left out reads as nothing)."""
        return self.template.format_map(_Blank(fields)).strip()

    def __repr__(self) -> str:
        return f"<Msg {self.owner}.{self.name}>"


class _Nothing:
    """A field left out: reads as nothing, whatever its format (``{T:,}``)."""

    def __format__(self, spec: str) -> str:
        return ""


class _Blank(dict):
    def __missing__(self, key: str) -> _Nothing:
        return _Nothing()


class Messages:
    """The message kinds every panel has (a panel's own table subclasses this one, so ``SRNNPanel.Messages.
    unexpected is PaperPanel.Messages.unexpected``)."""

    # opening a checkpoint failed; {previous} says which model is still loaded (or is empty)
    checkpoint_unreadable = Msg("Could not open {file}: {reason}.{previous}")
    wrong_tab = Msg("Could not open {file}: it is a checkpoint for {other_tab}, not for {this_tab}.{previous}")
    bundled_missing = Msg(
        "The bundled checkpoint {file} is missing from {folder}. Train it with 'nips-explorer train {paper}' or open "
        "a checkpoint file."
    )
    no_checkpoints = Msg("The {tab} tab does not use checkpoints.")
    # a worker's failure: a UserError is worded by the headless code ({reason}); anything else is unexpected
    user_error = Msg("{reason}")
    out_of_memory = Msg("Something went wrong: {what} ran out of memory")
    unexpected = Msg("Something went wrong: {reason}")
    cancelled = Msg("{what} cancelled.")
    # words a panel has not declared (panels not yet ported to declared messages)
    undeclared = Msg("{text}")

    @classmethod
    def sticky(cls) -> tuple[Msg, ...]:
        """Kinds that stay shown when a later action (such as a checkpoint load) succeeds: a panel's table lists
        them in ``STICKY`` (names); they go only when the panel clears them itself."""
        return tuple(getattr(cls, name) for name in getattr(cls, "STICKY", ()))

    @classmethod
    def kinds(cls) -> dict[str, Msg]:
        """Every kind of this table, its own and inherited, by name."""
        out: dict[str, Msg] = {}
        for klass in reversed(cls.__mro__):
            out.update({k: v for k, v in vars(klass).items() if isinstance(v, Msg)})
        return out


def wrong_tab_ids(text: str) -> tuple[str, str] | None:
    """(the checkpoint's paper id, this tab's id) when ``text`` is the checkpoint loader's wrong-tab refusal."""
    m = _WRONG_TAB.search(str(text))
    return (m.group(1), m.group(2)) if m else None


def out_of_memory(exc: BaseException) -> str | None:
    """What ran out of memory ("the computer", "the graphics card") when ``exc`` says so, else None."""
    if isinstance(exc, MemoryError):
        return "the computer"
    if type(exc).__name__ == "OutOfMemoryError" or "CUDA out of memory" in str(exc):
        return "the graphics card"
    return None
