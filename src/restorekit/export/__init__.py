"""Deployment exports. ``export.onnx``: ONNX export with dynamic H/W and ``OnnxRunner``.

Importing this package imports neither PyTorch nor onnx/onnxruntime: the exporter is imported on
first use of its names (PEP 562), so ``restorekit export --help`` answers at once, and onnx/onnxruntime
load when an export or a runner is created, so the core toolkit works without the ``onnx`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports
from ..precision import ONNX_NAMES

if TYPE_CHECKING:
    from .onnx import ExportError, OnnxRunner, export_onnx

# What an export can be asked for. Kept here, not in ``onnx``, so the verb's --help shows them without torch.
DEFAULT_OPSET = 17  # LayerNormalization is native from 17; every op we emit exists there
PRECISIONS = ONNX_NAMES  # the ONNX subset of the one precision table (restorekit.precision)

__getattr__ = lazy_exports(__name__, {name: "onnx" for name in ("ExportError", "OnnxRunner", "export_onnx")})


__all__ = ["DEFAULT_OPSET", "PRECISIONS", "ExportError", "OnnxRunner", "export_onnx"]
