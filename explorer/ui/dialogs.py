"""Where file dialogs open: the folder last used for that kind of file, else a useful first folder.

The first time, "Open checkpoint…" opens in the bundled models folder and the pickers of pictures and sounds
in the tab's bundled demo inputs (``resources/<paper>``), not in the home folder; afterwards each dialog opens
where the user last picked a file of that kind (if that folder still exists).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QWidget

CHECKPOINT_KEY = "last_checkpoint_dir"


def start_folder(settings, key: str, first: Path | None = None) -> str:
    """The folder a dialog of kind ``key`` opens in: the remembered one, else ``first``, else the home folder."""
    last = settings.get(key) if settings is not None else None
    for candidate in (last, first):
        if candidate and Path(candidate).is_dir():
            return str(candidate)
    return str(Path.home())


def remember_folder(settings, key: str, path: str) -> None:
    """Remember the folder of a picked file (or a picked folder itself) for the next dialog of kind ``key``."""
    if settings is None or not path:
        return
    p = Path(path)
    try:
        settings.set(key, str(p if p.is_dir() else p.parent))
    except Exception:  # noqa: BLE001 - remembering a folder is a convenience
        pass


def checkpoint_folder(settings) -> str:
    """Where "Open checkpoint…" starts: the last folder a checkpoint came from, else the bundled models."""
    from ..core.paths import models_dir

    return start_folder(settings, CHECKPOINT_KEY, models_dir())


def demo_inputs_folder(paper: str, sub: str = "") -> Path:
    """The bundled demo inputs of a paper (``resources/<paper>[/<sub>]``)."""
    from ..core.paths import resources_dir

    d = resources_dir() / paper
    return d / sub if sub and (d / sub).is_dir() else d


def input_folder(settings, key: str, paper: str, sub: str = "") -> str:
    """Where a picker of pictures or sounds for ``paper`` starts: the last folder used, else its demo inputs."""
    return start_folder(settings, key, demo_inputs_folder(paper, sub))


def open_file(parent: QWidget, title: str, settings, key: str, first: Path | None, filters: str) -> str:
    """An open-file dialog starting in :func:`start_folder`; the chosen file's folder is remembered."""
    path, _ = QFileDialog.getOpenFileName(parent, title, start_folder(settings, key, first), filters)
    if path:
        remember_folder(settings, key, path)
    return path
