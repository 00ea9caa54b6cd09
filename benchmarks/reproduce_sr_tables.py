"""Reproduce the SR tables: VapSR x2/x3/x4, VapSR-S, Bicubic++ x3 and the bicubic floor on Set5/Set14.

Prints a markdown table (PSNR/SSIM on Y, crop = scale, uint8, MATLAB/BasicSR SSIM) with the paper's
numbers beside ours wherever the zoo has them. Inputs are the shipped MATLAB-bicubic LR images.

    RESTOREKIT_WEIGHTS=../shared/data/weights python benchmarks/reproduce_sr_tables.py \
        --data ../shared/data/sr [--device cpu] [--json results.json]

Takes about 15-30 minutes on a laptop CPU (VapSR x2 on full-size Set14 dominates), seconds on a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from restorekit.evaluate import EvalData, EvalResult, evaluate

# (row label, model: preset name or "bicubic", scale)
ROWS: list[tuple[str, str, int]] = [
    ("Bicubic x2", "bicubic", 2),
    ("VapSR x2", "vapsr-x2", 2),
    ("Bicubic x3", "bicubic", 3),
    ("VapSR x3", "vapsr-x3", 3),
    ("Bicubic++ x3", "bicubic-pp-x3", 3),
    ("Bicubic x4", "bicubic", 4),
    ("VapSR-S x4", "vapsr-s", 4),
    ("VapSR x4", "vapsr-x4", 4),
]
DATASETS = ("Set5", "Set14")


def _cell(result: EvalResult) -> tuple[str, str]:
    mean = result.mean
    ours = f"{mean['psnr']:.2f} / {mean['ssim']:.4f}"
    if result.paper is None:
        return ours, "-"
    ssim = result.paper.get("ssim")
    paper = f"{result.paper['psnr']:.2f} / {ssim:.4f}" if ssim is not None else f"{result.paper['psnr']:.2f}"
    return ours, f"{paper} ({mean['psnr'] - result.paper['psnr']:+.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "sr",
                        help="folder holding Set5/ and Set14/ (HR/ and LR_bicubic/X{k}/)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--models", nargs="+", help="only these model names (e.g. vapsr-x4 bicubic)")
    parser.add_argument("--json", type=Path, help="also write every result here")
    args = parser.parse_args(argv)

    results: dict[tuple[str, str], EvalResult] = {}
    rows = [r for r in ROWS if not args.models or r[1] in args.models]
    start = time.perf_counter()
    for label, model, scale in rows:
        for dataset in args.datasets:
            root = args.data / dataset
            t0 = time.perf_counter()
            data = EvalData(root / "HR", lr_dir=root / "LR_bicubic" / f"X{scale}", scale=scale, dataset=dataset)
            results[(label, dataset)] = evaluate(model, data, device=args.device)
            print(f"{label} {dataset}: {results[(label, dataset)].mean['psnr']:.2f} dB "
                  f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)

    header = "| model | " + " | ".join(f"{d} ours (PSNR / SSIM) | {d} paper (diff dB)" for d in args.datasets) + " |"
    print(header)
    print("|" + "---|" * (1 + 2 * len(args.datasets)))
    for label, _, _ in rows:
        cells = [c for d in args.datasets for c in _cell(results[(label, d)])]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\nY channel (MATLAB BT.601), crop = scale, uint8, SSIM 2d; shipped MATLAB-bicubic LR inputs; "
          f"total {time.perf_counter() - start:.0f} s on {args.device}.")
    if args.json is not None:
        args.json.write_text(json.dumps({f"{k[0]}|{k[1]}": v.to_json() for k, v in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
