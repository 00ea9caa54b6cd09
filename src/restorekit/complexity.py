"""Parameter and multiply-add counts. MACs come from torch's own FLOP counter (2 FLOPs = 1 MAC),
so they count every matmul/conv the model really runs, at the input size given."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


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
