"""Evaluation: pairing, deterministic synthetic inputs, channel handling, the bicubic floor, the CLI verb,
and (slow) reproduction of VapSR's published Set5/Set14 numbers with the official weights."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from restorekit.cli import main
from restorekit.conventions import MetricConvention
from restorekit.errors import ConfigError, ImageError
from restorekit.evaluate import EvalData, evaluate, guess_dataset, read_image


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _smooth_rgb(seed: int, h: int = 36, w: int = 44) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = torch.from_numpy(rng.random((1, 3, h // 6, w // 6)))
    big = nn.functional.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)[0]
    return (big.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


class _Identity(nn.Module):
    """A scale-1 model that returns its input (what a perfect no-op restorer measures)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.scale = 1
        self.in_channels = channels
        self.alignment = 4  # evaluate leaves padding to the model (RestorationModel.forward): it must not pad
        self.preset = None
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape))
        return x + self.dummy


def test_pairing_tolerates_scale_suffix_and_lists_unmatched(tmp_path: Path) -> None:
    """eval pairs an input folder with its ground truths by the training sets' rule (datasets.pair_files)."""
    hr_dir, lr_dir = tmp_path / "HR", tmp_path / "X4"
    for folder in (hr_dir, lr_dir):
        folder.mkdir()
    pixels = np.random.default_rng(0).integers(0, 255, (24, 24, 3)).astype(np.uint8)
    for name in ("baby.png", "bird.png", "head.png"):
        Image.fromarray(pixels).save(hr_dir / name)
    for name in ("babyx4.png", "bird_x4.png", "head.png"):
        Image.fromarray(pixels[:6, :6]).save(lr_dir / name)
    result = evaluate("bicubic", EvalData(hr_dir, lr_dir=lr_dir, scale=4))
    assert [image.name for image in result.images] == ["baby", "bird", "head"]
    Image.fromarray(pixels).save(hr_dir / "woman.png")
    Image.fromarray(pixels[:6, :6]).save(lr_dir / "zebrax4.png")
    with pytest.raises(ConfigError) as info:
        evaluate("bicubic", EvalData(hr_dir, lr_dir=lr_dir, scale=4))
    assert "woman.png" in str(info.value) and "zebrax4.png" in str(info.value)


def test_guess_dataset() -> None:
    assert guess_dataset(Path("/data/sr/Set5/HR")) == "Set5"
    assert guess_dataset(Path("/data/denoise/Set12")) == "Set12"


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "hr" / "broken.png"
    bad.parent.mkdir()
    bad.write_bytes(b"not a png at all")
    with pytest.raises(ImageError, match="broken.png"):
        read_image(bad)
    code = main(["eval", "bicubic", "--hr", str(bad.parent), "--scale", "2", "--no-progress", "--device", "cpu"])
    assert code == 2


def test_synthetic_noise_is_deterministic_per_image(tmp_path: Path, device: torch.device) -> None:
    for i in range(3):
        _write(tmp_path / "gt" / f"img{i}.png", _smooth_rgb(i, 30, 34))
    model = _Identity(3).to(device)
    a = evaluate(model, EvalData(tmp_path / "gt", degrade="awgn:25", seed=1))
    b = evaluate(model, EvalData(tmp_path / "gt", degrade="awgn:25", seed=1))
    c = evaluate(model, EvalData(tmp_path / "gt", degrade="awgn:25", seed=2))
    limited = evaluate(model, EvalData(tmp_path / "gt", degrade="awgn:25", seed=1, limit=2))
    assert [r.psnr for r in a.images] == [r.psnr for r in b.images]
    assert [r.psnr for r in a.images] != [r.psnr for r in c.images]
    assert [r.psnr for r in limited.images] == [r.psnr for r in a.images[:2]]  # by name, not by position
    # identity on sigma-25 noise: 20.17 dB before clipping, a little more after clamping to [0, 1]
    assert 19.5 < a.mean["psnr"] < 22.0
    assert all(shape[-2:] == (30, 34) for shape in model.seen)  # fed as it is: the model owns padding
    assert a.dataset == tmp_path.name and a.convention == MetricConvention()


def test_channel_handling_grey_to_rgb_and_rgb_to_y(tmp_path: Path) -> None:
    grey = _smooth_rgb(5)[..., 0]
    _write(tmp_path / "grey" / "g.png", grey)
    _write(tmp_path / "rgb" / "c.png", _smooth_rgb(6))
    three = _Identity(3)
    result = evaluate(three, EvalData(tmp_path / "grey", degrade="awgn:0"))
    assert three.seen[-1][1] == 3 and math.isinf(result.images[0].psnr)
    one = _Identity(1)
    evaluate(one, EvalData(tmp_path / "rgb", degrade="awgn:10"))
    assert one.seen[-1][1] == 1  # an RGB ground truth reaches a 1-channel model as its luma


def test_bicubic_floor_matches_shipped_lr_and_literature(shared_data: Path) -> None:
    root = shared_data / "sr" / "Set5"
    shipped = evaluate("bicubic", EvalData(root / "HR", lr_dir=root / "LR_bicubic" / "X4"), device="cpu")
    synthetic = evaluate("bicubic", EvalData(root / "HR", scale=4), device="cpu")  # LR made by our MATLAB imresize
    assert shipped.dataset == "Set5" and shipped.scale == 4
    assert abs(shipped.mean["psnr"] - synthetic.mean["psnr"]) < 0.01
    # the bicubic x4 Set5 row of every SR paper is 28.42 dB / 0.8104 (MATLAB, Y from uint8 rgb2ycbcr);
    # we keep the BasicSR float Y, which moves it by about +0.01 dB / +0.001
    assert shipped.mean["psnr"] == pytest.approx(28.42, abs=0.03)
    assert shipped.mean["ssim"] == pytest.approx(0.8104, abs=0.002)


def test_cli_writes_json_and_table(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = shared_data / "sr" / "Set5"
    out = tmp_path / "res" / "bicubic.json"
    code = main(["eval", "bicubic", "--hr", str(root / "HR"), "--lr", str(root / "LR_bicubic" / "X3"),
                 "--json", str(out), "--limit", "2", "--no-progress", "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "baby" in printed and "bird" in printed and "mean" in printed
    doc = json.loads(out.read_text())
    assert doc["model"] == "bicubic" and doc["scale"] == 3 and len(doc["images"]) == 2
    assert set(doc["mean"]) == {"psnr", "ssim"} and doc["conventions"]["y_channel"] is True
    assert doc["conventions"]["crop_border"] == 3
    assert not list(out.parent.glob(".*.tmp"))  # atomic write leaves no temporary behind
    # a convention override changes the number
    code = main(["eval", "bicubic", "--hr", str(root / "HR"), "--lr", str(root / "LR_bicubic" / "X3"), "--rgb",
                 "--json", str(out), "--limit", "2", "--no-progress", "--device", "cpu"])
    assert code == 0 and json.loads(out.read_text())["mean"]["psnr"] < doc["mean"]["psnr"]


@pytest.mark.slow
def test_vapsr_x4_reproduces_paper(shared_weights: Path, shared_data: Path, device: torch.device) -> None:
    for dataset, psnr, ssim in (("Set5", 32.38, 0.8978), ("Set14", 28.77, 0.7852)):
        root = shared_data / "sr" / dataset
        result = evaluate("vapsr-x4", EvalData(root / "HR", lr_dir=root / "LR_bicubic" / "X4"), device=device)
        assert result.paper == {"psnr": psnr, "ssim": ssim}
        assert result.mean["psnr"] == pytest.approx(psnr, abs=0.03), dataset
        assert result.mean["ssim"] == pytest.approx(ssim, abs=0.002), dataset


def test_real_models_weights_path_and_pre_upsampling(tmp_path: Path, device: torch.device) -> None:
    from restorekit.archs import get_family
    from restorekit.evaluate import _lookup_paper
    from restorekit.model import build_model
    from restorekit.zoo import get_preset

    for i in range(2):
        _write(tmp_path / "HR" / f"im{i}.png", _smooth_rgb(10 + i, 26, 31))  # odd sizes: mod-crop to 24x30
    vapsr = build_model("vapsr", get_family("vapsr").Config(scale=3, num_feat=8, num_block=1, d_atten=8)).eval().to(device)
    result = evaluate(vapsr, EvalData(tmp_path / "HR", degrade="bicubic:3"))
    assert result.scale == 3 and result.model == "vapsr" and result.dataset == tmp_path.name
    assert all(math.isfinite(r.psnr) for r in result.images)
    # a scale-1, 1-channel network (RED-Net) on an SR set gets the bicubic-upsampled luma
    red = build_model("rednet", get_family("rednet").Config(depth=4, width=4)).eval().to(device)
    sr = evaluate(red, EvalData(tmp_path / "HR", scale=2))
    assert sr.scale == 2 and len(sr.images) == 2
    with pytest.raises(ConfigError, match="x3"):
        evaluate(vapsr, EvalData(tmp_path / "HR", scale=2))
    # paper lookup understands the dataset-xK / dataset-sigmaN keys of the zoo
    red_preset = get_preset("red30-gray")
    assert _lookup_paper(red_preset, "Set5", 3, None) == {"psnr": 33.82, "ssim": 0.9230}
    from restorekit.data.degrade import parse_degradation

    assert _lookup_paper(red_preset, "BSD200", 1, parse_degradation("awgn:30")) == {"psnr": 27.95, "ssim": 0.8019}
    assert _lookup_paper(red_preset, "BSD200", 1, parse_degradation("awgn:0-50")) is None


def _tiny_hr(folder: Path, count: int = 2, size: int = 32) -> Path:
    for i in range(count):
        _write(folder / f"im{i}.png", _smooth_rgb(20 + i, size, size))
    return folder


def test_cli_unavailable_device_is_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # the bicubic pseudo-model is never passed to restorekit.load: evaluate itself must check the device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU-only build, on any machine
    code = main(["eval", "bicubic", "--scale", "2", "--hr", str(_tiny_hr(tmp_path / "HR")), "--device", "cuda",
                 "--no-progress"])
    assert code == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_degrade_with_lr_is_refused(tmp_path: Path) -> None:
    hr = _tiny_hr(tmp_path / "HR", size=24)
    for i in range(2):
        _write(tmp_path / "X2" / f"im{i}x2.png", _smooth_rgb(20 + i, 12, 12))
    with pytest.raises(ConfigError, match="cannot be combined with --lr"):
        evaluate("bicubic", EvalData(hr, lr_dir=tmp_path / "X2", degrade="awgn:5", scale=2), device="cpu")


def test_limit_makes_the_paper_comparison_a_note(tmp_path: Path) -> None:
    from restorekit.archs import get_family
    from restorekit.model import build_model
    from restorekit.zoo import PRESETS

    hr = _tiny_hr(tmp_path / "HR")
    model = build_model("vapsr", get_family("vapsr").Config(scale=4, num_feat=8, num_block=1, d_atten=8),
                        PRESETS["vapsr-x4"]).eval()
    whole = evaluate(model, EvalData(hr, dataset="Set5"))
    assert whole.paper is not None and "(ours " in whole.table() and whole.to_json()["comparable"] is True
    subset = evaluate(model, EvalData(hr, limit=1, dataset="Set5"))
    table = subset.table()
    assert "not comparable: subset of 1 of 2 images" in table and "(ours " not in table
    assert "32.38" in table  # the paper's number is still shown
    doc = subset.to_json()
    assert doc["comparable"] is False and doc["images_in_set"] == 2 and len(doc["images"]) == 1


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_json_gets_umask_permissions(tmp_path: Path) -> None:
    from restorekit.evaluate import write_json_atomic

    old = os.umask(0o027)
    try:
        path = write_json_atomic({"a": 1}, tmp_path / "r.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # 0666 & ~027, not mkstemp's 0600


def test_unknown_model_name_is_not_a_missing_weights_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", "nosuch-model", "--hr", str(_tiny_hr(tmp_path / "HR")), "--device", "cpu", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "nosuch-model: neither a preset name" in err and "restorekit models" in err


def test_sixteen_bit_colour_keeps_its_levels_in_eval_and_training(tmp_path: Path) -> None:
    # both readers go through restorekit.imageio: a 48-bit PNG is not cut to 8 bits (256 levels)
    from restorekit.data.datasets import read_image as read_training
    from restorekit.imageio import encode_png16

    ramp = np.arange(64 * 64 * 3, dtype=np.uint16).reshape(64, 64, 3) * 5 + 7  # 12288 distinct 16-bit values
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "ramp.png").write_bytes(encode_png16(ramp))
    want = torch.from_numpy(ramp.astype(np.float32) / np.float32(65535)).permute(2, 0, 1)
    for got in (read_image(tmp_path / "gt" / "ramp.png"), read_training(tmp_path / "gt" / "ramp.png", 3)):
        assert got.dtype == torch.float32 and torch.equal(got, want)
        assert len(torch.unique(got)) > 256
    # through evaluate too (float convention): an input one 16-bit step away from the truth measures
    # 20 log10(65535) = 96.3 dB; cut to 8 bits, the two files would mostly read the same
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ramp.png").write_bytes(encode_png16(ramp + 1))
    result = evaluate(_Identity(3), EvalData(tmp_path / "gt", lr_dir=tmp_path / "in"),
                      convention=MetricConvention(uint8=False))
    assert result.images[0].psnr == pytest.approx(20 * math.log10(65535), abs=0.05)


def test_eval_and_training_refuse_what_restore_refuses_by_name(tmp_path: Path) -> None:
    from restorekit.data.datasets import read_image as read_training

    frames = [Image.fromarray(_smooth_rgb(i)) for i in range(2)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    buffer = tmp_path / "whole.png"
    _write(buffer, np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    (tmp_path / "cut.png").write_bytes(buffer.read_bytes()[:-400])  # IDAT ends early: Pillow would pad black
    for name, reason in (("anim.gif", "more than one frame"), ("cut.png", "truncated")):
        for reader in (read_image, lambda p: read_training(p, 3)):
            with pytest.raises(ImageError, match=rf"{name}.*{reason}"):
                reader(tmp_path / name)
