"""`nips-explorer screenshot` renders a real tab offscreen and writes a PNG that is not blank."""

import os
import subprocess
import sys

import pytest

from explorer.core.registry import all_specs


def _cheapest_tab():
    ids = [s.id for s in all_specs()]
    for pid in ("bptt", "l2l", "srnn", "compression", "transducer", "shapes3d"):
        if pid in ids:
            return pid
    pytest.skip("no paper registered yet")


def test_screenshot_png_not_blank(tmp_path):
    from PySide6.QtGui import QImage

    tab = _cheapest_tab()
    out = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "explorer.cli",
            "screenshot",
            "--tab",
            tab,
            "--out",
            str(out),
            "--size",
            "1024x700",
            "--timeout",
            "240",
        ],
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    img = QImage(str(out))
    assert img.width() == 1024 and img.height() == 700
    colours = {img.pixel(x, y) for x in range(0, img.width(), 16) for y in range(0, img.height(), 16)}
    assert len(colours) > 20, "the screenshot is (nearly) one colour"


def test_screenshot_bad_size_is_a_clear_error(tmp_path):
    tab = _cheapest_tab()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "explorer.cli",
            "screenshot",
            "--tab",
            tab,
            "--out",
            str(tmp_path / "x.png"),
            "--size",
            "big",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
    )
    assert r.returncode == 2 and "--size must look like" in r.stderr and "Traceback" not in r.stderr
