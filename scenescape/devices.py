"""Which torch device a component runs on: one rule for the whole package."""

from __future__ import annotations

from typing import Any

from scenescape.errors import InputError


def pick_device(name: str | None = "auto", allow_mps: bool = True) -> Any:
    """The one device rule: ``"auto"`` -> cuda if available, else mps (when ``allow_mps``), else cpu;
    otherwise ``torch.device(name)``, checked to exist (an :class:`InputError` names the fix)."""
    import torch

    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if allow_mps and mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise InputError(f"device '{name}' is not a valid torch device (use auto, cpu, cuda, cuda:1, mps)") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device '{name}' was requested but CUDA is not available in this torch "
                         f"({torch.__version__}); use device=auto or device=cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"device '{name}' was requested but only {torch.cuda.device_count()} CUDA device(s) "
                         "exist; use device=cuda:0 or device=auto")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(f"device '{name}' was requested but MPS is not available; use device=auto or cpu")
    return dev


__all__ = ["pick_device"]
