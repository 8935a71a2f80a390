"""Open picture... on photo-like renders of held-out ModelNet10 shapes: how much does the step from the renderer's
own pictures to a photo cost?

Each held-out grid is turned into a mesh (marching cubes of the grid, cavities filled) and rendered by VTK at
640x480 with a perspective camera, lights, a wood or plastic colour and a coloured background, from the input
camera's azimuth at a few elevations; the render goes through ``photo.load_photo`` (mask, crop, resize, grey
levels) and the model infers the shape (read as the tab reads it: the checkpoint's read-out), scored by IoU against
the grid, beside the model's IoU on the renderer's own picture of the same shape.

    python -m bench.experiments.shapes3d_photo_check --shapes DIR [--per-class 20] [--save-dir /tmp/photos] [--quick]

``--quick``: one shape per class at one elevation; skips with one line without ``--shapes`` (the ModelNet10 grids
are not part of the repository).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench._util import add_quick, run, skip


def render_photo(
    grid: np.ndarray, out: Path, elevation: float, colour, background, size=(640, 480), parallel: bool = False
) -> None:
    """A photo-like VTK render of an exchange grid [x, y(up), z]; the camera looks at its front (+z).
    ``parallel``: an orthographic camera, as the renderer's (to tell the perspective's share of the gap)."""
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401
    from scipy import ndimage
    from skimage.measure import marching_cubes
    from vtkmodules.util.numpy_support import numpy_to_vtk, numpy_to_vtkIdTypeArray
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
    from vtkmodules.vtkFiltersCore import vtkPolyDataNormals, vtkWindowedSincPolyDataFilter
    from vtkmodules.vtkIOImage import vtkPNGWriter
    from vtkmodules.vtkRenderingCore import (
        vtkActor,
        vtkLight,
        vtkPolyDataMapper,
        vtkRenderer,
        vtkRenderWindow,
        vtkWindowToImageFilter,
    )

    g = ndimage.binary_fill_holes(grid)
    verts, faces, _, _ = marching_cubes(np.pad(g.astype(np.float32), 1), 0.5)
    r = grid.shape[0]
    verts = (verts - 1.0 + 0.5) / r * 2.0 - 1.0  # x, y, z in [-1, 1]
    pts = vtkPoints()
    pts.SetData(numpy_to_vtk(verts.astype(np.float32), deep=True))
    cells = vtkCellArray()
    conn = np.hstack([np.full((len(faces), 1), 3), faces]).astype(np.int64).ravel()
    cells.SetCells(len(faces), numpy_to_vtkIdTypeArray(conn, deep=True))
    poly = vtkPolyData()
    poly.SetPoints(pts)
    poly.SetPolys(cells)
    smooth = vtkWindowedSincPolyDataFilter()
    smooth.SetInputData(poly)
    smooth.SetNumberOfIterations(15)
    smooth.SetPassBand(0.1)
    normals = vtkPolyDataNormals()
    normals.SetInputConnection(smooth.GetOutputPort())
    mapper = vtkPolyDataMapper()
    mapper.SetInputConnection(normals.GetOutputPort())
    actor = vtkActor()
    actor.SetMapper(mapper)
    actor.GetProperty().SetColor(*colour)
    actor.GetProperty().SetSpecular(0.25)
    ren = vtkRenderer()
    ren.SetBackground(*background)
    ren.AddActor(actor)
    ren.AutomaticLightCreationOff()
    for pos, inten in (((1.5, 2.5, 3.0), 0.8), ((-2.0, 1.0, 2.0), 0.35)):
        light = vtkLight()
        light.SetPosition(*pos)
        light.SetFocalPoint(0, 0, 0)
        light.SetIntensity(inten)
        ren.AddLight(light)
    cam = ren.GetActiveCamera()
    d = 6.0
    e = np.radians(elevation)
    cam.SetFocalPoint(0, 0, 0)
    cam.SetPosition(0, d * np.sin(e), d * np.cos(e))
    cam.SetViewUp(0, 1, 0)
    cam.SetViewAngle(28)
    if parallel:
        cam.ParallelProjectionOn()
        cam.SetParallelScale(1.5)
    ren.ResetCameraClippingRange()
    win = vtkRenderWindow()
    win.SetOffScreenRendering(1)
    win.SetSize(*size)
    win.AddRenderer(ren)
    win.Render()
    grab = vtkWindowToImageFilter()
    grab.SetInput(win)
    grab.Update()
    writer = vtkPNGWriter()
    writer.SetFileName(str(out))
    writer.SetInputConnection(grab.GetOutputPort())
    writer.Write()
    win.Finalize()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default=None, help="folder of the ModelNet10 grids (CLASS.npy.gz)")
    ap.add_argument("--data-dir", default=None, help="cache folder of the rendered data set (as eval's)")
    ap.add_argument("--checkpoint", default="models/shapes3d_modelnet.safetensors")
    ap.add_argument("--per-class", type=int, default=20, help="held-out shapes per class")
    ap.add_argument("--elevations", default="0,15,30", help="camera elevations in degrees")
    ap.add_argument("--save-dir", default=None, help="keep the photos and the prepared pictures here")
    add_quick(ap, "one shape per class at one elevation; skips without --shapes")
    args = ap.parse_args(argv)
    if not args.shapes:
        return skip("give --shapes DIR, the folder of the ModelNet10 grids (not part of the repository)")
    if not Path(args.checkpoint).exists():
        return skip(f"no checkpoint {args.checkpoint}")
    if args.quick:
        args.per_class, args.elevations = 1, args.elevations.split(",")[0]

    import torch

    from explorer.core.devices import configure_threads
    from explorer.papers.shapes3d import photo
    from explorer.papers.shapes3d.data import cache_dir, internal_to_grid, load_dataset
    from explorer.papers.shapes3d.infer import load_for_app
    from explorer.papers.shapes3d.model import Readout, iou
    from explorer.papers.shapes3d.train import PRESETS

    configure_threads(for_gui=False)
    model, meta = load_for_app(args.checkpoint, "cpu")
    readout = Readout.from_metrics(meta.metrics)  # as the tab reads the shape
    folder = Path(args.data_dir) / "shapes3d" if args.data_dir else cache_dir()
    train, test = load_dataset("modelnet", shapes=args.shapes, rig=PRESETS["modelnet"]["rig"], folder=folder)
    idx = [int(i) for c in range(len(test.class_names)) for i in np.nonzero(test.labels == c)[0][: args.per_class]]
    # framing and grey levels measured on the training split's pictures (the app measures them on its gallery)
    ref = photo.reference(train.views[:, model.input_view], train.labels)
    save = Path(args.save_dir) if args.save_dir else Path(tempfile.mkdtemp(prefix="shapes3d-photos-"))
    save.mkdir(parents=True, exist_ok=True)
    looks = [((0.55, 0.36, 0.22), (0.72, 0.82, 0.93)), ((0.2, 0.2, 0.22), (0.93, 0.9, 0.8))]  # wood/sky, dark/cream
    elevations = [float(e) for e in args.elevations.split(",")]
    rows: dict[str, dict[str, list[float]]] = {}

    def infer(pic: np.ndarray, label: int, rendered: bool = False) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(pic[None].astype(np.float32))
            probs, _ = readout.read(model, x, torch.tensor([label]), rendered=rendered)
            return (probs[0] > readout.level).numpy()

    def score_photo(p: Path, fill: float, shading: str, label: int, truth: np.ndarray) -> float:
        pic, _ = photo.load_photo(p, model.image_size, fill, ref["grey"], shading)
        return float(iou(infer(pic, label), truth))

    for n, i in enumerate(idx):
        cls = test.class_names[int(test.labels[i])]
        truth = test.voxels[i]
        r = rows.setdefault(cls, {})
        rendered = test.views[i, model.input_view].astype(np.float32) / 255.0
        r.setdefault("renderer's picture", []).append(float(iou(infer(rendered, int(test.labels[i]), True), truth)))
        flat = np.where(rendered > 0.02, float(np.median(ref["grey"])), 0.0).astype(np.float32)
        r.setdefault("renderer's silhouette, one grey", []).append(float(iou(infer(flat, int(test.labels[i])), truth)))
        for e in elevations:
            colour, bg = looks[n % len(looks)]
            p = save / f"{test.names[i]}_e{int(e)}.png"
            render_photo(internal_to_grid(truth), p, e, colour, bg)
            if e == elevations[0]:
                p = save / f"{test.names[i]}_e{int(e)}_ortho.png"
                render_photo(internal_to_grid(truth), p, e, colour, bg, parallel=True)
                key = f"photo, elevation {e:.0f}, orthographic camera, one grey"
                r.setdefault(key, []).append(score_photo(p, ref["fill"], "flat", int(test.labels[i]), truth))
                p = save / f"{test.names[i]}_e{int(e)}.png"
                # the framing of this shape's own rendered picture: its scale follows the shape's largest 3D extent,
                # which one photo cannot show (a monitor seen from the side is deeper than it is wide)
                own = photo.reference(test.views[i : i + 1, model.input_view])["fill"]
                key = f"photo, elevation {e:.0f}, one grey, the shape's own framing (oracle)"
                r.setdefault(key, []).append(score_photo(p, own, "flat", int(test.labels[i]), truth))
            per_class = ref["fill_by_class"][int(test.labels[i])]
            for mode, shading, fill in (
                ("matched grey", "matched", ref["fill"]),
                ("one grey", "flat", ref["fill"]),
                ("one grey, class framing", "flat", per_class),
            ):
                pic, report = photo.load_photo(p, model.image_size, fill, ref["grey"], shading)
                r.setdefault(f"photo, elevation {e:.0f}, {mode}", []).append(
                    float(iou(infer(pic, int(test.labels[i])), truth))
                )
                if n < 4 and mode == "one grey":
                    from PIL import Image

                    Image.fromarray((pic * 255).astype(np.uint8)).resize((128, 128), Image.NEAREST).save(
                        save / f"{test.names[i]}_e{int(e)}_prepared.png"
                    )
                    print(f"{p.name}: {report}", file=sys.stderr)
    out = {cls: {k: round(float(np.mean(v)), 4) for k, v in r.items()} for cls, r in rows.items()}
    out["shapes"] = {cls: len(next(iter(r.values()))) for cls, r in rows.items()}
    print(json.dumps(out, indent=2))
    print(f"photos and prepared pictures in {save}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run(main)
