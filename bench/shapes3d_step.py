"""Cost of one shapes3d training step per camera rig: the 5 axis cameras, the 9-camera rig (axes + 4 level
diagonals, cameras sharing a yaw share one slice-wise 2D resampling), and the same 9 cameras if each diagonal
camera were resampled on its own (trilinear, the general path). Prints seconds per step and ratios.

    python -m bench.shapes3d_step [--batch 32] [--threads 1] [--repeats 5] [--quick]

``--quick``: batch 2, one timed step.
"""

from __future__ import annotations

import argparse
import time

from bench._util import add_quick, run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    add_quick(ap, "batch 2, one timed step")
    args = ap.parse_args(argv)
    if args.quick:
        args.batch, args.repeats = 2, 1

    import torch

    from explorer.papers.shapes3d import model as M
    from explorer.papers.shapes3d.train import batch_loss

    torch.set_num_threads(args.threads)

    def general_split(m):  # what every non-axis camera cost before: its own trilinear resampling
        ap_ = M._axis_permutation(m)
        return None if ap_ is None else (0.0, ap_)

    def step_time(cams, split=None) -> float:
        torch.manual_seed(0)
        model = M.build(dict(cameras=cams))
        views = torch.rand(args.batch, len(cams), 32, 32)
        saved = M._yaw_split
        if split is not None:
            M._yaw_split = split
        try:
            times = []
            for i in range(args.repeats + 1):
                t0 = time.perf_counter()
                out = batch_loss(model, views, None, free_bits=1.0, silhouette_weight=1.0)
                model.zero_grad(set_to_none=True)
                out["loss"].backward()
                if i:  # the first step warms up the kernels
                    times.append(time.perf_counter() - t0)
        finally:
            M._yaw_split = saved
        return sorted(times)[len(times) // 2]

    axes = step_time(M.RIGS["axes"])
    rig9 = step_time(M.RIGS["axes+diagonals"])
    rig9_general = step_time(M.RIGS["axes+diagonals"], general_split)
    print(f"training step, batch {args.batch}, {args.threads} thread(s), median of {args.repeats}:")
    print(f"  5 axis cameras                          {axes:.3f} s")
    print(f"  9 cameras, shared yaw resampling        {rig9:.3f} s   ({rig9 / axes:.2f}x the axis rig)")
    print(
        f"  9 cameras, each resampled on its own    {rig9_general:.3f} s   ({rig9_general / axes:.2f}x; "
        f"sharing saves {rig9_general / rig9:.1f}x)"
    )
    return 0


if __name__ == "__main__":
    run(main)
