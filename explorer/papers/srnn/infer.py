"""What the SRNN tab runs in its workers (headless; no Qt): loading, per-piece analysis, continuation, audio."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

PAPER_ID = "srnn"


def load_model_file(path, device="cpu"):
    """(model, CheckpointMeta) for an SRNN/GRU checkpoint; raises CheckpointError on a wrong file."""
    from explorer.core.checkpoints import load_model

    from .model import DEFAULT_CONFIG, build

    return load_model(path, PAPER_ID, build, device=device, default_config=dict(DEFAULT_CONFIG))


def load_for_app(path, device="cpu"):
    """SPEC.loader: the model and its metadata."""
    return load_model_file(path, device)
