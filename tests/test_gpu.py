"""GPU checks (CUDA only): fp16 and bf16 autocast give the fp32 numbers. They skip cleanly without
CUDA; CI has no GPU, so run them where one is: ``python -m pytest tests/test_gpu.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import restorekit
from restorekit.evaluate import EvalData, evaluate
from restorekit.inference import TorchBackend

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_vapsr_x4_set5_matches_fp32(precision: str, shared_data: Path, shared_weights: Path) -> None:
    set5 = shared_data / "sr" / "Set5"
    model = restorekit.load("vapsr-x4", device="cuda")
    data = EvalData(set5 / "HR", lr_dir=set5 / "LR_bicubic" / "X4", scale=4)
    results = {p: evaluate(TorchBackend(model, p), data).mean["psnr"] for p in ("fp32", precision)}
    limit = 0.05 if precision == "fp16" else 0.15  # bf16 keeps 8 mantissa bits, fp16 keeps 11
    assert abs(results[precision] - results["fp32"]) < limit, results


def test_restore_on_cuda_equals_cpu(tmp_path: Path, shared_weights: Path) -> None:
    image = torch.rand(1, 3, 40, 56)
    cpu = restorekit.load("vapsr-x4")
    gpu = restorekit.load("vapsr-x4", device="cuda")
    with torch.inference_mode():
        expected = cpu(image)
        got = gpu(image.cuda()).cpu()
    assert (got - expected).abs().max() < 1e-4
