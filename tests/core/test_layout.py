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


def test_the_import_contract_covers_every_headless_module():
    """pyproject's forbidden contract (checked by lint-imports in scripts/check.sh) names every headless module:
    a new module outside explorer.ui and the panels must be added to it."""
    import fnmatch
    import tomllib

    conf = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (forbidden,) = [c for c in conf if c["type"] == "forbidden"]
    assert {"PySide6", "pyqtgraph", "vtk", "vtkmodules"} <= set(forbidden["forbidden_modules"])
    patterns = forbidden["source_modules"]

    def covered(mod: str) -> bool:
        return any(
            mod == p
            or mod.startswith(p + ".")
            or (("*" in p) and fnmatch.fnmatchcase(mod, p) and mod.count(".") == p.count("."))
            for p in patterns
        )

    mods = headless_modules()
    assert "explorer.core.checkpoints" in mods and "explorer.cli" in mods
    # the package markers (explorer, explorer.papers, explorer.papers.X) and __main__ hold no code of their own
    markers = {"explorer", "explorer.__main__", "explorer.papers"} | {
        m for m in mods if m.count(".") == 2 and m.startswith("explorer.papers.")
    }
    missing = [m for m in mods if m not in markers and not covered(m)]
    assert not missing, f"add these headless modules to the forbidden contract in pyproject.toml: {missing}"


def test_cli_help_is_light():
    """`nips-explorer --help` imports neither torch nor Qt (fast start)."""
    code = (
        "import sys\nfrom explorer.cli import build_parser\nbuild_parser()\n"
        "bad = [m for m in ('torch', 'PySide6', 'vtkmodules') if m in sys.modules]\n"
        "print(bad)\nsys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
