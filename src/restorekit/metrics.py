"""PSNR and SSIM under the conventions the papers used (see :class:`restorekit.conventions.MetricConvention`).

All functions take float tensors in [0, 1], shaped ``(C, H, W)`` or ``(N, C, H, W)``, on any device,
and compute on that device. Batches are measured per image and then averaged, as every benchmark
table does (PSNR of the mean MSE would be a different number).

Conventions, in the order they are applied:

1. ``uint8``: round ``255 * clamp(x, 0, 1)`` to integers first (BasicSR's ``tensor2img``; the papers
   measured saved 8-bit images). Otherwise the float values are used as they are.
2. ``crop_border``: drop that many pixels on every side (``None`` means the SR scale).
3. ``y_channel``: replace RGB by MATLAB's BT.601 luma ``16 + 65.481 R + 128.553 G + 24.966 B``
   (``rgb2ycbcr``); one-channel images are already grey and are used as they are.
4. ``ssim``: ``"2d"`` is the MATLAB/BasicSR SSIM (11x11 Gaussian window, sigma 1.5, valid region only,
   averaged over channels); ``"3d"`` is the NAFNet evaluation's SSIM, one 11x11x11 Gaussian window
   sliding over H x W x C with replicated borders in all three dimensions.

Everything is measured on the 0-255 scale, with ``C1 = (0.01*255)^2`` and ``C2 = (0.03*255)^2``. (The
NAFNet code switches to a 0-1 scale with ``C = (k*1)^2`` for float images; SSIM is invariant to that
joint rescaling, so the numbers agree up to float rounding.)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .conventions import MetricConvention

__all__ = ["measure", "prepare", "psnr", "rgb_to_y", "ssim", "studio_range"]

_Y_WEIGHTS = (65.481, 128.553, 24.966)  # MATLAB rgb2ycbcr, for R, G, B in [0, 1]
_WINDOW = 11
_SIGMA = 1.5
_C1 = (0.01 * 255.0) ** 2
_C2 = (0.03 * 255.0) ** 2


def _work_dtype(device: torch.device) -> torch.dtype:
    # float64 like the reference numpy code, except where the backend lacks it (MPS)
    return torch.float32 if device.type == "mps" else torch.float64


def rgb_to_y(image: torch.Tensor) -> torch.Tensor:
    """MATLAB ``rgb2ycbcr`` luma of an RGB image in [0, 1], returned in [0, 1] (range 16/255..235/255).

    ``image``: ``(..., 3, H, W)``; the result is ``(..., 1, H, W)``, neither rounded nor clamped.
    """
    if image.shape[-3] != 3:
        raise ValueError(f"rgb_to_y needs 3 channels, got shape {tuple(image.shape)}")
    r, g, b = image.unbind(dim=-3)
    y = 16.0 + _Y_WEIGHTS[0] * r + _Y_WEIGHTS[1] * g + _Y_WEIGHTS[2] * b
    return (y / 255.0).unsqueeze(-3)


def studio_range(luma: torch.Tensor) -> torch.Tensor:
    """MATLAB's Y of an image whose full-range BT.601 luma (:func:`restorekit.imageio.luma`) is ``luma``.

    ``rgb2ycbcr``'s weights are BT.601's times 219 (65.481 = 219 x 0.299, ...), so its Y is the full-range
    luma squeezed to 16..235: ``(16 + 219 luma) / 255``. A grey model restores full-range luma (what it
    trained on and what restore gives it); this maps its output to what the Y-channel metrics compare.
    """
    return (16.0 + 219.0 * luma) / 255.0


def _as_batch(image: torch.Tensor, name: str) -> torch.Tensor:
    if image.ndim == 3:
        return image.unsqueeze(0)
    if image.ndim == 4:
        return image
    raise ValueError(f"{name} must be (C,H,W) or (N,C,H,W), got shape {tuple(image.shape)}")


def prepare(image: torch.Tensor, convention: MetricConvention, scale: int = 1) -> torch.Tensor:
    """Apply the convention to one image or a batch: uint8 rounding, border crop, Y conversion.

    Returns ``(N, C', H', W')`` on the 0-255 scale in the working precision (float64, or float32
    on MPS). Exposed so callers can see exactly what the metrics compare.
    """
    batch = _as_batch(image, "image")
    x = batch.to(_work_dtype(batch.device))
    if convention.uint8:
        # half-to-even rounding, like numpy's round in BasicSR's tensor2img
        x = (x.clamp(0, 1) * 255.0).round() / 255.0
    border = convention.border_for(scale)
    if border < 0:
        raise ValueError(f"crop border must be >= 0, got {border}")
    if border:
        if x.shape[-2] <= 2 * border or x.shape[-1] <= 2 * border:
            raise ValueError(f"image {tuple(x.shape[-2:])} is too small to crop {border} pixels per side")
        x = x[..., border:-border, border:-border]
    if convention.y_channel:
        if x.shape[-3] == 3:
            x = rgb_to_y(x)
        elif x.shape[-3] != 1:
            raise ValueError(f"Y-channel metrics need 1 or 3 channels, got {x.shape[-3]}")
    return x * 255.0


def _pair(pred: torch.Tensor, target: torch.Tensor, convention: MetricConvention, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    return prepare(pred, convention, scale), prepare(target, convention, scale)


def psnr(pred: torch.Tensor, target: torch.Tensor, convention: MetricConvention, scale: int = 1) -> float:
    """PSNR in dB on the 0-255 scale; ``inf`` for identical images; a batch gives the mean of per-image PSNRs."""
    a, b = _pair(pred, target, convention, scale)
    mse = (a - b).pow(2).flatten(1).mean(dim=1)
    values = [math.inf if m == 0 else 10.0 * math.log10(255.0**2 / m) for m in mse.tolist()]
    return sum(values) / len(values)


def _gaussian_1d(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    coords = torch.arange(_WINDOW, device=device, dtype=dtype) - (_WINDOW - 1) / 2
    kernel = torch.exp(-(coords**2) / (2 * _SIGMA**2))
    return kernel / kernel.sum()


def _filter_2d_valid(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter of (N, C, H, W), valid region only (no padding)."""
    c = x.shape[1]
    kh = kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    kw = kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    return F.conv2d(F.conv2d(x, kh, groups=c), kw, groups=c)


def _ssim_map(a: torch.Tensor, b: torch.Tensor, filt: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + _C1) * (2 * cov + _C2)
    den = (mu_a**2 + mu_b**2 + _C1) * (var_a + var_b + _C2)
    return num / den


def _ssim_2d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM: mean over the valid SSIM map of each channel, then over channels."""
    if a.shape[-2] < _WINDOW or a.shape[-1] < _WINDOW:
        raise ValueError(f"SSIM needs at least {_WINDOW}x{_WINDOW} pixels after cropping, got {tuple(a.shape[-2:])}")
    kernel = _gaussian_1d(a.device, a.dtype)
    smap = _ssim_map(a, b, lambda x: _filter_2d_valid(x, kernel))
    return smap.mean(dim=(-1, -2)).mean(dim=1)


def _filter_3d_replicate(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable 11x11x11 Gaussian over (C, H, W) of each image, borders replicated in all three dims.

    The channel axis is treated as a third spatial axis: for RGB, the replicated padding of 5 on the
    channel axis means each channel's window sees its neighbours and many copies of the edge channels,
    exactly as the NAFNet evaluation's Conv3d(padding_mode='replicate') does.
    """
    pad = _WINDOW // 2
    vol = x.unsqueeze(1)  # (N, 1, C, H, W)
    # F.pad's replicate mode handles 3 trailing dims of a 5-D tensor
    vol = F.pad(vol, (pad, pad, pad, pad, pad, pad), mode="replicate")
    k = kernel
    vol = F.conv3d(vol, k.view(1, 1, -1, 1, 1))
    vol = F.conv3d(vol, k.view(1, 1, 1, -1, 1))
    vol = F.conv3d(vol, k.view(1, 1, 1, 1, -1))
    return vol.squeeze(1)


def _ssim_3d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    kernel = _gaussian_1d(a.device, a.dtype)
    smap = _ssim_map(a, b, lambda x: _filter_3d_replicate(x, kernel))
    return smap.flatten(1).mean(dim=1)


def ssim(pred: torch.Tensor, target: torch.Tensor, convention: MetricConvention, scale: int = 1) -> float:
    """SSIM under ``convention`` (``ssim="2d"`` or ``"3d"``); a batch gives the mean of per-image SSIMs."""
    a, b = _pair(pred, target, convention, scale)
    if convention.ssim == "2d":
        values = _ssim_2d(a, b)
    elif convention.ssim == "3d":
        values = _ssim_3d(a, b)
    else:
        raise ValueError(f"unknown SSIM variant {convention.ssim!r}; use '2d' or '3d'")
    return float(values.mean())


def measure(pred: torch.Tensor, target: torch.Tensor, convention: MetricConvention, scale: int = 1) -> dict[str, float]:
    """``{"psnr": dB, "ssim": value}`` for one image or the per-image mean of a batch."""
    return {"psnr": psnr(pred, target, convention, scale), "ssim": ssim(pred, target, convention, scale)}
