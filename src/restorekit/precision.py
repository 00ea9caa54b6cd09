"""The one precision table: the names every entry point accepts (restore, eval, bench, the UI, export,
training's ``train.amp``), each with the PyTorch dtype it means. Torch-free, so ``--help`` can list the
choices without importing PyTorch; ``inference.runner.PRECISIONS`` turns the names into dtypes."""

from __future__ import annotations

DTYPE_NAMES: dict[str, str] = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
NAMES = tuple(DTYPE_NAMES)
# What ``export_onnx`` writes: ONNX Runtime has no bf16 kernels for most operators, so no bf16 export.
ONNX_NAMES = ("fp32", "fp16")
