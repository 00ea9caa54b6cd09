"""``restorekit convert``: any supported checkpoint -> safetensors with metadata (family, config,
scale, task) that loads back to the identical model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .errors import RestorekitError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="preset name or checkpoint (.pth/.safetensors)")
    parser.add_argument("destination", help="output .safetensors file")
    parser.add_argument("--preset", help="architecture the checkpoint must have (error if it differs)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing destination")


def run(args: argparse.Namespace) -> int:
    from .loading import config_to_json, save_safetensors
    from .model import load  # PyTorch: not for --help

    destination = Path(args.destination)
    if destination.suffix != ".safetensors":
        raise RestorekitError(f"{destination}: destination must end in .safetensors")
    if destination.exists() and not args.overwrite:
        raise RestorekitError(f"{destination}: exists; pass --overwrite to replace it")
    if Path(args.source).resolve() == destination.resolve():
        raise RestorekitError(f"{destination}: would overwrite the source")
    model = load(args.source, preset=args.preset, tlc=False)
    save_safetensors(model, destination)
    print(f"{destination}: {model.family} {json.loads(config_to_json(model.config))}")
    return 0
