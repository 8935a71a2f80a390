"""Towards Conceptual Compression: convolutional DRAW (Gregor, Besse, Rezende, Danihelka, Wierstra; NIPS 2016)."""

from explorer.core.registry import PaperSpec

SPEC = PaperSpec(
    id="compression",
    title="Towards Conceptual Compression",
    short_title="Conceptual compression",
    authors="Karol Gregor, Frederic Besse, Danilo Jimenez Rezende, Ivo Danihelka, Daan Wierstra",
    year=2016,
    link="https://arxiv.org/abs/1604.08772",
    summary=(
        "Convolutional DRAW refines an image over several recurrent iterations, each adding to a canvas and "
        "each paying for its spatial latent variables with a KL cost measured against a learned prior. "
        "Sending only the first k iterations' latents is a lossy code: the early bits fix the global "
        "'concept' of the picture, the later ones the details. Here the latents are quantised and range-coded "
        "under the learned prior into real .cdraw files, compared with JPEG, JPEG 2000, WebP and AVIF files of "
        "the same size on held-out photos."
    ),
    panel="explorer.papers.compression.panel:CompressionPanel",
    cli="explorer.papers.compression.cli",
    default_checkpoint="compression_photos.safetensors",
    loader="explorer.papers.compression.infer:load_for_app",
    order=5,
)
