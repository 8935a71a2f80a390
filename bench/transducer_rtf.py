"""Streaming real-time factor of the Neural Transducer on one CPU core.

Feeds audio in 40 ms chunks through StreamingRecognizer (features, encoder, block decoding) as the app does,
and reports compute time / audio time, plus per-chunk latency percentiles.
Usage: python -m bench.transducer_rtf [--checkpoint F] [--audio-dir DIR] [--repeat 3] [--json] [--quick]
(default: the bundled checkpoint on the bundled demo utterances). ``--quick``: the first two files, one timed pass.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench._util import add_quick, run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--audio-dir", default=None)
    ap.add_argument("--chunk-ms", type=float, default=40.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--beam", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    add_quick(ap, "the first two files, one timed pass")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeat = 1
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from explorer.core.checkpoints import load_model
    from explorer.core.paths import bundled, resources_dir
    from explorer.papers.transducer.decode import StreamingRecognizer
    from explorer.papers.transducer.features import read_audio
    from explorer.papers.transducer.model import build

    ck = Path(args.checkpoint) if args.checkpoint else bundled("transducer_fsdd_online.safetensors")
    model, meta = load_model(ck, "transducer", build, "cpu")
    folder = Path(args.audio_dir) if args.audio_dir else resources_dir() / "transducer"
    audios = [read_audio(f) for f in sorted(folder.glob("*.wav"))[: 2 if args.quick else None]]
    if not audios:
        print(f"no .wav files in {folder}", file=sys.stderr)
        return 2
    step = int(args.chunk_ms / 1000 * 8000)
    lat, total_audio, total_compute = [], 0.0, 0.0
    for r in range(args.repeat + 1):  # first pass warms up
        for a in audios:
            rec = StreamingRecognizer(model, beam=args.beam)
            for i in range(0, len(a), step):
                t0 = time.perf_counter()
                rec.accept(a[i : i + step])
                dt = time.perf_counter() - t0
                if r:
                    lat.append(dt)
            t0 = time.perf_counter()
            rec.finish()
            if r:
                total_compute += rec.compute_s
                total_audio += len(a) / 8000
    lat_ms = np.array(lat) * 1000
    res = {
        "checkpoint": ck.name,
        "files": len(audios),
        "audio_s": round(total_audio, 2),
        "threads": 1,
        "chunk_ms": args.chunk_ms,
        "beam": args.beam,
        "real_time_factor": total_compute / total_audio,
        "chunk_latency_ms": {
            "p50": float(np.percentile(lat_ms, 50)),
            "p99": float(np.percentile(lat_ms, 99)),
            "max": float(lat_ms.max()),
        },
        "block_ms": model.cfg["block"] * model.frame_seconds * 1000,
    }
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(
            f"streaming RTF {res['real_time_factor']:.4f} on 1 thread ({res['audio_s']} s audio); chunk latency "
            f"p50 {res['chunk_latency_ms']['p50']:.2f} ms, p99 {res['chunk_latency_ms']['p99']:.2f} ms"
        )
    return 0


if __name__ == "__main__":
    run(main)
