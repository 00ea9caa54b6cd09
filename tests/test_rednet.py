"""RED-Net: tiny-config forward/backward, residual learning, skip placement, detection and round
trips, parity with an independent functional implementation of the released RED30 prototxt (deconvs
computed as flipped, transposed convolutions), and parameter counts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from family_checks import assert_detects_and_reproduces
from PIL import Image as PILImage

import restorekit
from restorekit.archs import FAMILIES, rednet
from restorekit.cli import main
from restorekit.complexity import count_params
from restorekit.data.datasets import SampleKey
from restorekit.data.degrade import imresize
from restorekit.errors import ConfigError, DetectionError, RestorekitError
from restorekit.inference.pipeline import rgb_to_ycbcr
from restorekit.loading import save_safetensors
from restorekit.model import PreUpsampled, RestorationModel, build_model
from restorekit.restore import at_scale, choose_preset

REPO = Path(__file__).resolve().parents[1]

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
        ("red20_w64", 665_921),  # restorekit-rednet: 20 layers x 64 maps, 9 * 64 * 64 + 64 per inner layer
        ("red10", 1_183_105),
    ],
)
def test_preset_parameter_counts(preset: str, params: int) -> None:
    with torch.device("meta"):
        net = rednet.build(rednet.PRESETS[preset])
    assert count_params(net) == params


# ---------------------------------------------------------------- restorekit-rednet: one grey model, SR by pre-upsampling


def _save_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(array).save(path)
    return path


def _grey_red(tmp_path: Path, identity: bool = False) -> tuple[RestorationModel, Path]:
    """A tiny randomly initialised grey RED-Net and its safetensors file. ``identity``: a zero last layer, so
    the output is the input (the network then measures exactly what its input is worth)."""
    model = build_model("rednet", rednet.Config(depth=6, width=8)).eval()
    if identity:
        with torch.no_grad():
            model.net.deconvs[-1].weight.zero_()
            model.net.deconvs[-1].bias.zero_()
    return model, save_safetensors(model, tmp_path / ("identity.safetensors" if identity else "red.safetensors"))


def test_initial_residual_is_small() -> None:
    # the init keeps the first output near the input (the default init gave a residual of std 0.5 here)
    net = rednet.build(rednet.Config(depth=20, width=64)).eval()
    x = torch.rand(2, 1, 50, 50)
    with torch.no_grad():
        residual = net(x) - x
    assert 0 < float(residual.std()) < 0.1 and float(residual.abs().mean()) < 0.15
    assert all(float(layer.bias.detach().abs().max()) == 0 for layer in (*net.convs, *net.deconvs))


def test_pre_upsampled_model_restores_the_bicubic_upscaled_input() -> None:
    model = build_model("rednet", rednet.Config(depth=6, width=8)).eval()
    sr = PreUpsampled(model, 3)
    assert (sr.scale, sr.in_channels, sr.task, model.scale) == (3, 1, "sr", 1)
    x = torch.rand(1, 1, 10, 7)
    with torch.no_grad():
        assert torch.equal(sr(x), model(imresize(x, scale=3)))
    with pytest.raises(ValueError, match="scale-1"):
        PreUpsampled(sr, 2)


def test_only_pre_upsampling_families_take_another_scale(tmp_path: Path) -> None:
    red, _ = _grey_red(tmp_path)
    assert isinstance(at_scale(red, 4, "red"), PreUpsampled) and at_scale(red, None, "red") is red
    denoiser = build_model(
        "nafnet", FAMILIES["nafnet"].Config(width=8, enc_blk_nums=(1,), middle_blk_num=1, dec_blk_nums=(1,))
    )
    with pytest.raises(RestorekitError, match="x1 model, but --scale 2"):
        at_scale(denoiser, 2, "nafnet.safetensors")
    assert choose_preset("sr", "red30-gray", 3) == "red30-gray"  # no per-scale RED-Net presets: one model


def test_restore_cli_sr_upsamples_first_and_keeps_chroma(tmp_path: Path) -> None:
    model, weights = _grey_red(tmp_path)
    rng = np.random.default_rng(5)
    rgb = (rng.random((9, 11, 3)) * 200 + 20).astype(np.uint8)
    grey = (rng.random((8, 10)) * 255).astype(np.uint8)
    _save_png(tmp_path / "in" / "rgb.png", rgb)
    _save_png(tmp_path / "in" / "grey.png", grey)
    code = main(
        [
            "restore",
            str(tmp_path / "in"),
            "-o",
            str(tmp_path / "out"),
            "--weights",
            str(weights),
            "--task",
            "sr",
            "--scale",
            "3",
            "--quiet",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    out_rgb = np.asarray(PILImage.open(tmp_path / "out" / "rgb.png"), dtype=np.float32) / 255
    out_grey = np.asarray(PILImage.open(tmp_path / "out" / "grey.png"), dtype=np.float32) / 255
    assert out_rgb.shape == (27, 33, 3) and out_grey.shape == (24, 30)
    with torch.no_grad():
        # grey: the network on the MATLAB-bicubic x3 image, rounded to uint8
        x = torch.from_numpy(grey).float()[None, None] / 255
        expected = model(imresize(x, scale=3)).clamp(0, 1)[0, 0].numpy()
        assert np.abs(out_grey - expected).max() <= 0.5 / 255 + 1e-6
        # colour: the luminance is restored, the chroma only upscaled (to within uint8 rounding of RGB)
        ycc_in = rgb_to_ycbcr(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)
        ycc_out = rgb_to_ycbcr(torch.from_numpy(out_rgb).permute(2, 0, 1)[None])
        chroma = F.interpolate(ycc_in[:, 1:], scale_factor=3, mode="bicubic", align_corners=False)
        luma = model(imresize(ycc_in[:, :1], scale=3))
    inner = (slice(None), slice(None), slice(3, -3), slice(3, -3))  # clipping to [0, 1] bites at a few edge pixels
    assert float((ycc_out[inner][:, 1:] - chroma[inner]).abs().max()) < 2 / 255
    assert float((ycc_out[inner][:, :1] - luma[inner]).abs().max()) < 2 / 255
    assert float((ycc_out[:, :1] - F.interpolate(ycc_in[:, :1], scale_factor=3, mode="bicubic")).abs().max()) > 0.01


def test_pre_upsampled_tiles_are_exact() -> None:
    sr = PreUpsampled(build_model("rednet", rednet.Config(depth=6, width=8)).eval(), 2)
    image = np.random.default_rng(1).random((90, 84)).astype(np.float32)
    whole = sr.restore(image, tile=0)
    tiled = sr.restore(image, tile=40)  # 3x3 tiles with the exact overlap, measured through the upscaling
    assert whole.shape == (180, 168)
    np.testing.assert_allclose(tiled, whole, atol=1e-5, rtol=0)


def test_colour_luminance_is_matlab_y_on_the_full_range(tmp_path: Path) -> None:
    # channels=1 reads colour through PIL "L" (BT.601 weights, 0-255); the SR convention's MATLAB Y has the
    # same weights on 16-235: Y = 16 + 219/255 * L, to within L's rounding
    from restorekit.data.datasets import read_image
    from restorekit.metrics import rgb_to_y

    path = _save_png(tmp_path / "c.png", (np.random.default_rng(2).random((20, 30, 3)) * 255).astype(np.uint8))
    luma = read_image(path, 1) * 255
    y = rgb_to_y(read_image(path, 3)) * 255
    difference = (y - (16 + 219 / 255 * luma)).abs()
    assert float(difference.max()) <= 0.5 * 219 / 255 + 1e-3
    assert float((y - luma).abs().max()) > 10  # yet the two luminances are not interchangeable


def test_eval_feeds_a_grey_scale1_model_the_upscaled_luminance_and_the_noisy_image(tmp_path: Path) -> None:
    # a RED-Net that returns its input measures exactly the bicubic floor on SR and the input on denoising:
    # proof that eval feeds a grey scale-1 model the MATLAB-bicubic-upscaled full-range luminance (what
    # restore gives it) and measures MATLAB's Y of it, near the floor measured on MATLAB Y itself
    from restorekit.data.datasets import read_image
    from restorekit.data.degrade import parse_degradation
    from restorekit.evaluate import EvalData, evaluate
    from restorekit.inference.pipeline import rgb_to_luma
    from restorekit.metrics import measure, rgb_to_y, studio_range

    _, weights = _grey_red(tmp_path, identity=True)
    rng = np.random.default_rng(3)
    for i in range(2):
        smooth = F.interpolate(torch.from_numpy(rng.random((1, 3, 6, 7))), size=(36, 41), mode="bicubic")[0]
        _save_png(tmp_path / "HR" / f"im{i}.png", (smooth.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    red = evaluate(str(weights), EvalData(tmp_path / "HR", scale=3), device="cpu")
    assert red.scale == 3 and red.convention.y_channel and red.convention.uint8  # crop_border None: crop = scale
    bicubic_down = parse_degradation("bicubic:3")
    for result, i in zip(red.images, range(2)):
        rgb = read_image(tmp_path / "HR" / f"im{i}.png", 3)[:, :36, :39]  # mod-cropped to x3
        luma = rgb_to_luma(rgb[None])[0]
        upscaled = imresize(bicubic_down(luma, None), size=(36, 39)).clamp(0, 1)
        as_saved = [(x * 255).round() / 255 for x in (upscaled, luma)]  # the convention rounds, then takes Y
        expected = measure(*[studio_range(x) for x in as_saved], replace(red.convention, uint8=False), scale=3)
        assert result.psnr == pytest.approx(expected["psnr"], abs=1e-9)
        matlab_y = rgb_to_y(rgb)
        floor_on_matlab_y = measure(imresize(bicubic_down(matlab_y, None), size=(36, 39)), matlab_y, red.convention, 3)
        assert result.psnr == pytest.approx(floor_on_matlab_y["psnr"], abs=0.2)  # 8-bit rounding in two ranges
        assert torch.allclose(studio_range(luma), matlab_y, atol=1e-6)  # the reference is the colour original's Y
    noisy = evaluate(str(weights), EvalData(tmp_path / "HR", degrade="awgn:25"), device="cpu")
    assert noisy.scale == 1 and 18 < noisy.images[0].psnr < 24  # sigma 25 costs about 20.2 dB


def test_restorekit_rednet_recipe_facts() -> None:
    from restorekit.train.config import load_config

    config = load_config(REPO / "configs/rednet/restorekit-rednet.yml")
    arch = config.arch_config()
    assert (arch.depth, arch.width, arch.in_channels, arch.skip_every, arch.scale) == (20, 64, 1, 2, 1)
    parts = config.data.train
    assert isinstance(parts, tuple) and [p.degradation for p in parts] == ["awgn:10-70", "bicubicdu:2-4"]
    assert {p.patch for p in parts} == {50} and sum(p.weight for p in parts) == 1.0
    assert config.loss.name == "mse" and config.optim.name == "adam" and config.data.val is None
    for part in parts:
        assert [Path(g).name for g in part.gt] == ["Train400", "CBSD432"]


def test_restorekit_rednet_training_set_mixes_noise_and_down_up(shared_data: Path) -> None:
    from restorekit.data.build import make_train_set
    from restorekit.train.config import load_config

    config = load_config(REPO / "configs/rednet/restorekit-rednet.yml")
    sections = tuple(
        replace(p, gt=tuple(str(shared_data / "train" / Path(g).name) for g in p.gt)) for p in config.data.train
    )
    dataset, _ = make_train_set(sections, 1, 1, seed=0)
    assert len(dataset) == 2 * (400 + 432)
    kinds = []
    for position in range(24):
        part, _ = dataset.pick(SampleKey(0, position, 0))
        lq, gt = dataset[SampleKey(0, position, 0)]
        assert lq.shape == gt.shape == (1, 50, 50)
        residual = lq - gt
        kinds.append(part)
        assert torch.equal((gt * 255).round(), gt * 255)  # clean patches are the 8-bit files
        if part == 0:  # AWGN sigma 10..70: unclipped noise of that size
            assert 8 / 255 < float(residual.std()) < 75 / 255
        else:  # down-up: upscaled in float, so off the 8-bit grid, and a blur rather than noise
            assert float(((lq * 255) - (lq * 255).round()).abs().mean()) > 0.1
            assert float(residual.std()) < float(gt.std())
    assert set(kinds) == {0, 1}


def test_onnx_backend_refuses_a_pre_upsampled_model() -> None:
    from restorekit.errors import RestorekitError
    from restorekit.restore_cli import make_backend

    sr = PreUpsampled(build_model("rednet", rednet.Config(depth=6, width=8)).eval(), 2)
    with pytest.raises(RestorekitError, match="pre-upsampling"):
        make_backend(sr, "onnx")
    assert make_backend(sr, "torch") is not None
