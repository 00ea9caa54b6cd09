"""Test-time local converter (TLC): global average pooling -> local average pooling.

Paper: Chu, Chen, Chen, Lu, "Improving Image Restoration by Revisiting Global Information
Aggregation", ECCV 2022 (arXiv 2112.04491). Official code: megvii-research/NAFNet
``basicsr/models/archs/local_arch.py`` (``NAFNetLocal``/``BaselineLocal``).

Why: networks trained on 256x256 crops see channel statistics of a 256x256 window; at test time on
a full 1280x720 frame a global mean pools over a much larger area, and the statistics drift. TLC
pools over a window of the size the network saw in training instead (1.5x the training-crop
features by default), which the NAFNet authors report is worth ~0.6 dB on GoPro.

Semantics reproduced from the official converter:
- every ``nn.AdaptiveAvgPool2d(1)`` is replaced by :class:`LocalAvgPool2d` (no parameters, so
  state-dict keys are unchanged);
- one dummy forward at the training size fixes each pool's window, relative to the feature map that
  pool sees at that size: ``kernel = feat * base // train`` with ``base = int(base_ratio * train)``.
  The window stays fixed for every later input (the official behaviour);
- where the window covers the whole feature map the pool is the plain global mean;
- otherwise the mean over every full window (a "valid" box filter), replicate-padded back to H x W;
- ``fast_imp=True`` reproduces the official faster, non-equivalent variant (box filter on a
  subsampled map, then nearest upsampling).

What we changed: the exact path computes the box sums separably (cumulative sum along W, window
differences, then the same along H) instead of the official 2-D integral image. Both are O(H*W)
whatever the window (a stride-1 ``avg_pool2d`` costs O(k1*k2) per pixel: ~150k adds per output
for the 384x384 window at full resolution), both export to ONNX (CumSum, opset 11), but prefix sums
over one row or column instead of the whole image lose far less float32 precision. Half-precision
inputs are accumulated in float32 for the same reason.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Official subsampling factors for fast_imp, largest first.
_FAST_RATIOS = (5, 4, 3, 2, 1)


class LocalAvgPool2d(nn.Module):
    """Average pooling over a fixed local window, replicate-padded to the input size.

    ``kernel_size`` is normally left ``None`` and set by the first forward call (see
    :func:`convert_to_local`); pass it to fix the window directly.
    """

    def __init__(
        self,
        base_size: tuple[int, int],
        train_size: tuple[int, int],
        fast_imp: bool = False,
        kernel_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.base_size = base_size
        self.train_size = train_size
        self.fast_imp = fast_imp
        self.kernel_size = kernel_size
        # Cap on fast_imp's subsampling ratio, set with the kernel (official: 5 * feat // train).
        self.max_ratio = (_FAST_RATIOS[0], _FAST_RATIOS[0])

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, base_size={self.base_size}, fast_imp={self.fast_imp}"

    def _init_kernel(self, height: int, width: int) -> None:
        train_h, train_w = self.train_size
        self.kernel_size = (height * self.base_size[0] // train_h, width * self.base_size[1] // train_w)
        self.max_ratio = (
            max(1, _FAST_RATIOS[0] * height // train_h),
            max(1, _FAST_RATIOS[0] * width // train_w),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if self.kernel_size is None:
            self._init_kernel(int(height), int(width))
        assert self.kernel_size is not None
        k_h, k_w = self.kernel_size
        if k_h >= height and k_w >= width:
            return F.adaptive_avg_pool2d(x, 1)
        acc = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        out = self._fast(acc) if self.fast_imp else _box_mean(acc, min(height, k_h), min(width, k_w))
        out_h, out_w = out.shape[-2:]
        pad = ((width - out_w) // 2, (width - out_w + 1) // 2, (height - out_h) // 2, (height - out_h + 1) // 2)
        return F.pad(out, pad, mode="replicate").to(x.dtype)

    def _fast(self, x: torch.Tensor) -> torch.Tensor:
        """The official fast_imp: box filter on a subsampled integral image, nearest upsampling."""
        assert self.kernel_size is not None
        height, width = x.shape[-2:]
        r_h = min(self.max_ratio[0], next(r for r in _FAST_RATIOS if height % r == 0))
        r_w = min(self.max_ratio[1], next(r for r in _FAST_RATIOS if width % r == 0))
        s = x[..., ::r_h, ::r_w].cumsum(dim=-1).cumsum(dim=-2)
        sub_h, sub_w = s.shape[-2:]
        k_h = min(sub_h - 1, self.kernel_size[0] // r_h)
        k_w = min(sub_w - 1, self.kernel_size[1] // r_w)
        if k_h < 1 or k_w < 1:
            raise ValueError(
                f"TLC fast_imp: a {height}x{width} feature map is too small for its "
                f"{self.kernel_size} window after {r_h}x{r_w} subsampling; use fast_imp=False"
            )
        # No zero row/column in front of the integral image: the official variant's windows start
        # one step in, and its output is one row/column shorter than a "valid" box filter.
        box = s[..., k_h:, k_w:] - s[..., :-k_h, k_w:] - s[..., k_h:, :-k_w] + s[..., :-k_h, :-k_w]
        return F.interpolate(box / (k_h * k_w), scale_factor=(r_h, r_w), mode="nearest")


def _box_mean(x: torch.Tensor, k_h: int, k_w: int) -> torch.Tensor:
    """Mean of every full k_h x k_w window of an NCHW tensor: output (H-k_h+1) x (W-k_w+1)."""
    s = F.pad(x.cumsum(dim=-1), (1, 0))
    rows = s[..., k_w:] - s[..., :-k_w]
    s = F.pad(rows.cumsum(dim=-2), (0, 0, 1, 0))
    return (s[..., k_h:, :] - s[..., :-k_h, :]) / (k_h * k_w)


def _replace_global_pools(module: nn.Module, make: type[LocalAvgPool2d], **kwargs: object) -> int:
    replaced = 0
    for name, child in module.named_children():
        if isinstance(child, nn.AdaptiveAvgPool2d) and child.output_size in (1, (1, 1)):
            setattr(module, name, make(**kwargs))  # type: ignore[arg-type]
            replaced += 1
        else:
            replaced += _replace_global_pools(child, make, **kwargs)
    return replaced


def _input_channels(net: nn.Module) -> int:
    config = getattr(net, "config", None)
    if config is not None and hasattr(config, "in_channels"):
        return int(config.in_channels)
    first_conv = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    if first_conv is None:
        raise ValueError("TLC: cannot tell the network's input channels; pass in_channels")
    return int(first_conv.in_channels)


def convert_to_local(
    net: nn.Module,
    train_size: tuple[int, int] = (256, 256),
    base_ratio: float = 1.5,
    fast_imp: bool = False,
    in_channels: int | None = None,
) -> nn.Module:
    """Replace every ``nn.AdaptiveAvgPool2d(1)`` in ``net`` by TLC local pooling, in place.

    ``train_size``: the (H, W) training crop; each pool's window becomes ``base_ratio`` times the
    feature map it sees at that input size (official: 1.5). ``fast_imp``: the official faster,
    non-equivalent approximation. ``in_channels``: channels of the dummy input (default: the
    net's ``config.in_channels`` or its first conv's input channels).

    Runs one no-grad forward pass at ``train_size`` in eval mode (the training flag is restored) to
    fix the windows. Pools that already are local keep their window, so converting twice is a
    no-op. Global means computed with ``F.adaptive_avg_pool2d`` inside ``forward`` are not seen.
    Returns ``net``.
    """
    train_h, train_w = int(train_size[0]), int(train_size[1])
    base_size = (int(train_h * base_ratio), int(train_w * base_ratio))
    replaced = _replace_global_pools(
        net, LocalAvgPool2d, base_size=base_size, train_size=(train_h, train_w), fast_imp=fast_imp
    )
    if replaced == 0:
        return net
    channels = in_channels if in_channels is not None else _input_channels(net)
    reference = next(net.parameters(), None)
    dummy = torch.zeros(
        1,
        channels,
        train_h,
        train_w,
        device=reference.device if reference is not None else None,
        dtype=reference.dtype if reference is not None else None,
    )
    was_training = net.training
    net.eval()
    with torch.no_grad():
        net(dummy)
    net.train(was_training)
    return net
