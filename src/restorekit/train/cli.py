"""``restorekit train CONFIG.yml [--resume] [key=value ...]``: a thin wrapper over :func:`restorekit.train.train`."""

from __future__ import annotations

import argparse

from .config import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="recipe YAML (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="override config values, e.g. optim.lr=2e-4 train.total_steps=1000 (YAML-parsed)")
    parser.add_argument("--resume", action="store_true", help="continue runs/<name>/last.pt exactly")
    parser.add_argument("--dry-run", action="store_true", help="validate the config, print it, and stop")
    # `restorekit train CONFIG --resume key=value`: plain parse_args cannot take positionals after an
    # option (argparse consumes the `*` positional early), the intermixed parser can.
    parser.parse_args = parser.parse_intermixed_args  # type: ignore[method-assign]


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    if args.dry_run:
        import yaml

        from .config import to_dict

        print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")
        return 0
    from .loop import train

    result = train(config, resume=args.resume)
    if result.run_dir.is_dir():  # only rank 0 reports (others return the same paths)
        from .distributed import from_env

        if from_env().is_main:
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
            print(f"{result.run_dir}: step {result.step}; weights {result.weights}" + (f"; {metrics}" if metrics else ""))
    return 0
