"""VapSR: efficient SR with large-receptive-field pixel attention (Zhou et al., ECCVW 2022).

Official repo: zhoumumu/VapSR (``code/vapsr.py``); VapSR-S won NTIRE22 ESR (parameter track).
Each block: 1x1 proj -> GELU -> pixel attention (1x1, 5x5 depthwise, 5x5 depthwise dilation 3,
multiply) -> 1x1 proj -> + shortcut -> LayerNorm over channels ("pixel norm").
Upsampler: x4 uses two conv+PixelShuffle(2) steps with fixed 64/16 widths; x2/x3 use a 56-wide
conv, LeakyReLU, conv, PixelShuffle(s). Parameter names match the official checkpoints.

What we changed (same outputs within ~1e-6, same keys; benchmarks/speed.py measures it):
- the 5x5 depthwise conv with dilation 3 runs as a plain 5x5 depthwise conv on the 3x3
  polyphase components of the input (space-to-batch, as TensorFlow's atrous conv does): PyTorch's
  CPU kernels for dilated depthwise convs are several times slower than for undilated ones;
- the pixel norm returns a contiguous NCHW tensor, as the official ``.contiguous()`` does: a
  channels-last view leaking into the next block sends its depthwise convs to a much slower
  channels_last kernel (that leak made VapSR-S 2x slower than the official code).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, DetectionError
from .layers import PadMode

NAME = "vapsr"

# Alignment 1: nothing to pad. The mode is declared so every family states it.
PAD_MODE: PadMode = "constant"


@dataclass(frozen=True)
class Config:
    scale: int = 4
    num_feat: int = 48
    num_block: int = 21
    d_atten: int = 64
    conv_groups: int = 1
    in_channels: int = 3

    def __post_init__(self) -> None:
        # The official upsamplers exist for x2, x3 (one conv + PixelShuffle(s)) and x4 (two PixelShuffle(2)).
        if self.scale not in (2, 3, 4):
            raise ConfigError(f"VapSR: scale must be 2, 3 or 4 (the official upsamplers), got {self.scale}")
        sizes = {"num_feat": self.num_feat, "num_block": self.num_block, "d_atten": self.d_atten,
                 "conv_groups": self.conv_groups, "in_channels": self.in_channels}
        small = [f"{name} ({value})" for name, value in sizes.items() if value < 1]
        if small:
            raise ConfigError(f"VapSR: {', '.join(small)} must be >= 1")
        if self.num_feat % self.conv_groups:
            raise ConfigError(f"VapSR: num_feat ({self.num_feat}) must be a multiple of conv_groups ({self.conv_groups})")

    @property
    def alignment(self) -> int:
        return 1


PRESETS: dict[str, Config] = {
    "vapsr_x2": Config(scale=2, num_block=20),
    "vapsr_x3": Config(scale=3, num_block=20),
    "vapsr_x4": Config(scale=4, num_block=21),
    "vapsr_s": Config(scale=4, num_feat=32, num_block=11, conv_groups=2),
}


class PixelAttention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.pointwise = nn.Conv2d(dim, dim, 1)
        self.depthwise = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.depthwise_dilated = nn.Conv2d(dim, dim, 5, padding=6, groups=dim, dilation=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = _dilated_depthwise(self.depthwise(self.pointwise(x)), self.depthwise_dilated)
        return x * attn


def _dilated_depthwise(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(x)`` for a depthwise conv with dilation d and 'same' padding, computed as an
    undilated conv on the d x d polyphase components of the zero-padded input.

    Output pixel (d*i + a, d*j + b) only reads input pixels of phase (a, b), d apart, so each
    phase is an ordinary k x k depthwise conv; pixel_unshuffle gathers the phases as channels
    (channel c*d*d + a*d + b) and pixel_shuffle scatters the results back.
    """
    d, padding = conv.dilation[0], conv.padding
    if isinstance(padding, str) or d == 1 or conv.groups != x.shape[1] or torch.jit.is_tracing():
        return conv(x)  # ONNX Runtime has fast dilated kernels: export the plain op
    p = padding[0]
    channels, height, width = x.shape[1], x.shape[-2], x.shape[-1]
    rows, cols = -(-height // d), -(-width // d)
    # pad p on every side as the conv would, plus up to d-1 on the far sides so sizes divide by d
    phases = F.pixel_unshuffle(F.pad(x, (p, p + d * cols - width, p, p + d * rows - height)), d)
    weight = conv.weight.repeat_interleave(d * d, dim=0)
    bias = conv.bias.repeat_interleave(d * d) if conv.bias is not None else None
    out = F.conv2d(phases, weight, bias, groups=channels * d * d)
    return F.pixel_shuffle(out, d)[..., :height, :width]


class PixelNorm(nn.LayerNorm):
    """nn.LayerNorm over the channel dim of an NCHW tensor (keys ``weight``/``bias`` as official)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nhwc = x.permute(0, 2, 3, 1)
        out = F.layer_norm(nhwc, self.normalized_shape, self.weight, self.bias, self.eps)
        return out.permute(0, 3, 1, 2).contiguous()


class VAB(nn.Module):
    def __init__(self, num_feat: int, d_atten: int) -> None:
        super().__init__()
        self.proj_1 = nn.Conv2d(num_feat, d_atten, 1)
        self.activation = nn.GELU()
        self.atten_branch = PixelAttention(d_atten)
        self.proj_2 = nn.Conv2d(d_atten, num_feat, 1)
        self.pixel_norm = PixelNorm(num_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj_2(self.atten_branch(self.activation(self.proj_1(x))))
        return self.pixel_norm(y + x)


def _upsampler(num_feat: int, out_channels: int, scale: int) -> nn.Sequential:
    if scale == 4:
        shuffle = nn.PixelShuffle(2)  # one module used twice, as in the official layout (indices 1 and 4)
        return nn.Sequential(
            nn.Conv2d(num_feat, 64, 3, padding=1),
            shuffle,
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(16, out_channels * 4, 3, padding=1),
            shuffle,
        )
    return nn.Sequential(
        nn.Conv2d(num_feat, 56, 3, padding=1),
        nn.LeakyReLU(0.1, inplace=True),
        nn.Conv2d(56, out_channels * scale * scale, 3, padding=1),
        nn.PixelShuffle(scale),
    )


class VapSR(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config  # Config.__post_init__ has checked the scale and sizes
        feat = config.num_feat
        self.conv_first = nn.Conv2d(config.in_channels, feat, 3, padding=1)
        self.body = nn.Sequential(*(VAB(feat, config.d_atten) for _ in range(config.num_block)))
        self.conv_body = nn.Conv2d(feat, feat, 3, padding=1, groups=config.conv_groups)
        self.upsampler = _upsampler(feat, config.in_channels, config.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        return self.upsampler(feat)


def build(config: Config) -> nn.Module:
    return VapSR(config)


def global_statistics(net: nn.Module) -> bool:
    """Never: the attention is a product with local (large-kernel) convolutions, not a global pool."""
    return False


def matches(state_dict: dict[str, torch.Tensor]) -> bool:
    return (
        "conv_first.weight" in state_dict
        and "conv_body.weight" in state_dict
        and "body.0.atten_branch.depthwise_dilated.weight" in state_dict
        and "upsampler.0.weight" in state_dict
    )


def infer_config(state_dict: dict[str, torch.Tensor]) -> Config:
    conv_first = state_dict["conv_first.weight"]
    num_feat, in_channels = conv_first.shape[0], conv_first.shape[1]
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"body\.(\d+)\.", k))}
    d_atten = state_dict["body.0.proj_1.weight"].shape[0]
    groups = num_feat // state_dict["conv_body.weight"].shape[1]
    if "upsampler.3.weight" in state_dict:
        scale = 4
    elif "upsampler.2.weight" in state_dict:
        scale = round((state_dict["upsampler.2.weight"].shape[0] / in_channels) ** 0.5)
    else:
        raise DetectionError("VapSR: upsampler has neither index 3 (x4) nor index 2 (x2/x3)")
    return Config(
        scale=scale,
        num_feat=num_feat,
        num_block=len(blocks),
        d_atten=d_atten,
        conv_groups=groups,
        in_channels=in_channels,
    )
