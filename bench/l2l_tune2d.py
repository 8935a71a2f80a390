"""Grid-search the baselines' learning rates for the l2l tab's 2-D problems (prints TUNED_LR_2D).

NIPS_EXPLORER_THREADS=1 python bench/l2l_tune2d.py
"""

import json

import torch

from explorer.papers.l2l.optimizer_runs import tune_learning_rates

if __name__ == "__main__":
    torch.set_num_threads(1)
    out = {}
    for name in ("quad2d", "valley2d", "rosenbrock"):
        res = tune_learning_rates(name)  # ProblemInfo.tune_runs problems each
        out[name] = res["lr"]
    print(json.dumps(out, indent=2))
