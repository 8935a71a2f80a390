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


def tuned_rates(meta: CheckpointMeta | None, problem: str, metric: str | None = None) -> dict[str, float]:
    """Baseline learning rates for ``problem``: see :func:`rates_and_source`."""
    return rates_and_source(meta, problem, metric)[0]


def rates_and_source(
    meta: CheckpointMeta | None, problem: str, metric: str | None = None
) -> tuple[dict[str, float], str]:
    """(baseline learning rates, where they come from) for ``problem``.

    ``metric`` ("final" or "avg"): the fair protocol's rates chosen by that metric on tuning problems, from the
    checkpoint (`eval --protocol fair --save`) or else the catalog's table. ``metric=None``: the original protocol
    (`eval --save`'s rates, the 2-D table, the fallback table), as before.
    """
    from .catalog import FAIR_LR, FALLBACK_LR, PROBLEMS, TUNED_LR_2D

    label = {"final": "final loss", "avg": "loss averaged over steps"}
    if metric is not None:
        fair = ((meta.metrics or {}).get("fair") or {}).get(problem) if meta is not None else None
        if isinstance(fair, dict) and isinstance(fair.get(metric), dict) and fair[metric].get("lr"):
            rates = {k: float(v) for k, v in fair[metric]["lr"].items()}
            return rates, f"rate chosen for {label[metric]} on tuning problems (fair protocol, {meta.name})"
        if problem in FAIR_LR:
            return dict(FAIR_LR[problem][metric]), f"rate chosen for {label[metric]} on tuning problems (fair protocol)"
    if problem in TUNED_LR_2D:
        return dict(TUNED_LR_2D[problem]), "rate grid-searched on separate seeds (bench/experiments/l2l_tune2d.py)"
    if meta is not None:
        ev = (meta.metrics or {}).get("eval", {}).get(problem)
        if isinstance(ev, dict) and isinstance(ev.get("tuned_lr"), dict):
            return {k: float(v) for k, v in ev["tuned_lr"].items()}, "rate tuned by `eval` on separate problems"
    fam = PROBLEMS[problem].family if problem in PROBLEMS else "quadratic"
    return dict(FALLBACK_LR[fam]), "default rate (run `eval l2l --protocol fair --save` to tune for this problem)"


def fair_summary(meta: CheckpointMeta | None, problem: str, metric: str) -> str | None:
    """One line of the checkpoint's fair held-out result for ``problem`` and ``metric`` (None if not stored)."""
    fair = ((meta.metrics or {}).get("fair") or {}).get(problem) if meta is not None else None
    rec = fair.get(metric) if isinstance(fair, dict) else None
    if not isinstance(rec, dict) or "mean" not in rec:
        return None
    mean, se, best = rec["mean"], rec.get("se", {}), rec.get("best_baseline")
    if "learned" not in mean or best not in mean:
        return None
    verdict = "at most" if rec.get("learned_at_most_best_baseline") else "above"
    return (
        f"held-out ({fair.get('runs', '?')} runs): LSTM {mean['learned']:.4g} ± {se.get('learned', 0):.2g}, "
        f"{verdict} the best tuned baseline ({best} {mean[best]:.4g} ± {se.get(best, 0):.2g})"
    )


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
