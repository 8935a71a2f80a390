"""Qt, pyqtgraph and VTK are imported only by UI code: every headless module imports without them."""
import pathlib
import subprocess
import sys

import explorer

ROOT = pathlib.Path(explorer.__file__).parent


def headless_modules():
    mods = []
    for p in sorted(ROOT.rglob("*.py")):
        rel = p.relative_to(ROOT.parent)
        parts = rel.with_suffix("").parts
        if "ui" in parts or parts[-1] == "panel" or parts[-1].startswith("panel_"):
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods.append(name)
    return mods


def test_headless_modules_do_not_import_qt():
    mods = headless_modules()
    assert "explorer.core.checkpoints" in mods and "explorer.cli" in mods
    code = (
        "import importlib, sys\n"
        f"mods = {mods!r}\n"
        "for m in mods:\n"
        "    importlib.import_module(m)\n"
        "bad = [m for m in ('PySide6', 'pyqtgraph', 'vtkmodules', 'vtk', 'superqt') if m in sys.modules]\n"
        "print('BAD', bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_cli_help_is_light():
    """`nips-explorer --help` imports neither torch nor Qt (fast start)."""
    code = (
        "import sys\nfrom explorer.cli import build_parser\nbuild_parser()\n"
        "bad = [m for m in ('torch', 'PySide6', 'vtkmodules') if m in sys.modules]\nprint(bad)\nsys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
