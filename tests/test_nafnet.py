"""NAFNet / Baseline family: tiny forward/backward, exact parameter counts, detection of every preset,
round trips (state dict, .pth, safetensors), readable preset errors, and parity with spandrel 0.4.2
(an independent transcription of the official NAFNet) plus a functional Baseline block reference.

No official NAFNet/Baseline weights are available offline (see shared/data/MANIFEST.md), so parity
against an independent implementation stands in for golden outputs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from family_checks import assert_detects_and_reproduces, assert_preset_detected
from spandrel_compat import spandrel_nafnet
from torch import nn

import restorekit
from restorekit import loading
from restorekit.archs import nafnet
from restorekit.complexity import count_params
from restorekit.errors import DetectionError
from restorekit.loading import save_safetensors
from restorekit.model import RestorationModel, build_model

TINY = nafnet.Config(width=8, enc_blk_nums=(1, 1), middle_blk_num=1, dec_blk_nums=(1, 1))
TINY_BASELINE = dataclasses.replace(TINY, block="baseline", dw_expand=1)
TINY_VARIANTS = {
    "nafnet": TINY,
    "baseline": TINY_BASELINE,
    # odd expansions, 3 levels, an empty level and uneven block counts exercise infer_config
    "nafnet-3lvl": nafnet.Config(width=6, enc_blk_nums=(0, 2, 1), middle_blk_num=2, dec_blk_nums=(1, 0, 2),
                                 dw_expand=3, ffn_expand=4),
    "baseline-dw2": dataclasses.replace(TINY_BASELINE, dw_expand=2, ffn_expand=3, middle_blk_num=0),
}


def randomize(net: nn.Module, scale: float = 0.2) -> nn.Module:
    """Perturb every parameter (beta/gamma start at zero, norms at 1/0) so each one matters."""
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.endswith(("beta", "gamma")) or ".norm" in name:
                param.add_(torch.randn_like(param) * scale)
            else:
                param.mul_(1 + torch.randn_like(param) * scale).add_(torch.randn_like(param) * 0.01)
    return net


@pytest.mark.parametrize("variant", sorted(TINY_VARIANTS))
def test_tiny_forward_backward(variant: str, device: torch.device) -> None:
    config = TINY_VARIANTS[variant]
    net = randomize(nafnet.build(config)).to(device)
    x = torch.rand(2, 3, 19, 26, device=device)  # not a multiple of the alignment: pad and crop
    y = RestorationModel(net, nafnet.NAME, config)(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    (y - x).pow(2).mean().backward()
    for name, param in net.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, f"{name} gets no gradient"


def test_fresh_blocks_are_identity() -> None:
    # beta = gamma = 0 at init (official), so each block passes its input through unchanged
    for block in (nafnet.NAFBlock(8), nafnet.BaselineBlock(8)):
        x = torch.randn(1, 8, 5, 7)
        assert torch.equal(block(x), x)


def test_alignment_and_scale() -> None:
    assert TINY.alignment == 4
    assert nafnet.PRESETS["nafnet_sidd_w32"].alignment == 16
    assert TINY.scale == 1
    assert build_model("nafnet", TINY).scale == 1


def test_config_validation_and_json_round_trip() -> None:
    with pytest.raises(ValueError, match="as many decoder as encoder levels"):
        nafnet.Config(enc_blk_nums=(1, 1), dec_blk_nums=(1,))
    with pytest.raises(ValueError, match="block must be one of"):
        nafnet.Config(block="resnet")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be even"):
        nafnet.Config(width=5, dw_expand=1)
    # safetensors metadata stores JSON lists; they must come back as an equal, hashable config
    config = nafnet.PRESETS["baseline_gopro_w64"]
    again = nafnet.Config(**json.loads(loading.config_to_json(config)))
    assert again == config and hash(again) == hash(config)


def official_param_count(config: nafnet.Config) -> int:
    """Parameters of the official network, counted layer by layer from megvii-research/NAFNet
    ``basicsr/models/archs/NAFNet_arch.py`` (NAFBlock, NAFNet) and ``Baseline_arch.py`` (BaselineBlock,
    Baseline), independently of our module code: conv = in * out * k * k / groups (+ out bias)."""

    def conv(cin: int, cout: int, k: int = 1, groups: int = 1, bias: bool = True) -> int:
        return cin * cout * k * k // groups + (cout if bias else 0)

    def block(c: int) -> int:
        dw, ffn = c * config.dw_expand, c * config.ffn_expand
        shared = conv(c, dw) + conv(dw, dw, 3, groups=dw) + conv(c, ffn) + 4 * c + 2 * c  # 2 LayerNorm2d, beta, gamma
        if config.block == "nafnet":  # SimpleGate halves dw and ffn; sca is one 1x1 conv
            return shared + conv(dw // 2, dw // 2) + conv(dw // 2, c) + conv(ffn // 2, c)
        return shared + conv(dw, dw // 2) + conv(dw // 2, dw) + conv(dw, c) + conv(ffn, c)  # se.1, se.3, conv3, conv5

    chan, total = config.width, conv(3, config.width, 3) + conv(config.width, 3, 3)  # intro, ending
    for count in config.enc_blk_nums:
        total += count * block(chan) + conv(chan, 2 * chan, 2)  # encoder blocks, 2x2 stride-2 down
        chan *= 2
    total += config.middle_blk_num * block(chan)
    for count in config.dec_blk_nums:
        total += conv(chan, 2 * chan, bias=False)  # 1x1 before PixelShuffle(2)
        chan //= 2
        total += count * block(chan)
    return total


# Exact counts of the official configurations (megvii-research/NAFNet options/test/{SIDD,GoPro,REDS}/*.yml),
# each checked three ways below: our module, the closed form above, and (NAFNet blocks) spandrel's class.
OFFICIAL_PARAMS = {
    "nafnet_sidd_w32": 29_159_715,
    "nafnet_sidd_w64": 115_982_915,
    "nafnet_gopro_w32": 17_111_907,
    "nafnet_gopro_w64": 67_888_835,
    "nafnet_reds_w64": 67_888_835,
    "baseline_sidd_w32": 29_056_227,
    "baseline_sidd_w64": 194_419_779,
    "baseline_gopro_w32": 17_023_875,
    "baseline_gopro_w64": 112_036_291,
}


@pytest.mark.parametrize("preset", sorted(OFFICIAL_PARAMS))
def test_preset_parameter_counts(preset: str) -> None:
    config = nafnet.PRESETS[preset]
    with torch.device("meta"):  # shapes only: instant even for 194M parameters
        net = nafnet.build(config)
    assert count_params(net) == OFFICIAL_PARAMS[preset] == official_param_count(config)
    if config.block == "nafnet":  # a third count: spandrel's transcription of the official NAFNet class
        with torch.device("meta"):
            reference = spandrel_nafnet(img_channel=3, width=config.width, middle_blk_num=config.middle_blk_num,
                                        enc_blk_nums=list(config.enc_blk_nums), dec_blk_nums=list(config.dec_blk_nums))
        assert count_params(reference) == OFFICIAL_PARAMS[preset]


def test_official_count_sees_every_layer() -> None:
    # the closed form is not a copy of the module: it must also agree on odd, non-official shapes
    for config in TINY_VARIANTS.values():
        assert count_params(nafnet.build(config)) == official_param_count(config), config


@pytest.mark.parametrize("preset", sorted(nafnet.PRESETS))
def test_every_preset_is_detected_from_its_keys(preset: str) -> None:
    assert_preset_detected(nafnet, preset)


@pytest.mark.parametrize("variant", sorted(TINY_VARIANTS))
def test_state_dict_round_trip(variant: str) -> None:
    config = TINY_VARIANTS[variant]
    assert_detects_and_reproduces(nafnet, config, randomize(nafnet.build(config)), 21, 18)


@pytest.mark.parametrize("variant", ["nafnet", "baseline"])
def test_file_round_trips(variant: str, tmp_path: Path) -> None:
    config = TINY_VARIANTS[variant]
    model = build_model("nafnet", config)
    randomize(model.net)
    model.eval()
    x = torch.rand(1, 3, 17, 23)
    with torch.no_grad():
        expected = model(x)
    # restorekit's own format (config recorded in the metadata) ...
    st = save_safetensors(model, tmp_path / "tiny.safetensors")
    # ... and the official BasicSR layout: {"params": state_dict} in a .pth, detected from shapes
    pth = tmp_path / "tiny.pth"
    torch.save({"params": {k: v.clone() for k, v in model.net.state_dict().items()}}, pth)
    for path in (st, pth):
        loaded = restorekit.load(path)
        assert loaded.family == "nafnet" and loaded.config == config
        with torch.no_grad():
            assert torch.equal(loaded(x), expected), path.name


def test_preset_mismatch_is_a_readable_error(tmp_path: Path) -> None:
    path = tmp_path / "tiny.pth"
    torch.save({"params": nafnet.build(TINY).state_dict()}, path)
    with pytest.raises(DetectionError) as info:
        restorekit.load(path, preset="nafnet-sidd-w32")
    message = str(info.value)
    assert str(path) in message
    assert "width=8 (expected 32)" in message and "middle_blk_num=1 (expected 12)" in message
    assert "size mismatch" not in message

    torch.save(nafnet.build(TINY_BASELINE).state_dict(), path)
    with pytest.raises(DetectionError, match=r"block='baseline' \(expected 'nafnet'\)"):
        restorekit.load(path, preset="nafnet-sidd-w32")


def test_inconsistent_checkpoint_is_a_detection_error() -> None:
    state = nafnet.build(TINY).state_dict()
    del state["ups.1.0.weight"]  # two downsamplings, one upsampling
    with pytest.raises(DetectionError, match="2 downsampling convs but 1 upsampling"):
        loading.detect(state)


# --- parity with spandrel's NAFNet (independent code, same math as the official NAFNet_arch.py) ---


# batch 1 takes the folded channel-attention path real inference uses (_attend_project), batch 2 the plain one
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize(
    "preset",
    ["tiny", pytest.param("nafnet_sidd_w32", marks=pytest.mark.slow), pytest.param("nafnet_gopro_w32", marks=pytest.mark.slow)],
)
def test_parity_with_spandrel(preset: str, batch: int, device: torch.device) -> None:
    config = TINY if preset == "tiny" else nafnet.PRESETS[preset]
    ours = RestorationModel(randomize(nafnet.build(config)), nafnet.NAME, config).eval().to(device)
    with torch.device("meta"):  # skip a second 29M-parameter random init: the weights are ours
        reference = spandrel_nafnet(
            img_channel=3,
            width=config.width,
            middle_blk_num=config.middle_blk_num,
            enc_blk_nums=list(config.enc_blk_nums),
            dec_blk_nums=list(config.dec_blk_nums),
        )
    reference.load_state_dict(ours.net.state_dict(), strict=True, assign=True)  # same key names and shapes
    reference.eval()
    x = torch.rand(batch, 3, 37, 45, device=device)  # neither side a multiple of 16
    with torch.no_grad():
        ours_out, ref_out = ours(x), reference(x)
    assert ref_out.shape == ours_out.shape == x.shape
    assert (ref_out - x).abs().max() > 1e-2, "randomised weights should change the image"
    assert (ours_out - ref_out).abs().max().item() <= 1e-5


def _reference_baseline_block(block: nafnet.BaselineBlock, inp: torch.Tensor) -> torch.Tensor:
    """The official ``BaselineBlock.forward`` (megvii-research/NAFNet ``basicsr/models/archs/Baseline_arch.py``)
    written out with functional ops, independent of the module code under test."""

    def norm(x: torch.Tensor, layer: nn.Module) -> torch.Tensor:  # per-pixel over C, biased var, eps 1e-6
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        return (x - mean) / (var + 1e-6).sqrt() * layer.weight.view(1, -1, 1, 1) + layer.bias.view(1, -1, 1, 1)

    def conv(x: torch.Tensor, layer: nn.Conv2d) -> torch.Tensor:
        return F.conv2d(x, layer.weight, layer.bias, padding=layer.padding, groups=layer.groups)

    x = F.gelu(conv(conv(norm(inp, block.norm1), block.conv1), block.conv2))
    attention = torch.sigmoid(conv(F.relu(conv(x.mean((2, 3), keepdim=True), block.se[1])), block.se[3]))
    y = inp + conv(x * attention, block.conv3) * block.beta
    x = conv(F.gelu(conv(norm(y, block.norm2), block.conv4)), block.conv5)
    return y + x * block.gamma


@pytest.mark.parametrize("dw_expand", [1, 2])
def test_baseline_block_matches_functional_reference(dw_expand: int) -> None:
    block = randomize(nafnet.BaselineBlock(8, dw_expand=dw_expand, ffn_expand=2))
    assert block.se[1].weight.shape == (8 * dw_expand // 2, 8 * dw_expand, 1, 1)  # se.1: dw -> dw//2
    x = torch.randn(2, 8, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(block(x), _reference_baseline_block(block, x), rtol=0, atol=1e-5)


def test_network_refuses_unaligned_input_and_the_model_pads_with_zeros() -> None:
    # the official check_image_size pads right/bottom with zeros (F.pad's default); RestorationModel
    # is the one place that pads, so the bare network refuses what it would have to pad itself
    net = randomize(nafnet.build(TINY)).eval()
    x = torch.rand(1, 3, 13, 22)
    with pytest.raises(ValueError, match="multiples of 4"):
        net(x)
    with torch.no_grad():
        padded = net(F.pad(x, (0, 2, 0, 3)))[..., :13, :22]
        replicated = net(F.pad(x, (0, 2, 0, 3), mode="replicate"))[..., :13, :22]
        assert torch.equal(RestorationModel(net, nafnet.NAME, TINY)(x), padded)
    assert not torch.allclose(padded, replicated, atol=1e-4), "the pad mode must matter for this check to mean anything"
