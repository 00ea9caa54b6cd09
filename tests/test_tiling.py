"""Tiled inference equals whole-image inference for every bounded-receptive-field family, with tiny
random models; global-statistics models are flagged and stay close; TTA is the manual x8 mean."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from restorekit.archs import bicubic_pp, hinet, nafnet, rednet, vapsr
from restorekit.errors import RestorekitError
from restorekit.inference import RestoreOptions, TorchBackend, pipeline, receptive_radius, restore_planes
from restorekit.inference.tiling import (
    auto_tile_size,
    axis_weights,
    default_overlap,
    make_plan,
    minimum_tile,
    plan_axis,
    run_tiled,
)
from restorekit.inference.tta import TRANSFORMS, dihedral, ensemble_x8, inverse_dihedral
from restorekit.model import RestorationModel, build_model
from restorekit.tlc import convert_to_local


def _randomise_residual_scales(model: RestorationModel) -> RestorationModel:
    """NAFNet's beta/gamma start at zero (blocks = identity); make them matter."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("beta", "gamma")):
                param.normal_(0.0, 0.5)
    return model


def _tiny(name: str) -> RestorationModel:
    if name == "vapsr":
        return build_model("vapsr", vapsr.Config(scale=2, num_feat=8, num_block=2, d_atten=8))
    if name == "bicubic_pp":
        return build_model("bicubic_pp", bicubic_pp.Config(channels=8))
    if name == "rednet":
        return build_model("rednet", rednet.Config(depth=6, width=8, in_channels=1))
    if name == "hinet":  # without half instance norm: bounded receptive field
        return build_model("hinet", hinet.Config(width=4, depth=3, hin_left=0, hin_right=-1))
    if name == "nafnet_tlc":
        model = _randomise_residual_scales(
            build_model("nafnet", nafnet.Config(width=8, enc_blk_nums=(1, 1), middle_blk_num=1, dec_blk_nums=(1, 1)))
        )
        convert_to_local(model.net, train_size=(16, 16))
        return model
    raise KeyError(name)


@pytest.mark.parametrize("family", ["vapsr", "bicubic_pp", "rednet", "hinet", "nafnet_tlc"])
def test_tiled_equals_whole_image(family: str, device: torch.device) -> None:
    model = _tiny(family).eval().to(device)
    backend = TorchBackend(model)
    radius = receptive_radius(backend)
    assert radius is not None and radius > 0
    overlap = 2 * radius + 8  # >= 2 r: exact
    tile = minimum_tile(overlap, model.alignment) + 2 * model.alignment
    # odd sizes: the last tile of a row is not a multiple of the alignment
    height, width = tile + 17, 2 * tile + 5
    pixels = np.random.rand(height, width, model.in_channels).astype(np.float32)
    whole, _ = restore_planes(pixels, None, backend, RestoreOptions(tile=0))
    plan = make_plan(height, width, model.scale, tile, overlap, model.alignment, radius)
    assert len(plan.rows) > 1 and len(plan.cols) > 2
    tiled, _ = restore_planes(pixels, None, backend, RestoreOptions(tile=tile, tile_overlap=overlap))
    assert tiled.shape == whole.shape == (height * model.scale, width * model.scale, model.in_channels)
    assert np.abs(tiled - whole).max() < 1e-4


def test_tiles_start_on_the_alignment_grid_and_cover_the_axis() -> None:
    for length, tile, overlap, alignment in [(100, 32, 8, 1), (203, 64, 20, 16), (64, 64, 8, 16), (65, 64, 8, 16)]:
        ranges = plan_axis(length, tile, overlap, alignment)
        assert ranges[0][0] == 0 and ranges[-1][1] == length
        assert all(start % alignment == 0 for start, _ in ranges)
        for (s0, e0), (s1, _) in itertools.pairwise(ranges):
            assert s1 > s0 and e0 - s1 >= min(overlap, tile - alignment)


def test_blending_weights_sum_to_one_and_skip_the_margin() -> None:
    ranges = plan_axis(120, 40, 16, 1)
    weights = axis_weights(ranges, scale=2, discard=4, ramp=8)
    total = np.zeros(240)
    for w, (start, end) in zip(weights, ranges):
        total[start * 2 : end * 2] += w
        if start > 0:
            assert np.all(w[: 4 * 2] == 0)  # within the receptive radius of an inner edge
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_global_statistics_models_are_flagged_and_close(device: torch.device) -> None:
    config = nafnet.Config(width=8, enc_blk_nums=(1, 1), middle_blk_num=1, dec_blk_nums=(1, 1))
    model = _randomise_residual_scales(build_model("nafnet", config)).eval().to(device)
    backend = TorchBackend(model)
    assert model.global_statistics and receptive_radius(backend) is None
    assert build_model("hinet", hinet.Config(width=4, depth=3)).global_statistics
    assert not build_model("hinet", hinet.Config(width=4, depth=3, hin_left=0, hin_right=-1)).global_statistics
    pixels = np.random.rand(64, 80, 3).astype(np.float32)
    whole, _ = restore_planes(pixels, None, backend, RestoreOptions(tile=0))
    tiled, _ = restore_planes(pixels, None, backend, RestoreOptions(tile=48, tile_overlap=16))
    difference = np.abs(tiled - whole).max()
    assert 0 < difference < 0.05  # approximate, not exact: docs/restore.md reports measured values


def test_integer_output_keeps_dtype_and_matches_rounded_float(device: torch.device) -> None:
    model = _tiny("vapsr").eval().to(device)
    backend = TorchBackend(model)
    pixels = (np.random.rand(40, 52, 3) * 65535).astype(np.uint16)
    out, _ = restore_planes(pixels, None, backend, RestoreOptions(tile=0))
    reference, _ = restore_planes(pixels.astype(np.float32) / 65535, None, backend, RestoreOptions(tile=0))
    assert out.dtype == np.uint16
    expected = np.clip(np.rint(reference * 65535), 0, 65535)
    assert np.abs(out.astype(np.float64) - expected).max() <= 1


def test_band_accumulation_matches_direct_sum() -> None:
    """run_tiled with an identity 'model' reproduces the input exactly through many bands."""
    pixels = (np.random.rand(97, 45, 3) * 255).astype(np.uint8)
    plan = make_plan(97, 45, 1, 20, 6, 1, 2)
    out = run_tiled(pixels, lambda x: x, plan, torch.device("cpu"))
    np.testing.assert_array_equal(out, pixels)


def test_tta_equals_manual_average(device: torch.device) -> None:
    model = _tiny("vapsr").eval().to(device)
    backend = TorchBackend(model)
    x = torch.rand(1, 3, 12, 17, device=device)
    manual = torch.stack([inverse_dihedral(backend(dihedral(x, k, f)), k, f) for k, f in TRANSFORMS]).mean(0)
    torch.testing.assert_close(ensemble_x8(backend, x), manual, rtol=0, atol=1e-6)
    for k, flip in TRANSFORMS:  # the inverse really inverts
        assert torch.equal(inverse_dihedral(dihedral(x, k, flip), k, flip), x)
    assert len(set(TRANSFORMS)) == 8
    pixels = x[0].permute(1, 2, 0).cpu().numpy()
    out, _ = restore_planes(pixels, None, backend, RestoreOptions(tile=0, tta=True))
    np.testing.assert_allclose(out, manual[0].permute(1, 2, 0).cpu().numpy(), atol=1e-6)


def test_a_tile_too_small_for_the_overlap_is_refused(device: torch.device, monkeypatch: pytest.MonkeyPatch) -> None:
    """QA: --tile 32 with a 142 px exact overlap planned 1089 one-pixel-step tiles; now a clear error."""
    model = _tiny("vapsr").eval().to(device)
    backend = TorchBackend(model)
    overlap = default_overlap(receptive_radius(backend), model.alignment)
    smallest = minimum_tile(overlap, model.alignment)
    pixels = np.random.rand(smallest, smallest + 3, 3).astype(np.float32)
    planned: list[int] = []  # tile count of every plan that was made
    real_plan = pipeline.make_plan

    def counting_plan(*args: object) -> object:
        plan = real_plan(*args)
        planned.append(plan.count)
        return plan

    monkeypatch.setattr(pipeline, "make_plan", counting_plan)
    with pytest.raises(RestorekitError, match=f"--tile {smallest - 1} is too small for this model's exact overlap "
                       f"of {overlap} px: use --tile >= {smallest}, --tile 0"):
        restore_planes(pixels, None, backend, RestoreOptions(tile=smallest - 1))
    with pytest.raises(RestorekitError, match="--tile 16 is too small for --tile-overlap 20: use --tile >= 41"):
        restore_planes(pixels, None, backend, RestoreOptions(tile=16, tile_overlap=20))
    assert planned == []  # refused before any tile ran
    # the image fits in the tile: whole image, whatever the overlap
    whole, _ = restore_planes(pixels, None, backend, RestoreOptions(tile=0))
    fits, _ = restore_planes(pixels, None, backend, RestoreOptions(tile=smallest + 3))
    np.testing.assert_array_equal(fits, whole)
    # the smallest tile that holds the exact overlap: a few tiles, exact
    tiled, _ = restore_planes(pixels, None, backend, RestoreOptions(tile=smallest))
    assert 1 < planned[-1] <= 4 and np.abs(tiled - whole).max() < 1e-4
    # a smaller overlap given explicitly is the user's (inexact) choice and is honoured
    restore_planes(pixels, None, backend, RestoreOptions(tile=16, tile_overlap=7))
    assert planned[-1] == len(plan_axis(smallest, 16, 7)) * len(plan_axis(smallest + 3, 16, 7))


def test_automatic_tiles_hold_the_real_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    """QA: _tile_size passed overlap 0 to auto_tile_size, so tiny memory gave tiles below 2 x overlap."""
    model = _tiny("vapsr").eval()
    backend = TorchBackend(model)
    monkeypatch.setattr(pipeline, "receptive_radius", lambda _backend: 100)
    monkeypatch.setattr(pipeline, "available_memory", lambda _device: 1)  # almost no memory
    overlap = default_overlap(100, model.alignment)
    tile = pipeline._tile_size(backend, RestoreOptions(), 3, False, 600, 600)
    assert tile >= minimum_tile(overlap, model.alignment) + 64
    for alignment in (1, 2, 16, 32):
        assert auto_tile_size(1e9, 1, torch.device("cpu"), 300, alignment) >= minimum_tile(300, alignment)


def test_out_of_memory_stops_when_halving_cannot_shrink_the_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Halving below the minimum tile was undone by the planner: the same OOM again, forever."""
    model = _tiny("vapsr").eval()
    backend = TorchBackend(model)
    monkeypatch.setattr(pipeline, "receptive_radius", lambda _backend: 100)
    monkeypatch.setattr(pipeline, "_tile_size", lambda *args: 4096)
    calls = {"n": 0}

    def out_of_memory(x: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] > 5:
            raise AssertionError("still retrying the same tiles")
        raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")

    monkeypatch.setattr(model.net, "forward", out_of_memory)
    pixels = np.random.rand(40, 600, 3).astype(np.float32)
    with pytest.raises(RestorekitError, match="out of memory"):
        restore_planes(pixels, None, backend, RestoreOptions())
    assert calls["n"] == 1  # 600 px halved is below the 451 px minimum tile: no pointless retry


def test_tiling_measurements_follow_in_place_conversions() -> None:
    """The radius cache notices an in-place TLC conversion (pooling layers swapped) of the same model object."""
    from restorekit.archs import nafnet
    from restorekit.inference import TorchBackend
    from restorekit.inference.tiling import activation_bytes_per_pixel, receptive_radius
    from restorekit.model import build_model
    from restorekit.tlc import convert_to_local

    model = build_model("nafnet", nafnet.Config(width=8, enc_blk_nums=(1,), middle_blk_num=1, dec_blk_nums=(1,))).eval()
    backend = TorchBackend(model, "fp32")
    assert receptive_radius(backend) is None  # global average pooling: unbounded
    before = activation_bytes_per_pixel(model.net, 3, model.alignment, torch.device("cpu"))
    convert_to_local(model.net, train_size=(32, 32))
    radius = receptive_radius(backend)
    assert radius is not None and radius > 0  # measured again after the conversion, not the cached None
    assert receptive_radius(backend) == radius  # and cached from then on
    assert activation_bytes_per_pixel(model.net, 3, model.alignment, torch.device("cpu")) == pytest.approx(before)
