"""A test-time vocal-tract warp ensemble of one transducer checkpoint, scored on the trainer's held-out sets.

    python -m bench.experiments.transducer_warp --checkpoint F --warps 1 --warps 1,0.92,1.08 \
        --data FSDD --more-data ../shared/data/digits [--holdout george]

Each ``--warps`` set is one model: the checkpoint read through each warped filterbank (the training-time VTLP warp
of ``features.vtlp_warp``: > 1 behaves like a shorter vocal tract), the copies decoded in lockstep as an
:class:`~explorer.papers.transducer.model.Ensemble` (mean of their next-token probabilities). A set with one warp
is the checkpoint read through that one filterbank. The idea: a voice whose formants sit higher or lower than any
training voice's may look familiar to one of the copies. Scored by ``train.heldout_metrics`` as a trained model is
(the training speakers' unseen FSDD recordings, or ``--holdout``'s 120 connected utterances for a leave-one-out
fold's checkpoint; fluent strings; the held-out ``--more-data`` speakers minus ``--exclude``), printing wrong digits
per set and their total as ``transducer_average`` does. ``--quick``: the first set on 3 utterances per speaker;
skips with one line without --checkpoint and --data.
"""

import argparse
import copy
from pathlib import Path
from types import SimpleNamespace

from bench._util import add_quick, skip
from bench._util import run as run_main
from bench.experiments.transducer_average import Report, wrong_digit_row


def warp_ensemble(model, warps):
    """One transducer read through each VTLP-warped filterbank in ``warps``, the copies decoded in lockstep."""
    import torch
    from torch import nn

    from explorer.papers.transducer.model import Ensemble

    class WarpEnsemble(Ensemble):
        # features() returns every copy's raw log-mel side by side; encode() gives each copy its own bands.
        def features(self, audios):
            feats = [
                torch.cat([m.logmel(m.with_flush(a.to(self.feat_mean.device))[None])[0] for m in self.members], -1)
                for a in audios
            ]
            return nn.utils.rnn.pad_sequence(feats, batch_first=True), torch.tensor([f.shape[0] for f in feats])

        def encode(self, x, lengths=None, hidden=None):
            hidden = hidden or [(None, {}) for _ in self.members]
            encs, keys, new, enc_len = [], [], [], None
            for m, raw, (h, state) in zip(self.members, x.split(self.cfg["n_mels"], -1), hidden):
                e, k, enc_len, h = m.encode(m.normalize(raw, state), lengths, h)
                encs.append(e)
                keys.append(k)
                new.append((h, state))
            return torch.cat(encs, -1), torch.cat(keys, -1), enc_len, new

    copies = []
    for w in warps:
        m = copy.deepcopy(model)
        m.logmel.fb = m.logmel.warped_filterbank(w).clone()
        copies.append(m)
    return WarpEnsemble(copies).eval() if len(copies) > 1 else copies[0].eval()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="a transducer checkpoint (online or offline)")
    p.add_argument("--warps", action="append", default=[], help="comma-separated warp factors: one model (repeat)")
    p.add_argument("--data", default=None, help="the FSDD recordings folder")
    p.add_argument("--more-data", action="append", default=[], help="the folder of more real voices")
    p.add_argument("--holdout", default="", help="the FSDD speaker(s) the checkpoint never heard (a fold's)")
    p.add_argument("--exclude", default="jason", help="held-out --more-data speakers not to score (comma-separated)")
    p.add_argument("--eval-utts", type=int, default=60, help="test utterances per FSDD speaker, as the trainer")
    p.add_argument("--json", default=None, help="write every set's metrics to this file")
    add_quick(p, "the first warp set on 3 utterances per speaker; skips without --checkpoint and --data")
    args = p.parse_args(argv)
    if not (args.checkpoint and args.data):
        if args.quick:
            return skip("--checkpoint and --data are needed (a checkpoint and the recordings)")
        p.error("--checkpoint and --data are required")
    sets = [[float(w) for w in s.split(",")] for s in (args.warps or ["1", "1,0.92,1.08"])]
    if args.quick:
        sets, args.eval_utts = sets[:1], 3
    import torch

    from explorer.core.checkpoints import load_model
    from explorer.papers.transducer.model import build
    from explorer.papers.transducer.train import heldout_metrics

    torch.set_num_threads(1)
    model, meta = load_model(Path(args.checkpoint), "transducer", build, "cpu")
    drop = set(args.exclude.split(","))
    more_test = [s for s in meta.data.get("more_test_speakers") or [] if s not in drop] if args.more_data else []
    held = [s for s in args.holdout.split(",") if s]
    ns = SimpleNamespace(data=args.data, more_data=args.more_data, eval_utts=args.eval_utts)
    report = Report()
    for warps in sets:
        with torch.no_grad():
            m = heldout_metrics(
                warp_ensemble(model.eval(), warps), ns, list(meta.data["train_speakers"]), held, more_test
            )
        row = {"warps": ",".join(f"{w:g}" for w in warps), **wrong_digit_row(m)}
        row["real-time factor"] = f"{m['real_time_factor']:.3f}"
        report.add(row["warps"], row, m)
    report.finish(args.json)
    return 0


if __name__ == "__main__":
    run_main(main)
