"""Learning to learn by gradient descent by gradient descent (Andrychowicz et al., NIPS 2016)."""

from explorer.core.registry import PaperSpec

SPEC = PaperSpec(
    id="l2l",
    title="Learning to learn by gradient descent by gradient descent",
    short_title="Learned optimizer",
    authors="M. Andrychowicz, M. Denil, S. Gomez, M. W. Hoffman, D. Pfau, T. Schaul, B. Shillingford, N. de Freitas",
    year=2016,
    link="https://arxiv.org/abs/1606.04474",
    summary=(
        "An optimizer that is itself a small neural network: a two-layer LSTM, applied to every parameter "
        "coordinate separately, reads the gradient and proposes the step. It is trained by gradient descent on "
        "the summed loss of the problems it optimizes, and here races SGD, RMSprop, Adam and Nesterov on "
        "random quadratics and small MNIST networks."
    ),
    panel="explorer.papers.l2l.panel:L2LPanel",
    cli="explorer.papers.l2l.cli",
    default_checkpoint="l2l_mnist.safetensors",
    loader="explorer.papers.l2l.infer:load_for_app",
    order=2,
)


def __getattr__(name):
    """``explorer.papers.l2l.LearnedOptimizer`` without importing torch when only SPEC is needed."""
    if name == "LearnedOptimizer":
        from .learned_optimizer import LearnedOptimizer

        return LearnedOptimizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
