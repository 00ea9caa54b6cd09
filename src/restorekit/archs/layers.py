"""Layers shared by several families: channel LayerNorm, SimpleGate, pad-to-multiple.

Only what is truly common lives here; family-specific blocks stay in their family's module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dimension of an NCHW tensor, per pixel.

    Equal to the official NAFNet ``LayerNorm2d`` (biased variance, eps 1e-6) but built from plain
    tensor ops instead of a custom autograd.Function, so it traces, exports to ONNX and compiles.
    Parameter names ``weight``/``bias`` match the official checkpoints.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        centered = x - mean
        var = centered.pow(2).mean(1, keepdim=True)
        normed = centered * torch.rsqrt(var + self.eps)
        return normed * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class SimpleGate(nn.Module):
    """Split channels in two halves and multiply them (NAFNet's activation replacement)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = x.chunk(2, dim=1)
        return first * second


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad the right and bottom of an NCHW tensor so H and W are multiples of ``multiple``."""
    if multiple <= 1:
        return x
    height, width = x.shape[-2:]
    pad_h = (multiple - height % multiple) % multiple
    pad_w = (multiple - width % multiple) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h))
