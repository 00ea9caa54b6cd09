"""``bicubicdu``: bicubic down by K and back up (the SR training input of pre-upsampling networks)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from restorekit.data.degrade import imresize, parse_degradation
from restorekit.errors import ConfigError


def _grid_image(*shape: int) -> torch.Tensor:
    """A random image on the uint8 grid, like a decoded PNG."""
    return torch.randint(0, 256, shape).float() / 255.0


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_fixed_factor_is_imresize_down_then_up(factor: int) -> None:
    image = _grid_image(1, 48, 36)  # sides divisible by 2, 3 and 4
    expected = imresize(imresize(image, scale=1 / factor, matlab_uint8=True), size=(48, 36))
    degradation = parse_degradation(f"bicubicdu:{factor}")
    out = degradation(image, torch.Generator().manual_seed(0))
    assert out.shape == image.shape
    assert torch.equal(out, expected)
    assert degradation.scale == 1 and degradation.deterministic


def test_down_pass_reproduces_the_bicubic_step() -> None:
    # the LR image inside bicubicdu is exactly what bicubic:3 makes (the benchmark LR files)
    image = _grid_image(1, 30, 27)
    low = parse_degradation("bicubic:3")(image, None)
    assert torch.equal(parse_degradation("bicubicdu:3")(image, None), imresize(low, size=(30, 27)))


def test_sides_not_a_multiple_of_the_factor_keep_the_size_and_the_grid() -> None:
    image = _grid_image(1, 50, 50)  # the paper's patch: 50 is no multiple of 3 or 4
    for factor in (3, 4):
        out = parse_degradation(f"bicubicdu:{factor}")(image, None)
        assert out.shape == image.shape
        # away from the mirrored bottom/right edge it is the down-up of a larger image containing the patch
        big = torch.cat([image, image[..., -10:, :].flip(-2)], dim=-2)
        big = torch.cat([big, big[..., :, -10:].flip(-1)], dim=-1)[..., :60, :60]  # 60: a multiple of 3 and 4
        reference = imresize(imresize(big, scale=1 / factor, matlab_uint8=True), size=(60, 60))
        assert torch.allclose(out[..., :32, :32], reference[..., :32, :32], atol=1e-6)


def test_down_up_blurs_more_for_larger_factors() -> None:
    image = _grid_image(1, 48, 48)
    errors = [float((parse_degradation(f"bicubicdu:{k}")(image, None) - image).pow(2).mean()) for k in (2, 3, 4)]
    assert 0 < errors[0] < errors[1] < errors[2]


def test_range_and_list_forms() -> None:
    assert parse_degradation("bicubicdu:2-4").steps[0].factors == (2, 3, 4)
    assert parse_degradation("bicubicdu:4,2").steps[0].factors == (2, 4)
    for spec in ("bicubicdu:2-4", "bicubicdu:2,3"):
        degradation = parse_degradation(spec)
        assert degradation.scale == 1 and not degradation.deterministic
    assert "{2,3,4}" in parse_degradation("bicubicdu:2-4").describe()


@pytest.mark.parametrize(
    "spec",
    ["bicubicdu", "bicubicdu:1", "bicubicdu:0-3", "bicubicdu:4-2", "bicubicdu:2.5", "bicubicdu:2:3", "bicubicdu:a"],
)
def test_bad_specs_name_the_forms(spec: str) -> None:
    with pytest.raises(ConfigError, match="bicubicdu:K"):
        parse_degradation(spec)


def test_factor_is_drawn_uniformly_per_sample() -> None:
    image = _grid_image(1, 24, 24)
    outputs = {k: parse_degradation(f"bicubicdu:{k}")(image, None) for k in (2, 3, 4)}
    mixed = parse_degradation("bicubicdu:2-4")
    counts: Counter[int] = Counter()
    for seed in range(600):
        out = mixed(image, torch.Generator().manual_seed(seed))
        matches = [k for k, ref in outputs.items() if torch.equal(out, ref)]
        assert len(matches) == 1
        counts[matches[0]] += 1
    # 200 expected each; binomial sd ~11.5, so 160..240 is > 3 sd from a fair draw's mean
    assert set(counts) == {2, 3, 4} and all(160 <= counts[k] <= 240 for k in counts), counts


def test_same_generator_same_sample_and_batches_draw_per_image() -> None:
    mixed = parse_degradation("bicubicdu:2,3,4")
    image = _grid_image(1, 24, 24)
    first = mixed(image, torch.Generator().manual_seed(7))
    assert torch.equal(first, mixed(image, torch.Generator().manual_seed(7)))
    batch = image.expand(16, -1, -1, -1).contiguous()
    out = mixed(batch, torch.Generator().manual_seed(3))
    assert out.shape == batch.shape
    distinct = {tuple(out[i].flatten()[:50].tolist()) for i in range(16)}
    assert len(distinct) > 1  # 16 images with one shared factor would all be equal


def test_chains_with_noise_and_in_a_training_set(tmp_path: Path) -> None:
    from PIL import Image

    from restorekit.data.datasets import Augment, DegradedFolder

    for i in range(3):
        Image.fromarray((torch.rand(40, 44) * 255).byte().numpy(), mode="L").save(tmp_path / f"{i}.png")
    folder = DegradedFolder(tmp_path, "bicubicdu:2-4", scale=1, channels=1, augment=Augment(patch=25), seed=0)
    lq, gt = folder[0]
    assert lq.shape == gt.shape == (1, 25, 25)
    assert not torch.equal(lq, gt)
    assert parse_degradation("bicubicdu:3+awgn:10").scale == 1
