"""Synthetic camera noise (data/camera.py): statistics, not just shapes."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from restorekit.data.camera import (
    CameraNoise,
    apply_camera_noise,
    bilinear_demosaic,
    draw_params,
    mosaic_masks,
    poisson_gaussian,
    process,
    unprocess,
)
from restorekit.data.degrade import parse_degradation
from restorekit.errors import ConfigError

PLAIN = CameraNoise(iso_low=3200, iso_high=3200, jpeg_probability=0.0, sharpen_probability=0.0, smooth_probability=0.0)


def _gen(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_sensor_noise_variance_grows_with_signal() -> None:
    levels = [0.05, 0.2, 0.5, 0.9]
    variances = [float(poisson_gaussian(torch.full((200, 200), v), 0.01, 1e-4, _gen(0)).var()) for v in levels]
    assert all(later > earlier * 1.5 for earlier, later in itertools.pairwise(variances))
    # and matches the model: read + shot * signal, within sampling error
    for level, variance in zip(levels, variances):
        assert variance == pytest.approx(1e-4 + 0.01 * level, rel=0.05)


def test_unprocess_then_process_returns_the_image() -> None:
    image = torch.rand(3, 32, 32, dtype=torch.float64) * 0.85 + 0.05
    params = draw_params(CameraNoise(), _gen(3))
    assert torch.allclose(process(unprocess(image, params), params), image, atol=2e-3)


def test_demosaic_keeps_samples_and_fills_flat_planes() -> None:
    flat = torch.tensor([0.2, 0.5, 0.7])[:, None, None].expand(3, 9, 11)
    out = bilinear_demosaic(flat * mosaic_masks(9, 11))
    assert torch.allclose(out, flat, atol=1e-6)  # a flat colour survives mosaic + demosaic exactly, odd sizes too


def test_noise_is_spatially_and_cross_channel_correlated() -> None:
    grey = torch.full((3, 96, 96), 0.4)
    noise = PLAIN(grey, _gen(1)) - grey
    horizontal = _correlation(noise[:, :, :-1], noise[:, :, 1:])
    # the colour matrix mixes the channels' noise (with negative off-diagonal terms, so the sign may be negative)
    cross = max(abs(_correlation(noise[0], noise[1])), abs(_correlation(noise[1], noise[2])))
    assert horizontal > 0.2 and cross > 0.2
    # white Gaussian noise of the same strength has neither
    white = parse_degradation("awgn:10")(grey, _gen(1)) - grey
    assert abs(_correlation(white[:, :, :-1], white[:, :, 1:])) < 0.05
    assert abs(_correlation(white[0], white[1])) < 0.05


def test_brighter_iso_is_noisier_and_output_is_8bit_and_clipped() -> None:
    image = torch.rand(3, 64, 64)
    errors = []
    for iso in (100, 800, 6400):
        noise = CameraNoise(iso_low=iso, iso_high=iso, jpeg_probability=0, sharpen_probability=0, smooth_probability=0)
        out = noise(image, _gen(2))
        assert out.min() >= 0 and out.max() <= 1
        assert torch.equal(out, (out * 255).round() / 255)
        errors.append(float((out - image).pow(2).mean()))
    assert errors[0] < errors[1] < errors[2]


def test_jpeg_on_adds_block_artifacts_off_does_not() -> None:
    smooth = torch.linspace(0.2, 0.8, 64)[None, None, :].expand(3, 64, 64).contiguous()
    params = draw_params(PLAIN, _gen(4))
    raw_out = apply_camera_noise(smooth, params, _gen(5))
    from dataclasses import replace

    jpeg_out = apply_camera_noise(smooth, replace(params, jpeg_quality=30), _gen(5))
    assert not torch.equal(raw_out, jpeg_out)

    def block_edge_ratio(x: torch.Tensor) -> float:
        diffs = (x[:, :, 1:] - x[:, :, :-1]).abs().mean(dim=(0, 1))  # per column boundary
        at_edges = diffs[7::8].mean()
        return float(at_edges / diffs.mean())

    # JPEG puts larger jumps on 8-pixel block boundaries; the raw noisy image has none there
    assert block_edge_ratio(jpeg_out) > block_edge_ratio(raw_out) + 0.1
    # JPEG removes high-frequency noise: the result is closer to the noise-free image than before it
    assert (jpeg_out - smooth).pow(2).mean() < (raw_out - smooth).pow(2).mean()


def test_same_key_same_sample_and_batches_draw_per_image() -> None:
    image = torch.rand(3, 40, 48)
    noise = CameraNoise()
    assert torch.equal(noise(image, _gen(7)), noise(image, _gen(7)))
    assert not torch.equal(noise(image, _gen(7)), noise(image, _gen(8)))
    batch = noise(torch.stack([image, image]), _gen(9))
    assert batch.shape == (2, 3, 40, 48) and not torch.equal(batch[0], batch[1])


def test_spec_parsing_and_errors() -> None:
    step = parse_degradation("camera:50-800:jpeg=0:q=80-90:sharpen=0.2:smooth=0.1")
    assert not step.deterministic and step.scale == 1 and "ISO 50-800" in step.describe()
    parsed = step.steps[0]
    assert isinstance(parsed, CameraNoise) and parsed.jpeg_quality == (80, 90) and parsed.jpeg_probability == 0
    assert parse_degradation("camera").steps[0] == CameraNoise()
    for bad in ("camera:0-100", "camera:100-50", "camera:iso=5", "camera:jpeg=2", "camera:sharpen=0.8:smooth=0.5"):
        with pytest.raises(ConfigError, match="camera"):
            parse_degradation(bad)
    with pytest.raises(ValueError, match="RGB"):
        CameraNoise()(torch.rand(1, 16, 16), _gen(0))


def test_noise_levels_cover_light_to_heavy() -> None:
    """ISO 100 leaves a light, ISO 12800 a heavy noise (PSNR of the noisy image against the clean one)."""
    image = torch.rand(3, 64, 64) * 0.6 + 0.2

    def psnr(iso: float) -> float:
        noise = CameraNoise(iso_low=iso, iso_high=iso, jpeg_probability=0, sharpen_probability=0, smooth_probability=0)
        return -10 * math.log10(float((noise(image, _gen(11)) - image).pow(2).mean()))

    assert psnr(100) > 35 and psnr(12800) < 24
