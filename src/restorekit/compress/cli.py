"""``restorekit compress CONFIG.yml [--resume]``: a thin wrapper over :func:`restorekit.compress.pipeline.run_pipeline`."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="compression YAML (see configs/defaults/restorekit-sr-x3.yml)")
    parser.add_argument("--resume", action="store_true", help="skip finished stages, resume the interrupted one")
    parser.add_argument("--dry-run", action="store_true", help="validate the config (all three stages) and stop")


def run(args: argparse.Namespace) -> int:
    from .pipeline import load_compress_config, run_pipeline  # PyTorch: not for --help

    config = load_compress_config(args.config)
    if args.dry_run:
        print(f"{args.config}: valid; stages wide -> pruned ({config.channels} ch) -> bias_free; "
              f"eval on {', '.join(e.name for e in config.eval) or 'nothing'}")
        return 0
    report = run_pipeline(config, resume=args.resume)
    summary = [(s["stage"], s["channels"], s["bias"], s["psnr_y"]) for s in report["stages"]]
    print(json.dumps({"weights": report.get("weights"), "stages": summary}))
    return 0
