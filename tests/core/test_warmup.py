"""Warm-up helpers: native libraries loaded ahead of their import, garbage collection paused then frozen."""

import gc
import subprocess
import sys

from explorer.core import warmup


def test_quiet_gc_pauses_collection_then_freezes_what_was_loaded():
    assert gc.isenabled()
    before = gc.get_freeze_count()
    with warmup.quiet_gc():
        assert not gc.isenabled()
        with warmup.quiet_gc():  # nested (another worker's import): still paused
            junk = [[i] for i in range(1000)]
        assert not gc.isenabled()
    assert gc.isenabled()
    assert gc.get_freeze_count() >= before + len(junk)
    gc.unfreeze()


def test_quiet_gc_leaves_a_disabled_collector_disabled():
    gc.disable()
    try:
        with warmup.quiet_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()


def test_extension_libraries_are_found_without_importing_them():
    name = "vtkmodules.vtkIOMINC"  # a VTK module the app never imports
    libs = warmup.extension_libraries([name])
    assert name not in sys.modules
    if libs:  # the VTK wheel has it
        assert all(p.exists() for p, _ in libs)
        assert warmup.preload_libraries(libs) == len(libs)
        assert name not in sys.modules  # loaded, not imported


def test_torch_is_preloaded_then_imports():
    """In a fresh process: what ``import torch`` loads first is found and loaded, and torch then imports."""
    code = (
        "from explorer.core.warmup import torch_libraries, preload_libraries\n"
        "libs = torch_libraries()\n"
        "n = preload_libraries(libs)\n"
        "import torch\n"
        "print(len(libs), n, torch.ones(2).sum().item())\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    found, loaded, two = r.stdout.split()
    assert int(found) >= 1 and loaded == found and float(two) == 2.0
