"""Bicubic++ compression: structured pruning, bias removal, and the three-stage pipeline plumbing."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from restorekit.archs import bicubic_pp
from restorekit.compress import prune as P
from restorekit.errors import RestorekitError
from restorekit.loading import detect


def _wide(channels: int = 6, bias: bool = True) -> bicubic_pp.BicubicPlusPlus:
    net = bicubic_pp.BicubicPlusPlus(bicubic_pp.Config(channels=channels, bias=bias))
    with torch.no_grad():  # non-zero biases so that the bias paths are exercised
        for p in net.parameters():
            if p.ndim == 1:
                p.uniform_(-0.1, 0.1)
    return net


def test_pruned_model_has_requested_channels(device: torch.device) -> None:
    net = _wide(6).to(device)
    small = P.prune(net, 4)
    assert small.config.channels == 4 and small.config.bias
    assert small.conv0.weight.shape == (4, 3, 3, 3)
    assert small.conv1.weight.shape == (4, 4, 3, 3)
    assert small.conv2.weight.shape == (4, 4, 3, 3)
    assert small.conv_out.weight.shape == (108, 4, 3, 3)
    out = small(torch.rand(1, 3, 8, 10, device=device))
    assert out.shape == (1, 3, 24, 30) and torch.isfinite(out).all()


@pytest.mark.parametrize("group", ["skip", "mid"])
def test_zero_channel_is_pruned_first(group: str) -> None:
    net = _wide(6)
    with torch.no_grad():
        if group == "skip":  # only the outgoing side is zero: the channel is dead all the same
            net.conv1.weight[:, 2] = 0
            net.conv_out.weight[:, 2] = 0
        else:
            net.conv1.weight[2] = 0
            net.conv1.bias[2] = 0
    scores = P.weight_importance(net)[group]
    assert scores[2] == 0 and (scores[torch.arange(6) != 2] > 0).all()
    keep = P.select_channels(net, 5)
    assert 2 not in keep[group].tolist()
    other = "mid" if group == "skip" else "skip"
    assert len(keep[other]) == 5


def test_importance_is_invariant_to_leaky_relu_rescaling() -> None:
    net = _wide(6)
    before = P.weight_importance(net)["mid"].clone()
    with torch.no_grad():  # scale conv1's channel 1 up by 4 and conv2's reading of it down by 4
        net.conv1.weight[1] *= 4
        net.conv1.bias[1] *= 4
        net.conv2.weight[:, 1] /= 4
    torch.testing.assert_close(P.weight_importance(net)["mid"], before)


def test_joint_pruning_matches_wide_model_with_channels_zeroed(device: torch.device) -> None:
    net = _wide(7).to(device)
    keep = P.select_channels(net, 5)
    small = P.prune(net, 5, keep)
    zeroed = bicubic_pp.BicubicPlusPlus(net.config).to(device)
    zeroed.load_state_dict(net.state_dict())
    P.zero_channels(zeroed, keep)
    x = torch.rand(2, 3, 12, 14, device=device)
    with torch.no_grad():
        torch.testing.assert_close(small(x), zeroed(x), rtol=1e-5, atol=1e-6)
        # and the pruning did change the function (the dropped channels carried signal)
        assert (net(x) - small(x)).abs().max() > 1e-4


def test_explicit_keep_lists_are_honoured() -> None:
    net = _wide(5)
    keep = {"skip": torch.tensor([0, 1, 4]), "mid": torch.tensor([1, 2, 3])}
    small = P.prune(net, 3, keep)
    torch.testing.assert_close(small.conv0.weight, net.conv0.weight[[0, 1, 4]])
    torch.testing.assert_close(small.conv2.weight, net.conv2.weight[[0, 1, 4]][:, [1, 2, 3]])
    torch.testing.assert_close(small.conv_out.bias, net.conv_out.bias)


def test_prune_rejects_bad_requests() -> None:
    with pytest.raises(RestorekitError, match="cannot prune"):
        P.prune(_wide(4), 5)
    with pytest.raises(RestorekitError, match="Bicubic"):
        P.weight_importance(torch.nn.Conv2d(3, 3, 3))


def test_remove_bias_gives_the_official_layout() -> None:
    wide = bicubic_pp.BicubicPlusPlus(bicubic_pp.PRESETS["bicubic_pp_x3_wide"])
    pruned = P.prune(wide, 32)
    free, largest = P.remove_bias(pruned)
    state = free.state_dict()
    assert sorted(state) == ["conv0.weight", "conv1.weight", "conv2.weight", "conv_out.weight"]
    family, config = detect(state)
    assert family is bicubic_pp
    assert config == bicubic_pp.PRESETS["bicubic_pp_x3"]  # channels 32, bias False
    assert largest == max(b.abs().max().item() for b in (pruned.conv0.bias, pruned.conv_out.bias, pruned.conv1.bias))
    # weights are carried over untouched
    torch.testing.assert_close(free.conv1.weight, pruned.conv1.weight)


def test_remove_bias_is_exact_when_biases_are_zero() -> None:
    net = _wide(4)
    with torch.no_grad():
        for m in (net.conv0, net.conv1, net.conv2, net.conv_out):
            m.bias.zero_()
    free, largest = P.remove_bias(net)
    assert largest == 0.0
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(free(x), net(x))
    assert all(m.bias is None for m in (free.conv0, free.conv1, free.conv2, free.conv_out))


def test_prune_keeps_config_fields_other_than_channels() -> None:
    net = bicubic_pp.BicubicPlusPlus(dataclasses.replace(bicubic_pp.Config(), channels=6, bias=False, scale=2))
    small = P.prune(net, 3)
    assert small.config == bicubic_pp.Config(channels=3, bias=False, scale=2)


# --- the three-stage pipeline (tiny: 2 steps per stage on generated images) ---------------------


def _write_images(folder, count: int, size: int, seed: int) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        # smooth random images: bicubic SR has something to learn, unlike white noise
        small = rng.integers(0, 256, (size // 6, size // 6, 3), dtype=np.uint8)
        Image.fromarray(small).resize((size, size), Image.BICUBIC).save(folder / f"img{i}.png")


def _tiny_config(tmp_path) -> dict:
    from PIL import Image

    from restorekit.data.degrade import imresize

    _write_images(tmp_path / "train", 3, 48, 0)
    _write_images(tmp_path / "hr", 2, 36, 1)
    (tmp_path / "lr").mkdir()
    for hr in sorted((tmp_path / "hr").glob("*.png")):
        import numpy as np

        x = torch.from_numpy(np.asarray(Image.open(hr)).copy()).permute(2, 0, 1).float() / 255
        lr = (imresize(x, scale=1 / 3).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(lr).save(tmp_path / "lr" / hr.name)
    return {
        "name": "tiny",
        "out_dir": str(tmp_path / "runs"),
        "channels": 3,
        "device": "cpu",
        "recipe": {
            "model": {"family": "bicubic_pp", "preset": "bicubic_pp_x3_wide", "arch": {"channels": 4}},
            "data": {"train": {"gt": str(tmp_path / "train"), "kind": "degraded", "degradation": "bicubic:3",
                               "patch": 24}, "batch_size": 2},
            "optim": {"name": "adam", "lr": 1e-3},
            "loss": {"name": "mse"},
            "train": {"total_steps": 2, "progress": False, "log_every": 1, "device": "cpu"},
        },
        "stages": {"pruned": ["train.total_steps=1"], "bias_free": ["train.total_steps=1"]},
        "eval": [{"name": "tinyset", "gt": str(tmp_path / "hr"), "lq": str(tmp_path / "lr")}],
    }


@pytest.mark.slow
def test_pipeline_runs_three_stages_and_reports(tmp_path) -> None:
    import json

    from restorekit.compress.pipeline import config_from_mapping, run_pipeline
    from restorekit.model import load

    config = config_from_mapping(_tiny_config(tmp_path))
    report = run_pipeline(config)
    stages = [s["stage"] for s in report["stages"]]
    assert stages == ["wide", "pruned (no finetune)", "pruned", "bias removed (no finetune)", "bias_free"]
    assert [(s["channels"], s["bias"]) for s in report["stages"]] == [(4, True), (3, True), (3, True), (3, False), (3, False)]
    assert all(0 < s["psnr_y"]["tinyset"] < 60 for s in report["stages"])  # untrained: low but finite
    final = load(report["weights"])
    assert final.config == bicubic_pp.Config(channels=3, bias=False)
    on_disk = json.loads((tmp_path / "runs" / "tiny" / "report.json").read_text())
    assert on_disk["stages"][-1]["weights"] == report["weights"]
    # finished stages are reused on --resume; a plain rerun refuses to overwrite
    again = run_pipeline(config, resume=True)
    assert [s["psnr_y"] for s in again["stages"]][-1] == report["stages"][-1]["psnr_y"]
    with pytest.raises(RestorekitError, match="--resume"):
        run_pipeline(config)


def test_pipeline_config_errors_name_the_problem(tmp_path) -> None:
    from restorekit.compress.pipeline import config_from_mapping

    raw = _tiny_config(tmp_path)
    with pytest.raises(RestorekitError, match="unknown key chanels"):
        config_from_mapping({**raw, "chanels": 3})
    with pytest.raises(RestorekitError, match="stage 1 must be wider"):
        config_from_mapping({**raw, "channels": 4})
    with pytest.raises(RestorekitError, match="stages"):
        config_from_mapping({**raw, "stages": {"finetune": []}})
    with pytest.raises(RestorekitError, match="optim"):
        config_from_mapping({**raw, "stages": {"pruned": ["optim.lrr=1"]}})


# --- the shipped default weights -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["restorekit-sr-x3", "restorekit-sr-x3-jpeg"])
def test_shipped_sr_weights_have_the_released_layout(name: str, device: torch.device) -> None:
    from restorekit.hub import PACKAGE_WEIGHTS
    from restorekit.model import load

    assert (PACKAGE_WEIGHTS / f"{name}.md").is_file()  # every shipped file has a model card
    model = load(name, device=device)
    assert model.config == bicubic_pp.PRESETS["bicubic_pp_x3"]
    out = model(torch.rand(1, 3, 10, 12, device=device))
    assert out.shape == (1, 3, 30, 36) and torch.isfinite(out).all()


def _crop(shared_data, relative: str, size: int) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    array = np.asarray(Image.open(shared_data / relative).convert("RGB"))[:size, :size]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float()[None] / 255


@pytest.mark.parametrize("name", ["restorekit-denoise", "restorekit-denoise-gaussian"])
def test_shipped_denoiser_removes_noise(shared_data, device: torch.device, name: str) -> None:
    from restorekit.conventions import RESTORATION_RGB
    from restorekit.data.degrade import add_gaussian_noise
    from restorekit.hub import PACKAGE_WEIGHTS
    from restorekit.metrics import psnr
    from restorekit.model import load

    assert (PACKAGE_WEIGHTS / f"{name}.md").is_file()
    assert (PACKAGE_WEIGHTS / f"{name}.safetensors").stat().st_size < 5_000_000
    model = load(name, device=device)
    clean = _crop(shared_data, "denoise/Kodak24/kodim05.png", 96).to(device)
    noisy = add_gaussian_noise(clean, 25, torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(noisy).clamp(0, 1)
    before, after = psnr(noisy, clean, RESTORATION_RGB), psnr(out, clean, RESTORATION_RGB)
    assert after > before + 5  # ~20.2 dB in; the shipped model gains far more than 5 dB


def test_shipped_sr_beats_bicubic_on_a_set5_image(shared_data, device: torch.device) -> None:
    from restorekit.conventions import SR_Y
    from restorekit.data.degrade import imresize
    from restorekit.metrics import psnr
    from restorekit.model import load

    hr = _crop(shared_data, "sr/Set5/HR/butterfly.png", 120).to(device)
    lr = (imresize(hr, scale=1 / 3).clamp(0, 1) * 255).round() / 255
    with torch.no_grad():
        sr = load("restorekit-sr-x3", device=device)(lr)
    assert psnr(sr, hr, SR_Y, 3) > psnr(imresize(lr, scale=3), hr, SR_Y, 3) + 0.2
