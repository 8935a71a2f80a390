"""Neural Transducer: An Online Sequence-to-Sequence Model Using Partial Conditioning (Jaitly et al., NIPS 2016)."""

from explorer.core.registry import PaperSpec

SPEC = PaperSpec(
    id="transducer",
    title="An Online Sequence-to-Sequence Model Using Partial Conditioning (Neural Transducer)",
    short_title="Neural Transducer (speech)",
    authors="Navdeep Jaitly, Quoc V. Le, Oriol Vinyals, Ilya Sutskever, David Sussillo, Samy Bengio",
    year=2016,
    link="https://papers.nips.cc/paper/6594-an-online-sequence-to-sequence-model-using-partial-conditioning",
    summary=(
        "A sequence-to-sequence model that does not wait for the end of the input: the audio is cut into "
        "blocks of W frames and, after each block, a recurrent transducer that attends only to that block emits "
        "zero or more symbols and an end-of-block token, carrying its state to the next block. It is trained on "
        "approximately best alignments found by dynamic programming. Here it recognises connected spoken digits "
        "while you speak them."
    ),
    panel="explorer.papers.transducer.panel:TransducerPanel",
    cli="explorer.papers.transducer.cli",
    default_checkpoint="transducer_fsdd_online.safetensors",
    loader="explorer.papers.transducer.infer:load_for_app",
    order=3,
)
