"""Bicubic++ (Bilecen & Ayazoglu, CVPRW 2023): a plain transcription of the official
``models/SR_models.py`` forward pass (even input sizes, as upstream), with the official names."""

from __future__ import annotations

from torch import nn


class BicubicPlusPlus(nn.Module):
    def __init__(self, sr_rate: int = 3, channels: int = 32, bias: bool = False) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, channels, 3, 2, 1, bias=bias)
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=bias)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=bias)
        self.conv_out = nn.Conv2d(channels, (2 * sr_rate) ** 2 * 3, 3, 1, 1, bias=bias)
        self.Depth2Space = nn.PixelShuffle(2 * sr_rate)
        self.act = nn.LeakyReLU(0.1)

    def forward(self, x):  # type: ignore[no-untyped-def]
        x0 = self.conv0(x)
        x0 = self.act(x0)
        x1 = self.conv1(x0)
        x1 = self.act(x1)
        x2 = self.conv2(x1)
        x2 = self.act(x2) + x0
        y = self.conv_out(x2)
        return self.Depth2Space(y)
