"""The paper registry: each paper registers itself with a PaperSpec in ``explorer/papers/<id>/__init__.py``.

The shell knows nothing else about a paper. Importing a spec is cheap: it imports neither torch nor Qt.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


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
    order: int = 100  # the tab's position (smaller first); ties by id


_ids: tuple[str, ...] | None = None


def paper_ids() -> tuple[str, ...]:
    """The papers this app has, in tab order: every package under ``explorer.papers`` whose ``__init__`` holds a
    ``SPEC`` (the one place a paper is registered). Importing a spec is cheap (no torch, no Qt)."""
    global _ids
    if _ids is None:
        import pkgutil

        # by name, like every paper module the registry loads: core does not depend on the papers (layers contract)
        papers = importlib.import_module("explorer.papers")
        specs = []
        for info in pkgutil.iter_modules(papers.__path__):
            if not info.ispkg:
                continue
            spec = getattr(importlib.import_module(f"explorer.papers.{info.name}"), "SPEC", None)
            if isinstance(spec, PaperSpec):
                if spec.id != info.name:
                    raise RuntimeError(f"explorer.papers.{info.name}: SPEC.id is '{spec.id}', not the package name")
                specs.append(spec)
        _ids = tuple(s.id for s in sorted(specs, key=lambda s: (s.order, s.id)))
    return _ids


def __getattr__(name: str) -> Any:
    if name == "PAPER_IDS":  # the ids in tab order, found on first use
        return paper_ids()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_attr(ref: str) -> Any:
    """Import ``"package.module:attr"`` and return the attribute."""
    module, _, attr = ref.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


def get_spec(paper_id: str) -> PaperSpec:
    if paper_id not in paper_ids():
        from .errors import UserError

        raise UserError(f"unknown paper id '{paper_id}' (choose one of {', '.join(paper_ids())})")
    mod = importlib.import_module(f"explorer.papers.{paper_id}")
    spec = getattr(mod, "SPEC", None)
    if spec is None:
        raise ModuleNotFoundError(f"explorer.papers.{paper_id} has no SPEC yet", name=f"explorer.papers.{paper_id}")
    return spec


def all_specs() -> list[PaperSpec]:
    """Registered papers, in tab order."""
    return [get_spec(pid) for pid in paper_ids()]
