"""RED-Net: tiny-config forward/backward, residual learning, skip placement, detection and round
trips, parity with an independent functional implementation of the released RED30 prototxt (deconvs
computed as flipped, transposed convolutions), and parameter counts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from family_checks import assert_detects_and_reproduces

import restorekit
from restorekit.archs import FAMILIES, rednet
from restorekit.complexity import count_params
from restorekit.convert import save_safetensors
from restorekit.errors import ConfigError, DetectionError
from restorekit.model import build_model

StateDict = dict[str, torch.Tensor]
TINY30 = rednet.Config(depth=30, width=8)
TINY10 = rednet.Config(depth=10, width=8, skip_every=0)


# ---------------------------------------------------------------- tier 1: tiny forward/backward


@pytest.mark.parametrize("config", [TINY10, TINY30, rednet.Config(depth=6, width=4, in_channels=3)])
def test_forward_backward_every_parameter_gets_a_gradient(config: rednet.Config, device: torch.device) -> None:
    net = rednet.build(config).to(device).train()
    x = torch.rand(2, config.in_channels, 9, 13, device=device)
    y = net(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    for name, param in net.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_output_is_input_plus_predicted_residual() -> None:
    net = rednet.build(TINY30).eval()
    with torch.no_grad():
        net.deconvs[-1].weight.zero_()
        net.deconvs[-1].bias.fill_(0.25)
    x = torch.rand(1, 1, 7, 5)
    with torch.no_grad():
        assert torch.allclose(net(x), x + 0.25)


def test_skips_follow_the_released_red30_layout() -> None:
    # 1-based prototxt pairs d1+c14, d3+c12, ..., d13+c2, as 0-based {deconv: conv}.
    assert rednet.PRESETS["red30"].skips() == {0: 13, 2: 11, 4: 9, 6: 7, 8: 5, 10: 3, 12: 1}
    assert rednet.PRESETS["red10"].skips() == {}
    assert rednet.PRESETS["red20"].skips() == {0: 8, 2: 6, 4: 4, 6: 2, 8: 0}


def test_skips_change_the_output() -> None:
    with_skips = rednet.build(TINY30).eval()
    without = rednet.build(rednet.Config(depth=30, width=8, skip_every=0)).eval()
    without.load_state_dict(with_skips.state_dict())
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(with_skips(x), without(x))


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="even"):
        rednet.Config(depth=15)
    with pytest.raises(ConfigError, match="skip_every"):
        rednet.Config(skip_every=-1)
    assert rednet.Config().alignment == 1 and rednet.Config().scale == 1


# ---------------------------------------------------------------- tier 2: detection and round trips


@pytest.mark.parametrize("config", [TINY10, rednet.Config(depth=20, width=6, in_channels=3)])
def test_detect_infers_the_config_and_reproduces_the_output(config: rednet.Config) -> None:
    assert_detects_and_reproduces(rednet, config, rednet.build(config), 10, 7)


def test_safetensors_keeps_a_config_that_weights_cannot_show(tmp_path: Path) -> None:
    # RED30 without skips has the same tensors as RED30: only the safetensors metadata knows.
    config = rednet.Config(depth=30, width=4, skip_every=0)
    model = build_model("rednet", config).eval()
    x = torch.rand(1, 1, 6, 11)
    with torch.no_grad():
        expected = model(x)
    loaded = restorekit.load(save_safetensors(model, tmp_path / "red.safetensors"))
    assert loaded.family == "rednet" and loaded.config == config
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)
    pth = tmp_path / "red.pth"
    torch.save(model.net.state_dict(), pth)
    assert restorekit.load(pth).config == rednet.Config(depth=30, width=4, skip_every=2)  # paper's rule


def test_only_rednet_claims_a_rednet_state_dict_and_not_others() -> None:
    state = rednet.build(TINY30).state_dict()
    assert [name for name, family in FAMILIES.items() if family.matches(state)] == ["rednet"]
    assert not rednet.matches({**state, "extra.weight": torch.zeros(1)})
    del state["deconvs.14.weight"], state["deconvs.14.bias"]
    assert not rednet.matches(state)


def test_mismatched_output_channels_are_a_readable_error() -> None:
    state = rednet.build(rednet.Config(depth=4, width=4)).state_dict()
    state["deconvs.1.weight"] = torch.zeros(4, 3, 3, 3)
    with pytest.raises(DetectionError, match="last deconv outputs 3 channels"):
        rednet.infer_config(state)


def test_zoo_preset_points_at_red30() -> None:
    assert restorekit.get_preset("red30-gray").config == rednet.PRESETS["red30"]


# ---------------------------------------------------------------- tier 3: functional reference


def reference_rednet(sd: StateDict, x: torch.Tensor, skips: dict[int, int]) -> torch.Tensor:
    """The released prototxt (ved27/RED-net ``model/REDNet_ch1.prototxt``) with 1-based layer numbers;
    ``skips`` maps deconv j -> conv i. Each deconvolution is computed as a convolution with the kernel
    transposed (in/out) and flipped (H, W), the identity that holds for stride 1, pad 1, which is also
    how a Caffe blob maps onto a Conv2d."""
    n = sum(1 for k in sd if k.startswith("convs.") and k.endswith(".weight"))
    conv_out: dict[int, torch.Tensor] = {}
    h = x
    for i in range(1, n + 1):
        h = F.relu(F.conv2d(h, sd[f"convs.{i - 1}.weight"], sd[f"convs.{i - 1}.bias"], padding=1))
        conv_out[i] = h
    for j in range(1, n + 1):
        kernel = sd[f"deconvs.{j - 1}.weight"].transpose(0, 1).flip(2, 3)
        h = F.conv2d(h, kernel, sd[f"deconvs.{j - 1}.bias"], padding=1)
        if j == n:
            break
        h = F.relu(h)
        if j in skips:
            h = F.relu(h + conv_out[skips[j]])
    return x + h


RED30_SKIPS = {1: 14, 3: 12, 5: 10, 7: 8, 9: 6, 11: 4, 13: 2}  # the prototxt's Eltwise SUM layers residual1..7


@pytest.mark.parametrize(("config", "skips"), [(TINY10, {}), (TINY30, RED30_SKIPS)])
def test_matches_independent_functional_reference(config: rednet.Config, skips: dict[int, int]) -> None:
    net = rednet.build(config).eval()
    x = torch.rand(2, 1, 17, 12)
    with torch.no_grad():
        diff = (net(x) - reference_rednet(net.state_dict(), x, skips)).abs().max().item()
    assert diff <= 1e-5


# ---------------------------------------------------------------- official configurations


@pytest.mark.parametrize(
    ("preset", "params"),
    [
        ("red30", 4_134_785),  # released prototxt: 128 channels, 1 input channel
        ("red30_w64", 1_035_201),  # the 64 feature maps of the paper text (p. 3)
        ("red30_rgb", 4_139_395),
        ("red20", 2_658_945),
        ("red10", 1_183_105),
    ],
)
def test_preset_parameter_counts(preset: str, params: int) -> None:
    with torch.device("meta"):
        net = rednet.build(rednet.PRESETS[preset])
    assert count_params(net) == params
