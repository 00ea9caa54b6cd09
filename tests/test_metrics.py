"""Metrics: PSNR/SSIM/Y against independent numpy/scipy/skimage formulas, and every convention switch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import structural_similarity

from restorekit.conventions import MetricConvention
from restorekit.imageio import luma
from restorekit.metrics import measure, prepare, psnr, rgb_to_y, ssim, studio_range

RGB_FLOAT = MetricConvention(y_channel=False, crop_border=0, uint8=False, ssim="2d")


def _pair(seed: int = 0, size: tuple[int, int] = (40, 48)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(3, size[0] // 4, size[1] // 4, generator=g)
    target = torch.nn.functional.interpolate(base[None], size=size, mode="bilinear", align_corners=False)[0]
    pred = (target + 0.04 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    return pred, target


def test_rgb_to_y_matches_matlab_formula() -> None:
    rgb = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.2, 0.5, 0.7]])
    y = rgb_to_y(rgb.T.reshape(3, 6, 1)).flatten() * 255
    expected = [16 + 65.481, 16 + 128.553, 16 + 24.966, 235.0, 16.0, 16 + 65.481 * 0.2 + 128.553 * 0.5 + 24.966 * 0.7]
    assert torch.allclose(y, torch.tensor(expected), atol=1e-4)
    with pytest.raises(ValueError):
        rgb_to_y(torch.rand(2, 4, 4))


def test_matlab_y_is_the_one_luma_on_the_studio_range() -> None:
    # The decoder's luma (grey training data, a grey model's input) and the metrics' MATLAB Y are one rule
    # on two ranges; eval maps a grey model's output with studio_range before a Y-channel comparison.
    rgb = np.random.default_rng(3).random((17, 19, 3))
    full = torch.from_numpy(luma(rgb.astype(np.float32)).astype(np.float64)).permute(2, 0, 1)
    matlab = rgb_to_y(torch.from_numpy(rgb).permute(2, 0, 1))
    assert torch.allclose(studio_range(full), matlab, atol=1e-6)
    assert not torch.allclose(full, matlab, atol=1e-2)  # the ranges really differ (0.86x contrast + offset)


def test_psnr_matches_numpy_formula() -> None:
    pred, target = _pair()
    a, b = pred.double().numpy() * 255, target.double().numpy() * 255
    expected = 10 * np.log10(255**2 / np.mean((a - b) ** 2))
    assert psnr(pred, target, RGB_FLOAT) == pytest.approx(expected, abs=1e-9)
    conv = MetricConvention(y_channel=False, crop_border=3, uint8=True)
    a8, b8 = np.round(a)[:, 3:-3, 3:-3], np.round(b)[:, 3:-3, 3:-3]
    assert psnr(pred, target, conv) == pytest.approx(10 * np.log10(255**2 / np.mean((a8 - b8) ** 2)), abs=1e-9)


def test_identical_images_give_inf_psnr_and_unit_ssim(device: torch.device) -> None:
    _, target = _pair()
    target = target.to(device)
    for conv in (RGB_FLOAT, MetricConvention(ssim="3d"), MetricConvention(y_channel=True, crop_border=None)):
        result = measure(target, target.clone(), conv, scale=2)
        assert math.isinf(result["psnr"])
        assert result["ssim"] == pytest.approx(1.0, abs=1e-9)


def test_ssim_2d_matches_skimage() -> None:
    # skimage with these options filters with an 11x11 window and averages the map after cropping 5
    # pixels, i.e. the same valid region as MATLAB/BasicSR; the only difference is float rounding.
    pred, target = _pair(1, (48, 56))
    conv = MetricConvention(y_channel=False, crop_border=0, uint8=True, ssim="2d")
    ours = ssim(pred, target, conv)
    a = np.round(pred.double().numpy() * 255)
    b = np.round(target.double().numpy() * 255)
    per_channel = [
        structural_similarity(a[c], b[c], gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
        for c in range(3)
    ]
    assert ours == pytest.approx(float(np.mean(per_channel)), abs=1e-6)


def test_ssim_3d_matches_scipy_volume_filter() -> None:
    # independent reference: a full (non-separable) 11x11x11 Gaussian convolution of the C x H x W volume
    # with 'nearest' (= replicate) borders, as the NAFNet evaluation's Conv3d(padding_mode='replicate')
    pred, target = _pair(2, (24, 28))
    conv = MetricConvention(y_channel=False, crop_border=0, uint8=True, ssim="3d")
    a = np.round(pred.double().numpy() * 255)
    b = np.round(target.double().numpy() * 255)
    x = np.arange(11) - 5.0
    g = np.exp(-(x**2) / (2 * 1.5**2))
    g /= g.sum()
    kernel = g[:, None, None] * g[None, :, None] * g[None, None, :]

    def filt(v: np.ndarray) -> np.ndarray:
        return ndimage.convolve(v, kernel, mode="nearest")

    mu_a, mu_b = filt(a), filt(b)
    va, vb, cov = filt(a * a) - mu_a**2, filt(b * b) - mu_b**2, filt(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ref = ((2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))).mean()
    assert ssim(pred, target, conv) == pytest.approx(ref, abs=1e-9)


def test_each_convention_switch_changes_the_result() -> None:
    pred, target = _pair(3, (48, 48))
    # a border that differs much more than the centre makes the crop visible
    pred = pred.clone()
    pred[:, :2, :] = 1 - target[:, :2, :]
    base = MetricConvention(y_channel=False, crop_border=0, uint8=False, ssim="2d")
    variants = {
        "y": MetricConvention(y_channel=True, crop_border=0, uint8=False, ssim="2d"),
        "crop": MetricConvention(y_channel=False, crop_border=4, uint8=False, ssim="2d"),
        "uint8": MetricConvention(y_channel=False, crop_border=0, uint8=True, ssim="2d"),
        "3d": MetricConvention(y_channel=False, crop_border=0, uint8=False, ssim="3d"),
    }
    ref = measure(pred, target, base)
    for name, conv in variants.items():
        got = measure(pred, target, conv)
        key = "ssim" if name == "3d" else "psnr"
        assert abs(got[key] - ref[key]) > 1e-4, name
    # crop_border=None follows the scale
    sr = MetricConvention(y_channel=False, crop_border=None, uint8=False)
    assert psnr(pred, target, sr, scale=4) == pytest.approx(psnr(pred, target, variants["crop"]))


def test_batch_is_mean_of_per_image_values(device: torch.device) -> None:
    p1, t1 = _pair(4)
    p2, t2 = _pair(5)
    conv = MetricConvention(y_channel=True, crop_border=2, uint8=True, ssim="2d")
    batch = measure(torch.stack([p1, p2]).to(device), torch.stack([t1, t2]).to(device), conv)
    single = [measure(p, t, conv) for p, t in ((p1, t1), (p2, t2))]
    assert batch["psnr"] == pytest.approx((single[0]["psnr"] + single[1]["psnr"]) / 2, abs=1e-4)
    assert batch["ssim"] == pytest.approx((single[0]["ssim"] + single[1]["ssim"]) / 2, abs=1e-5)


def test_grey_images_and_errors() -> None:
    pred, target = _pair(6)
    grey_p, grey_t = pred[:1], target[:1]
    conv = MetricConvention(y_channel=True, crop_border=0, uint8=False)
    # one-channel images are already luma: Y conversion leaves them alone
    assert torch.equal(prepare(grey_p, conv), grey_p[None].double() * 255)
    assert psnr(grey_p, grey_t, conv) == pytest.approx(psnr(grey_p, grey_t, RGB_FLOAT))
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(pred, target[:, :-1], conv)
    with pytest.raises(ValueError, match="too small"):
        psnr(pred[:, :6, :6], target[:, :6, :6], MetricConvention(crop_border=3))
