"""JPEG / JPEG 2000 / WebP / AVIF at a byte budget, computed in a helper process (numpy + Pillow; no torch, no Qt).

Pillow's encoders and decoders keep Python's global interpreter lock while they run: OpenJPEG takes 40-150 ms per
JPEG 2000 encode of a 256x256 photo on a slow CPU (AVIF more), and a size is matched with up to 13 of them. In the
app's own process every such call stalls the GUI thread as long (any thread that wants to run Python waits for the
lock). A child process has an interpreter and a lock of its own: the tab's worker sends it the image and the size and
waits for the answer without holding the lock.

``CodecProcess.peers_within(image, max_bytes)`` returns what :func:`.infer.peers_within` returns (it is run there). The
process starts on first use (``start()`` starts it early), serves one request at a time, and ends when its pipe
closes (``close()``, or the app's exit). Where it cannot start or dies, the work runs in this process instead.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
_ROOT = Path(__file__).resolve().parents[3]  # the folder holding the ``explorer`` package


class CodecProcess:
    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._failed = False  # it could not start (or died): work in-process from then on

    def start(self) -> None:
        with self._lock:
            self._ensure()

    def _ensure(self) -> subprocess.Popen | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        if self._failed:
            return None
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=str(_ROOT)
            )
        except OSError as exc:
            log.warning("codec helper process could not start (%s): the peer codecs run in the app", exc)
            self._failed = True
            self._proc = None
        return self._proc

    def peers_within(self, image: np.ndarray, max_bytes: int) -> dict[str, Any]:
        with self._lock:
            proc = self._ensure()
            if proc is not None:
                try:
                    pickle.dump(
                        (np.ascontiguousarray(image), int(max_bytes)), proc.stdin, protocol=pickle.HIGHEST_PROTOCOL
                    )
                    proc.stdin.flush()
                    ok, payload = pickle.load(proc.stdout)
                except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
                    log.warning("codec helper process failed (%s): the peer codecs run in the app", exc)
                    self._failed = True
                    self._stop(proc)
                else:
                    if ok:
                        return payload
                    raise payload
        from .infer import peers_within

        return peers_within(image, max_bytes)

    def close(self) -> None:
        with self._lock:
            if self._proc is not None:
                self._stop(self._proc)
            self._proc = None

    @staticmethod
    def _stop(proc: subprocess.Popen) -> None:
        try:
            proc.stdin.close()
            proc.wait(2.0)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()


_shared: CodecProcess | None = None
_shared_lock = threading.Lock()


def shared() -> CodecProcess:
    """The app's one codec process."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = CodecProcess()
        return _shared


def serve(inp=None, out=None) -> None:
    """The child's loop: (image, max_bytes) in, (True, result) or (False, exception) out, until the pipe closes."""
    from .infer import peers_within

    inp = inp or sys.stdin.buffer
    out = out or sys.stdout.buffer
    while True:
        try:
            image, max_bytes = pickle.load(inp)
        except EOFError:
            return
        try:
            reply = (True, peers_within(image, max_bytes))
        except Exception as exc:  # noqa: BLE001 - the parent raises it in the worker (banner)
            reply = (False, exc)
        pickle.dump(reply, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()


if __name__ == "__main__":
    serve()
