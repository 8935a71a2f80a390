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
