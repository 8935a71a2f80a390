"""The shared VTK view renders offscreen (not blank) and closes idempotently."""


def test_vtk_view_renders_and_closes(qtbot):
    from vtkmodules.vtkFiltersSources import vtkSphereSource
    from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

    from explorer.ui.widgets.vtk_view import VtkView

    view = VtkView()
    qtbot.addWidget(view)
    view.resize(200, 160)
    view.show()
    src = vtkSphereSource()
    mapper = vtkPolyDataMapper()
    mapper.SetInputConnection(src.GetOutputPort())
    actor = vtkActor()
    actor.SetMapper(mapper)
    actor.GetProperty().SetColor(1.0, 0.6, 0.2)
    view.renderer.AddActor(actor)
    view.renderer.ResetCamera()
    view.render()
    img = view.capture()
    assert img.shape[0] > 50 and img.shape[1] > 50
    assert len({tuple(p) for p in img.reshape(-1, 3)[::7]}) > 10, "the VTK view rendered blank"
    view.close_view()
    view.close_view()
    view.close()


def test_vtk_work_waits_for_the_event_loop(qtbot):
    """The OpenGL context is made after the view is first shown, in a turn of its own; ``render()`` only asks for
    a render, done in a later turn (several requests, one render); ``capture()`` renders at once."""
    from explorer.ui.widgets.vtk_view import VtkView

    view = VtkView()
    qtbot.addWidget(view)
    renders = []
    view.renderer.AddObserver("EndEvent", lambda *_: renders.append(1))
    view.render()  # not shown yet: nothing to do
    view.resize(120, 100)
    view.show()
    assert not view.initialized and not renders
    qtbot.waitUntil(lambda: view.initialized and len(renders) >= 1, timeout=10000)
    qtbot.wait(50)
    n = len(renders)
    view.render()
    view.render()
    assert len(renders) == n  # asked for, not done yet
    qtbot.waitUntil(lambda: len(renders) > n, timeout=10000)
    qtbot.wait(50)
    assert len(renders) == n + 1  # two requests, one render
    assert view.capture().shape[:2] == (view.height(), view.width())
    view.close_view()
    view.render()  # closed: nothing queued
    view.close()
