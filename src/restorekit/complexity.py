"""Parameter and multiply-add counts. MACs come from torch's own FLOP counter (2 FLOPs = 1 MAC),
so they count every matmul/conv the model really runs, at the input size given.

The presets' counts are kept as data in ``zoo.FOOTPRINTS`` (listing them must not import torch);
:func:`measure_preset` is how that data is made and checked. Print the table's lines with
``python -m restorekit.complexity [PRESET ...]``.
"""

from __future__ import annotations

import sys

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .zoo import PRESETS, Footprint, Preset, reference_size


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, height: int, width: int, channels: int = 3) -> int:
    """Multiply-accumulates of one forward pass on a 1 x C x H x W input.

    Works on a model built on the ``meta`` device too, which makes counting large models instant.
    """
    device = next(model.parameters()).device
    x = torch.zeros(1, channels, height, width, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(x)
    return counter.get_total_flops() // 2


def measure_preset(preset: Preset) -> Footprint:
    """Build ``preset``'s network (on the meta device: shapes only, no memory) and count it."""
    from .model import build_model

    with torch.device("meta"):
        model = build_model(preset.family, preset.config, preset).eval()
    scale = int(preset.config.scale)
    width, height = reference_size(scale)
    return Footprint(scale=scale, params=count_params(model),
                     macs=count_macs(model, height, width, model.in_channels))


def footprint_line(name: str, footprint: Footprint) -> str:
    """The ``zoo.FOOTPRINTS`` line for a preset, exactly as it is written there."""
    return (f'    "{name}": Footprint(scale={footprint.scale}, params={footprint.params:_}, '
            f"macs={footprint.macs:_}),")


def main(argv: list[str] | None = None) -> int:
    names = (sys.argv[1:] if argv is None else argv) or list(PRESETS)
    for name in names:
        print(footprint_line(name, measure_preset(PRESETS[name])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
