"""The 3D views under a real X display (Xvfb): the start-up warm render and a view made meanwhile both run in the
one render thread (VTK is not thread-safe), and the view then draws. Skipped without xvfb-run."""

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

    def wait(cond, seconds=60):
        end = time.monotonic() + seconds
        while not cond() and time.monotonic() < end:
            app.processEvents()
            time.sleep(0.005)
        return cond()

    def sphere(scene):
        from vtkmodules.vtkFiltersSources import vtkSphereSource
        from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper
        src = vtkSphereSource()
        m = vtkPolyDataMapper()
        m.SetInputConnection(src.GetOutputPort())
        a = vtkActor()
        a.SetMapper(m)
        scene.renderer.AddActor(a)
        scene.renderer.ResetCamera()
        scene.parts["a"] = a

    # the warm render asked for from a worker, as the app's warm-up does; a view made meanwhile queues behind it
    result = []
    th = threading.Thread(target=lambda: result.append(vtk_view.warm_offscreen_rendering()))
    th.start()
    time.sleep(0.05)
    view = vtk_view.VtkView()
    view.submit(sphere)
    th.join()
    print("warmed", result)
    assert vtk_view.warm_offscreen_rendering() is False  # not once a view exists
    view.resize(240, 200)
    view.show()
    assert wait(lambda: view.has_frame), "no frame came: " + view.error
    img = view.capture()
    assert img.shape[:2] == (200, 240), img.shape
    assert img.std() > 5, "blank picture"
    shown = view.grab().toImage()
    assert shown.pixelColor(120, 100) != shown.pixelColor(2, 2), "the widget does not paint its frame"
    view.close_view()
    assert vtk_view.shutdown_render_thread(10.0)
    print("OK", app.platformName())
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
    assert "OK xcb" in r.stdout
