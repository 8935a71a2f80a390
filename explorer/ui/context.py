"""AppContext: what every panel may use (settings, device, kiosk flag). No torch import at module level."""

from __future__ import annotations

import threading

from ..core.settings import Settings


class AppContext:
    def __init__(
        self, settings: Settings, device_preference: str = "auto", kiosk: bool = False, attract_s: float = 0.0
    ) -> None:
        self.settings = settings
        self.device_preference = device_preference
        self.kiosk = kiosk
        self.attract_s = float(attract_s)  # idle seconds before attract mode (0: off)
        self._device = None
        self._lock = threading.Lock()
        self.device_error: str | None = None

    def device(self):
        """The torch.device in use (resolved once; call from worker threads, it imports torch)."""
        with self._lock:
            if self._device is None:
                from ..core.devices import choose_device, configure_threads
                from ..core.errors import UserError

                configure_threads(for_gui=True)
                try:
                    self._device = choose_device(self.device_preference)
                except UserError as exc:
                    self.device_error = f"{exc}; using the CPU"
                    self._device = choose_device("cpu")
            return self._device

    @property
    def device_resolved(self) -> bool:
        return self._device is not None
