"""Loading learned optimizers for the app, the CLI and the torch.optim-like API."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from explorer.core.checkpoints import CheckpointMeta, load_model, read_metadata
from explorer.core.errors import CheckpointError
from explorer.core.paths import bundled

PAPER = "l2l"
CHECKPOINTS = {"quadratic": "l2l_quadratic.safetensors", "mnist": "l2l_mnist.safetensors"}


def _build(config: dict[str, Any]):
    from .model import build

    return build(config)


def load_learned(path: str | Path | None = None, device: Any = "cpu", problem: str = "mnist"):
    """(LSTMOptimizer, CheckpointMeta) from ``path`` (default: the bundled checkpoint trained on ``problem``)."""
    from .model import DEFAULT_CONFIG

    p = Path(path) if path is not None else bundled(CHECKPOINTS[problem])
    if path is None and not p.exists():
        raise CheckpointError(f"the bundled learned optimizer {p.name} is missing from {p.parent}")
    net, meta = load_model(p, PAPER, _build, device=device, default_config=dict(DEFAULT_CONFIG))
    for q in net.parameters():
        q.requires_grad_(False)
    return net, meta


def training_problem(meta: CheckpointMeta) -> str:
    """The problem family a checkpoint was meta-trained on ('quadratic' or 'mnist'; 'unknown' if not recorded)."""
    prob = (meta.model_config or {}).get("problem") or (meta.data or {}).get("problem")
    return str(prob) if prob else "unknown"


@dataclass
class L2LBundle:
    """What the tab works with: learned optimizers by training problem, and their metadata."""

    nets: dict[str, Any] = field(default_factory=dict)
    metas: dict[str, CheckpointMeta] = field(default_factory=dict)

    def for_family(self, family: str) -> tuple[Any, CheckpointMeta | None]:
        """The net meta-trained on ``family``, else any loaded one (it still runs: it is coordinatewise)."""
        if family in self.nets:
            return self.nets[family], self.metas[family]
        for k in self.nets:
            return self.nets[k], self.metas[k]
        return None, None


def load_for_app(path: str | Path, device: Any = "cpu") -> tuple[L2LBundle, CheckpointMeta]:
    """SPEC.loader: load ``path`` and the other bundled checkpoint (if present) into one bundle."""
    net, meta = load_learned(path, device)
    bundle = L2LBundle()
    fam = training_problem(meta)
    bundle.nets[fam], bundle.metas[fam] = net, meta
    for other, fname in CHECKPOINTS.items():
        if other in bundle.nets:
            continue
        p = bundled(fname)
        if p.exists() and p.resolve() != Path(path).resolve():
            try:
                n2, m2 = load_learned(p, device)
            except CheckpointError:
                continue
            bundle.nets[training_problem(m2)] = n2
            bundle.metas[training_problem(m2)] = m2
    return bundle, meta


def tuned_rates(meta: CheckpointMeta | None, problem: str) -> dict[str, float]:
    """Baseline learning rates tuned for ``problem`` (recorded by `eval --save`), else the fallback table."""
    from .catalog import FALLBACK_LR, PROBLEMS, TUNED_LR_2D

    if problem in TUNED_LR_2D:
        return dict(TUNED_LR_2D[problem])
    if meta is not None:
        ev = (meta.metrics or {}).get("eval", {}).get(problem)
        if isinstance(ev, dict) and isinstance(ev.get("tuned_lr"), dict):
            return {k: float(v) for k, v in ev["tuned_lr"].items()}
    fam = PROBLEMS[problem].family if problem in PROBLEMS else "quadratic"
    return dict(FALLBACK_LR[fam])


def describe_checkpoint(meta: CheckpointMeta | None) -> str:
    if meta is None:
        return "no learned optimizer loaded"
    m = meta.metrics or {}
    bits = [f"{meta.name}: meta-trained on {training_problem(meta)}"]
    if "epochs" in m:
        bits.append(f"{m['epochs']} optimizee runs")
    if "train_wall_s" in m:
        bits.append(f"{m['train_wall_s'] / 60:.1f} min")
    return ", ".join(bits)


def read_meta(path: str | Path) -> CheckpointMeta:
    return read_metadata(path)
