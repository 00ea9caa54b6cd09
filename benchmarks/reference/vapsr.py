"""VapSR (Zhou et al., ECCVW 2022): a plain transcription of the official ``code/vapsr.py``
(zhoumumu/VapSR) forward pass, with the official module names.

Unoptimised as upstream: ``clone()`` of the shortcut and attention input, NHWC permute +
``nn.LayerNorm`` + permute back + ``contiguous()`` in every block.
"""

from __future__ import annotations

from torch import nn


class Attention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.pointwise = nn.Conv2d(dim, dim, 1)
        self.depthwise = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.depthwise_dilated = nn.Conv2d(dim, dim, 5, 1, padding=6, groups=dim, dilation=3)

    def forward(self, x):  # type: ignore[no-untyped-def]
        u = x.clone()
        attn = self.pointwise(x)
        attn = self.depthwise(attn)
        attn = self.depthwise_dilated(attn)
        return u * attn


class VAB(nn.Module):
    def __init__(self, d_model: int, d_atten: int) -> None:
        super().__init__()
        self.proj_1 = nn.Conv2d(d_model, d_atten, 1)
        self.activation = nn.GELU()
        self.atten_branch = Attention(d_atten)
        self.proj_2 = nn.Conv2d(d_atten, d_model, 1)
        self.pixel_norm = nn.LayerNorm(d_model)

    def forward(self, x):  # type: ignore[no-untyped-def]
        shortcut = x.clone()
        x = self.proj_1(x)
        x = self.activation(x)
        x = self.atten_branch(x)
        x = self.proj_2(x)
        x = x + shortcut
        x = x.permute(0, 2, 3, 1)
        x = self.pixel_norm(x)
        x = x.permute(0, 3, 1, 2).contiguous()
        return x


def pixelshuffle(in_feat: int, out_feat: int, upscale: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_feat, 56, 3, 1, 1),
        nn.LeakyReLU(0.1, inplace=True),
        nn.Conv2d(56, out_feat * upscale * upscale, 3, 1, 1),
        nn.PixelShuffle(upscale),
    )


def pixelshuffle_x4(in_feat: int, out_feat: int) -> nn.Sequential:
    shuffle = nn.PixelShuffle(2)
    return nn.Sequential(
        nn.Conv2d(in_feat, 64, 3, 1, 1),
        shuffle,
        nn.LeakyReLU(0.1, inplace=True),
        nn.Conv2d(16, out_feat * 4, 3, 1, 1),
        shuffle,
    )


class VapSR(nn.Module):
    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, scale: int = 4, num_feat: int = 48,
                 num_block: int = 21, d_atten: int = 64, conv_groups: int = 1) -> None:
        super().__init__()
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[VAB(num_feat, d_atten) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1, groups=conv_groups)
        self.upsampler = pixelshuffle_x4(num_feat, num_out_ch) if scale == 4 else pixelshuffle(num_feat, num_out_ch, scale)

    def forward(self, feat):  # type: ignore[no-untyped-def]
        feat = self.conv_first(feat)
        body_feat = self.body(feat)
        body_out = self.conv_body(body_feat)
        feat = feat + body_out
        return self.upsampler(feat)
