"""Inference: run a model over whole images of any size, kind and depth.

- ``runner``: device choice, precision (fp16/bf16 autocast), the ``Backend`` callable seam;
- ``tiling``: exact overlapping tiles with smooth blending and band-limited memory;
- ``tta``: x8 geometric self-ensemble;
- ``pipeline``: colour/alpha handling and numpy/PIL/tensor in -> same kind out.
"""

from __future__ import annotations

from .pipeline import RestoreOptions, restore_any, restore_image, restore_planes
from .runner import Backend, TorchBackend, available_memory, pick_device
from .tiling import make_plan, measure_receptive_radius, receptive_radius, run_tiled
from .tta import ensemble_x8

__all__ = [
    "Backend",
    "RestoreOptions",
    "TorchBackend",
    "available_memory",
    "ensemble_x8",
    "make_plan",
    "measure_receptive_radius",
    "pick_device",
    "receptive_radius",
    "restore_any",
    "restore_image",
    "restore_planes",
    "run_tiled",
]
