"""restorekit: image restoration (denoise, deblur, derain, super-resolve) with NAFNet, HINet,
RED-Net, Bicubic++ and VapSR: load official checkpoints, evaluate, train, compress and export."""

from __future__ import annotations

from .model import RestorationModel, build_model, load
from .restore import restore_file
from .zoo import PRESETS, get_preset

__version__ = "0.1.0"


def list_models() -> list[str]:
    """Names of every preset, sorted."""
    return sorted(PRESETS)


__all__ = ["RestorationModel", "__version__", "build_model", "get_preset", "list_models", "load", "restore_file"]
