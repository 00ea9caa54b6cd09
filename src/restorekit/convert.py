"""``restorekit convert``: any supported checkpoint -> safetensors with metadata (family, config,
scale, task) that loads back to the identical model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from .atomic import atomic_path
from .errors import DiskFullError, RestorekitError, is_disk_full

if TYPE_CHECKING:
    from .model import RestorationModel


def save_safetensors(model: RestorationModel, destination: str | Path, extra: dict[str, str] | None = None) -> Path:
    """Write the model's weights and metadata atomically (temp file, then rename)."""
    from safetensors.torch import save_file

    from .loading import config_to_json

    destination = Path(destination)
    metadata = {
        "family": model.family,
        "config": config_to_json(model.config),
        "scale": str(model.scale),
        "task": model.task,
        "format": "restorekit-1",
    }
    if model.preset is not None:
        metadata["preset"] = model.preset.name
    metadata.update(extra or {})
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.net.state_dict().items()}
    try:
        # named after the destination, so a run folder's stale-temp cleaner recognises a leftover
        with atomic_path(destination, prefix=destination.name + ".") as temp:
            save_file(tensors, str(temp), metadata=metadata)
    except Exception as exc:
        if is_disk_full(exc):  # safetensors keeps only the OS message: "No space left on device (os error 28)"
            raise DiskFullError(f"{destination}: disk full (ENOSPC) while writing the weights") from None
        raise
    return destination


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="preset name or checkpoint (.pth/.safetensors)")
    parser.add_argument("destination", help="output .safetensors file")
    parser.add_argument("--preset", help="architecture the checkpoint must have (error if it differs)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing destination")


def run(args: argparse.Namespace) -> int:
    from .loading import config_to_json
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
