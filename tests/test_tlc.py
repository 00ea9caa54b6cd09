"""TLC local pooling: equality with a plain re-implementation of the official AvgPool2d (exact and
fast_imp), the global-mean case, the kernel rule fixed by the dummy forward, and the effect of the
conversion on tiny NAFNet / Baseline nets (unchanged up to the training size, different beyond
1.5x of it, same state-dict keys)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

import restorekit
from restorekit.archs import nafnet
from restorekit.model import RestorationModel
from restorekit.tlc import LocalAvgPool2d, convert_to_local

TINY = nafnet.Config(width=8, enc_blk_nums=(1, 1), middle_blk_num=1, dec_blk_nums=(1, 1))
TINY_BASELINE = dataclasses.replace(TINY, block="baseline", dw_expand=1)


def _replicate_pad(out: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Place ``out`` centred in H x W (extra row/column at the bottom/right), repeating its edges."""
    top = (height - out.shape[-2]) // 2
    left = (width - out.shape[-1]) // 2
    rows = [min(max(i - top, 0), out.shape[-2] - 1) for i in range(height)]
    cols = [min(max(j - left, 0), out.shape[-1] - 1) for j in range(width)]
    return out[..., rows, :][..., cols]


def reference_local_pool(x: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """The official exact AvgPool2d, written with explicit loops over windows in float64."""
    height, width = x.shape[-2:]
    if kernel[0] >= height and kernel[1] >= width:
        return x.mean(dim=(-2, -1), keepdim=True)
    k_h, k_w = min(height, kernel[0]), min(width, kernel[1])
    x64 = x.double()
    out = torch.empty(*x.shape[:-2], height - k_h + 1, width - k_w + 1, dtype=torch.float64)
    for i in range(out.shape[-2]):
        for j in range(out.shape[-1]):
            out[..., i, j] = x64[..., i : i + k_h, j : j + k_w].mean(dim=(-2, -1))
    return _replicate_pad(out, height, width).to(x.dtype)


def reference_fast_pool(x: torch.Tensor, kernel: tuple[int, int], max_ratio: tuple[int, int]) -> torch.Tensor:
    """The official fast_imp: subsample, mean of windows ending at each (i, j) >= (k, k), upsample."""
    height, width = x.shape[-2:]
    if kernel[0] >= height and kernel[1] >= width:
        return x.mean(dim=(-2, -1), keepdim=True)
    r_h = min(max_ratio[0], max(r for r in (1, 2, 3, 4, 5) if height % r == 0))
    r_w = min(max_ratio[1], max(r for r in (1, 2, 3, 4, 5) if width % r == 0))
    sub = x.double()[..., ::r_h, ::r_w]
    k_h, k_w = min(sub.shape[-2] - 1, kernel[0] // r_h), min(sub.shape[-1] - 1, kernel[1] // r_w)
    out = torch.empty(*x.shape[:-2], sub.shape[-2] - k_h, sub.shape[-1] - k_w, dtype=torch.float64)
    for i in range(out.shape[-2]):
        for j in range(out.shape[-1]):
            # window of k_h x k_w ending at sub[i + k_h, j + k_w] (the integral image has no zero row)
            out[..., i, j] = sub[..., i + 1 : i + k_h + 1, j + 1 : j + k_w + 1].mean(dim=(-2, -1))
    out = out.repeat_interleave(r_h, dim=-2).repeat_interleave(r_w, dim=-1)
    return _replicate_pad(out, height, width).to(x.dtype)


@pytest.mark.parametrize(
    ("shape", "kernel"),
    [
        ((7, 9), (3, 4)),  # odd leftovers: padding splits 2/2 and 2/3
        ((8, 8), (8, 3)),  # window spans the full height only
        ((6, 10), (9, 4)),  # window taller than the map: clipped to H, local along W
        ((5, 6), (1, 1)),  # 1x1 window: identity
    ],
)
def test_exact_pool_matches_plain_reference(shape: tuple[int, int], kernel: tuple[int, int]) -> None:
    x = torch.randn(2, 3, *shape)
    pool = LocalAvgPool2d(base_size=(0, 0), train_size=(1, 1), kernel_size=kernel)
    out = pool(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, reference_local_pool(x, kernel), rtol=0, atol=1e-5)


def test_global_mean_when_window_covers_the_map() -> None:
    x = torch.randn(2, 3, 6, 7)
    for kernel in [(6, 7), (10, 20)]:
        out = LocalAvgPool2d(base_size=(0, 0), train_size=(1, 1), kernel_size=kernel)(x)
        assert out.shape == (2, 3, 1, 1)
        torch.testing.assert_close(out, nn.AdaptiveAvgPool2d(1)(x))


@pytest.mark.parametrize("shape", [(20, 30), (21, 16), (17, 13)])
def test_fast_imp_matches_plain_reference(shape: tuple[int, int]) -> None:
    pool = LocalAvgPool2d(base_size=(12, 12), train_size=(8, 8), fast_imp=True)
    pool(torch.zeros(1, 1, 4, 4))  # the "dummy forward": kernel 4*12//8 = 6, ratio cap 5*4//8 = 2
    assert pool.kernel_size == (6, 6) and pool.max_ratio == (2, 2)
    x = torch.randn(1, 2, *shape)
    out = pool(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, reference_fast_pool(x, (6, 6), (2, 2)), rtol=0, atol=1e-5)


def test_exact_pool_is_accurate_on_large_maps() -> None:
    # Features with a large offset are where a whole-image float32 integral image loses digits.
    x = torch.rand(1, 2, 720, 1280) + 100.0
    out = LocalAvgPool2d(base_size=(0, 0), train_size=(1, 1), kernel_size=(384, 384))(x)
    # the same box means in float64 (cumulative sums are exact enough at this precision)
    s = torch.nn.functional.pad(x.double().cumsum(-1).cumsum(-2), (1, 0, 1, 0))
    box = (s[..., 384:, 384:] - s[..., :-384, 384:] - s[..., 384:, :-384] + s[..., :-384, :-384]) / 384**2
    expected = _replicate_pad(box, 720, 1280)
    # measured: 1.6e-5 here; the official whole-image float32 integral image is off by 1.0e-4
    assert (out.double() - expected).abs().max().item() < 4e-5


def test_half_precision_accumulates_in_float32() -> None:
    x = torch.rand(1, 2, 40, 40)
    pool = LocalAvgPool2d(base_size=(0, 0), train_size=(1, 1), kernel_size=(16, 16))
    out = pool(x.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), pool(x), rtol=0, atol=1e-2)


def _local_pools(net: nn.Module) -> list[LocalAvgPool2d]:
    return [m for m in net.modules() if isinstance(m, LocalAvgPool2d)]


def _randomized(config: nafnet.Config) -> nn.Module:
    net = nafnet.build(config)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.endswith(("beta", "gamma")):  # zero at init: the attention would not matter
                param.normal_(0, 0.5)
    return net.eval()


@pytest.mark.parametrize("config", [TINY, TINY_BASELINE], ids=["nafnet", "baseline"])
def test_converted_net_is_global_up_to_train_size_and_local_beyond(config: nafnet.Config) -> None:
    net = _randomized(config)
    keys = list(net.state_dict())
    converted = convert_to_local(copy.deepcopy(net), train_size=(32, 32))
    assert list(converted.state_dict()) == keys
    blocks = sum(config.enc_blk_nums) + config.middle_blk_num + sum(config.dec_blk_nums)
    pools = _local_pools(converted)
    assert len(pools) == blocks
    assert not any(isinstance(m, nn.AdaptiveAvgPool2d) for m in converted.modules())
    # kernel = feature size at the 32x32 training input * 48 // 32, per level
    assert sorted({p.kernel_size for p in pools}) == [(12, 12), (24, 24), (48, 48)]
    local, plain = RestorationModel(converted, nafnet.NAME, config), RestorationModel(net, nafnet.NAME, config)
    with torch.no_grad():
        for shape in [(32, 32), (24, 19)]:  # <= train size (padded to 24x24): every window covers its map
            x = torch.rand(1, 3, *shape)
            assert torch.equal(local(x), plain(x)), shape
        x = torch.rand(1, 3, 64, 80)  # > 1.5x train size: level-0 windows are local
        assert (local(x) - plain(x)).abs().max() > 1e-4


def test_convert_matches_reference_pool_inside_the_net() -> None:
    net = convert_to_local(_randomized(TINY), train_size=(16, 16))
    reference = copy.deepcopy(net)

    class ReferencePool(nn.Module):
        def __init__(self, kernel: tuple[int, int]) -> None:
            super().__init__()
            self.kernel = kernel

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return reference_local_pool(x, self.kernel)

    for block in [*reference.encoders, reference.middle_blks, *reference.decoders]:
        for b in block:
            b.sca[0] = ReferencePool(b.sca[0].kernel_size)
    x = torch.rand(1, 3, 40, 36)
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference(x), rtol=0, atol=1e-5)


def test_convert_keeps_mode_and_is_idempotent() -> None:
    net = nafnet.build(TINY).train()
    convert_to_local(net, train_size=(32, 32))
    assert net.training
    kernels = [p.kernel_size for p in _local_pools(net)]
    convert_to_local(net, train_size=(64, 64))  # nothing left to replace: windows stay
    assert [p.kernel_size for p in _local_pools(net)] == kernels


def test_only_global_pools_are_replaced() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(2), nn.AdaptiveAvgPool2d((1, 1)))
    convert_to_local(net, train_size=(16, 16))
    assert isinstance(net[1], nn.AdaptiveAvgPool2d)
    assert isinstance(net[2], LocalAvgPool2d) and net[2].kernel_size == (3, 3)  # 2x2 map * 24 // 16


def test_load_with_tlc(tmp_path: Path) -> None:
    path = tmp_path / "tiny.pth"
    torch.save({"params": _randomized(TINY).state_dict()}, path)
    plain = restorekit.load(path)
    local = restorekit.load(path, tlc=True)  # no preset: 256x256 training crops assumed
    assert not _local_pools(plain.net)
    assert {p.kernel_size for p in _local_pools(local.net)} == {(384, 384), (192, 192), (96, 96)}
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(local(x), plain(x))
