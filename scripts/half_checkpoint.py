"""Store a checkpoint's floating-point weights as float16 (half the file; the models compute in float32).

    python scripts/half_checkpoint.py SRC.safetensors [DST.safetensors]   (default: in place)

The metadata gains ``"storage": "float16"``; the metrics stay those computed in float32: re-run the paper's
``eval`` with ``--record`` to recompute them from the half-precision file (for the SRNN models the test ELBO
moved by about 1e-5 nats per step). Loading casts the weights back to float32.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv) -> int:
    import torch

    from explorer.core.checkpoints import load_checkpoint, save_checkpoint

    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    src = Path(argv[0])
    dst = Path(argv[1]) if len(argv) > 1 else src
    before = src.stat().st_size
    ck = load_checkpoint(src)
    sd = {k: (v.to(torch.float16) if v.is_floating_point() else v) for k, v in ck.state_dict.items()}
    m = ck.meta
    extra = dict(m.extra)
    extra["storage"] = "float16"
    save_checkpoint(
        dst, sd, paper=m.paper or "", model_config=m.model_config, metrics=m.metrics, data=m.data, extra=extra
    )
    print(f"{dst}: {before / 2**20:.1f} MiB -> {dst.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
