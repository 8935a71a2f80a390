"""Pictures for the README: held-out input pictures next to the inferred shape and the ground truth, rendered
by the tab's own VTK views (VtkView.capture(), offscreen).

    QT_QPA_PLATFORM=offscreen python bench/shapes3d_pictures.py --out resources/shapes3d/inferred.png [--rows 1,6,11]
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="resources/shapes3d/inferred.png")
    ap.add_argument("--rows", default="0,4,8,12,16", help="gallery items to show (comma separated)")
    ap.add_argument("--checkpoint", default=None, help="default: the bundled primitives model")
    ap.add_argument("--size", type=int, default=220, help="size of each 3D view in pixels")
    args = ap.parse_args()

    import numpy as np
    from PIL import Image
    from PySide6.QtWidgets import QApplication

    from explorer.core.devices import configure_threads
    from explorer.core.settings import Settings
    from explorer.papers.shapes3d import SPEC
    from explorer.papers.shapes3d.panel import Shapes3DPanel
    from explorer.ui.context import AppContext

    app = QApplication.instance() or QApplication(sys.argv)
    configure_threads()
    ctx = AppContext(Settings(), device_preference="cpu")
    panel = Shapes3DPanel(SPEC, ctx)
    panel.resize(900, 700)
    panel.show()
    for v in panel.vtk_views():
        v.setFixedSize(args.size, args.size)
    done = {"ok": None}
    if args.checkpoint:
        panel.open_checkpoint(args.checkpoint, on_done=lambda ok: done.update(ok=ok))
    else:
        panel.load_bundled(on_done=lambda ok: done.update(ok=ok))
    while done["ok"] is None:
        app.processEvents()
    if not done["ok"]:
        print("could not load the model", file=sys.stderr)
        return 1
    rows = [int(r) for r in args.rows.split(",") if r.strip()]
    tiles = []
    for r in rows:
        panel.current = None
        panel.select_gallery(r)
        while panel.runner.is_busy() or panel.current is None:
            app.processEvents()
        for _ in range(5):
            app.processEvents()
        inp = panel.current_image
        s = args.size
        im = np.asarray(Image.fromarray((inp * 255).astype(np.uint8)).resize((s, s), Image.NEAREST))
        im = np.repeat(im[..., None], 3, axis=2)
        tiles.append(np.concatenate([im, panel.pred_view.capture(), panel.truth_view.capture()], axis=1))
    sheet = np.concatenate(tiles, axis=0)
    Image.fromarray(sheet).save(args.out)
    print(f"saved {args.out} ({sheet.shape[1]}x{sheet.shape[0]}): input | inferred | ground truth")
    panel.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
