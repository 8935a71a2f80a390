"""The 3D views under a real X display (Xvfb): the start-up warm render in a worker, a view made meanwhile waits
for it (VTK is not thread-safe), and the view then draws. Skipped without xvfb-run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs xvfb-run (apt-get install xvfb)"),
]

SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    from PySide6.QtWidgets import QApplication
    app = QApplication(sys.argv)
    from explorer.ui.widgets import vtk_view
    from vtkmodules.vtkFiltersSources import vtkSphereSource
    from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

    def wait(cond, seconds=60):
        end = time.monotonic() + seconds
        while not cond() and time.monotonic() < end:
            app.processEvents()
            time.sleep(0.005)
        return cond()

    # the warm render in a worker, as the app's warm-up runs it; a view made meanwhile waits for it
    result = []
    th = threading.Thread(target=lambda: result.append(vtk_view.warm_offscreen_rendering()))
    th.start()
    view = vtk_view.VtkView()
    assert vtk_view._warm_done.is_set()
    th.join()
    print("warmed", result)
    assert vtk_view.warm_offscreen_rendering() is False  # never once a view exists
    view.resize(240, 200)
    view.show()
    assert wait(lambda: view.initialized), "the view never initialized"
    src = vtkSphereSource()
    m = vtkPolyDataMapper()
    m.SetInputConnection(src.GetOutputPort())
    a = vtkActor()
    a.SetMapper(m)
    view.renderer.AddActor(a)
    view.renderer.ResetCamera()
    img = view.capture()
    assert img.shape[:2] == (200, 240), img.shape
    assert img.std() > 5, "blank picture"
    view.close_view()
    print("OK", view.offscreen)
    """
)


def test_view_under_x_display(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="xcb")
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")])
    script = tmp_path / "view.py"
    script.write_text(SCRIPT)
    r = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 640x480x24", sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "OK False" in r.stdout
