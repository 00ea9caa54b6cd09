"""VapSR / VapSR-S family: tiny forward/backward, exact parameter counts, detection of every preset,
round trips (state dict, BasicSR .pth, safetensors), the dilated-conv fast path against the plain
official graph (no onnxruntime needed), and parity on the official checkpoints from ../shared.

The plain graph is ``benchmarks/reference/vapsr.py``, a transcription of the official
zhoumumu/VapSR ``code/vapsr.py`` with the official module names, so a state dict loads into it
strictly. The paper-number check of the official x4 weights (Set5, within 0.03 dB) lives with the
other evaluation tests (``tests/test_evaluate.py::test_vapsr_x4_reproduces_paper``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from family_checks import assert_detects_and_reproduces, assert_preset_detected
from PIL import Image
from torch import nn

import restorekit
from restorekit import loading
from restorekit.archs import vapsr
from restorekit.complexity import count_params
from restorekit.errors import ConfigError
from restorekit.loading import save_safetensors
from restorekit.model import build_model

REPO = Path(__file__).resolve().parents[1]

TINY_VARIANTS = {
    "x2": vapsr.Config(scale=2, num_feat=8, num_block=2, d_atten=8),
    "x3": vapsr.Config(scale=3, num_feat=8, num_block=1, d_atten=6),
    "x4": vapsr.Config(scale=4, num_feat=8, num_block=2, d_atten=8),
    "s-groups2": vapsr.Config(scale=4, num_feat=8, num_block=1, d_atten=4, conv_groups=2),
    "grey-x2": vapsr.Config(scale=2, num_feat=6, num_block=1, d_atten=5, in_channels=1),
}


def reference_module() -> ModuleType:
    """``benchmarks/reference/vapsr.py`` (not a package the tests can import by name)."""
    path = REPO / "benchmarks" / "reference" / "vapsr.py"
    spec = importlib.util.spec_from_file_location("reference_vapsr", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plain_graph(net: nn.Module) -> nn.Module:
    """The official layer graph carrying ``net``'s weights (strict load: same keys and shapes)."""
    config = net.config
    reference = reference_module().VapSR(
        num_in_ch=config.in_channels,
        num_out_ch=config.in_channels,
        scale=config.scale,
        num_feat=config.num_feat,
        num_block=config.num_block,
        d_atten=config.d_atten,
        conv_groups=config.conv_groups,
    )
    reference.load_state_dict(net.state_dict(), strict=True)
    return reference.eval()


def randomize(net: nn.Module, scale: float = 0.2) -> nn.Module:
    """Perturb every parameter (the pixel norms start at 1/0) so each one matters."""
    with torch.no_grad():
        for param in net.parameters():
            param.mul_(1 + torch.randn_like(param) * scale).add_(torch.randn_like(param) * 0.02)
    return net


# ---------------------------------------------------------------- tier 1: tiny forward/backward


@pytest.mark.parametrize("variant", sorted(TINY_VARIANTS))
def test_tiny_forward_backward(variant: str, device: torch.device) -> None:
    config = TINY_VARIANTS[variant]
    net = randomize(vapsr.build(config)).to(device)
    x = torch.rand(2, config.in_channels, 13, 10, device=device)  # odd, not a multiple of the dilation 3
    y = net(x)
    assert y.shape == (2, config.in_channels, 13 * config.scale, 10 * config.scale)
    assert torch.isfinite(y).all()
    y.pow(2).mean().backward()
    for name, param in net.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, f"{name} gets no gradient"


def test_config_rejects_what_no_official_upsampler_builds() -> None:
    with pytest.raises(ConfigError, match="scale must be 2, 3 or 4"):
        vapsr.Config(scale=5)
    with pytest.raises(ConfigError, match="multiple of conv_groups"):
        vapsr.Config(num_feat=30, conv_groups=4)
    with pytest.raises(ConfigError, match=r"num_block \(0\) must be >= 1"):
        vapsr.Config(num_block=0)


# Exact counts of the official checkpoints (zhoumumu/VapSR VapSR_X{2,3,4}.pth, VapSR-S.pth, counted
# from their tensors; tests/test_loading.py loads the files themselves when ../shared is there).
OFFICIAL_PARAMS = {"vapsr_x2": 329_236, "vapsr_x3": 336_811, "vapsr_x4": 342_220, "vapsr_s": 154_956}


@pytest.mark.parametrize("preset", sorted(OFFICIAL_PARAMS))
def test_preset_parameter_counts(preset: str) -> None:
    with torch.device("meta"):
        net = vapsr.build(vapsr.PRESETS[preset])
    assert count_params(net) == OFFICIAL_PARAMS[preset]
    assert sorted(OFFICIAL_PARAMS) == sorted(vapsr.PRESETS)


# ---------------------------------------------------------------- tier 2: detection and round trips


@pytest.mark.parametrize("preset", sorted(vapsr.PRESETS))
def test_every_preset_is_detected_from_its_keys(preset: str) -> None:
    assert_preset_detected(vapsr, preset)


@pytest.mark.parametrize("variant", sorted(TINY_VARIANTS))
def test_state_dict_round_trip(variant: str) -> None:
    config = TINY_VARIANTS[variant]
    assert_detects_and_reproduces(vapsr, config, randomize(vapsr.build(config)), 11, 14)


@pytest.mark.parametrize("variant", ["x3", "s-groups2"])
def test_file_round_trips(variant: str, tmp_path: Path) -> None:
    config = TINY_VARIANTS[variant]
    model = build_model("vapsr", config)
    randomize(model.net)
    model.eval()
    x = torch.rand(1, 3, 9, 12)
    with torch.no_grad():
        expected = model(x)
    st = save_safetensors(model, tmp_path / "tiny.safetensors")
    # the official layout: BasicSR {"params", "params_ema"}; the EMA weights are the ones to load
    pth = tmp_path / "tiny.pth"
    ema = {k: v.clone() for k, v in model.net.state_dict().items()}
    raw = {k: v + 0.1 if v.is_floating_point() else v.clone() for k, v in ema.items()}
    torch.save({"params": raw, "params_ema": ema}, pth)
    for path in (st, pth):
        loaded = restorekit.load(path)
        assert loaded.family == "vapsr" and loaded.config == config
        with torch.no_grad():
            assert torch.equal(loaded(x), expected), path.name


# ---------------------------------------------------------------- tier 3: fast path vs the plain official graph


@pytest.mark.parametrize(("height", "width"), [(1, 1), (2, 5), (7, 11), (20, 21)])
def test_polyphase_dilated_conv_equals_the_plain_op(height: int, width: int) -> None:
    conv = nn.Conv2d(4, 4, 5, padding=6, groups=4, dilation=3)
    x = torch.randn(2, 4, height, width, requires_grad=True)
    fast = vapsr._dilated_depthwise(x, conv)
    plain = conv(x)
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=0)
    # gradients too: training runs the fast path
    weights = torch.randn_like(plain)
    grads_fast = torch.autograd.grad((fast * weights).sum(), (x, conv.weight, conv.bias))
    grads_plain = torch.autograd.grad((plain * weights).sum(), (x, conv.weight, conv.bias))
    for ours, ref in zip(grads_fast, grads_plain):
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")  # from torch.jit.trace
@pytest.mark.parametrize("variant", sorted(TINY_VARIANTS))
def test_fast_path_equals_the_plain_official_graph(variant: str) -> None:
    net = randomize(vapsr.build(TINY_VARIANTS[variant])).eval()
    reference = plain_graph(net)
    x = torch.rand(2, net.config.in_channels, 17, 10)
    with torch.no_grad():
        ours, ref = net(x), reference(x)
        traced = torch.jit.trace(net, x[:1])(x)  # tracing records the plain dilated conv (the export graph)
    assert ours.shape == ref.shape
    assert ours.is_contiguous()
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(traced, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("preset", "filename"), [("vapsr-x4", "VapSR_X4.pth"), ("vapsr-s", "VapSR-S.pth"),
                                                  ("vapsr-x3", "VapSR_X3.pth")])
def test_official_weights_match_the_plain_official_graph(preset: str, filename: str, shared_weights: Path,
                                                         shared_data: Path) -> None:
    model = restorekit.load(preset)
    raw, _ = loading.read_weights(shared_weights / "vapsr" / filename)
    reference = plain_graph(model.net)
    for key, tensor in reference.state_dict().items():  # the loaded weights are the file's params_ema
        assert torch.equal(tensor, raw["params_ema"][key]), key
    lr = next((shared_data / "sr" / "Set5" / "LR_bicubic" / f"X{model.scale}").glob("baby*.png"))
    with Image.open(lr) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=np.float32)[:40, :36] / 255  # a crop keeps the test quick
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous()
    with torch.inference_mode():
        ours, ref = model(x), reference(x)
    assert ours.shape == (1, 3, 40 * model.scale, 36 * model.scale)
    assert (ref - torch.nn.functional.interpolate(x, scale_factor=model.scale)).abs().mean() > 1e-3
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
