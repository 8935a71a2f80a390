"""User settings (last folders, window geometry, last tab) as versioned JSON in the user config folder."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from .paths import config_dir

log = logging.getLogger(__name__)
SETTINGS_VERSION = 1


class Settings:
    """A small JSON-backed key/value store. ``persist=False`` (kiosk mode) keeps changes in memory only."""

    def __init__(self, path: Path | None = None, persist: bool = True) -> None:
        self.path = Path(path) if path else config_dir() / "settings.json"
        self.persist = persist
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {}
        self._load()

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text("utf-8"))
            if isinstance(raw, dict) and raw.get("version") == SETTINGS_VERSION:
                values = raw.get("values")
                if not isinstance(values, dict):
                    log.warning("settings %s: 'values' is not an object; starting fresh", self.path)
                    values = {}
                # every setting is a text (folders, tab id, window geometry); anything else was not written by us
                self._data = {k: v for k, v in values.items() if isinstance(v, str) and len(v) <= 65536}
                if len(self._data) < len(values):
                    log.warning(
                        "settings %s: ignored %d value(s) of the wrong type", self.path, len(values) - len(self._data)
                    )
            elif raw:
                log.warning("settings %s have an old or unknown version; starting fresh", self.path)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.warning("settings %s unreadable (%s); starting fresh", self.path, exc)

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return self._data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self._data[key] = value
        self.save()

    def save(self) -> None:
        if not self.persist:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            from .errors import UserError
            from .validate import atomic_output

            with self._lock:
                text = json.dumps({"version": SETTINGS_VERSION, "values": self._data}, indent=1)
            with atomic_output(self.path, "settings file") as tmp:
                tmp.write_text(text, "utf-8")
        except (OSError, UserError) as exc:
            log.warning("could not save settings to %s: %s", self.path, exc)

    def reset(self) -> None:
        with self._lock:
            self._data = {}
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
