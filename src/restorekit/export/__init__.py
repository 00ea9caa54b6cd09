"""Deployment exports. ``export.onnx``: ONNX export with dynamic H/W and ``OnnxRunner``.

Importing this package imports neither PyTorch nor onnx/onnxruntime: the exporter is imported on
first use of its names (PEP 562), so ``restorekit export --help`` answers at once, and onnx/onnxruntime
load when an export or a runner is created, so the core toolkit works without the ``onnx`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .onnx import ExportError, OnnxRunner, export_onnx

# What an export can be asked for. Kept here, not in ``onnx``, so the verb's --help shows them without torch.
DEFAULT_OPSET = 17  # LayerNormalization is native from 17; every op we emit exists there
PRECISIONS = ("fp32", "fp16")

_LAZY = ("ExportError", "OnnxRunner", "export_onnx")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import onnx

        value = getattr(onnx, name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEFAULT_OPSET", "PRECISIONS", "ExportError", "OnnxRunner", "export_onnx"]
