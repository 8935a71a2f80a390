"""Device choice by real allocation, and CPU thread limits. torch is imported lazily."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

CHOICES = ("auto", "cpu", "cuda", "mps")
_threads_configured = False


def _works(name: str) -> bool:
    import torch

    try:
        x = torch.ones(8, device=name)
        return float((x * 2).sum().item()) == 16.0
    except Exception as exc:  # driver missing, out of memory, ...
        log.info("device %s unusable: %s", name, exc)
        return False


def choose_device(preference: str = "auto"):
    """Return a torch.device: CUDA, then MPS, then CPU for ``auto``; the named one otherwise.

    A named device that does not work raises UserError with a readable message.
    """
    import torch

    from .errors import UserError

    preference = (preference or "auto").lower()
    if preference not in CHOICES:
        raise UserError(f"unknown device '{preference}' (choose one of {', '.join(CHOICES)})")
    if preference == "cpu":
        return torch.device("cpu")
    if preference in ("auto", "cuda") and torch.cuda.is_available() and _works("cuda"):
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if preference in ("auto", "mps") and mps is not None and mps.is_available() and _works("mps"):
        return torch.device("mps")
    if preference != "auto":
        raise UserError(f"device '{preference}' is not available on this machine; use --device cpu or auto")
    return torch.device("cpu")


def describe(device) -> str:
    """A short human name for the status bar, e.g. 'CPU (1 thread)' or 'CUDA: NVIDIA H200'."""
    import torch

    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU ({torch.get_num_threads()} thread{'s' if torch.get_num_threads() != 1 else ''})"


def configure_threads(for_gui: bool = True) -> int:
    """Limit torch's intra-op threads so workers do not fight the GUI thread.

    On a 2-core machine the default (2 threads) oversubscribes the cores while the GUI thread paints and
    throughput collapses at times; we leave one core to the GUI. ``NIPS_EXPLORER_THREADS`` overrides.
    Returns the number of threads set.
    """
    global _threads_configured
    import torch

    env = os.environ.get("NIPS_EXPLORER_THREADS")
    if env:
        n = max(1, int(env))
    else:
        cores = os.cpu_count() or 1
        n = max(1, cores - 1) if for_gui else max(1, cores)
    torch.set_num_threads(n)
    _threads_configured = True
    return n
