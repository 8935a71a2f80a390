"""Where a leave-one-speaker-out transducer fails on its unheard speaker.

    python -m bench.experiments.transducer_unheard --data FSDD \
        --checkpoint DIR/transducer_loso_george_30min.safetensors --speaker george [--warps 0.9,1.0,1.1] [--utts 120]

Prints (1) the isolated-digit confusion matrix over all 500 recordings of the speaker (each recording decoded on its
own, with 0.3 s of silence around it); (2) the connected-digit error rate by position in the utterance (errors
concentrated on the first digits would point at the running-mean normalisation's warm-up); (3) the connected-digit
error rate when every utterance's spectrum is warped by one fixed factor at test time (the VTLP warp used for
augmentation, applied to the test speaker: a probe of how much a per-speaker vocal-tract-length correction could
recover).
The leave-out checkpoints are not bundled (models/ holds what the app loads): re-make them with the commands in
bench/results/transducer_experiments.md, or take them from the git history (`git checkout ac1a0ab -- models/`)
into a folder given with --checkpoint. ``--quick``: 50 recordings, 10 utterances, warps 0.9 and 1.0; skips with one
line when --data or --checkpoint is absent.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from bench._util import add_quick, run, skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="the FSDD recordings folder (required without --quick)")
    p.add_argument("--checkpoint", default=None, help="a leave-out checkpoint (required without --quick)")
    p.add_argument("--speaker", default=None, help="its held-out speaker (required without --quick)")
    p.add_argument("--warps", default="0.9,1.0,1.1")
    p.add_argument("--utts", type=int, default=120)
    add_quick(p, "50 recordings, 10 utterances, warps 0.9 and 1.0; skips when --data or --checkpoint is absent")
    args = p.parse_args(argv)
    if args.quick:
        args.utts, args.warps = min(args.utts, 10), "0.9,1.0"
        if not args.data or not Path(args.data).is_dir():
            return skip("no FSDD folder given (--data): the analysis decodes the unheard speaker's recordings")
        if not args.checkpoint or not Path(args.checkpoint).is_file():
            return skip("no leave-out checkpoint given (--checkpoint; they are not bundled, see --help)")
    elif not (args.data and args.checkpoint and args.speaker):
        p.error("--data, --checkpoint and --speaker are required")
    import torch

    from explorer.core.checkpoints import load_model
    from explorer.papers.transducer import data as D
    from explorer.papers.transducer import testsets as T
    from explorer.papers.transducer.decode import decode_utterance
    from explorer.papers.transducer.evaluate import evaluate_utterances
    from explorer.papers.transducer.model import build

    torch.set_num_threads(1)
    model, meta = load_model(args.checkpoint, "transducer", build, "cpu")
    args.speaker = args.speaker or (meta.data.get("holdout") or "george").split(",")[0]
    clips = D.load_fsdd(args.data, speakers=[args.speaker], indices=range(5) if args.quick else None)

    C = np.zeros((10, 12), int)  # columns 10: nothing emitted, 11: more than one digit
    pad = np.zeros(int(0.3 * D.SAMPLE_RATE), np.float32)
    for c in clips:
        a = np.concatenate([pad, c.audio / (np.abs(c.audio).max() + 1e-9) * 0.3, pad]).astype(np.float32)
        hyp, _, _ = decode_utterance(model, torch.from_numpy(a))
        C[c.digit, hyp[0] if len(hyp) == 1 else (10 if not hyp else 11)] += 1
    print(f"{args.speaker}: isolated-digit accuracy {np.trace(C[:, :10]) / C.sum():.3f} ({C.sum()} recordings)")
    print("ref\\hyp " + " ".join(f"{j:>3}" for j in [*range(10), "-", "+"]))
    for i in range(10):
        print(f"{i:>7} " + " ".join(f"{v:>3}" for v in C[i]))

    utts = T.test_utterances(clips, args.utts)
    err, cnt = np.zeros(7), np.zeros(7)
    for u in utts:
        hyp, _, _ = decode_utterance(model, torch.from_numpy(u.audio))
        r, h = u.digits, hyp
        T = np.zeros((len(r) + 1, len(h) + 1), int)  # edit distance table, then walk back to charge each reference
        T[:, 0], T[0, :] = range(len(r) + 1), range(len(h) + 1)
        for i in range(1, len(r) + 1):
            for j in range(1, len(h) + 1):
                T[i, j] = min(T[i - 1, j] + 1, T[i, j - 1] + 1, T[i - 1, j - 1] + (r[i - 1] != h[j - 1]))
        i, j = len(r), len(h)
        while i > 0:
            k = min(i - 1, 6)
            if j > 0 and T[i, j] == T[i - 1, j - 1] + (r[i - 1] != h[j - 1]):
                err[k] += r[i - 1] != h[j - 1]
                i, j = i - 1, j - 1
            elif T[i, j] == T[i - 1, j] + 1:
                err[k] += 1
                i -= 1
            else:
                j -= 1  # an inserted digit is not charged to a position
                continue
            cnt[k] += 1
    print(
        "errors by position: "
        + "  ".join(f"{k + 1}: {err[k] / cnt[k]:.3f} (n={int(cnt[k])})" for k in range(7) if cnt[k])
    )
    plain = model.logmel.forward
    for w in [float(x) for x in args.warps.split(",")]:
        model.logmel.forward = lambda audio, warp=1.0, _w=w: plain(audio, warp=_w)
        r = evaluate_utterances(model, utts)
        print(
            json.dumps(
                {
                    "warp": w,
                    "digit_error_rate": round(r["digit_error_rate"], 4),
                    "sequence_accuracy": round(r["sequence_accuracy"], 3),
                }
            )
        )
    model.logmel.forward = plain
    return 0


if __name__ == "__main__":
    run(main)
