"""NAFNet and its Baseline: nonlinear-activation-free U-Nets for denoising and deblurring.

Paper: Chen, Chu, Zhang, Sun, "Simple Baselines for Image Restoration", ECCV 2022.
Official repo: megvii-research/NAFNet (``basicsr/models/archs/{NAFNet,Baseline,arch_util}_arch.py``).

One family covers both block types because they share the U-Net body and the state-dict layout:

- ``nafnet`` block: LayerNorm -> 1x1 -> 3x3 depthwise -> SimpleGate -> simplified channel attention
  (global mean, 1x1, multiply; no sigmoid) -> 1x1, residual scaled by ``beta``; then LayerNorm ->
  1x1 -> SimpleGate -> 1x1, residual scaled by ``gamma``. No activation functions at all.
- ``baseline`` block: the same skeleton with GELU instead of SimpleGate and a squeeze-excitation
  channel attention (keys ``se.1``/``se.3``) instead of ``sca``.
- body: ``intro`` 3x3 -> encoder levels (blocks, then a 2x2 stride-2 conv doubling channels) ->
  middle blocks -> decoder levels (1x1 conv without bias + PixelShuffle(2), additive skip, blocks)
  -> ``ending`` 3x3 -> + input. Parameter names match the official checkpoints so they load strictly.

The GoPro/REDS weights were evaluated with the test-time local converter (TLC): apply
:func:`restorekit.tlc.convert_to_local` (``restorekit.load`` does it for those presets).

Input size: the network runs on H and W that are multiples of ``Config.alignment`` (2 per encoder
level). ``RestorationModel`` pads other sizes with :data:`PAD_MODE` and crops the output back.

What we changed and why:
- LayerNorm2d is built from plain tensor ops (``archs/layers.py``) instead of the official custom
  autograd.Function, so the network traces, exports to ONNX and compiles; same outputs.
- ``dw_expand``/``ffn_expand`` are config fields for both block types (the official NAFNet class
  hard-codes 2/2; the official Baseline class exposes them) so one config describes every variant.
- Dropout (rate 0 in every official config, i.e. Identity) is left out.
- Speed (same outputs within ~1e-6, same state-dict keys; benchmarks/speed.py measures it): the
  body runs in channels_last memory on CPU/CUDA, so LayerNorm2d is one fused kernel on a free
  NHWC view and every 1x1 conv is a single GEMM on that view (:func:`_pointwise`); ``beta`` and
  ``gamma`` are folded into conv3/conv5's (small) weights instead of scaling full-size maps; for a
  single image with global pooling the channel attention is folded into conv3's weights as well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DetectionError
from .layers import LayerNorm2d, PadMode, SimpleGate, check_aligned

NAME = "nafnet"

# Zeros on the right and bottom, as the official ``NAFNet.check_image_size`` does at test time
# (``F.pad`` with its default constant mode), so our numbers stay comparable with the paper's.
PAD_MODE: PadMode = "constant"

BlockType = Literal["nafnet", "baseline"]
_BLOCK_TYPES: tuple[str, ...] = ("nafnet", "baseline")


@dataclass(frozen=True)
class Config:
    """Hyper-parameters of a NAFNet or Baseline U-Net.

    ``enc_blk_nums[i]`` blocks run at level ``i`` (width ``width * 2**i``) before each downsampling,
    ``middle_blk_num`` at the bottom, ``dec_blk_nums[i]`` after each upsampling (deepest first).
    """

    block: BlockType = "nafnet"
    width: int = 32
    enc_blk_nums: tuple[int, ...] = (2, 2, 4, 8)
    middle_blk_num: int = 12
    dec_blk_nums: tuple[int, ...] = (2, 2, 2, 2)
    dw_expand: int = 2
    ffn_expand: int = 2
    in_channels: int = 3

    def __post_init__(self) -> None:
        # JSON (safetensors metadata) turns tuples into lists; store tuples so configs compare equal
        # and stay hashable.
        object.__setattr__(self, "enc_blk_nums", tuple(int(n) for n in self.enc_blk_nums))
        object.__setattr__(self, "dec_blk_nums", tuple(int(n) for n in self.dec_blk_nums))
        if self.block not in _BLOCK_TYPES:
            raise ValueError(f"NAFNet block must be one of {_BLOCK_TYPES}, got {self.block!r}")
        if len(self.enc_blk_nums) != len(self.dec_blk_nums):
            raise ValueError(
                f"NAFNet needs as many decoder as encoder levels: enc_blk_nums={self.enc_blk_nums}, "
                f"dec_blk_nums={self.dec_blk_nums}"
            )
        counts = (self.width, self.dw_expand, self.ffn_expand, self.in_channels)
        if min(counts) < 1 or min((self.middle_blk_num, *self.enc_blk_nums, *self.dec_blk_nums), default=0) < 0:
            raise ValueError(f"NAFNet sizes must be positive and block counts non-negative: {self}")
        # SimpleGate halves the channels; Baseline's squeeze-excitation halves dw channels.
        if (self.width * self.dw_expand) % 2 or (self.block == "nafnet" and (self.width * self.ffn_expand) % 2):
            raise ValueError(f"NAFNet width * dw_expand (and width * ffn_expand) must be even: {self}")

    @property
    def scale(self) -> int:
        return 1

    @property
    def alignment(self) -> int:
        """Input size multiple the strides impose (``RestorationModel`` pads to it)."""
        return 2 ** len(self.enc_blk_nums)


_SIDD = Config(width=32, enc_blk_nums=(2, 2, 4, 8), middle_blk_num=12, dec_blk_nums=(2, 2, 2, 2))
_GOPRO = Config(width=32, enc_blk_nums=(1, 1, 1, 28), middle_blk_num=1, dec_blk_nums=(1, 1, 1, 1))

PRESETS: dict[str, Config] = {
    "nafnet_sidd_w32": _SIDD,
    "nafnet_sidd_w64": replace(_SIDD, width=64),
    "nafnet_gopro_w32": _GOPRO,
    "nafnet_gopro_w64": replace(_GOPRO, width=64),
    "nafnet_reds_w64": replace(_GOPRO, width=64),
    # Official Baseline configs: dw_expand 1 at width 32, 2 at width 64 (train and test yml).
    "baseline_sidd_w32": replace(_SIDD, block="baseline", dw_expand=1),
    "baseline_sidd_w64": replace(_SIDD, block="baseline", width=64, dw_expand=2),
    "baseline_gopro_w32": replace(_GOPRO, block="baseline", dw_expand=1),
    "baseline_gopro_w64": replace(_GOPRO, block="baseline", width=64, dw_expand=2),
    # restorekit-denoise (our own weights, src/restorekit/weights/restorekit-denoise.md): small and CPU-friendly.
    "restorekit_denoise": Config(width=24, enc_blk_nums=(1, 1, 2), middle_blk_num=2, dec_blk_nums=(1, 1, 1)),
}


class NAFBlock(nn.Module):
    """NAFNet block; ``beta``/``gamma`` start at zero, so a fresh block is the identity."""

    def __init__(self, channels: int, dw_expand: int = 2, ffn_expand: int = 2) -> None:
        super().__init__()
        dw = channels * dw_expand
        ffn = channels * ffn_expand
        self.norm1 = LayerNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.sg = SimpleGate()
        # Simplified channel attention: no sigmoid. Index 0 is the global pool that TLC replaces.
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1))
        self.conv3 = nn.Conv2d(dw // 2, channels, 1)
        self.norm2 = LayerNorm2d(channels)
        self.conv4 = nn.Conv2d(channels, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, channels, 1)
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.sg(self.conv2(_pointwise(self.norm1(inp), self.conv1)))
        y = inp + _attend_project(x, self.sca(x), self.conv3, self.beta)
        x = self.sg(_pointwise(self.norm2(y), self.conv4))
        return y + _pointwise(x, self.conv5, scale=self.gamma)


class BaselineBlock(nn.Module):
    """The paper's Baseline block: GELU and squeeze-excitation where NAFBlock has SimpleGate and SCA."""

    def __init__(self, channels: int, dw_expand: int = 1, ffn_expand: int = 2) -> None:
        super().__init__()
        dw = channels * dw_expand
        ffn = channels * ffn_expand
        self.norm1 = LayerNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.gelu = nn.GELU()  # parameter-free, shared by both halves as in the official block
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(dw, dw // 2, 1),
            nn.ReLU(),
            nn.Conv2d(dw // 2, dw, 1),
            nn.Sigmoid(),
        )
        self.conv3 = nn.Conv2d(dw, channels, 1)
        self.norm2 = LayerNorm2d(channels)
        self.conv4 = nn.Conv2d(channels, ffn, 1)
        self.conv5 = nn.Conv2d(ffn, channels, 1)
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.gelu(self.conv2(_pointwise(self.norm1(inp), self.conv1)))
        y = inp + _attend_project(x, self.se(x), self.conv3, self.beta)
        x = self.gelu(_pointwise(self.norm2(y), self.conv4))
        return y + _pointwise(x, self.conv5, scale=self.gamma)


def _pointwise(
    x: torch.Tensor, conv: nn.Conv2d, weight: torch.Tensor | None = None, scale: torch.Tensor | None = None
) -> torch.Tensor:
    """``conv`` (1x1) applied to ``x``, optionally with a replacement (out, in) ``weight`` and the
    output channels multiplied by ``scale`` (folded into the weights: cheaper than on the map).

    For channels_last ``x`` the NHWC view is contiguous, so the conv is one GEMM (``F.linear``)
    with no layout conversion; the result is channels_last again.
    """
    w = conv.weight.flatten(1) if weight is None else weight
    b = conv.bias
    if scale is not None:
        w = w * scale.view(-1, 1)
        b = b * scale.view(-1) if b is not None else None
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return F.linear(x.permute(0, 2, 3, 1), w, b).permute(0, 3, 1, 2)
    return F.conv2d(x, w[:, :, None, None], b)


def _attend_project(x: torch.Tensor, attention: torch.Tensor, conv: nn.Conv2d, scale: torch.Tensor) -> torch.Tensor:
    """``conv(x * attention) * scale`` for the channel-attention branch of both block types.

    One image with a global (1x1) attention map: the attention multiplies conv's input channels,
    so it is folded into the weights and the full-size multiply disappears. Batches (one weight
    per image) and TLC's local attention maps take the plain path; so does tracing, which must
    record the path that is valid for any batch size.
    """
    if x.shape[0] == 1 and attention.shape[-2:] == (1, 1) and not torch.jit.is_tracing():
        return _pointwise(x, conv, conv.weight.flatten(1) * attention.view(1, -1), scale)
    return _pointwise(x * attention, conv, scale=scale)


class NAFNet(nn.Module):
    """The U-Net shared by NAFNet and Baseline; H and W must be multiples of ``config.alignment``."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        block_cls = NAFBlock if config.block == "nafnet" else BaselineBlock

        def blocks(channels: int, count: int) -> nn.Sequential:
            return nn.Sequential(*(block_cls(channels, config.dw_expand, config.ffn_expand) for _ in range(count)))

        self.intro = nn.Conv2d(config.in_channels, config.width, 3, padding=1)
        self.ending = nn.Conv2d(config.width, config.in_channels, 3, padding=1)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        chan = config.width
        for count in config.enc_blk_nums:
            self.encoders.append(blocks(chan, count))
            self.downs.append(nn.Conv2d(chan, 2 * chan, 2, stride=2))
            chan *= 2
        self.middle_blks = blocks(chan, config.middle_blk_num)
        for count in config.dec_blk_nums:
            self.ups.append(nn.Sequential(nn.Conv2d(chan, 2 * chan, 1, bias=False), nn.PixelShuffle(2)))
            chan //= 2
            self.decoders.append(blocks(chan, count))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        check_aligned(inp, self.config.alignment, "NAFNet")
        if inp.device.type in ("cpu", "cuda"):
            # channels_last from the first conv on: LayerNorm2d and the 1x1 convs then work on
            # contiguous NHWC views (see _pointwise); converting 3 input channels costs nothing
            inp = inp.contiguous(memory_format=torch.channels_last)
        x = self.intro(inp)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle_blks(x)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            x = decoder(up(x) + skip)
        return (self.ending(x) + inp).contiguous()


def build(config: Config) -> nn.Module:
    """A randomly initialised NAFNet/Baseline (PyTorch default init, beta = gamma = 0, as official)."""
    return NAFNet(config)


def global_statistics(net: nn.Module) -> bool:
    """True while a channel attention pools the whole image (``nn.AdaptiveAvgPool2d(1)``): every output
    pixel then depends on every input pixel. TLC replaces those pools by local ones."""
    return any(isinstance(m, nn.AdaptiveAvgPool2d) for m in net.modules())


# A block's channel-attention weight: present in every block of either type, anywhere in the U-Net.
_ATTENTION_KEY = re.compile(r"^(?:encoders\.\d+|middle_blks|decoders\.\d+)\.\d+\.(sca|se)\.1\.weight$")


def matches(state_dict: dict[str, torch.Tensor]) -> bool:
    """True for NAFNet/Baseline state dicts (``intro``/``ending`` plus a block with ``sca`` or ``se``)."""
    return (
        "intro.weight" in state_dict
        and "ending.weight" in state_dict
        and any(_ATTENTION_KEY.match(key) for key in state_dict)
    )


def _indices(state_dict: dict[str, torch.Tensor], pattern: str) -> set[int]:
    regex = re.compile(pattern)
    return {int(m.group(1)) for key in state_dict if (m := regex.match(key))}


def _count(indices: set[int], what: str) -> int:
    """Length of a Sequential/ModuleList from its key indices, which must be 0..n-1."""
    if indices != set(range(len(indices))):
        raise DetectionError(f"NAFNet: {what} indices are not contiguous: {sorted(indices)}")
    return len(indices)


def infer_config(state_dict: dict[str, torch.Tensor]) -> Config:
    """Read width, block counts, block type and expansions from tensor names and shapes."""
    intro = state_dict["intro.weight"]
    width, in_channels = int(intro.shape[0]), int(intro.shape[1])
    out_channels = int(state_dict["ending.weight"].shape[0])
    if out_channels != in_channels:
        raise DetectionError(f"NAFNet: intro takes {in_channels} channels but ending gives {out_channels}")

    kinds = {m.group(1) for key in state_dict if (m := _ATTENTION_KEY.match(key))}
    if len(kinds) != 1:
        raise DetectionError(f"NAFNet: blocks mix channel-attention types {sorted(kinds)} (expected sca or se)")
    block: BlockType = "nafnet" if kinds == {"sca"} else "baseline"

    levels = _count(_indices(state_dict, r"^downs\.(\d+)\.weight$"), "downs")
    up_levels = _count(_indices(state_dict, r"^ups\.(\d+)\.0\.weight$"), "ups")
    if levels != up_levels:
        raise DetectionError(f"NAFNet: {levels} downsampling convs but {up_levels} upsampling convs")
    enc = tuple(_count(_indices(state_dict, rf"^encoders\.{i}\.(\d+)\."), f"encoders.{i}") for i in range(levels))
    dec = tuple(_count(_indices(state_dict, rf"^decoders\.{i}\.(\d+)\."), f"decoders.{i}") for i in range(levels))
    middle = _count(_indices(state_dict, r"^middle_blks\.(\d+)\."), "middle_blks")

    # Expansions from any one block: conv1 is c -> c*dw_expand, conv4 is c -> c*ffn_expand.
    prefix = next(key for key in sorted(state_dict) if _ATTENTION_KEY.match(key)).rsplit(".", 3)[0]
    conv1 = state_dict[f"{prefix}.conv1.weight"]
    conv4 = state_dict[f"{prefix}.conv4.weight"]
    channels = int(conv1.shape[1])
    if conv1.shape[0] % channels or conv4.shape[0] % channels:
        raise DetectionError(
            f"NAFNet: {prefix}.conv1 {tuple(conv1.shape)} / conv4 {tuple(conv4.shape)} are not whole "
            f"multiples of the block width {channels}"
        )
    try:
        return Config(
            block=block,
            width=width,
            enc_blk_nums=enc,
            middle_blk_num=middle,
            dec_blk_nums=dec,
            dw_expand=int(conv1.shape[0]) // channels,
            ffn_expand=int(conv4.shape[0]) // channels,
            in_channels=in_channels,
        )
    except ValueError as exc:
        raise DetectionError(f"NAFNet: inconsistent hyper-parameters: {exc}") from exc
