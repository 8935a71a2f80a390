"""The paper registry: each paper registers itself with a PaperSpec in ``explorer/papers/<id>/__init__.py``.

The shell knows nothing else about a paper. Importing a spec is cheap: it imports neither torch nor Qt.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

PAPER_IDS: tuple[str, ...] = ("srnn", "l2l", "transducer", "bptt", "compression", "shapes3d")


@dataclass(frozen=True)
class PaperSpec:
    id: str
    title: str
    short_title: str  # the tab label
    authors: str
    year: int
    link: str
    summary: str  # 2-3 sentences in our own words
    panel: str  # "module:attr" of the panel class (Qt), imported when the tab is first shown
    cli: str | None = None  # module with configure_train/train/configure_eval/evaluate/commands (headless)
    default_checkpoint: str | None = None  # file name in models/, or None when the tab needs no model
    loader: str | None = None  # "module:attr": load(path, device) -> (model_or_bundle, CheckpointMeta)


def load_attr(ref: str) -> Any:
    """Import ``"package.module:attr"`` and return the attribute."""
    module, _, attr = ref.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


def get_spec(paper_id: str) -> PaperSpec:
    if paper_id not in PAPER_IDS:
        from .errors import UserError

        raise UserError(f"unknown paper id '{paper_id}' (choose one of {', '.join(PAPER_IDS)})")
    mod = importlib.import_module(f"explorer.papers.{paper_id}")
    spec = getattr(mod, "SPEC", None)
    if spec is None:
        raise ModuleNotFoundError(f"explorer.papers.{paper_id} has no SPEC yet", name=f"explorer.papers.{paper_id}")
    return spec


def all_specs() -> list[PaperSpec]:
    """Registered papers, in the fixed tab order. A paper package that is missing is skipped."""
    specs = []
    for pid in PAPER_IDS:
        try:
            specs.append(get_spec(pid))
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(f"explorer.papers.{pid}"):
                continue
            raise
    return specs
