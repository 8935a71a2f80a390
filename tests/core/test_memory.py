"""core.memory: the heap's free pages go back to the system (the booth's creeping memory, issue 25)."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from explorer.core import memory


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


glibc = pytest.mark.skipif(not memory._glibc() or memory.heap_stats() is None, reason="needs glibc >= 2.33")


@glibc
def test_freed_memory_that_malloc_kept_goes_back_to_the_system(monkeypatch):
    monkeypatch.delenv(memory.OFF_ENV, raising=False)
    held = []

    def churn():  # a worker's temporaries: 64 KB blocks (below the mmap threshold: they come from an arena)
        blocks = [np.ones(64 * 1024 // 8) for _ in range(1200)]
        held.append(blocks.pop())  # the last one stays: the arena's top cannot shrink by itself
        del blocks

    t = threading.Thread(target=churn)
    t.start()
    t.join()
    free_before = memory.heap_stats()["free"]
    rss_before = _rss_mb()
    assert free_before > 50  # freed, yet held by malloc
    seconds = memory.release_free_memory()
    assert seconds is not None
    assert _rss_mb() < rss_before - 40  # most of the 75 MB freed is no longer resident


def test_it_can_be_turned_off_and_is_a_no_op_without_glibc(monkeypatch):
    monkeypatch.setenv(memory.OFF_ENV, "1")
    assert memory.release_free_memory() is None
    monkeypatch.setattr(memory, "_libc", False)
    monkeypatch.delenv(memory.OFF_ENV)
    assert memory.release_free_memory() is None
    assert memory.heap_stats() is None


CHURN = """
import threading, numpy as np
from explorer.core import memory
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20
print(memory.fixed_mmap_threshold() if {fixed} else 'off')
held = []
def churn():
    big = np.ones(8 * 2**20 // 8)  # freeing a mapped 8 MB block makes glibc raise its threshold to 8 MB
    del big
    blocks = [np.ones(2 * 2**20 // 8) for _ in range(40)]  # 80 MB of 2 MB blocks
    held.append(blocks.pop())
    del blocks
rss0 = rss()
t = threading.Thread(target=churn)
t.start()
t.join()
print(round(rss() - rss0))
"""


def _churn_growth(fixed: bool) -> int:
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop(memory.OFF_ENV, None)
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    out = subprocess.run(
        [sys.executable, "-c", CHURN.format(fixed=fixed)], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == ("True" if fixed else "off")
    return int(out[1])


@glibc
def test_with_a_fixed_mmap_threshold_big_temporaries_never_stay_resident():
    # a fresh process: in this one, earlier tests left free chunks in the arenas that big blocks would reuse
    assert _churn_growth(fixed=False) > 50  # glibc's sliding threshold: 2 MB blocks carved from an arena, kept
    assert _churn_growth(fixed=True) < 20  # mapped, and unmapped when freed


def test_a_threshold_set_by_the_user_is_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert not memory.fixed_mmap_threshold()
