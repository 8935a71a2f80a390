"""Torch-free tables of the l2l tab: the problems, the baselines' learning-rate grid and known tuned rates.

Kept apart from problems.py / optimizer_runs.py so the panel (GUI thread) can read them without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProblemInfo:
    name: str
    label: str
    family: str  # which learned optimizer applies: "quadratic", "mnist" or "style"
    description: str
    eval_runs: int  # independent runs in `eval` (quadratics: instances in one batch)
    tune_runs: int


PROBLEMS: dict[str, ProblemInfo] = {
    "quadratic": ProblemInfo(
        "quadratic", "10-D quadratics", "quadratic", "random ||Wθ − y||², W 10×10 and y Gaussian, 100 steps", 100, 100
    ),
    "mnist": ProblemInfo(
        "mnist",
        "MNIST MLP (20 sigmoid)",
        "mnist",
        "MLP 784-20-10 with sigmoid, minibatch 128, 100 steps (training distribution)",
        10,
        3,
    ),
    "mnist-200steps": ProblemInfo(
        "mnist-200steps",
        "MNIST, 200 steps",
        "mnist",
        "the same net trained for 200 steps (twice the meta-training horizon)",
        10,
        3,
    ),
    "mnist-40": ProblemInfo(
        "mnist-40", "MNIST, 40 hidden units", "mnist", "MLP 784-40-10 with sigmoid, 100 steps", 10, 3
    ),
    "mnist-2layer": ProblemInfo(
        "mnist-2layer", "MNIST, 2 hidden layers", "mnist", "MLP 784-20-20-10 with sigmoid, 100 steps", 10, 3
    ),
    "mnist-relu": ProblemInfo(
        "mnist-relu", "MNIST, ReLU", "mnist", "MLP 784-20-10 with ReLU instead of sigmoid, 100 steps", 10, 3
    ),
    "fashion": ProblemInfo(
        "fashion",
        "Fashion-MNIST MLP",
        "mnist",
        "MLP 784-20-10 with sigmoid on Fashion-MNIST test images, 100 steps",
        10,
        3,
    ),
    "quad2d": ProblemInfo(
        "quad2d",
        "2-D random quadratic",
        "quadratic",
        "one 2-D member of the training family ||Wθ − y||², W 2×2 and y Gaussian",
        1,
        20,
    ),
    "valley2d": ProblemInfo(
        "valley2d",
        "2-D rotated valley",
        "quadratic",
        "rotated ill-conditioned 2-D quadratic (condition number 100)",
        1,
        3,
    ),
    "rosenbrock": ProblemInfo("rosenbrock", "2-D Rosenbrock", "quadratic", "Rosenbrock's banana function", 1, 3),
    "style": ProblemInfo(
        "style",
        "Neural art 64x64",
        "style",
        "style transfer on the pixels of a held-out 64x64 photo, the meta-training style, 100 steps",
        10,
        5,
    ),
    "style-128": ProblemInfo(
        "style-128",
        "Neural art 128x128",
        "style",
        "the same at double resolution (128x128), 100 steps",
        10,
        5,
    ),
    "style-newstyle": ProblemInfo(
        "style-newstyle",
        "Neural art, new styles",
        "style",
        "held-out 64x64 photos in five styles never seen in meta-training, 100 steps",
        10,
        5,
    ),
}
STYLE_PROBLEMS = ("style", "style-128", "style-newstyle")

EVAL_PROBLEMS = ("quadratic", "mnist", "mnist-40", "mnist-2layer", "mnist-relu", "mnist-200steps", "fashion")

LR_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0)
# Fallback rates, used only when a checkpoint carries no tuned rates (`eval --save` stores them): the results
# of the same grid search (`nips-explorer eval l2l --problem quadratic|mnist`), see models/README.md.
FALLBACK_LR = {
    "quadratic": {"sgd": 0.01, "rmsprop": 0.03, "adam": 0.3, "nag": 0.01},
    "mnist": {"sgd": 3.0, "rmsprop": 0.01, "adam": 0.03, "nag": 1.0},
    "style": {"sgd": 100.0, "rmsprop": 0.01, "adam": 0.03, "nag": 10.0, "lbfgs": 1.0},  # not tuned: see FAIR_LR
}
# The 2-D panel problems are not part of `eval`; their rates come from the same grid search
# (tune_learning_rates(name) on ProblemInfo.tune_runs seeds disjoint from the panel's), by
# bench/experiments/l2l_tune2d.py.
TUNED_LR_2D = {
    "quad2d": {"sgd": 0.1, "rmsprop": 0.3, "adam": 3.0, "nag": 0.03},
    "valley2d": {"sgd": 0.1, "rmsprop": 0.3, "adam": 1.0, "nag": 0.1},
    "rosenbrock": {"sgd": 0.001, "rmsprop": 0.03, "adam": 1.0, "nag": 0.001},
}

# The fair protocol's rates, per metric the race can be set to ("final": final loss, "avg": loss averaged over
# steps): each chosen by that metric on tuning problems disjoint from the reported ones, over a log grid widened at
# its edges (`nips-explorer eval l2l --protocol fair`; the 2-D problems: the same tuner, tuning seeds). Used by the
# tab when the checkpoint carries none of its own (`eval l2l --protocol fair --save` stores them there).
FAIR_LR: dict[str, dict[str, dict[str, float]]] = {
    "quadratic": {
        "final": {"sgd": 0.01, "rmsprop": 0.03, "adam": 0.3, "nag": 0.01},
        "avg": {"sgd": 0.01, "rmsprop": 0.03, "adam": 0.3, "nag": 0.01},
    },
    "mnist": {
        "final": {"sgd": 3.0, "rmsprop": 0.01, "adam": 0.03, "nag": 1.0},
        "avg": {"sgd": 3.0, "rmsprop": 0.01, "adam": 0.03, "nag": 1.0},
    },
    "mnist-200steps": {
        "final": {"sgd": 3.0, "rmsprop": 0.01, "adam": 0.03, "nag": 1.0},
        "avg": {"sgd": 3.0, "rmsprop": 0.01, "adam": 0.03, "nag": 1.0},
    },
    "mnist-40": {
        "final": {"sgd": 3.0, "rmsprop": 0.01, "adam": 0.03, "nag": 1.0},
        "avg": {"sgd": 3.0, "rmsprop": 0.01, "adam": 0.03, "nag": 1.0},
    },
    "mnist-2layer": {
        "final": {"sgd": 3.0, "rmsprop": 0.01, "adam": 0.03, "nag": 1.0},
        "avg": {"sgd": 3.0, "rmsprop": 0.01, "adam": 0.03, "nag": 1.0},
    },
    "mnist-relu": {
        "final": {"sgd": 0.3, "rmsprop": 0.01, "adam": 0.03, "nag": 0.3},
        "avg": {"sgd": 0.3, "rmsprop": 0.003, "adam": 0.03, "nag": 0.3},
    },
    "fashion": {
        "final": {"sgd": 1.0, "rmsprop": 0.01, "adam": 0.03, "nag": 0.3},
        "avg": {"sgd": 3.0, "rmsprop": 0.01, "adam": 0.03, "nag": 1.0},
    },
    "quad2d": {
        "final": {"sgd": 0.1, "rmsprop": 0.3, "adam": 3.0, "nag": 0.03},
        "avg": {"sgd": 0.1, "rmsprop": 0.1, "adam": 0.3, "nag": 0.03},
    },
    "valley2d": {
        "final": {"sgd": 0.1, "rmsprop": 0.3, "adam": 1.0, "nag": 0.1},
        "avg": {"sgd": 0.1, "rmsprop": 0.1, "adam": 1.0, "nag": 0.1},
    },
    "rosenbrock": {
        "final": {"sgd": 0.001, "rmsprop": 3.0, "adam": 1.0, "nag": 0.0003},
        "avg": {"sgd": 0.001, "rmsprop": 0.01, "adam": 0.1, "nag": 0.0003},
    },
    # neural art: tuned on 5 BSDS500 val_ photos (`eval l2l --protocol fair --problem style|style-newstyle`)
    "style": {
        "final": {"sgd": 100.0, "rmsprop": 0.01, "adam": 0.1, "nag": 30.0, "lbfgs": 0.1},
        "avg": {"sgd": 100.0, "rmsprop": 0.01, "adam": 0.1, "nag": 30.0, "lbfgs": 0.03},
    },
    "style-128": {  # tuned at 128x128 on 3 val_ photos
        "final": {"sgd": 300.0, "rmsprop": 0.01, "adam": 0.1, "nag": 300.0, "lbfgs": 0.1},
        "avg": {"sgd": 300.0, "rmsprop": 0.01, "adam": 0.1, "nag": 300.0, "lbfgs": 0.3},
    },
    "style-newstyle": {
        "final": {"sgd": 30.0, "rmsprop": 0.003, "adam": 0.1, "nag": 30.0, "lbfgs": 0.03},
        "avg": {"sgd": 30.0, "rmsprop": 0.01, "adam": 0.03, "nag": 30.0, "lbfgs": 0.03},
    },
}
