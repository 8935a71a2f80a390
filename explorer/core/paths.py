"""Where bundled models, resources, settings and logs live."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
ROOT_DIR = PACKAGE_DIR.parent
# An installed wheel carries models/ and resources/ inside the package (pyproject maps them there); a checkout
# (or an editable install of one) has them beside the package.
INSTALLED_DATA = PACKAGE_DIR / "bundled"


def _data_dir(name: str, env: str) -> Path:
    value = os.environ.get(env)
    if value:
        return Path(value)
    inside = INSTALLED_DATA / name
    return inside if inside.is_dir() else ROOT_DIR / name


def models_dir() -> Path:
    """Bundled checkpoints: ``$NIPS_EXPLORER_MODELS``, else the installed package's, else the checkout's ``models/``."""
    return _data_dir("models", "NIPS_EXPLORER_MODELS")


def resources_dir() -> Path:
    """Demo inputs (sample photos, utterances, galleries): ``$NIPS_EXPLORER_RESOURCES``, else the package's, else
    the checkout's ``resources/``."""
    return _data_dir("resources", "NIPS_EXPLORER_RESOURCES")


def training_output(name: str) -> Path:
    """Where a train command writes by default: the checkout's (or $NIPS_EXPLORER_MODELS) models folder, so the
    app picks the new model up; from an installed package, the current folder (never inside site-packages)."""
    d = models_dir()
    return d / name if d != INSTALLED_DATA / "models" else Path.cwd() / name


def bundled(name: str) -> Path:
    return models_dir() / name


def cache_dir() -> Path:
    """Generated data (rendered shapes, synthesized speech): ``$NIPS_EXPLORER_DATA`` or the user cache folder."""
    env = os.environ.get("NIPS_EXPLORER_DATA")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("nips-explorer", appauthor=False))


def config_dir() -> Path:
    env = os.environ.get("NIPS_EXPLORER_CONFIG_DIR")
    if env:
        return Path(env)
    from platformdirs import user_config_dir

    return Path(user_config_dir("nips-explorer", appauthor=False))


def log_dir() -> Path:
    env = os.environ.get("NIPS_EXPLORER_LOG_DIR")
    if env:
        return Path(env)
    from platformdirs import user_log_dir

    return Path(user_log_dir("nips-explorer", appauthor=False))
