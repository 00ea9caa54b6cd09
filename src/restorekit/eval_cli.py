"""``restorekit eval``: its options and its run, over :func:`restorekit.evaluate.evaluate` and its ``EvalData``.

The evaluator (and with it PyTorch) is imported when the verb runs, so ``restorekit eval --help``
answers at once. ``restorekit.evaluate`` states the protocol.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``restorekit eval``."""
    parser.add_argument("model", metavar="MODEL",
                        help="preset name, weights file, 'bicubic' (the bicubic floor) or 'input' (score the inputs)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--hr", type=Path, help="folder of ground-truth images")
    where.add_argument("--pairs", type=Path, metavar="DIR",
                       help="one folder of real noisy/clean pairs matched by name (scene_real.png + scene_mean.png, "
                            "or 0001_NOISY_x.png + 0001_GT_x.png); restoration models only, no synthetic degradation")
    parser.add_argument("--lr", type=Path, help="folder of inputs paired by name (babyx4.png <-> baby.png)")
    parser.add_argument("--scale", type=int, help="SR factor (default: the model's)")
    parser.add_argument("--degrade", help="synthesise inputs from the ground truth, e.g. awgn:25, bicubic:4, bicubic:3+jpeg:90")
    parser.add_argument("--seed", type=int, default=0, help="seed of random degradations (per image, by name)")
    parser.add_argument("--dataset", help="dataset name for the paper lookup (default: guessed from --hr)")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    channel = parser.add_mutually_exclusive_group()
    channel.add_argument("--y", dest="y_channel", action="store_const", const=True, help="measure the Y channel")
    channel.add_argument("--rgb", dest="y_channel", action="store_const", const=False, help="measure RGB")
    parser.add_argument("--crop", type=int, help="pixels cropped from each border (default: the preset's)")
    rounding = parser.add_mutually_exclusive_group()
    rounding.add_argument("--float", dest="uint8", action="store_const", const=False, help="measure float outputs (no uint8 rounding)")
    rounding.add_argument("--uint8", dest="uint8", action="store_const", const=True, help="round to uint8 first")
    parser.add_argument("--ssim", choices=("2d", "3d"), help="SSIM variant")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps or auto (default)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N images")
    parser.add_argument("--no-progress", "--quiet", dest="no_progress", action="store_true",
                        help="no progress bar (there is none either when stderr is not a terminal)")


def _overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if args.y_channel is not None:
        changes["y_channel"] = args.y_channel
    if args.crop is not None:
        if args.crop < 0:
            raise ConfigError(f"--crop must be >= 0, got {args.crop}")
        changes["crop_border"] = args.crop
    if args.uint8 is not None:
        changes["uint8"] = args.uint8
    if args.ssim is not None:
        changes["ssim"] = args.ssim
    return changes


def run(args: argparse.Namespace) -> int:
    """``restorekit eval``: print the per-image table and the mean (and the paper's number), optionally write JSON."""
    from .evaluate import EvalData, evaluate, write_json_atomic

    data = EvalData(args.pairs or args.hr, lr_dir=args.lr, paired=args.pairs is not None, degrade=args.degrade,
                    scale=args.scale, seed=args.seed, limit=args.limit, dataset=args.dataset)
    result = evaluate(args.model, data, overrides=_overrides_from_args(args), device=args.device,
                      progress=False if args.no_progress else None)
    print(result.table())
    if args.json is not None:
        write_json_atomic(result.to_json(), args.json)
        print(f"wrote {args.json}")
    return 0
