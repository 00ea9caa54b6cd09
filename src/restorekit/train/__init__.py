"""Training engine: typed YAML recipes, exact resume, EMA, AMP, DDP. ``restorekit train`` wraps :func:`train`."""

from __future__ import annotations

from .config import RunConfig, config_from_dict, load_config
from .loop import TrainResult, train

__all__ = ["RunConfig", "TrainResult", "config_from_dict", "load_config", "train"]
