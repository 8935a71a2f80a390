"""Weight averages of two transducer checkpoints that share a trunk, scored on the trainer's held-out sets.

    python -m bench.experiments.transducer_average --a A.safetensors --b B.safetensors --alphas 1,0.75,0.5,0.25,0 \
        --data FSDD --more-data ../shared/data/digits [--exclude jason]

For each a the model (1 - a) x A + a x B (floating-point tensors; anything else, and the config, from B) is scored
by ``train.heldout_metrics`` on B's held-out sets, as a trained model is: the training speakers' unseen FSDD
recordings, fluent strings in the held-out demo voices and the held-out ``--more-data`` speakers (minus
``--exclude``: jason's files hold more than their one digit). Prints wrong digits per set and their total, the rule
docs/transducer.md used to choose between models. A is typically an earlier shipped model (from the git history:
``git show 9e37e41:models/transducer_fsdd_online.safetensors > A.safetensors`` is 0.2.0) and B the model
fine-tuned from it; averaging unrelated runs gives nonsense. ``--quick``: a = 1 and 3 utterances per speaker;
skips with one line without --a, --b, --data and --more-data.
"""

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

from bench._util import add_quick, skip
from bench._util import run as run_main


def wrong_digit_row(m: dict) -> dict:
    """Wrong digits per held-out set of ``heldout_metrics``'s answer, and their total (the docs' rule)."""
    iso, conn = m.get("unheard_isolated", {}), m.get("unheard_connected", {})
    fsdd = f"held-out {m['heldout_speaker']}" if m.get("heldout_speaker") else "seen FSDD"
    return {
        "isolated wrong digits": f"{iso.get('digit_errors')} of {iso.get('scored')}",
        "isolated wrong clips": iso.get("wrong_clips"),
        "speaker mean": f"{100 * iso.get('speaker_mean_digit_error_rate', float('nan')):.1f}%",
        "connected wrong": f"{conn.get('digit_errors')} of {conn.get('digits')}",
        f"{fsdd} wrong": f"{m['digit_errors']} of {m['digits']} ({100 * m['digit_error_rate']:.2f}%)",
        "fluent": f"{100 * m['fluent_digit_error_rate']:.1f}%" if m.get("fluent_digit_error_rate") is not None else "",
        "total": (iso.get("digit_errors") or 0) + (conn.get("digit_errors") or 0) + m["digit_errors"],
    }


class Report:
    """Rows printed one JSON line each as they come, then as one markdown table; every row's metrics to --json."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.metrics: dict = {}

    def add(self, key: str, row: dict, metrics: dict) -> None:
        self.rows.append(row)
        self.metrics[key] = metrics
        print(json.dumps(row), flush=True)

    def finish(self, json_path: str | None) -> None:
        print()
        print("| " + " | ".join(self.rows[0]) + " |")
        print("|" + "---|" * len(self.rows[0]))
        for r in self.rows:
            print("| " + " | ".join(str(v) for v in r.values()) + " |")
        if json_path:
            Path(json_path).write_text(json.dumps(self.metrics, indent=1, default=str))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", default=None, help="checkpoint A (weight 1 - a)")
    p.add_argument("--b", default=None, help="checkpoint B (weight a; its config and held-out speakers are used)")
    p.add_argument("--alphas", default="1,0.75,0.5,0.25,0", help="comma-separated weights of B")
    p.add_argument("--data", default=None, help="the FSDD recordings folder")
    p.add_argument("--more-data", action="append", default=[], help="the folder of more real voices")
    p.add_argument("--exclude", default="jason", help="held-out --more-data speakers not to score (comma-separated)")
    p.add_argument("--eval-utts", type=int, default=60, help="test utterances per FSDD speaker, as the trainer")
    p.add_argument("--json", default=None, help="write every a's metrics to this file")
    add_quick(p, "a = 1 and 3 utterances per speaker; skips without --a, --b, --data and --more-data")
    args = p.parse_args(argv)
    if not (args.a and args.b and args.data and args.more_data):
        if args.quick:
            return skip("--a, --b, --data and --more-data are needed (the checkpoints and the recordings)")
        p.error("--a, --b, --data and --more-data are required")
    if args.quick:
        args.alphas, args.eval_utts = "1", 3
    import torch

    from explorer.core.checkpoints import load_model
    from explorer.papers.transducer.model import build
    from explorer.papers.transducer.train import heldout_metrics

    torch.set_num_threads(1)
    ma, _ = load_model(Path(args.a), "transducer", build, "cpu")
    mb, meta = load_model(Path(args.b), "transducer", build, "cpu")
    # copies: a state dict shares the model's storage, and B's is overwritten by every average below
    sa = {k: v.detach().clone() for k, v in ma.state_dict().items()}
    sb = {k: v.detach().clone() for k, v in mb.state_dict().items()}
    if sa.keys() != sb.keys() or any(sa[k].shape != sb[k].shape for k in sa):
        raise SystemExit("the two checkpoints have different networks: they cannot be averaged")
    drop = set(args.exclude.split(","))
    more_test = [s for s in meta.data.get("more_test_speakers") or [] if s not in drop]
    train_spk = list(meta.data.get("train_speakers") or [])
    ns = SimpleNamespace(data=args.data, more_data=args.more_data, eval_utts=args.eval_utts)
    report = Report()
    for a in (float(x) for x in args.alphas.split(",")):
        mb.load_state_dict({k: (1 - a) * sa[k] + a * sb[k] if sb[k].is_floating_point() else sb[k] for k in sb})
        m = heldout_metrics(mb.eval(), ns, train_spk, [], more_test)
        report.add(str(a), {"a": a, **wrong_digit_row(m)}, m)
    report.finish(args.json)
    return 0


if __name__ == "__main__":
    run_main(main)
