"""Unsupervised Learning of 3D Structure from Images.

Rezende, Eslami, Mohamed, Battaglia, Jaderberg, Heess; NIPS 2016.
"""

from explorer.core.registry import PaperSpec

SPEC = PaperSpec(
    id="shapes3d",
    title="Unsupervised Learning of 3D Structure from Images",
    short_title="3D from images",
    authors="Danilo Jimenez Rezende, S. M. Ali Eslami, Shakir Mohamed, Peter Battaglia, Max Jaderberg, Nicolas Heess",
    year=2016,
    link="https://arxiv.org/abs/1607.00662",
    summary=(
        "A sequential (DRAW-like) generative model writes a 3D volume step by step through a volumetric spatial "
        "transformer, and an inference network reads a 2D picture. Both are trained end to end from pictures "
        "only: the volume is pushed through a fixed differentiable projection (emission-absorption along the "
        "camera rays) and compared with views from known cameras, never with 3D ground truth. One forward pass "
        "then turns a single picture into a 3D shape, and the prior samples new shapes, per class."
    ),
    panel="explorer.papers.shapes3d.panel:Shapes3DPanel",
    cli="explorer.papers.shapes3d.cli",
    default_checkpoint="shapes3d_primitives.safetensors",
    loader="explorer.papers.shapes3d.infer:load_for_app",
    order=6,
)
