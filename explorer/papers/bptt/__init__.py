"""Memory-Efficient Backpropagation Through Time (Gruslys, Munos, Danihelka, Lanctot, Graves; NIPS 2016)."""

from explorer.core.registry import PaperSpec

SPEC = PaperSpec(
    id="bptt",
    title="Memory-Efficient Backpropagation Through Time",
    short_title="Memory-efficient BPTT",
    authors="Audrunas Gruslys, Remi Munos, Ivo Danihelka, Marc Lanctot, Alex Graves",
    year=2016,
    link="https://arxiv.org/abs/1606.03401",
    summary=(
        "Training a recurrent network by backpropagation through time normally keeps every step's "
        "activations in memory. A dynamic program decides which hidden or internal states to keep and "
        "which to recompute, so that training fits any memory budget at the smallest extra compute. Here the "
        "planner's schedules run on a real LSTM/GRU and are checked gradient-for-gradient against full BPTT."
    ),
    panel="explorer.papers.bptt.panel:BPTTPanel",
    cli="explorer.papers.bptt.cli",
    default_checkpoint=None,
    loader=None,
    order=4,
)


def __getattr__(name):
    """``explorer.papers.bptt.checkpointed_rnn`` (and ``memory_probe``, ``plan_for``) without importing torch
    when only SPEC is needed."""
    if name in ("checkpointed_rnn", "memory_probe", "plan_for"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
