"""Grid-search the baselines' learning rates for the l2l tab's 2-D problems (prints TUNED_LR_2D).

    NIPS_EXPLORER_THREADS=1 python -m bench.experiments.l2l_tune2d [--quick]

``--quick``: one tuning run per problem on a grid of three rates (0.01, 0.1, 1): a smoke run, not the constants.
"""

import argparse
import json

import torch

from bench._util import add_quick, run
from explorer.papers.l2l.optimizer_runs import tune_learning_rates


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_quick(ap, "one tuning run per problem, three rates")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    quick = {"runs": 1, "grid": (0.01, 0.1, 1.0)} if args.quick else {}
    out = {}
    for name in ("quad2d", "valley2d", "rosenbrock"):
        res = tune_learning_rates(name, **quick)  # ProblemInfo.tune_runs problems each
        out[name] = res["lr"]
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    run(main)
