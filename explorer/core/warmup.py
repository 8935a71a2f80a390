"""Warming up heavy libraries in a worker without stalling the GUI thread (no Qt here).

Importing a module runs its Python code, which lets other threads run every few milliseconds; but loading a
native library happens inside one call that holds Python's global interpreter lock: ``import torch`` held it for
0.25-1 s at once (``dlopen`` of libtorch_cpu.so), and a GUI thread that wants to paint meanwhile waits that long.
:func:`preload_libraries` loads such libraries first through ctypes' foreign call to ``dlopen``, which releases
the lock: the import that follows finds them loaded and only runs their (shorter) initialisation.

While one thread is inside ``dlopen`` (lock released), another thread importing a compiled module waits for the
loader *holding* the GIL; :data:`native_lock` keeps the two apart: each preload holds it, and so does the shell's
import of a tab's panel module (which then waits without the GIL). The warm-up's own imports run in the thread
that preloads, one after the other.

:func:`quiet_gc` keeps Python's cyclic garbage collector from walking the whole heap while the libraries load:
with torch, pyqtgraph and VTK loaded a full collection walks a million objects, 0.2-0.7 s holding the GIL, in
whatever thread happened to allocate (the GUI thread too); afterwards the loaded modules' objects are frozen
(``gc.freeze``), so later collections only walk what the app made since.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)
_RTLD_NOW = getattr(os, "RTLD_NOW", 2)
_RTLD_GLOBAL = getattr(os, "RTLD_GLOBAL", 0x100)
native_lock = threading.RLock()
_gc_quiet = 0
_gc_was_enabled = True
_gc_lock = threading.Lock()


@contextlib.contextmanager
def quiet_gc():
    """No automatic garbage collection inside (nested and from several threads alike); when the last one leaves,
    everything alive is frozen (never walked again) and collection resumes as it was. Cycles that became garbage
    meanwhile stay frozen too (a one-off few kilobytes: imports make little garbage); ``gc.collect()`` there
    would be the very walk this avoids."""
    global _gc_quiet, _gc_was_enabled
    with _gc_lock:
        if _gc_quiet == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_quiet += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_quiet -= 1
            if _gc_quiet == 0:
                gc.freeze()
                if _gc_was_enabled:
                    gc.enable()


def _package_dir(name: str) -> Path | None:
    """The folder of a top-level package, without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def torch_libraries() -> list[tuple]:
    """(path, flags) of what ``import torch`` loads first, in its order: the global deps (RTLD_GLOBAL, as torch
    loads them) and the ``torch._C`` extension with everything it links (libtorch, CUDA's libraries...)."""
    if "torch" in sys.modules:
        return []
    d = _package_dir("torch")
    if d is None:
        return []
    out = [(p, _RTLD_NOW | _RTLD_GLOBAL) for p in (d / "lib").glob("libtorch_global_deps.*")]
    out += [(p, _RTLD_NOW) for p in sorted(d.glob("_C.*")) if p.suffix in (".so", ".pyd", ".dylib")]
    return out


def extension_libraries(modules: Iterable[str]) -> list[tuple]:
    """(path, flags) of the compiled extension files of ``modules`` (e.g. ``vtkmodules.vtkRenderingCore``) that
    are not imported yet, found without importing anything."""
    out = []
    for name in modules:
        if name in sys.modules:
            continue
        package, _, leaf = name.rpartition(".")
        d = _package_dir(package) if package and "." not in package else None
        if d is None:
            continue
        out += [(p, _RTLD_NOW) for p in sorted(d.glob(f"{leaf}.*")) if p.suffix in (".so", ".pyd", ".dylib")]
    return out


def opengl_libraries() -> list[tuple]:
    """(path, flags) of Mesa's OpenGL vendor libraries and driver, which the first OpenGL context loads (with
    LLVM: 0.1-0.3 s), found beside the libGL/libEGL this process has loaded (Linux; nothing elsewhere or when
    they are not Mesa's). All of Mesa's ``*_dri.so`` drivers are one file under several names, so loading one
    loads the driver in use."""
    dirs = []
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                path = line.rsplit(None, 1)[-1]
                name = os.path.basename(path)
                if name.startswith(("libGL.so", "libEGL.so", "libGLX.so", "libOpenGL.so")):
                    d = os.path.dirname(path)
                    if d not in dirs:
                        dirs.append(d)
    except OSError:
        return []
    out = []
    for d in dirs:
        for name in ("libGLX_mesa.so.0", "libEGL_mesa.so.0", "dri/swrast_dri.so"):
            p = Path(d) / name
            if p.exists():
                out.append((p, _RTLD_NOW))
    return out


def preload_libraries(libraries: Iterable[tuple]) -> int:
    """``dlopen`` each (path, flags) without holding the GIL (a ctypes call releases it); the handles are kept
    (the libraries stay loaded for the import that follows). Returns how many loaded; failures are only logged
    (the import will report them). POSIX only; elsewhere it does nothing."""
    if os.name != "posix":
        return 0
    try:
        libc = ctypes.CDLL(None)
        dlopen = libc.dlopen
    except (OSError, AttributeError):
        return 0
    dlopen.restype = ctypes.c_void_p
    dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
    n = 0
    for path, flags in libraries:
        with native_lock:
            ok = dlopen(os.fsencode(str(path)), int(flags))
        if ok:
            n += 1
        else:
            log.debug("preloading %s failed", path)
    return n


def import_quietly(modules: Iterable[str]) -> list[str]:
    """Import each module (in this worker), logging failures at debug level (the tab that needs one reports it).
    Returns those that failed."""
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001
            log.debug("pre-import of %s failed", name, exc_info=True)
            failed.append(name)
    return failed
