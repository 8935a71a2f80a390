"""Microphone access for the Neural Transducer tab (QtMultimedia): device list, opening a device with a clear
message when it is missing or busy, and decoding its PCM bytes. The live stream and the enrollment recorder both
use it; the GUI thread only moves bytes from here into a queue or a list.
"""

from __future__ import annotations

import logging
import os
import socket

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox

from explorer.core.errors import UserError

from .features import pcm_to_float

log = logging.getLogger(__name__)


def audio_inputs():
    """(audio input devices, default device); empty when QtMultimedia or a sound server is missing."""
    try:
        from PySide6.QtMultimedia import QMediaDevices

        return list(QMediaDevices.audioInputs()), QMediaDevices.defaultAudioInput()
    except Exception as exc:  # noqa: BLE001 - QtMultimedia missing or broken
        log.info("QtMultimedia unavailable: %s", exc)
        return [], None


def _server_sockets() -> list[str]:
    """Where a PulseAudio (or PipeWire's PulseAudio) server listens, by the usual rules."""
    paths = []
    server = os.environ.get("PULSE_SERVER", "")
    for part in server.split():
        if part.startswith("unix:"):
            paths.append(part[5:])
        elif part.startswith("/"):
            paths.append(part)
    if os.environ.get("PULSE_RUNTIME_PATH"):
        paths.append(os.path.join(os.environ["PULSE_RUNTIME_PATH"], "native"))
    runtime = os.environ.get("XDG_RUNTIME_DIR") or (f"/run/user/{os.getuid()}" if hasattr(os, "getuid") else "")
    if runtime:
        paths += [os.path.join(runtime, "pulse", "native"), os.path.join(runtime, "pipewire-0")]
    return paths


def sound_server_running() -> bool:
    """True when a sound server answers on one of its usual sockets (nothing is started)."""
    for path in _server_sockets():
        if not os.path.exists(path):
            continue
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(0.2)
        try:
            sock.connect(path)
            return True
        except OSError:
            continue
        finally:
            sock.close()
    return False


NO_MIC_WHY = "No microphone found: this machine has no audio input device (or no sound server is running)."
LATE_SERVER_WHY = (
    "No microphone found, although a sound server is running now: it started after the app first "
    "looked for audio devices, and Qt does not look for a sound server again. Restart NIPS Explorer "
    "to use its microphones."
)
OTHER_SOURCES = "The WAV file and demo sources still work."
NO_MIC = f"{NO_MIC_WHY} {OTHER_SOURCES}"


def no_mic_message(instead: str = OTHER_SOURCES) -> str:
    """Why the device list is empty, in words (no device or server, or a server that came too late for Qt),
    and what works ``instead``."""
    return f"{LATE_SERVER_WHY if sound_server_running() else NO_MIC_WHY} {instead}"


class DeviceBox(QComboBox):
    """The microphone list: it asks for a fresh look at the devices each time it is opened."""

    opening = Signal()

    def showPopup(self) -> None:  # noqa: N802 - Qt override
        self.opening.emit()
        super().showPopup()


def open_microphone(dev, parent, sample_rate: int = 8000):
    """Start recording from ``dev``: ``(QAudioSource, its QIODevice, QAudioFormat)``; UserError when the device
    cannot be opened (busy, gone, or no recording support). Mono 16-bit at ``sample_rate`` where the device
    offers it, else its preferred format (decoded by :func:`decode_pcm`)."""
    from PySide6.QtMultimedia import QAudioFormat, QAudioSource

    fmt = QAudioFormat()
    fmt.setSampleRate(sample_rate)
    fmt.setChannelCount(1)
    fmt.setSampleFormat(QAudioFormat.Int16)
    if not dev.isFormatSupported(fmt):
        fmt = dev.preferredFormat()
    src = QAudioSource(dev, fmt, parent)
    src.setBufferSize(max(src.bufferSize(), int(fmt.bytesForDuration(200_000))))
    io = src.start()
    if io is None or err_name(src.error()) != "NoError":
        err = src.error()
        src.deleteLater()
        raise UserError(
            f"Could not open the microphone '{dev.description()}' ({audio_error(err)}). It may be busy "
            "or not support recording; the WAV file and demo sources still work."
        )
    return src, io, fmt


def close_microphone(src) -> None:
    """Stop a source from :func:`open_microphone` and let Qt delete it (it may already be gone at shutdown)."""
    if src is None:
        return
    try:
        src.stop()
    except RuntimeError:
        pass
    src.deleteLater()


def err_name(err) -> str:
    """QAudio.Error and QtAudio.Error are distinct enum types in PySide6 6.7+; compare by name."""
    return getattr(err, "name", str(err)).split(".")[-1]


def audio_error(err) -> str:
    name = err_name(err)
    return {
        "OpenError": "the device could not be opened",
        "IOError": "read error",
        "FatalError": "fatal audio error",
    }.get(name, name)


def decode_pcm(data: bytes, fmt) -> np.ndarray | None:
    """Raw bytes in the QAudioFormat ``fmt`` -> mono float32 in [-1, 1]; None for a sample format we cannot read."""
    return pcm_to_float(data, err_name(fmt.sampleFormat()), fmt.channelCount())
