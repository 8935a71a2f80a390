"""Pictures for the README: held-out input pictures next to the inferred shape and the ground truth, rendered
by the tab's own VTK views (VtkView.capture(), offscreen).

    python -m bench.figures.shapes3d_pictures --out resources/shapes3d/inferred.png [--rows 1,6,11] [--quick]
    python -m bench.figures.shapes3d_pictures --checkpoint models/shapes3d_modelnet.safetensors \
        --rows 0,2,4,6,8,10,12 --out resources/shapes3d/inferred_modelnet.png   (its own gallery: real shapes)

``--quick``: one gallery item at 96 pixels, into a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from bench._util import add_quick, run, scratch  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="default resources/shapes3d/inferred.png")
    ap.add_argument("--rows", default="0,4,8,12,16", help="gallery items to show (comma separated)")
    ap.add_argument(
        "--checkpoint", default=None, help="default: the bundled primitives model (the tab shows its gallery)"
    )
    ap.add_argument("--size", type=int, default=220, help="size of each 3D view in pixels")
    add_quick(ap, "one gallery item at 96 pixels, into a temporary folder")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.size = args.rows.split(",")[0], 96
        args.out = args.out or str(scratch("shapes3d-pictures") / "inferred.png")
    args.out = args.out or "resources/shapes3d/inferred.png"

    import numpy as np
    from PIL import Image
    from PySide6.QtWidgets import QApplication

    from explorer.core.devices import configure_threads
    from explorer.core.settings import Settings
    from explorer.papers.shapes3d import SPEC
    from explorer.papers.shapes3d.panel import Shapes3DPanel
    from explorer.ui.context import AppContext

    app = QApplication.instance() or QApplication(sys.argv[:1])
    configure_threads()

    def wait(until, what: str, seconds: float = 120.0) -> None:
        deadline = time.monotonic() + seconds
        while not until():
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out after {seconds:.0f} s waiting for {what}")
            app.processEvents()
            time.sleep(0.002)

    ctx = AppContext(Settings(), device_preference="cpu")
    panel = Shapes3DPanel(SPEC, ctx)
    for _ in panel.build_steps():  # the shell builds a panel in pieces, one per event-loop turn
        app.processEvents()
    panel.resize(900, 700)
    panel.show()
    for v in panel.vtk_views():  # one view, two panes side by side (inferred | ground truth)
        v.setFixedSize(2 * args.size, args.size)
    done = {"ok": None}
    if args.checkpoint:
        panel.open_checkpoint(args.checkpoint, on_done=lambda ok: done.update(ok=ok))
    else:
        panel.load_bundled(on_done=lambda ok: done.update(ok=ok))
    wait(lambda: done["ok"] is not None, "the model")
    if not done["ok"]:
        print("could not load the model", file=sys.stderr)
        return 1
    wait(lambda: not panel._gallery_loading and panel.gallery is not None, "the gallery")
    rows = [int(r) for r in args.rows.split(",") if r.strip()]
    tiles = []
    for r in rows:
        panel.current = None
        panel.select_gallery(r)
        wait(lambda: not panel.runner.is_busy() and panel.current is not None, f"gallery item {r}")
        for _ in range(5):
            app.processEvents()
        inp = panel.current_image
        s = args.size
        im = np.asarray(Image.fromarray((inp * 255).astype(np.uint8)).resize((s, s), Image.NEAREST))
        im = np.repeat(im[..., None], 3, axis=2)
        tiles.append(np.concatenate([im, panel.pred_view.capture(), panel.truth_view.capture()], axis=1))
    gap = np.full((4, tiles[0].shape[1], 3), 128, np.uint8)  # rows apart (ModelNet pictures fill their frame)
    sheet = np.concatenate([part for t in tiles for part in (t, gap)][:-1], axis=0)
    Image.fromarray(sheet).save(args.out)
    print(f"saved {args.out} ({sheet.shape[1]}x{sheet.shape[0]}): input | inferred | ground truth")
    panel.shutdown()
    return 0


if __name__ == "__main__":
    run(main)
