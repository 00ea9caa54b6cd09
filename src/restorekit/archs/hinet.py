"""HINet: Half Instance Normalization Network (Chen et al., CVPR Workshops 2021).

Official repo: megvii-model/HINet (``basicsr/models/archs/hinet_arch.py``), MIT license.

Two U-Nets in a row. Each encoder level is a residual block (3x3 conv -> [half instance norm] ->
LeakyReLU -> 3x3 conv -> LeakyReLU, plus a 1x1 identity projection); the HIN variant normalises
the first half of the channels only. Stage 1 ends in a supervised attention module (SAM) that
emits a first restored image and gates the features handed to stage 2; stage 2's encoder also
receives stage 1's encoder and decoder features through 3x3 convs (cross-stage feature fusion,
CSFF). Both stage outputs are residual on the input image. Parameter names are the official ones,
so the five released checkpoints (SIDD 1x/0.5x, GoPro, REDS, Rain13k) load with ``strict=True``.

What we changed and why:
- Input size: the network runs on H and W that are multiples of 16 (``Config.alignment``: four
  stride-2 levels), like the official one; ``RestorationModel`` pads other sizes with
  :data:`PAD_MODE` and crops back. Reflection, not zeros: half instance norm normalises each feature
  map with its statistics over the whole image, so a dark zero band would shift the mean and
  variance seen by every pixel, while a mirrored band keeps them close to the image's own. The
  official test (``basicsr/models/image_restoration_model.py``) feeds images unpadded, so it fixes
  no mode; aligned inputs (GoPro 1280x720, SIDD 256x256 crops) are not padded and match it exactly.
- Training mode returns ``[stage1, stage2]`` (the loss is applied to both, as upstream); eval mode
  returns only the final image.
- Speed: the 2x2 stride-2 transposed convs run as 1x1 convs + PixelShuffle(2) (same arithmetic,
  same parameters; see ``_upsample``).
- Instance norm of a 1x1 feature map (a 16x16 input reaches 1x1 at the bottom level) is defined
  here as its bias (the normalised value of a single element is 0); ``F.instance_norm`` refuses it.
- ``in_channels`` also sets SAM's and the last conv's output channels (the official SAM hard-codes
  3, which only matters for non-RGB models; identical for RGB).
- The official ``_initialize`` (orthogonal init) is never called upstream, so we keep PyTorch's
  default init too.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, DetectionError
from .layers import PadMode, check_aligned

NAME = "hinet"

# Right/bottom reflection (edge replication for images smaller than the band); see the module doc.
PAD_MODE: PadMode = "reflect"


@dataclass(frozen=True)
class Config:
    """HINet hyper-parameters (official names: ``wf``, ``hin_position_left/right``).

    ``width`` (wf) is the channel count of the top level; level ``i`` has ``width * 2**i``.
    Half instance norm is used at encoder levels ``hin_left <= i <= hin_right`` (an empty range,
    e.g. 0 and -1, means none), as in the official constructor.
    """

    width: int = 64
    depth: int = 5
    relu_slope: float = 0.2
    hin_left: int = 0
    hin_right: int = 4
    in_channels: int = 3

    def __post_init__(self) -> None:
        if not math.isfinite(self.relu_slope):
            raise ConfigError(f"HINet: relu_slope must be a finite number, got {self.relu_slope}")
        if self.width < 1 or self.depth < 2 or self.in_channels < 1:
            raise ConfigError(
                f"HINet: width ({self.width}) and in_channels ({self.in_channels}) must be >= 1, "
                f"depth ({self.depth}) >= 2"
            )
        if self.width % 2 and any(self.uses_hin(i) for i in range(self.depth)):
            raise ConfigError(
                f"HINet: half instance norm splits channels in two, so width must be even, got {self.width}"
            )

    @property
    def scale(self) -> int:
        return 1

    @property
    def alignment(self) -> int:
        """The stride product of the encoder: ``RestorationModel`` pads inputs to a multiple of it."""
        return 2 ** (self.depth - 1)

    def uses_hin(self, level: int) -> bool:
        return self.hin_left <= level <= self.hin_right


PRESETS: dict[str, Config] = {
    "hinet_sidd_1x": Config(width=64, hin_left=0, hin_right=4),
    "hinet_sidd_0.5x": Config(width=32, hin_left=0, hin_right=4),
    "hinet_gopro": Config(width=64, hin_left=3, hin_right=4),
    "hinet_reds": Config(width=64, hin_left=3, hin_right=4),
    "hinet_rain13k": Config(width=64, hin_left=0, hin_right=4),
}


class InstanceNorm(nn.Module):
    """Affine instance norm without running statistics (state-dict keys ``weight``, ``bias``).

    Same as ``nn.InstanceNorm2d(channels, affine=True)`` but also defined for 1x1 maps.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] * x.shape[-2] == 1:
            # (x - mean) is exactly 0 for a single element, so only the bias survives.
            return self.bias.to(x.dtype).view(1, -1, 1, 1).expand_as(x)
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


class ConvBlock(nn.Module):
    """One encoder (or decoder) level: residual double 3x3 conv, optional HIN and CSFF.

    ``forward`` returns the level's features; encoder levels above the bottom also own the 4x4
    stride-2 ``downsample`` conv (applied by the caller, which keeps the features for the skip).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        relu_slope: float,
        *,
        downsample: bool = False,
        hin: bool = False,
        csff: bool = False,
    ) -> None:
        super().__init__()
        self.identity = nn.Conv2d(in_ch, out_ch, 1)
        self.conv_1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.conv_2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.act = nn.LeakyReLU(relu_slope)
        # Submodules that a level lacks are left out entirely, so the state dict has exactly the
        # official keys for each configuration (strict loading depends on it).
        self.norm = InstanceNorm(out_ch // 2) if hin else None
        if csff:
            self.csff_enc = nn.Conv2d(out_ch, out_ch, 3, padding=1)
            self.csff_dec = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.use_csff = csff
        self.downsample = nn.Conv2d(out_ch, out_ch, 4, stride=2, padding=1, bias=False) if downsample else None

    def forward(
        self, x: torch.Tensor, enc: torch.Tensor | None = None, dec: torch.Tensor | None = None
    ) -> torch.Tensor:
        out = self.conv_1(x)
        if self.norm is not None:
            normed, kept = out.chunk(2, dim=1)
            out = torch.cat([self.norm(normed), kept], dim=1)
        out = self.act(out)
        out = self.act(self.conv_2(out))
        out = out + self.identity(x)
        if self.use_csff:
            if enc is None or dec is None:
                raise ValueError("HINet stage-2 encoder block needs the stage-1 encoder and decoder features")
            out = out + self.csff_enc(enc) + self.csff_dec(dec)
        return out


class UpBlock(nn.Module):
    """2x transposed-conv upsampling, concat with the (skip-conv'ed) encoder feature, ConvBlock."""

    def __init__(self, in_ch: int, out_ch: int, relu_slope: float) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.conv_block = ConvBlock(2 * out_ch, out_ch, relu_slope)

    def forward(self, x: torch.Tensor, bridge: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat([_upsample(x, self.up), bridge], dim=1))


def _upsample(x: torch.Tensor, up: nn.ConvTranspose2d) -> torch.Tensor:
    """``up(x)`` for a 2x2 stride-2 transposed conv, computed as a 1x1 conv to 4x the channels and
    PixelShuffle(2): each input pixel writes its own 2x2 output block, so the two are the same
    arithmetic; CPU backends run the 1x1 conv ~2.5x faster than the transposed conv (same numbers,
    same ``up.weight`` (in, out, 2, 2) parameter, viewed as (out*4, in, 1, 1))."""
    if torch.jit.is_tracing():
        return up(x)  # ONNX ConvTranspose is fast in ONNX Runtime and keeps the graph readable
    weight = up.weight.permute(1, 2, 3, 0).reshape(up.out_channels * 4, up.in_channels, 1, 1)
    bias = up.bias.repeat_interleave(4) if up.bias is not None else None
    return F.pixel_shuffle(F.conv2d(x, weight, bias), 2)


class SAM(nn.Module):
    """Supervised attention module: stage-1 image = conv2(x) + input; features gated by it."""

    def __init__(self, channels: int, image_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, image_channels, 3, padding=1)
        self.conv3 = nn.Conv2d(image_channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        restored = self.conv2(x) + image
        gated = self.conv1(x) * torch.sigmoid(self.conv3(restored)) + x
        return gated, restored


class HINet(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        wf, depth, slope = config.width, config.depth, config.relu_slope
        self.conv_01 = nn.Conv2d(config.in_channels, wf, 3, padding=1)
        self.conv_02 = nn.Conv2d(config.in_channels, wf, 3, padding=1)
        self.down_path_1 = nn.ModuleList()
        self.down_path_2 = nn.ModuleList()
        prev = wf
        for level in range(depth):
            channels = wf * 2**level
            has_down = level < depth - 1
            hin = config.uses_hin(level)
            self.down_path_1.append(ConvBlock(prev, channels, slope, downsample=has_down, hin=hin))
            self.down_path_2.append(ConvBlock(prev, channels, slope, downsample=has_down, hin=hin, csff=has_down))
            prev = channels
        # Decoder lists run from the deepest level up (index 0 = level depth-2), as upstream.
        self.up_path_1 = nn.ModuleList()
        self.up_path_2 = nn.ModuleList()
        self.skip_conv_1 = nn.ModuleList()
        self.skip_conv_2 = nn.ModuleList()
        for level in reversed(range(depth - 1)):
            channels = wf * 2**level
            self.up_path_1.append(UpBlock(prev, channels, slope))
            self.up_path_2.append(UpBlock(prev, channels, slope))
            self.skip_conv_1.append(nn.Conv2d(channels, channels, 3, padding=1))
            self.skip_conv_2.append(nn.Conv2d(channels, channels, 3, padding=1))
            prev = channels
        self.sam12 = SAM(wf, config.in_channels)
        self.cat12 = nn.Conv2d(2 * wf, wf, 1)
        self.last = nn.Conv2d(wf, config.in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Restore ``x`` (N x C x H x W, H and W multiples of ``config.alignment``): a list of both
        stage outputs in training mode, the final image in eval mode."""
        check_aligned(x, self.config.alignment, "HINet")
        out_1, out_2 = self._stages(x)
        return [out_1, out_2] if self.training else out_2

    def _stages(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Stage 1: plain U-Net; keep encoder features (pre-downsampling) and decoder outputs for CSFF.
        feat = self.conv_01(image)
        enc_1: list[torch.Tensor] = []
        for block in self.down_path_1[:-1]:
            enc_1.append(block(feat))
            feat = block.downsample(enc_1[-1])
        feat = self.down_path_1[-1](feat)
        dec_1: list[torch.Tensor] = []  # deepest first, like up_path_1
        for up, skip_conv, bridge in zip(self.up_path_1, self.skip_conv_1, reversed(enc_1)):
            feat = up(feat, skip_conv(bridge))
            dec_1.append(feat)
        sam_feat, out_1 = self.sam12(feat, image)

        # Stage 2: fresh features from the image fused with SAM's gated features; every encoder
        # level above the bottom adds stage 1's encoder and decoder features of the same scale.
        feat = self.cat12(torch.cat([self.conv_02(image), sam_feat], dim=1))
        enc_2: list[torch.Tensor] = []
        for level, block in enumerate(self.down_path_2[:-1]):
            enc_2.append(block(feat, enc_1[level], dec_1[-1 - level]))
            feat = block.downsample(enc_2[-1])
        feat = self.down_path_2[-1](feat)
        for up, skip_conv, bridge in zip(self.up_path_2, self.skip_conv_2, reversed(enc_2)):
            feat = up(feat, skip_conv(bridge))
        out_2 = self.last(feat) + image
        return out_1, out_2


def build(config: Config) -> nn.Module:
    """A randomly initialised HINet for ``config``."""
    return HINet(config)


def global_statistics(net: nn.Module) -> bool:
    """True when some level uses half instance norm (every official preset): its per-image mean and
    variance make every output pixel depend on the whole image."""
    config = getattr(net, "config", None)
    return isinstance(config, Config) and any(config.uses_hin(level) for level in range(config.depth))


_REQUIRED_KEYS = (
    "conv_01.weight",
    "conv_02.weight",
    "cat12.weight",
    "last.weight",
    "sam12.conv1.weight",
    "down_path_1.0.conv_1.weight",
    "down_path_2.0.csff_enc.weight",
)


def matches(state_dict: dict[str, torch.Tensor]) -> bool:
    """True for a HINet state dict (official key names)."""
    return all(key in state_dict for key in _REQUIRED_KEYS)


def _levels(state_dict: dict[str, torch.Tensor], pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for key in state_dict if (m := re.match(pattern, key))})


def _hin_range(levels: list[int], path: str) -> tuple[int, int]:
    if not levels:
        return 0, -1
    if levels != list(range(levels[0], levels[-1] + 1)):
        raise DetectionError(
            f"HINet: half instance norm ({path}.<level>.norm.*) at levels {levels}, "
            "which is not one contiguous range as the architecture requires"
        )
    return levels[0], levels[-1]


def infer_config(state_dict: dict[str, torch.Tensor]) -> Config:
    """Width from ``conv_01``, depth from the number of encoder levels, the HIN range from which
    ``down_path_1.<level>.norm.weight`` exist (this is what tells SIDD/Rain13k weights, HIN 0-4,
    from GoPro/REDS weights, HIN 3-4)."""
    conv_01 = state_dict["conv_01.weight"]
    width, in_channels = int(conv_01.shape[0]), int(conv_01.shape[1])
    levels = _levels(state_dict, r"down_path_1\.(\d+)\.")
    if levels != list(range(len(levels))) or len(levels) < 2:
        raise DetectionError(f"HINet: encoder levels down_path_1.<i> are {levels}, expected 0..depth-1 with depth >= 2")
    hin_1 = _hin_range(_levels(state_dict, r"down_path_1\.(\d+)\.norm\.weight$"), "down_path_1")
    hin_2 = _hin_range(_levels(state_dict, r"down_path_2\.(\d+)\.norm\.weight$"), "down_path_2")
    if hin_1 != hin_2:
        raise DetectionError(
            f"HINet: the two stages use half instance norm at different levels ({hin_1} vs {hin_2}); "
            "the architecture uses the same range in both"
        )
    return Config(width=width, depth=len(levels), hin_left=hin_1[0], hin_right=hin_1[1], in_channels=in_channels)
