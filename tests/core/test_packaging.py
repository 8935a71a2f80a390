"""The package as a newcomer gets it: bundled data inside the wheel, found from anywhere; `models`, `python -m
explorer`, a clear refusal without a display; the install scripts use a virtual environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from explorer.core.paths import ROOT_DIR
from explorer.core.registry import PAPER_IDS

PYPROJECT = ROOT_DIR / "pyproject.toml"
checkout_only = pytest.mark.skipif(not PYPROJECT.exists(), reason="needs the source checkout")


def _pyproject() -> dict:
    return tomllib.loads(PYPROJECT.read_text())


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIPS_EXPLORER_") or k == "NIPS_EXPLORER_THREADS"}
    env.update(extra)
    return env


@checkout_only
def test_pyproject_lists_every_package():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT_DIR).parts) for p in (ROOT_DIR / "explorer").rglob("__init__.py")}
    assert on_disk <= listed, f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"
    mapped = _pyproject()["tool"]["setuptools"]["package-dir"]
    assert mapped == {"explorer.bundled.models": "models", "explorer.bundled.resources": "resources"}


@checkout_only
def test_models_folder_holds_only_what_the_app_loads():
    files = [p for p in (ROOT_DIR / "models").iterdir() if p.is_file()]
    ckpts = [p for p in files if p.suffix == ".safetensors"]
    assert len(files) <= 18  # 16 checkpoints the tabs offer (3D ModelNet and neural art added) + README
    assert sum(p.stat().st_size for p in files) <= 100 * 2**20
    assert not [p.name for p in ckpts if "loso" in p.name], "experiment checkpoints belong in the runs table"
    readme = (ROOT_DIR / "models" / "README.md").read_text()
    for p in ckpts:
        assert f"`{p.name}`" in readme, f"{p.name} has no row in models/README.md"


@checkout_only
def test_dependencies_have_reasons_and_no_unused_ones():
    text = PYPROJECT.read_text()
    deps = _pyproject()["project"]["dependencies"]
    names = [d.split(">")[0].split("=")[0].split("!")[0].split("<")[0].strip() for d in deps]
    assert "superqt" not in names and "mlxtend" not in names
    block = text[text.index("dependencies = [") : text.index("]", text.index("dependencies = ["))]
    for line in block.splitlines()[1:]:
        if line.strip().startswith('"'):
            assert "#" in line, f"dependency without a one-line reason: {line.strip()}"
    for name in names:  # every dependency is imported somewhere (its import name may differ)
        mod = {"PySide6": "PySide6", "Pillow": "PIL", "scikit-image": "skimage"}.get(name, name)
        assert any(mod in p.read_text() for p in (ROOT_DIR / "explorer").rglob("*.py")), f"{name} is never used"


def test_the_version_is_written_once():
    import importlib.metadata

    import explorer

    assert "version" in _pyproject()["project"]["dynamic"] and "version" not in _pyproject()["project"]
    try:
        assert importlib.metadata.version("nips-explorer") == explorer.__version__
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("not installed")
    assert f"## {explorer.__version__}" in (ROOT_DIR / "CHANGELOG.md").read_text()


def test_models_command_lists_bundled_checkpoints():
    from explorer.cli import main

    r = subprocess.run(
        [sys.executable, "-m", "explorer", "models", "--json"], capture_output=True, text=True, timeout=120, env=_env()
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["models"]
    assert rows and {r["paper"] for r in rows} <= set(PAPER_IDS)
    for row in rows:
        assert Path(row["path"]).is_absolute() and Path(row["path"]).exists()
        assert row["file"] == Path(row["path"]).name
        assert row["headline"].get("metric"), row
    assert main(["models"]) == 0


def test_gui_without_a_display_says_so_in_one_line():
    env = _env()
    for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        env.pop(k, None)
    r = subprocess.run([sys.executable, "-m", "explorer"], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs a display" in lines[0] and "screenshot" in lines[0]
    assert "Traceback" not in r.stderr and not r.stdout


def test_srnn_opens_on_bundled_real_music(monkeypatch):
    from explorer.papers.srnn import data as D
    from explorer.papers.srnn import infer

    monkeypatch.setattr(D, "find_data_dir", lambda *a, **k: None)
    for name in ("jsb", "nottingham"):
        pieces, source = infer.load_pieces(name)
        assert len(pieces) == D.DEMO_PIECES and "bundled" in source
        for title, x in pieces:
            assert x.ndim == 2 and x.shape[1] == D.N_KEYS and x.sum() > 0 and set(map(float, x.ravel())) <= {0, 1}
            assert "test piece" in title


@checkout_only
def test_scripts_use_a_virtual_environment():
    for name in ("install.sh", "run.sh", "test.sh"):
        script = ROOT_DIR / "scripts" / name
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
        text = script.read_text()
        assert "--break-system-packages" not in text
    install = (ROOT_DIR / "scripts" / "install.sh").read_text()
    assert "-m venv" in install and "VENV=${NIPS_EXPLORER_VENV:-.venv}" in install
    assert ".venv" in (ROOT_DIR / "scripts" / "test.sh").read_text()


def _site_dirs():
    dirs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    dirs |= {p for p in sys.path if p.endswith("site-packages")}
    return [d for d in dirs if Path(d).is_dir()]


@checkout_only
@pytest.mark.slow
def test_wheel_installs_and_runs_without_the_checkout(tmp_path):
    """Build the wheel from the checkout, install it (no deps) in a fresh venv that sees this environment's
    packages but not this checkout, and use it from an unrelated folder."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT_DIR / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("explorer", "models", "resources"):
        shutil.copytree(ROOT_DIR / name, src / name, ignore=ignore)
    dist = tmp_path / "dist"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(dist),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next(dist.glob("nips_explorer-*.whl"))

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    vpy = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # this environment's packages (torch, numpy, ...) as plain path entries: their .pth files (the editable
    # install of this checkout among them) are not processed, so `explorer` can only come from the wheel
    Path(purelib, "_parent_env.pth").write_text("\n".join(_site_dirs()) + "\n")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(vpy), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = _env(QT_QPA_PLATFORM="offscreen")
    env.pop("PYTHONPATH", None)
    exe = venv / "bin" / "nips-explorer"
    r = subprocess.run([str(exe), "models", "--json"], cwd=work, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(r.stdout)["models"]
    inside = Path(purelib).resolve() / "explorer" / "bundled" / "models"
    assert len(rows) == len(list((ROOT_DIR / "models").glob("*.safetensors")))
    assert all(Path(row["path"]).parent == inside for row in rows), rows[0]["path"]
    assert {row["paper"] for row in rows} == {"srnn", "l2l", "transducer", "compression", "shapes3d"}

    r = subprocess.run(
        [str(vpy), "-m", "explorer", "info", rows[0]["path"], "--json"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["paper"] == rows[0]["paper"]

    # the demo inputs every tab opens on are there too, and the package is not this checkout
    code = (
        "import explorer, explorer.core.paths as p; from explorer.papers.srnn import data as D; "
        "print(explorer.__file__); print(p.resources_dir()); print(len(D.read_demo_pieces('jsb')))"
    )
    r = subprocess.run([str(vpy), "-c", code], cwd=work, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    pkg_file, res, n_pieces = r.stdout.split()
    assert Path(pkg_file).resolve().is_relative_to(Path(purelib).resolve())
    assert Path(res).resolve() == Path(purelib).resolve() / "explorer" / "bundled" / "resources"
    for sub in ("srnn", "transducer", "compression", "shapes3d"):
        assert any((Path(res) / sub).iterdir()), sub
    assert int(n_pieces) > 0
    assert not (Path(res) / "screenshots").exists()

    # every tab's default demo runs from the installed wheel, in a folder with no checkout or data beside it
    for tab in PAPER_IDS:
        r = subprocess.run(
            [str(exe), "screenshot", "--tab", tab, "--out", str(work / f"{tab}.png"), "--size", "1280x800"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        assert r.returncode == 0, (tab, r.stderr[-2000:])
        assert "shows an error" not in r.stdout and (work / f"{tab}.png").stat().st_size > 10_000, (tab, r.stdout)
