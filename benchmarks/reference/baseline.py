"""NAFNet's Baseline (Chen et al., ECCV 2022): the official ``Baseline_arch.py`` block transcribed
plainly, inside spandrel 0.4.2's official NAFNet U-Net body (identical for both; spandrel has no
Baseline class). Same module names as the official checkpoints (``se.1``, ``se.3``, ...)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .spandrel_nafnet import _load, build_nafnet


class BaselineBlock(nn.Module):
    def __init__(self, c: int, dw_expand: int = 1, ffn_expand: int = 2) -> None:
        super().__init__()
        layer_norm = _load().LayerNorm2d  # the official custom-autograd LayerNorm2d
        dw_channel = c * dw_expand
        self.conv1 = nn.Conv2d(c, dw_channel, 1, padding=0, stride=1, groups=1, bias=True)
        self.conv2 = nn.Conv2d(dw_channel, dw_channel, 3, padding=1, stride=1, groups=dw_channel, bias=True)
        self.conv3 = nn.Conv2d(dw_channel, c, 1, padding=0, stride=1, groups=1, bias=True)
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(dw_channel, dw_channel // 2, 1, padding=0, stride=1, groups=1, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(dw_channel // 2, dw_channel, 1, padding=0, stride=1, groups=1, bias=True),
            nn.Sigmoid(),
        )
        self.gelu = nn.GELU()
        ffn_channel = ffn_expand * c
        self.conv4 = nn.Conv2d(c, ffn_channel, 1, padding=0, stride=1, groups=1, bias=True)
        self.conv5 = nn.Conv2d(ffn_channel, c, 1, padding=0, stride=1, groups=1, bias=True)
        self.norm1 = layer_norm(c)
        self.norm2 = layer_norm(c)
        self.beta = nn.Parameter(torch.zeros((1, c, 1, 1)), requires_grad=True)
        self.gamma = nn.Parameter(torch.zeros((1, c, 1, 1)), requires_grad=True)

    def forward(self, inp):  # type: ignore[no-untyped-def]
        x = inp
        x = self.norm1(x)
        x = self.conv1(x)
        x = self.conv2(x)
        x = self.gelu(x)
        x = x * self.se(x)
        x = self.conv3(x)
        y = inp + x * self.beta
        x = self.conv4(self.norm2(y))
        x = self.gelu(x)
        x = self.conv5(x)
        return y + x * self.gamma


def build_baseline(width: int, enc_blk_nums: Any, middle_blk_num: int, dec_blk_nums: Any, dw_expand: int,
                   ffn_expand: int, in_channels: int = 3) -> nn.Module:
    """The official U-Net with every NAFBlock replaced by a BaselineBlock of the same width."""
    net = build_nafnet(width, enc_blk_nums, middle_blk_num, dec_blk_nums, in_channels)
    for seq in [*net.encoders, net.middle_blks, *net.decoders]:
        for i, block in enumerate(seq):
            seq[i] = BaselineBlock(block.conv1.in_channels, dw_expand, ffn_expand)
    return net
