"""HINet: tiny-config forward/backward, any input size, detection and round trips, the HIN-range
mismatch of the official checkpoints (HINet issues #8/#13), parity with an independent functional
implementation written from the official megvii-model/HINet ``basicsr/models/archs/hinet_arch.py``, and
the parameter counts of the official configurations."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from family_checks import assert_detects_and_reproduces

import restorekit
from restorekit import loading
from restorekit.archs import FAMILIES, hinet
from restorekit.complexity import count_params
from restorekit.errors import ConfigError, DetectionError
from restorekit.loading import save_safetensors
from restorekit.model import build_model

TINY = hinet.Config(width=4, depth=3, hin_left=0, hin_right=2)
StateDict = dict[str, torch.Tensor]


def _randomize_norms(net: torch.nn.Module) -> None:
    """Default init leaves the HIN affine at weight 1 / bias 0; move them so parity tests see them."""
    with torch.no_grad():
        for name, param in net.named_parameters():
            if ".norm." in name:
                param.add_(torch.randn_like(param) * 0.3)


# ---------------------------------------------------------------- tier 1: tiny forward/backward


def test_forward_backward_every_parameter_gets_a_gradient(device: torch.device) -> None:
    net = hinet.build(TINY).to(device).train()
    x = torch.rand(2, 3, 12, 8, device=device)  # aligned (4), as training patches are
    out_1, out_2 = net(x)
    assert out_1.shape == out_2.shape == x.shape
    assert torch.isfinite(out_1).all() and torch.isfinite(out_2).all()
    (out_1.square().mean() + out_2.square().mean()).backward()  # HINet's loss covers both stages
    for name, param in net.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_train_mode_returns_both_stages_eval_mode_the_final_image(device: torch.device) -> None:
    net = hinet.build(TINY).to(device)
    x = torch.rand(1, 3, 8, 8, device=device)
    with torch.no_grad():
        stages = net.train()(x)
        final = net.eval()(x)
    assert isinstance(stages, list) and len(stages) == 2
    assert isinstance(final, torch.Tensor)
    assert torch.allclose(final, stages[1], atol=1e-6)
    assert not torch.allclose(stages[0], stages[1])
    wrapped = build_model("hinet", TINY).to(device).eval()
    wrapped.net.load_state_dict(net.state_dict())
    with torch.no_grad():
        assert torch.allclose(wrapped(x), final, atol=1e-6)


@pytest.mark.parametrize("size", [(19, 23), (5, 7), (16, 16), (1, 33)])
def test_any_input_size_gives_same_size_output(size: tuple[int, int], device: torch.device) -> None:
    # depth 5 pads to 16: (5, 7) is too small to reflect (falls back to replication) and (16, 16)
    # reaches a 1x1 map at the bottom level, where plain instance norm is undefined.
    net = build_model("hinet", hinet.Config(width=4)).to(device).eval()
    x = torch.rand(1, 3, *size, device=device)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="even"):
        hinet.Config(width=5)
    hinet.Config(width=5, hin_left=0, hin_right=-1)  # no HIN: odd width is fine
    with pytest.raises(ConfigError, match="depth"):
        hinet.Config(depth=1)
    assert hinet.Config(depth=4).alignment == 8
    assert hinet.PRESETS["hinet_sidd_1x"].alignment == 16


# ---------------------------------------------------------------- tier 2: detection and round trips


def test_detect_infers_the_config_and_reproduces_the_output() -> None:
    config = hinet.Config(width=6, depth=4, hin_left=1, hin_right=2)
    assert_detects_and_reproduces(hinet, config, hinet.build(config), 13, 9)


@pytest.mark.parametrize(("left", "right"), [(0, 4), (3, 4), (0, -1)])
def test_hin_range_is_detected_from_norm_keys(left: int, right: int) -> None:
    config = hinet.Config(width=4, hin_left=left, hin_right=right)
    found = hinet.infer_config(hinet.build(config).state_dict())
    assert (found.hin_left, found.hin_right) == (left, right)


def test_safetensors_and_pth_round_trips(tmp_path: Path) -> None:
    config = hinet.Config(width=4, depth=3, hin_left=1, hin_right=1)
    model = build_model("hinet", config).eval()
    x = torch.rand(1, 3, 11, 6)
    with torch.no_grad():
        expected = model(x)
    st_path = save_safetensors(model, tmp_path / "hinet.safetensors")
    pth_path = tmp_path / "hinet.pth"
    torch.save({"params": model.net.state_dict()}, pth_path)  # BasicSR's wrapper
    for path in (st_path, pth_path):
        loaded = restorekit.load(path)
        assert loaded.family == "hinet" and loaded.config == config
        with torch.no_grad():
            assert torch.equal(loaded(x), expected)


def _gopro_layout_file(tmp_path: Path) -> Path:
    net = hinet.build(hinet.Config(width=8, hin_left=3, hin_right=4))
    path = tmp_path / "HINet-GoPro-like.pth"
    torch.save({"params": net.state_dict()}, path)
    return path


def test_gopro_layout_with_sidd_preset_is_a_readable_error(tmp_path: Path) -> None:
    path = _gopro_layout_file(tmp_path)
    with pytest.raises(DetectionError, match=r"hin_left=3 \(expected 0\)") as info:
        restorekit.load(path, preset="hinet-sidd-1x")
    assert str(path) in str(info.value)


def test_gopro_layout_without_preset_autodetects_hin_3_to_4(tmp_path: Path) -> None:
    model = restorekit.load(_gopro_layout_file(tmp_path))
    assert (model.config.hin_left, model.config.hin_right) == (3, 4)
    assert [name for name, _ in model.net.named_parameters() if name.endswith("norm.weight")] == [
        "down_path_1.3.norm.weight",
        "down_path_1.4.norm.weight",
        "down_path_2.3.norm.weight",
        "down_path_2.4.norm.weight",
    ]


def test_strict_load_into_wrong_hin_layout_names_the_norm_keys() -> None:
    gopro_state = hinet.build(hinet.Config(width=4, hin_left=3, hin_right=4)).state_dict()
    sidd_net = hinet.build(hinet.Config(width=4, hin_left=0, hin_right=4))
    with pytest.raises(DetectionError, match=r"missing 12 .*down_path_1\.0\.norm\.(bias|weight)"):
        loading.load_strict(sidd_net, gopro_state, "hinet", source="gopro.pth")


def test_non_contiguous_hin_levels_are_rejected() -> None:
    state = hinet.build(hinet.Config(width=4, depth=3, hin_left=0, hin_right=2)).state_dict()
    for stage in (1, 2):
        del state[f"down_path_{stage}.1.norm.weight"], state[f"down_path_{stage}.1.norm.bias"]
    with pytest.raises(DetectionError, match=r"levels \[0, 2\]"):
        hinet.infer_config(state)


def test_only_hinet_claims_a_hinet_state_dict() -> None:
    state = hinet.build(TINY).state_dict()
    assert [name for name, family in FAMILIES.items() if family.matches(state)] == ["hinet"]


# ---------------------------------------------------------------- tier 3: functional reference


def _conv(sd: StateDict, name: str, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
    weight = sd[name + ".weight"]
    return F.conv2d(x, weight, sd.get(name + ".bias"), stride=stride, padding=weight.shape[-1] // 2)


def _ref_block(
    sd: StateDict, prefix: str, x: torch.Tensor, slope: float, enc: torch.Tensor | None = None,
    dec: torch.Tensor | None = None,
) -> torch.Tensor:
    """Official ``UNetConvBlock.forward``: conv_1 -> HIN on the first half -> LReLU -> conv_2 -> LReLU
    -> + identity (+ CSFF)."""
    y = _conv(sd, prefix + ".conv_1", x)
    if prefix + ".norm.weight" in sd:
        gamma, beta = sd[prefix + ".norm.weight"], sd[prefix + ".norm.bias"]
        half = gamma.numel()
        a = y[:, :half]
        mean = a.mean(dim=(2, 3), keepdim=True)
        var = ((a - mean) ** 2).mean(dim=(2, 3), keepdim=True)
        a = (a - mean) / torch.sqrt(var + 1e-5) * gamma[None, :, None, None] + beta[None, :, None, None]
        y = torch.cat([a, y[:, half:]], dim=1)
    y = F.leaky_relu(y, slope)
    y = F.leaky_relu(_conv(sd, prefix + ".conv_2", y), slope)
    y = y + _conv(sd, prefix + ".identity", x)
    if enc is not None and dec is not None:
        y = y + _conv(sd, prefix + ".csff_enc", enc) + _conv(sd, prefix + ".csff_dec", dec)
    return y


def reference_hinet(sd: StateDict, image: torch.Tensor, depth: int, slope: float = 0.2) -> list[torch.Tensor]:
    """Official ``HINet.forward`` (two U-Nets joined by SAM and CSFF), reading the state dict directly
    (no restorekit modules)."""
    up_levels = list(reversed(range(depth - 1)))  # up_path index k works on level up_levels[k]

    def unet(stage: int, feat: torch.Tensor, csff: tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]] | None):
        enc: dict[int, torch.Tensor] = {}
        for level in range(depth):
            prefix = f"down_path_{stage}.{level}"
            if level < depth - 1:
                extra = (csff[0][level], csff[1][level]) if csff is not None else (None, None)
                enc[level] = _ref_block(sd, prefix, feat, slope, *extra)
                feat = F.conv2d(enc[level], sd[prefix + ".downsample.weight"], None, stride=2, padding=1)
            else:
                feat = _ref_block(sd, prefix, feat, slope)
        dec: dict[int, torch.Tensor] = {}
        for k, level in enumerate(up_levels):
            prefix = f"up_path_{stage}.{k}"
            up = F.conv_transpose2d(feat, sd[prefix + ".up.weight"], sd[prefix + ".up.bias"], stride=2)
            bridge = _conv(sd, f"skip_conv_{stage}.{k}", enc[level])
            feat = _ref_block(sd, prefix + ".conv_block", torch.cat([up, bridge], dim=1), slope)
            dec[level] = feat
        return feat, enc, dec

    feat_1, enc_1, dec_1 = unet(1, _conv(sd, "conv_01", image), None)
    out_1 = _conv(sd, "sam12.conv2", feat_1) + image
    sam = _conv(sd, "sam12.conv1", feat_1) * torch.sigmoid(_conv(sd, "sam12.conv3", out_1)) + feat_1
    start = _conv(sd, "cat12", torch.cat([_conv(sd, "conv_02", image), sam], dim=1))
    feat_2, _, _ = unet(2, start, (enc_1, dec_1))
    out_2 = _conv(sd, "last", feat_2) + image
    return [out_1, out_2]


@pytest.mark.parametrize(("left", "right"), [(0, 4), (3, 4)])
def test_matches_independent_functional_reference(left: int, right: int) -> None:
    net = hinet.build(hinet.Config(width=8, hin_left=left, hin_right=right))
    _randomize_norms(net)
    sd = net.state_dict()
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        ours = net.train()(x)
        ref = reference_hinet(sd, x, depth=5)
        final = net.eval()(x)
    for a, b in zip(ours, ref):
        assert (a - b).abs().max().item() <= 1e-5
    assert (final - ref[1]).abs().max().item() <= 1e-5


def test_padding_is_right_bottom_reflection() -> None:
    model = build_model("hinet", hinet.Config(width=4)).eval()
    _randomize_norms(model.net)
    x = torch.rand(1, 3, 21, 27)
    padded = F.pad(x, (0, 32 - 27, 0, 32 - 21), mode="reflect")
    with torch.no_grad():
        ref = reference_hinet(model.net.state_dict(), padded, depth=5)[1][..., :21, :27]
        assert (model(x) - ref).abs().max().item() <= 1e-5
    with pytest.raises(ValueError, match="multiples of 16"):  # the network itself runs aligned input only
        model.net(x)


# ---------------------------------------------------------------- official configurations


@pytest.mark.parametrize(
    ("preset", "params"),
    [
        ("hinet_sidd_1x", 88_669_702),  # counted from the official hinet_arch.py layer shapes, wf=64
        ("hinet_rain13k", 88_669_702),
        ("hinet_gopro", 88_668_806),  # HIN only at levels 3-4: 896 fewer norm parameters
        ("hinet_reds", 88_668_806),
        ("hinet_sidd_0.5x", 22_176_518),  # the same count at wf=32
    ],
)
def test_official_config_parameter_counts(preset: str, params: int) -> None:
    with torch.device("meta"):
        net = hinet.build(hinet.PRESETS[preset])
    assert count_params(net) == params
    assert round(params / 1e6, 2) == (22.18 if "0.5x" in preset else 88.67)


def test_zoo_presets_point_at_existing_configs() -> None:
    names = [p for p in restorekit.list_models() if p.startswith("hinet-")]
    assert len(names) == 5
    for name in names:
        assert isinstance(restorekit.get_preset(name).config, hinet.Config)
