"""RED-Net: very deep residual encoder-decoder with symmetric skip connections (Mao, Shen & Yang,
NIPS 2016). RED30 = 15 convolutions followed by 15 deconvolutions.

Official release: Caffe prototxts and MATLAB test code (mirror ``ved27/RED-net``; original on
bitbucket ``chhshen/image-denoising``). There are no official PyTorch weights, so the state-dict key
names are ours: ``convs.<i>.{weight,bias}`` and ``deconvs.<i>.{weight,bias}`` and nothing else.
Detection requires exactly that key set, so no other family can be mistaken for RED-Net.

Layout (n = depth / 2 layers per side, released models: 128 channels, 1-channel grey/Y input for
denoising, SR and JPEG, 3 channels for deblurring and inpainting):
- ``convs[0..n-1]``: 3x3 conv, stride 1, pad 1, each followed by ReLU;
- ``deconvs[0..n-1]``: 3x3 transposed conv, stride 1, pad 1; ReLU after all but the last, which
  maps back to the image channels and predicts the residual: ``output = input + deconvs[-1](...)``
  (the paper learns F(X) = Y - X; the official ``netforward.m`` adds the input back).
- Symmetric skips every ``skip_every`` layers: in the 1-based numbering of the prototxt, after
  deconv j's ReLU the output of conv (n - j) is added and the sum goes through a ReLU, for
  j = s-1, 2s-1, ... < n. For RED30 (s = 2) that is d1+c14, d3+c12, ..., d13+c2 (7 skips), exactly
  the released ``REDNet_ch1/ch3.prototxt``. RED10 has no skips (``skip_every=0``).

What we changed and why:
- Deconvolutions are ``ConvTranspose2d`` (weight layout in x out x 3 x 3, like Caffe's
  Deconvolution), so converted Caffe blobs load without the flip and transpose a ``Conv2d`` would
  need. A stride-1 transposed conv is a convolution: ``forward`` computes it as one (flipped,
  transposed weight, a view of the same parameter), which CPU backends run faster, in
  channels_last memory.
- RED20's skip placement is our generalisation of the RED30 rule (10 layers per side, s = 2:
  d1+c9, ..., d9+c1); the released files only contain RED30.
- Skips have no weights, so ``infer_config`` cannot see them: it follows the paper (RED10 without
  skips, deeper models every 2 layers). Files written by ``restorekit convert`` record the exact
  config in their metadata.
- ``width`` defaults to 128 as in the released models; the paper text says 64 feature maps are
  "satisfactory" (preset ``red30_w64``).
- Initialisation (the released models are Caffe-trained, so nothing to match): zero biases and the
  last deconvolution scaled by 0.1, so the predicted residual starts small (see ``_init_residual_near_zero``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, DetectionError
from .layers import PadMode

NAME = "rednet"

# Alignment 1: nothing to pad. The mode is declared so every family states it.
PAD_MODE: PadMode = "constant"

# SR with RED-Net is pre-upsampling: the network restores the bicubic-upscaled image at scale 1, and
# `restorekit restore --scale K` / `restorekit eval --scale K` upscale its input first.
PRE_UPSAMPLING = True


@dataclass(frozen=True)
class Config:
    """RED-Net hyper-parameters. ``depth`` counts all layers (RED10/20/30: 10/20/30);
    ``skip_every`` = 0 disables the symmetric skips."""

    depth: int = 30
    width: int = 128
    in_channels: int = 1
    skip_every: int = 2

    def __post_init__(self) -> None:
        if self.depth < 2 or self.depth % 2:
            raise ConfigError(f"RED-Net: depth must be an even number >= 2 (conv + deconv layers), got {self.depth}")
        if self.width < 1 or self.in_channels < 1 or self.skip_every < 0:
            raise ConfigError(
                f"RED-Net: width ({self.width}) and in_channels ({self.in_channels}) must be >= 1, "
                f"skip_every ({self.skip_every}) >= 0"
            )

    @property
    def scale(self) -> int:
        # SR with RED-Net is pre-upsampling: the input is the bicubic-upsampled image.
        return 1

    @property
    def alignment(self) -> int:
        return 1

    @property
    def layers_per_side(self) -> int:
        return self.depth // 2

    def skips(self) -> dict[int, int]:
        """{deconv index: conv index} (0-based) of the symmetric skip connections."""
        n, s = self.layers_per_side, self.skip_every
        if s == 0:
            return {}
        # 1-based: after deconv j add conv n-j, for j = s-1, 2s-1, ... while conv n-j exists.
        return {j - 1: n - j - 1 for j in range(1, n) if j % s == s - 1}


PRESETS: dict[str, Config] = {
    "red10": Config(depth=10, skip_every=0),
    "red20": Config(depth=20),
    "red20_w64": Config(depth=20, width=64),  # restorekit-rednet: RED20 at the paper's 64 maps, for a CPU
    "red30": Config(depth=30),
    "red30_rgb": Config(depth=30, in_channels=3),
    "red30_w64": Config(depth=30, width=64),
}


class REDNet(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        n, width, channels = config.layers_per_side, config.width, config.in_channels
        self.convs = nn.ModuleList(
            nn.Conv2d(channels if i == 0 else width, width, 3, padding=1) for i in range(n)
        )
        self.deconvs = nn.ModuleList(
            nn.ConvTranspose2d(width, channels if i == n - 1 else width, 3, padding=1) for i in range(n)
        )
        self._skips = config.skips()
        self._kept = set(self._skips.values())
        self._init_residual_near_zero()

    def _init_residual_near_zero(self) -> None:
        """Zero biases and a last deconvolution at 0.1x PyTorch's default, so training starts from an output
        close to the input. With the default init alone, biases and the skip sums pile up: a RED20-w64's first
        residual has std 0.50 and mean 0.17 on [0, 1] inputs (0.04 / 0.05 with this), and 30 Adam steps at
        3e-4 still left an MSE of 0.08, 30x a sigma-50 noise's."""
        with torch.no_grad():
            for layer in (*self.convs, *self.deconvs):
                nn.init.zeros_(layer.bias)
            self.deconvs[-1].weight.mul_(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restore ``x`` (N x C x H x W, any size): input + predicted residual."""
        kept: dict[int, torch.Tensor] = {}
        feat = x
        if x.device.type in ("cpu", "cuda"):
            # oneDNN/cuDNN run these 128-channel 3x3 convs fastest in channels_last
            feat = x.contiguous(memory_format=torch.channels_last)
        for i, conv in enumerate(self.convs):
            feat = F.relu_(conv(feat))  # in place: conv's backward needs its input, not its output
            if i in self._kept:  # only the features a skip will need stay alive
                kept[i] = feat
        for j, deconv in enumerate(self.deconvs[:-1]):
            feat = F.relu_(_deconv(feat, deconv))
            if j in self._skips:
                # The prototxt applies a ReLU after each Eltwise SUM too; both operands are ReLU
                # outputs, so it is the identity and we skip the extra pass over the map.
                feat = feat + kept.pop(self._skips[j])
        return (x + _deconv(feat, self.deconvs[-1])).contiguous()


def _deconv(x: torch.Tensor, deconv: nn.Module) -> torch.Tensor:
    """A stride-1 transposed conv computed as the equivalent convolution (in/out swapped, kernel
    flipped): the same numbers, but CPU backends have much faster kernels for convolutions."""
    assert isinstance(deconv, nn.ConvTranspose2d) and not isinstance(deconv.padding, str)
    weight = deconv.weight.transpose(0, 1).flip(2, 3)
    return F.conv2d(x, weight, deconv.bias, padding=deconv.padding)


def build(config: Config) -> nn.Module:
    """A randomly initialised RED-Net for ``config``."""
    return REDNet(config)


def global_statistics(net: nn.Module) -> bool:
    """Never: only 3x3 convolutions and transposed convolutions, so the receptive field is bounded."""
    return False


_KEY = re.compile(r"(convs|deconvs)\.(\d+)\.(weight|bias)")


def matches(state_dict: dict[str, torch.Tensor]) -> bool:
    """True when the state dict holds exactly ``convs.<i>.*`` and ``deconvs.<i>.*`` tensors."""
    counts: dict[str, set[int]] = {"convs": set(), "deconvs": set()}
    for key in state_dict:
        m = _KEY.fullmatch(key)
        if m is None:
            return False
        counts[m.group(1)].add(int(m.group(2)))
    return bool(counts["convs"]) and counts["convs"] == counts["deconvs"]


def infer_config(state_dict: dict[str, torch.Tensor]) -> Config:
    """Depth from the layer count, width and channels from ``convs.0.weight``; skips by the paper's
    rule (RED10: none, else every 2 layers), since they carry no weights."""
    indices = sorted({int(m.group(2)) for key in state_dict if (m := _KEY.fullmatch(key))})
    n = len(indices)
    if indices != list(range(n)):
        raise DetectionError(f"RED-Net: layer indices are {indices}, expected 0..{n - 1}")
    first = state_dict["convs.0.weight"]
    last = state_dict[f"deconvs.{n - 1}.weight"]
    if last.shape[1] != first.shape[1]:
        raise DetectionError(
            f"RED-Net: the last deconv outputs {last.shape[1]} channels but the first conv takes "
            f"{first.shape[1]}; the residual output needs them equal"
        )
    depth = 2 * n
    return Config(
        depth=depth,
        width=int(first.shape[0]),
        in_channels=int(first.shape[1]),
        skip_every=0 if depth == 10 else 2,
    )
