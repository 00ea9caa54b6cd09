"""HINet (Chen et al., CVPRW 2021): a plain transcription of the official ``hinet_arch.py`` layer
graph (megvii-model/HINet), with the official module names so official state dicts load.

Deliberately unoptimised: ``nn.InstanceNorm2d`` on a split-and-concatenated half, ``torch.cat``
for every skip, stride-2 ``ConvTranspose2d`` upsampling, exactly as upstream. Inputs must be
multiples of 16 (upstream has no padding); eval-mode output is the stage-2 image.
"""

from __future__ import annotations

import torch
from torch import nn


class UNetConvBlock(nn.Module):
    def __init__(self, in_size: int, out_size: int, downsample: bool, relu_slope: float,
                 use_csff: bool = False, use_hin: bool = False) -> None:
        super().__init__()
        self.downsample_flag = downsample
        self.identity = nn.Conv2d(in_size, out_size, 1, 1, 0)
        self.use_csff = use_csff
        self.conv_1 = nn.Conv2d(in_size, out_size, kernel_size=3, padding=1, bias=True)
        self.relu_1 = nn.LeakyReLU(relu_slope, inplace=False)
        self.conv_2 = nn.Conv2d(out_size, out_size, kernel_size=3, padding=1, bias=True)
        self.relu_2 = nn.LeakyReLU(relu_slope, inplace=False)
        if downsample and use_csff:
            self.csff_enc = nn.Conv2d(out_size, out_size, 3, 1, 1)
            self.csff_dec = nn.Conv2d(out_size, out_size, 3, 1, 1)
        if use_hin:
            self.norm = nn.InstanceNorm2d(out_size // 2, affine=True)
        self.use_hin = use_hin
        if downsample:
            self.downsample = nn.Conv2d(out_size, out_size, kernel_size=4, stride=2, padding=1, bias=False)

    def forward(self, x, enc=None, dec=None):  # type: ignore[no-untyped-def]
        out = self.conv_1(x)
        if self.use_hin:
            out_1, out_2 = torch.chunk(out, 2, dim=1)
            out = torch.cat([self.norm(out_1), out_2], dim=1)
        out = self.relu_1(out)
        out = self.relu_2(self.conv_2(out))
        out += self.identity(x)
        if enc is not None and dec is not None:
            assert self.use_csff
            out = out + self.csff_enc(enc) + self.csff_dec(dec)
        if self.downsample_flag:
            return self.downsample(out), out
        return out


class UNetUpBlock(nn.Module):
    def __init__(self, in_size: int, out_size: int, relu_slope: float) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_size, out_size, kernel_size=2, stride=2, bias=True)
        self.conv_block = UNetConvBlock(in_size, out_size, False, relu_slope)

    def forward(self, x, bridge):  # type: ignore[no-untyped-def]
        up = self.up(x)
        return self.conv_block(torch.cat([up, bridge], 1))


class SAM(nn.Module):
    def __init__(self, n_feat: int, image_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(n_feat, n_feat, 3, padding=1)
        self.conv2 = nn.Conv2d(n_feat, image_channels, 3, padding=1)
        self.conv3 = nn.Conv2d(image_channels, n_feat, 3, padding=1)

    def forward(self, x, x_img):  # type: ignore[no-untyped-def]
        x1 = self.conv1(x)
        img = self.conv2(x) + x_img
        x2 = torch.sigmoid(self.conv3(img))
        x1 = x1 * x2
        x1 = x1 + x
        return x1, img


class HINet(nn.Module):
    def __init__(self, in_chn: int = 3, wf: int = 64, depth: int = 5, relu_slope: float = 0.2,
                 hin_position_left: int = 0, hin_position_right: int = 4) -> None:
        super().__init__()
        self.depth = depth
        self.down_path_1 = nn.ModuleList()
        self.down_path_2 = nn.ModuleList()
        self.conv_01 = nn.Conv2d(in_chn, wf, 3, 1, 1)
        self.conv_02 = nn.Conv2d(in_chn, wf, 3, 1, 1)
        prev_channels = wf
        for i in range(depth):
            use_hin = hin_position_left <= i <= hin_position_right
            downsample = i + 1 < depth
            self.down_path_1.append(UNetConvBlock(prev_channels, (2**i) * wf, downsample, relu_slope, use_hin=use_hin))
            self.down_path_2.append(UNetConvBlock(prev_channels, (2**i) * wf, downsample, relu_slope,
                                                  use_csff=downsample, use_hin=use_hin))
            prev_channels = (2**i) * wf
        self.up_path_1 = nn.ModuleList()
        self.up_path_2 = nn.ModuleList()
        self.skip_conv_1 = nn.ModuleList()
        self.skip_conv_2 = nn.ModuleList()
        for i in reversed(range(depth - 1)):
            self.up_path_1.append(UNetUpBlock(prev_channels, (2**i) * wf, relu_slope))
            self.up_path_2.append(UNetUpBlock(prev_channels, (2**i) * wf, relu_slope))
            self.skip_conv_1.append(nn.Conv2d((2**i) * wf, (2**i) * wf, 3, 1, 1))
            self.skip_conv_2.append(nn.Conv2d((2**i) * wf, (2**i) * wf, 3, 1, 1))
            prev_channels = (2**i) * wf
        self.sam12 = SAM(prev_channels, in_chn)
        self.cat12 = nn.Conv2d(prev_channels * 2, prev_channels, 1, 1, 0)
        self.last = nn.Conv2d(prev_channels, in_chn, 3, 1, 1, bias=True)

    def forward(self, x):  # type: ignore[no-untyped-def]
        image = x
        x1 = self.conv_01(image)
        encs = []
        decs = []
        for i, down in enumerate(self.down_path_1):
            if (i + 1) < self.depth:
                x1, x1_up = down(x1)
                encs.append(x1_up)
            else:
                x1 = down(x1)
        for i, up in enumerate(self.up_path_1):
            x1 = up(x1, self.skip_conv_1[i](encs[-i - 1]))
            decs.append(x1)
        sam_feature, out_1 = self.sam12(x1, image)
        x2 = self.conv_02(image)
        x2 = self.cat12(torch.cat([x2, sam_feature], dim=1))
        blocks = []
        for i, down in enumerate(self.down_path_2):
            if (i + 1) < self.depth:
                x2, x2_up = down(x2, encs[i], decs[-i - 1])
                blocks.append(x2_up)
            else:
                x2 = down(x2)
        for i, up in enumerate(self.up_path_2):
            x2 = up(x2, self.skip_conv_2[i](blocks[-i - 1]))
        out_2 = self.last(x2)
        out_2 = out_2 + image
        return [out_1, out_2]
