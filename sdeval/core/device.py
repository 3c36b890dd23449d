"""One device choice for every model in a run, so ``--device auto`` never splits models across devices."""

from __future__ import annotations

from sdeval.core.errors import UsageError

AUTO = "auto"


def choose_device(name: str | None = AUTO) -> str:
    """``cuda``, ``mps`` or ``cpu`` for ``auto`` (the best available); an explicit device is checked."""
    import torch

    name = (name or AUTO).strip()
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    if name == AUTO:
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if mps_ok else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device '{name}' requested but CUDA is not available")
    if name == "mps" and not mps_ok:
        raise UsageError("device 'mps' requested but MPS is not available")
    return name
