"""Training engine: typed YAML recipes, exact resume, EMA, AMP, DDP. ``restorekit train`` wraps :func:`train`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import RunConfig, config_from_dict, load_config

if TYPE_CHECKING:
    from .loop import TrainResult, train

# The loop imports PyTorch; it is imported on first use (PEP 562), so `restorekit train --help` need not.
_LAZY = ("TrainResult", "train")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import loop

        value = getattr(loop, name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["RunConfig", "TrainResult", "config_from_dict", "load_config", "train"]
