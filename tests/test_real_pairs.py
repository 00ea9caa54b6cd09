"""Real noisy/clean pairs: folder pairing by name, weighted mixtures in training, `eval --pairs`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from restorekit.cli import main
from restorekit.data.build import MixedDataset, make_train_set
from restorekit.data.datasets import SampleKey, pair_in_folder
from restorekit.errors import ConfigError
from restorekit.evaluate import EvalData, evaluate
from restorekit.train.config import config_from_dict


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _pair_folder(root: Path, count: int = 3, size: int = 32, sigma: float = 8.0) -> Path:
    rng = np.random.default_rng(0)
    for i in range(count):
        clean = rng.integers(40, 200, (size, size, 3)).astype(np.float64)
        noisy = np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 255)
        _write(root / f"Cam_{i}_3200_scene_real.png", noisy.round().astype(np.uint8))
        _write(root / f"Cam_{i}_3200_scene_mean.png", clean.round().astype(np.uint8))
    return root


def test_pair_in_folder_matches_polyu_and_sidd_names(tmp_path: Path) -> None:
    root = _pair_folder(tmp_path / "polyu")
    pairs = pair_in_folder(root)
    assert (pairs[0][0].name, pairs[0][1].name) == ("Cam_0_3200_scene_real.png", "Cam_0_3200_scene_mean.png")
    assert len(pairs) == 3
    sidd = tmp_path / "sidd"
    _write(sidd / "0001_NOISY_SRGB_010.PNG", np.zeros((8, 8, 3), np.uint8))
    _write(sidd / "0001_GT_SRGB_010.PNG", np.zeros((8, 8, 3), np.uint8))
    assert [(a.name, b.name) for a, b in pair_in_folder(sidd)] == [("0001_NOISY_SRGB_010.PNG", "0001_GT_SRGB_010.PNG")]
    _write(root / "lonely_real.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ConfigError, match="lonely_real.png"):
        pair_in_folder(root)


def _mixture_config(tmp_path: Path) -> dict:
    pairs = _pair_folder(tmp_path / "pairs", size=40)
    clean = tmp_path / "clean"
    for i in range(4):
        _write(clean / f"{i}.png", np.random.default_rng(i).integers(0, 255, (40, 40, 3)).astype(np.uint8))
    common = {"patch": 16, "flip": True}
    return {
        "name": "mix",
        "model": {"family": "nafnet", "arch": {"width": 8, "enc_blk_nums": [1], "middle_blk_num": 1, "dec_blk_nums": [1]}},
        "data": {"train": [
            {"gt": str(clean), "kind": "degraded", "degradation": "camera:100-800", "weight": 3.0, **common},
            {"gt": str(pairs), "kind": "paired", "weight": 1.0, **common},
        ], "batch_size": 2},
        "train": {"total_steps": 2},
    }


def test_mixture_draws_by_weight_and_each_key_is_one_sample(tmp_path: Path) -> None:
    config = config_from_dict(_mixture_config(tmp_path))
    dataset, repeat = make_train_set(config.data.train, 1, 3, seed=5)
    assert isinstance(dataset, MixedDataset) and repeat == 1
    assert len(dataset) == 4 + 3
    parts = [dataset.pick(SampleKey(0, p, 0))[0] for p in range(2000)]
    assert abs(parts.count(0) / len(parts) - 0.75) < 0.04  # weights 3:1
    key = SampleKey(2, 17, 0)
    first, again = dataset[key], dataset[key]
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert first[0].shape == (3, 16, 16)
    other = dataset[SampleKey(2, 18, 0)]
    assert not torch.equal(first[1], other[1])


def test_mixture_parts_must_share_a_patch_size(tmp_path: Path) -> None:
    raw = _mixture_config(tmp_path)
    raw["data"]["train"][1]["patch"] = 24
    config = config_from_dict(raw)
    with pytest.raises(ConfigError, match="patch"):
        make_train_set(config.data.train, 1, 3, seed=0)


def test_eval_pairs_scores_inputs_and_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _pair_folder(tmp_path / "pairs", sigma=8.0)
    result = evaluate("input", EvalData(root, paired=True))
    assert len(result.images) == 3
    # sigma 8 Gaussian noise on 0-255: about 30 dB, measured on the noisy files against the clean ones
    assert 29.0 < result.mean["psnr"] < 31.5
    assert main(["eval", "input", "--pairs", str(root), "--no-progress"]) == 0
    assert "noisy/clean pairs" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="--pairs"):
        evaluate("input", EvalData(root, paired=True, degrade="awgn:5"))


def test_default_denoiser_removes_real_camera_noise(shared_data: Path, device: torch.device) -> None:
    """The shipped default on a real pair of a camera body it never saw, the SIDD-style demo and a clean photo."""
    from restorekit.conventions import RESTORATION_RGB
    from restorekit.evaluate import read_image
    from restorekit.metrics import psnr
    from restorekit.model import load

    model = load("restorekit-denoise", device=device)

    def run(image: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(image[None].to(device)).clamp(0, 1).cpu()

    noisy, clean = pair_in_folder(shared_data / "real" / "PolyU_Canon600D")[0]
    x, y = read_image(noisy)[:, :256, :256], read_image(clean)[:, :256, :256]
    assert psnr(run(x), y[None], RESTORATION_RGB) > psnr(x[None], y[None], RESTORATION_RGB) + 1.0
    demo = shared_data / "demo" / "nafnet"
    reference = read_image(demo / "denoise_img.png")[None]
    assert psnr(run(read_image(demo / "noisy.png")), reference, RESTORATION_RGB) > 28.0  # the input is 19.1 dB
    photo = read_image(shared_data / "denoise" / "Kodak24" / "kodim03.png")[:, :192, :192]
    assert psnr(run(photo), photo[None], RESTORATION_RGB) > 38.0  # a clean photo is left alone
