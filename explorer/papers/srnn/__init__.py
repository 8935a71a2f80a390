"""SRNN: Sequential Neural Models with Stochastic Layers (Fraccaro, Sønderby, Paquet, Winther; NIPS 2016)."""

from explorer.core.registry import PaperSpec

SPEC = PaperSpec(
    id="srnn",
    title="Sequential Neural Models with Stochastic Layers",
    short_title="SRNN (music)",
    authors="Marco Fraccaro, Søren Kaae Sønderby, Ulrich Paquet, Ole Winther",
    year=2016,
    link="https://arxiv.org/abs/1605.07571",
    summary=(
        "A recurrent network whose deterministic GRU states drive a chain of Gaussian latent variables, "
        "like a state-space model stacked on an RNN. A backward-running inference network ('smoothing') "
        "and a residual posterior mean ('Resq') give a tight variational bound. Here it models polyphonic "
        "piano rolls (88 keys), trained on the paper's four music benchmarks."
    ),
    panel="explorer.papers.srnn.panel:SRNNPanel",
    cli="explorer.papers.srnn.cli",
    default_checkpoint="srnn_jsb_smooth_resq.safetensors",
    loader="explorer.papers.srnn.infer:load_for_app",
    order=1,
)
