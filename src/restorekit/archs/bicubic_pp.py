"""Bicubic++: real-time x3 super-resolution (Bilecen & Ayazoglu, CVPRW 2023, NTIRE23 RTSR winner).

Official repo: aselsan-research-imaging-team/bicubic-plusplus (``models/SR_models.py``).
Layout: stride-2 conv down to LR/2, two convs with a skip from the first, one conv to (2s)^2*3
channels and PixelShuffle(2s). LeakyReLU 0.1, no global residual, no clamp.

What we changed and why:
- channels and bias are config fields: the paper's three-stage pipeline trains a wider (34-channel)
  model with bias before pruning to 32 channels and removing the bias.
- odd input sizes: the official net returns 2s*ceil(H/2) rows (not s*H); we pad the input to even
  size by edge replication and crop the output to exactly s*H x s*W.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DetectionError

NAME = "bicubic_pp"


@dataclass(frozen=True)
class Config:
    scale: int = 3
    channels: int = 32
    bias: bool = False
    in_channels: int = 3
    negative_slope: float = 0.1

    @property
    def alignment(self) -> int:
        return 2


PRESETS: dict[str, Config] = {
    "bicubic_pp_x3": Config(),
    "bicubic_pp_x3_wide": Config(channels=34, bias=True),
}


class BicubicPlusPlus(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        ch, bias = config.channels, config.bias
        out_ch = (2 * config.scale) ** 2 * config.in_channels
        self.conv0 = nn.Conv2d(config.in_channels, ch, 3, stride=2, padding=1, bias=bias)
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1, bias=bias)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1, bias=bias)
        self.conv_out = nn.Conv2d(ch, out_ch, 3, padding=1, bias=bias)
        self.act = nn.LeakyReLU(config.negative_slope, inplace=True)
        self.shuffle = nn.PixelShuffle(2 * config.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height % 2 or width % 2:
            x = F.pad(x, (0, width % 2, 0, height % 2), mode="replicate")
        x0 = self.act(self.conv0(x))
        x = self.act(self.conv1(x0))
        x = self.act(self.conv2(x)) + x0
        out = self.shuffle(self.conv_out(x))
        scale = self.config.scale
        return out[..., : height * scale, : width * scale]


def build(config: Config) -> nn.Module:
    return BicubicPlusPlus(config)


def matches(state_dict: dict[str, torch.Tensor]) -> bool:
    return {"conv0.weight", "conv1.weight", "conv2.weight", "conv_out.weight"} <= state_dict.keys()


def infer_config(state_dict: dict[str, torch.Tensor]) -> Config:
    conv0 = state_dict["conv0.weight"]
    channels, in_channels = conv0.shape[0], conv0.shape[1]
    out_channels = state_dict["conv_out.weight"].shape[0]
    shuffle_sq = out_channels // in_channels
    shuffle = round(shuffle_sq**0.5)
    if shuffle * shuffle * in_channels != out_channels or shuffle % 2:
        raise DetectionError(
            f"Bicubic++: conv_out has {out_channels} output channels, expected (2*scale)^2*{in_channels}"
        )
    return Config(
        scale=shuffle // 2,
        channels=channels,
        bias="conv0.bias" in state_dict,
        in_channels=in_channels,
    )
