"""``restorekit export MODEL OUT.onnx``: write an ONNX file with dynamic H/W and check it.

After writing, ``--check`` (on by default) runs the file in ONNX Runtime at two input sizes and
compares it with PyTorch, so a broken export is caught where it was made, not in deployment.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import RestorekitError
from . import DEFAULT_OPSET, PRECISIONS

if TYPE_CHECKING:
    import torch

# fp16 graphs round every op; fp32 must match to float accuracy
_TOLERANCE = {"fp32": 1e-4, "fp16": 5e-2}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="preset name (restorekit models) or a weights file")
    parser.add_argument("output", type=Path, help="the .onnx file to write")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    tlc = parser.add_mutually_exclusive_group()
    tlc.add_argument("--tlc", dest="tlc", action="store_true", default=None, help="convert with TLC first")
    tlc.add_argument("--no-tlc", dest="tlc", action="store_false", help="do not convert with TLC")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="skip the ONNX Runtime vs PyTorch comparison after export")


def check_parity(model: torch.nn.Module, path: Path, sizes: list[tuple[int, int]], precision: str = "fp32") -> float:
    """Largest |ONNX Runtime - PyTorch| over random inputs of each size; raises above tolerance."""
    import torch

    from .onnx import OnnxRunner

    runner = OnnxRunner(path, "cpu")
    channels = int(getattr(getattr(model, "config", None), "in_channels", 3))
    worst = 0.0
    for height, width in sizes:
        x = torch.rand(1, channels, height, width)
        with torch.inference_mode():
            expected = model(x).float()
        got = runner(x)
        if got.shape != expected.shape:
            raise RestorekitError(f"{path}: ONNX output shape {tuple(got.shape)} != PyTorch {tuple(expected.shape)}")
        worst = max(worst, float((got - expected).abs().max()))
    if worst > _TOLERANCE[precision]:
        raise RestorekitError(f"{path}: ONNX differs from PyTorch by {worst:.2e} (> {_TOLERANCE[precision]:.0e})")
    return worst


def run(args: argparse.Namespace) -> int:
    from ..model import load
    from .onnx import export_onnx

    # checked before loading: a typo should not cost a model load (or, later, a download)
    if args.output.suffix.lower() != ".onnx":
        raise RestorekitError(f"{args.output}: the output must be an .onnx file")
    model = load(args.model, device="cpu", tlc=args.tlc)
    path = export_onnx(model, args.output, precision=args.precision, opset=args.opset)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {args.precision}, opset {args.opset})")
    if args.check:
        align = model.alignment
        sizes = [(4 * align + 3, 5 * align + 1), (6 * align + 5, 3 * align + 2)] if align > 1 else [(37, 45), (29, 52)]
        worst = check_parity(model, path, sizes, args.precision)
        print(f"checked: ONNX Runtime vs PyTorch max abs diff {worst:.2e} at sizes {sizes}")
    return 0
