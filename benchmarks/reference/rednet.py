"""RED30 (Mao et al., NIPS 2016): a plain transcription of the released Caffe prototxt
(``REDNet_ch1.prototxt``): 15 conv + ReLU, 15 stride-1 deconvolutions (ReLU after all but the
last), a skip every two layers (Eltwise SUM then ReLU), and the input added back
(``netforward.m``). Module names follow restorekit's RED-Net keys (``convs.i``, ``deconvs.i``);
there are no official PyTorch names. Unoptimised: ``nn.ConvTranspose2d`` as in Caffe.
"""

from __future__ import annotations

import torch
from torch import nn


class RED30(nn.Module):
    def __init__(self, channels: int = 1, width: int = 128, layers: int = 15) -> None:
        super().__init__()
        self.layers = layers
        self.convs = nn.ModuleList(nn.Conv2d(channels if i == 0 else width, width, 3, 1, 1) for i in range(layers))
        self.deconvs = nn.ModuleList(
            nn.ConvTranspose2d(width, channels if i == layers - 1 else width, 3, 1, 1) for i in range(layers)
        )
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv_out = []
        feat = x
        for conv in self.convs:
            feat = self.relu(conv(feat))
            conv_out.append(feat)
        for j, deconv in enumerate(self.deconvs[:-1], start=1):  # 1-based like the prototxt
            feat = self.relu(deconv(feat))
            if j % 2 == 1:  # deconv1 + conv14, deconv3 + conv12, ..., deconv13 + conv2
                feat = self.relu(feat + conv_out[self.layers - j - 1])
        return x + self.deconvs[-1](feat)
