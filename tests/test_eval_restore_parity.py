"""``restorekit eval`` and ``restorekit restore`` must run the same function on an image: same pixels
for every family, also on sizes that are not a multiple of the model's alignment.

Through the public API only: ``restore_file`` writes the restored 8-bit PNG, then ``evaluate``
scores the same model on the same input against that PNG under an RGB, uint8, no-crop convention.
Identical pixels give PSNR = inf. Both go through ``RestorationModel.forward``, the one place that
pads (with the family's mode), runs and crops; a second pad anywhere (evaluate.py used to replicate-pad
before the model while NAFNet zero-padded and HINet reflected inside) makes this fail for the families
with an alignment above 1 and global statistics.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import restorekit
from restorekit.archs import bicubic_pp, hinet, nafnet, rednet, vapsr
from restorekit.conventions import MetricConvention
from restorekit.evaluate import EvalData, evaluate
from restorekit.model import RestorationModel, build_model
from restorekit.tlc import convert_to_local

SIZE = (29, 37)  # height, width: odd, so no alignment (2, 4, 8, 16) divides either side


def _tiny(case: str) -> RestorationModel:
    small_unet = nafnet.Config(width=8, enc_blk_nums=(1, 1), middle_blk_num=1, dec_blk_nums=(1, 1))
    if case == "nafnet":
        return build_model("nafnet", small_unet)
    if case == "nafnet_tlc":
        model = build_model("nafnet", small_unet)
        convert_to_local(model.net, train_size=(16, 16))
        return model
    if case == "hinet":
        return build_model("hinet", hinet.Config(width=4, depth=3))
    if case == "rednet":
        return build_model("rednet", rednet.Config(depth=6, width=8, in_channels=1))
    if case == "bicubic_pp":
        return build_model("bicubic_pp", bicubic_pp.Config(channels=8))
    if case == "vapsr":
        return build_model("vapsr", vapsr.Config(scale=2, num_feat=8, num_block=2, d_atten=8))
    raise KeyError(case)


def _randomize(model: RestorationModel) -> RestorationModel:
    """Every parameter away from its init (NAFNet's beta/gamma start at zero: blocks = identity)."""
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(1 + 0.3 * torch.randn_like(param)).add_(0.05 * torch.randn_like(param))
    return model.eval()


CASES = ["nafnet", "nafnet_tlc", "hinet", "rednet", "bicubic_pp", "vapsr"]


@pytest.mark.parametrize("case", CASES)
def test_eval_and_restore_give_identical_pixels_on_unaligned_sizes(case: str, tmp_path: Path) -> None:
    model = _randomize(_tiny(case))
    height, width = SIZE
    assert model.alignment == 1 or (height % model.alignment and width % model.alignment), "pick an unaligned size"
    rng = np.random.default_rng(0)
    channels = model.in_channels
    pixels = rng.integers(0, 256, size=(height, width, channels) if channels == 3 else (height, width), dtype=np.uint8)
    inputs, restored = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    restored.mkdir()
    Image.fromarray(pixels).save(inputs / "photo.png")

    restorekit.restore_file(inputs / "photo.png", restored / "photo.png", model)
    with Image.open(restored / "photo.png") as out:
        assert out.size == (width * model.scale, height * model.scale)
        assert np.asarray(out).std() > 1, "a random model should not give a flat image"

    convention = MetricConvention(y_channel=False, crop_border=0, uint8=True, ssim="2d")
    result = evaluate(model, EvalData(restored, lr_dir=inputs, scale=model.scale), convention=convention)
    assert len(result.images) == 1
    psnr = result.images[0].psnr
    assert math.isinf(psnr), f"{case}: eval's output differs from restore's (PSNR {psnr:.2f} dB, identical = inf)"


def test_a_grey_model_on_a_colour_file_sees_the_same_luma_in_eval_and_restore(tmp_path: Path) -> None:
    # restore gives a 1-channel model the full-range BT.601 luma of a colour photo and puts the chroma back;
    # with R = G = B the chroma is neutral, so the written file is the model's output in all three planes.
    # eval must feed the model the same luma (it used to feed MATLAB's 16-235 Y: other pixels).
    model = _randomize(_tiny("rednet"))
    grey = np.random.default_rng(1).integers(0, 256, size=SIZE, dtype=np.uint8)
    inputs, restored = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    restored.mkdir()
    Image.fromarray(np.repeat(grey[..., None], 3, axis=-1)).save(inputs / "photo.png")
    restorekit.restore_file(inputs / "photo.png", restored / "photo.png", model)
    with Image.open(restored / "photo.png") as out:
        planes = np.asarray(out)
    assert out.mode == "RGB" and (planes[..., 0] == planes[..., 1]).all() and (planes[..., 1] == planes[..., 2]).all()
    assert planes.std() > 1
    convention = MetricConvention(y_channel=False, crop_border=0, uint8=True, ssim="2d")
    result = evaluate(model, EvalData(restored, lr_dir=inputs, scale=1), convention=convention)
    assert math.isinf(result.images[0].psnr), f"eval's input differs from restore's (PSNR {result.images[0].psnr:.2f})"
