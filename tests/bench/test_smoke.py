"""Every bench script runs (bench/README.md): each benchmark and figure maker with ``--quick`` in a subprocess of its
own (offscreen, one thread, CUDA hidden, temporary files in the test's folder), exit status 0 and something printed,
no traceback; each experiment runner with ``--help`` (which must offer ``--quick``) and, unless it reads data from
outside the repository by itself, with ``--quick`` (without its data it says so in one line and exits 0).
Numbers are never asserted here: the benches measure, the tests of each paper check behaviour."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 150  # per script; a quick run takes 1-15 s of CPU on one thread


def _modules(sub: str = "") -> list[str]:
    folder = ROOT / "bench" / sub
    prefix = "bench." + (f"{sub}." if sub else "")
    return sorted(prefix + p.stem for p in folder.glob("*.py") if not p.name.startswith("_"))


BENCHMARKS = _modules()
FIGURES = _modules("figures")
EXPERIMENTS = _modules("experiments")
# finds the Sweet Home 3D furniture by itself when it is installed, then builds the furniture set once (minutes)
EXPERIMENTS_NO_QUICK = {"bench.experiments.shapes3d_gt_rule"}


def _run(module: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        NIPS_EXPLORER_THREADS="1",
        OMP_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",  # bench.cuda_check --quick: the one-line "no CUDA" answer on any machine
        NIPS_EXPLORER_CONFIG_DIR=str(tmp_path / "config"),
        TMPDIR=str(tmp_path),  # the quick runs' figures and JSON files
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    )
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def _check(r: subprocess.CompletedProcess, what: str) -> None:
    detail = f"{what}: exit status {r.returncode}\nstdout:\n{r.stdout[-2000:]}\nstderr:\n{r.stderr[-4000:]}"
    assert r.returncode == 0, detail
    assert r.stdout.strip(), detail
    assert "Traceback (most recent call last)" not in r.stderr, detail


def test_the_bench_has_its_three_parts():
    assert "bench.startup" in BENCHMARKS and "bench.cuda_check" in BENCHMARKS
    assert "bench.figures.srnn_curves" in FIGURES
    assert "bench.experiments.transducer_loso" in EXPERIMENTS
    assert EXPERIMENTS_NO_QUICK <= set(EXPERIMENTS)


@pytest.mark.slow
@pytest.mark.parametrize("module", BENCHMARKS + FIGURES)
def test_quick_run(module, tmp_path):
    _check(_run(module, "--quick", tmp_path=tmp_path), f"python -m {module} --quick")


@pytest.mark.slow
@pytest.mark.parametrize("module", EXPERIMENTS)
def test_experiment_runner(module, tmp_path):
    r = _run(module, "--help", tmp_path=tmp_path)
    _check(r, f"python -m {module} --help")
    assert "--quick" in r.stdout
    if module not in EXPERIMENTS_NO_QUICK:
        _check(_run(module, "--quick", tmp_path=tmp_path), f"python -m {module} --quick")
