"""Training engine: typed YAML recipes, exact resume, EMA, AMP, DDP. ``restorekit train`` wraps :func:`train`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports
from .config import RunConfig, config_from_dict, load_config

if TYPE_CHECKING:
    from .loop import TrainResult, train

# The loop imports PyTorch; it is imported on first use (PEP 562), so `restorekit train --help` need not.
__getattr__ = lazy_exports(__name__, {"TrainResult": "loop", "train": "loop"})


__all__ = ["RunConfig", "TrainResult", "config_from_dict", "load_config", "train"]
