"""Deployment exports. ``export.onnx``: ONNX export with dynamic H/W and ``OnnxRunner``.

Importing this package does not import onnx/onnxruntime; they load when an export or a runner
is created, so the core toolkit works without the ``onnx`` extra.
"""

from __future__ import annotations

from .onnx import DEFAULT_OPSET, ExportError, OnnxRunner, export_onnx

__all__ = ["DEFAULT_OPSET", "ExportError", "OnnxRunner", "export_onnx"]
