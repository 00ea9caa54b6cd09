"""``restorekit models``: every preset with task, scale, params, MACs, license, weight source and
whether the weights are available locally."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

import torch

from . import hub
from .complexity import count_macs, count_params
from .model import build_model
from .zoo import PRESETS, Preset

# MACs are reported at the input each family's paper uses as reference.
REFERENCE_INPUT = {"sr_x2": (640, 360), "sr_x3": (427, 240), "sr_x4": (320, 180), "restore": (256, 256)}


def reference_size(preset: Preset) -> tuple[int, int]:
    """(width, height) of the LR input that gives a 1280x720 output for SR, or 256x256 otherwise."""
    if preset.scale == 1:
        return REFERENCE_INPUT["restore"]
    return REFERENCE_INPUT.get(f"sr_x{preset.scale}", (1280 // preset.scale, 720 // preset.scale))


def describe(preset: Preset, with_macs: bool = True) -> dict[str, Any]:
    with torch.device("meta"):  # shapes only: counting needs no memory and no real arithmetic
        model = build_model(preset.family, preset.config, preset).eval()
    width, height = reference_size(preset)
    row: dict[str, Any] = {
        "name": preset.name,
        "family": preset.family,
        "task": preset.task,
        "scale": preset.scale,
        "params": count_params(model),
        "macs_input": f"{width}x{height}",
        "license": preset.license + (" (non-commercial)" if preset.non_commercial else ""),
        "source": preset.source,
        "url": preset.url,
        "available": hub.is_available(preset),
        "tlc": preset.tlc,
        "convention": asdict(preset.convention),
        "paper": {k: asdict(v) for k, v in preset.paper.items()},
    }
    if with_macs:
        row["macs"] = count_macs(model, height, width, model.in_channels)
    return row


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--task", choices=sorted({p.task for p in PRESETS.values()}), help="only this task")
    parser.add_argument("--no-macs", action="store_true", help="skip MAC counting (faster)")


def run(args: argparse.Namespace) -> int:
    presets = [p for p in PRESETS.values() if args.task is None or p.task == args.task]
    rows = [describe(p, with_macs=not args.no_macs) for p in sorted(presets, key=lambda p: (p.task, p.name))]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = f"{'name':22} {'task':8} {'x':>2} {'params':>12} {'GMACs':>8} {'input':>8} {'local':5} license"
    print(header)
    print("-" * len(header))
    for row in rows:
        macs = f"{row['macs'] / 1e9:8.2f}" if "macs" in row else f"{'-':>8}"
        local = "yes" if row["available"] else "no"
        print(
            f"{row['name']:22} {row['task']:8} {row['scale']:>2} {row['params']:>12,} {macs} {row['macs_input']:>8} "
            f"{local:5} {row['license']}"
        )
    print("GMACs: one forward pass at the input size shown (SR: the input that gives a 1280x720 output).")
    return 0
