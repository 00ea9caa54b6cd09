"""restorekit: image restoration (denoise, deblur, derain, super-resolve) with NAFNet, HINet,
RED-Net, Bicubic++ and VapSR: load official checkpoints, evaluate, train, compress and export."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_exports
from .zoo import PRESETS, get_preset

if TYPE_CHECKING:
    from .inference import RestoreOptions
    from .model import RestorationModel, build_model, load
    from .restore import restore_file

__version__ = "0.1.0"

# Imported on first use (PEP 562): they import torch, which `restorekit --help` and
# `restorekit models` must not pay for.
__getattr__ = lazy_exports(__name__, {"RestorationModel": "model", "build_model": "model", "load": "model",
                                      "restore_file": "restore", "RestoreOptions": "inference"})


def list_models() -> list[str]:
    """Names of every preset, sorted."""
    return sorted(PRESETS)


__all__ = ["RestorationModel", "RestoreOptions", "__version__", "build_model", "get_preset", "list_models", "load",
           "restore_file"]
