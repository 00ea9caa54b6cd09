"""``restorekit models``: every preset with task, scale, params, MACs, license, weight source and
whether the weights are available locally.

Listing imports no PyTorch: params and MACs come from ``zoo.FOOTPRINTS`` (measured once, checked
by a test), so the command answers at once. Only a preset missing from that table is built (on
the meta device) to be counted.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from . import hub
from .zoo import FOOTPRINTS, PRESETS, Footprint, Preset, reference_size


def footprint(preset: Preset) -> Footprint:
    """The preset's scale, params and MACs: from the table, else measured (imports torch)."""
    known = FOOTPRINTS.get(preset.name)
    if known is not None:
        return known
    from .complexity import measure_preset

    return measure_preset(preset)


def describe(preset: Preset, with_macs: bool = True) -> dict[str, Any]:
    size = footprint(preset)
    width, height = reference_size(size.scale)
    row: dict[str, Any] = {
        "name": preset.name,
        "family": preset.family,
        "task": preset.task,
        "scale": size.scale,
        "params": size.params,
        "macs_input": f"{width}x{height}",
        "license": preset.license + (" (non-commercial)" if preset.non_commercial else ""),
        "source": preset.source,
        "url": preset.url,
        "official_url": preset.official_url,
        "filename": preset.filename,
        "sha256": preset.sha256,
        "available": hub.is_available(preset),
        "tlc": preset.tlc,
        "convention": asdict(preset.convention),
        "paper": {k: asdict(v) for k, v in preset.paper.items()},
    }
    if with_macs:
        row["macs"] = size.macs
    return row


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--task", choices=sorted({p.task for p in PRESETS.values()}), help="only this task")
    parser.add_argument("--no-macs", action="store_true", help="leave the MACs column out")


def run(args: argparse.Namespace) -> int:
    presets = [p for p in PRESETS.values() if args.task is None or p.task == args.task]
    rows = [describe(p, with_macs=not args.no_macs) for p in sorted(presets, key=lambda p: (p.task, p.name))]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max([len("name"), *(len(row["name"]) for row in rows)])
    header = f"{'name':{width}} {'task':8} {'x':>2} {'params':>12} {'GMACs':>8} {'input':>8} {'local':5} license"
    print(header)
    print("-" * len(header))
    for row in rows:
        macs = f"{row['macs'] / 1e9:8.2f}" if "macs" in row else f"{'-':>8}"
        local = "yes" if row["available"] else "no"
        print(
            f"{row['name']:{width}} {row['task']:8} {row['scale']:>2} {row['params']:>12,} {macs} {row['macs_input']:>8} "
            f"{local:5} {row['license']}"
        )
    print("GMACs: one forward pass at the input size shown (SR: the input that gives a 1280x720 output).")
    print("local: whether the weights are on this machine (`restorekit info` says where restorekit looks).")
    return 0
