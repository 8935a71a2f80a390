"""Where bundled models, resources, settings and logs live."""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
ROOT_DIR = PACKAGE_DIR.parent


def models_dir() -> Path:
    """Bundled checkpoints: ``$NIPS_EXPLORER_MODELS`` or ``models/`` beside the package (editable install)."""
    env = os.environ.get("NIPS_EXPLORER_MODELS")
    return Path(env) if env else ROOT_DIR / "models"


def resources_dir() -> Path:
    env = os.environ.get("NIPS_EXPLORER_RESOURCES")
    return Path(env) if env else ROOT_DIR / "resources"


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
