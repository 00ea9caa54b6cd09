"""Datasets: pairing by name, aligned crops, keyed determinism, the distributed batch split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from restorekit.data.datasets import (
    Augment,
    DegradedFolder,
    EpochBatchSampler,
    PairedFolder,
    SampleKey,
    crop_and_augment,
    pair_files,
    read_image,
)
from restorekit.errors import ConfigError


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def sr_folders(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    for i in range(3):
        gt = (rng.random((16, 20, 3)) * 255).astype(np.uint8)
        _write(tmp_path / "gt" / f"img{i}.png", gt)
        _write(tmp_path / "lq" / f"img{i}x2.png", gt[::2, ::2])
    return tmp_path / "lq", tmp_path / "gt"


def test_pairs_tolerate_scale_suffix(sr_folders: tuple[Path, Path]) -> None:
    pairs = pair_files(*sr_folders)
    assert [(lq.name, gt.name) for lq, gt in pairs] == [(f"img{i}x2.png", f"img{i}.png") for i in range(3)]


def test_unmatched_files_are_listed(sr_folders: tuple[Path, Path]) -> None:
    lq_dir, gt_dir = sr_folders
    _write(lq_dir / "stray.png", np.zeros((4, 4, 3), np.uint8))
    _write(gt_dir / "lonely.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ConfigError, match="stray.png") as info:
        pair_files(lq_dir, gt_dir)
    assert "lonely.png" in str(info.value)


def test_pairs_in_subfolders_and_across_suffixes(tmp_path: Path) -> None:
    for seq in ("000", "001"):
        _write(tmp_path / "sharp" / seq / "00000000.png", np.zeros((8, 8, 3), np.uint8))
        _write(tmp_path / "blur" / seq / "00000000.jpg", np.zeros((8, 8, 3), np.uint8))
    pairs = pair_files(tmp_path / "blur", tmp_path / "sharp")
    assert [(lq.relative_to(tmp_path).as_posix(), gt.parent.name) for lq, gt in pairs] == [
        ("blur/000/00000000.jpg", "000"), ("blur/001/00000000.jpg", "001")]


def test_crop_is_aligned_to_the_scale_grid_under_every_augmentation() -> None:
    # LQ = 3x3 block average of GT; averaging commutes with aligned crops, flips and transposes,
    # so the relation must survive every random crop/augmentation.
    gt = torch.rand(3, 30, 33)
    lq = F.avg_pool2d(gt[None], 3)[0]
    for position in range(12):
        g = torch.Generator().manual_seed(position)
        lq_c, gt_c = crop_and_augment(lq, gt, 3, Augment(patch=12, flip=True, rot90=True), g, "test")
        assert gt_c.shape == (3, 12, 12) and lq_c.shape == (3, 4, 4)
        torch.testing.assert_close(F.avg_pool2d(gt_c[None], 3)[0], lq_c)


def test_channel_shuffle_permutes_lq_and_gt_alike() -> None:
    gt = torch.stack([torch.full((6, 6), float(c)) for c in range(3)])  # channel c holds the value c
    lq = gt[:, ::2, ::2] + 10
    orders = set()
    for position in range(40):
        g = torch.Generator().manual_seed(position)
        lq_c, gt_c = crop_and_augment(lq, gt, 2, Augment(channel_shuffle=True), g, "test")
        order = tuple(int(v) for v in gt_c[:, 0, 0])
        assert sorted(order) == [0, 1, 2] and torch.equal(lq_c, gt_c[:, ::2, ::2] + 10)
        orders.add(order)
    assert len(orders) == 6  # every permutation shows up
    g = torch.Generator().manual_seed(0)
    _, kept = crop_and_augment(lq, gt, 2, Augment(), g, "test")
    assert torch.equal(kept, gt)


def test_channel_shuffle_leaves_the_stream_of_other_augmentations_alone(sr_folders: tuple[Path, Path]) -> None:
    plain = PairedFolder(*sr_folders, scale=2, augment=Augment(patch=8, flip=True, rot90=True), seed=5)
    shuffled = PairedFolder(*sr_folders, scale=2, augment=Augment(patch=8, flip=True, rot90=True, channel_shuffle=True), seed=5)
    for position in range(6):
        lq, gt = plain[SampleKey(0, position, 1)]
        lq_s, gt_s = shuffled[SampleKey(0, position, 1)]
        # same crop and dihedral transform: the shuffled sample is a channel permutation of the plain one
        assert sorted(gt_s.flatten(1).sum(1).tolist()) == pytest.approx(sorted(gt.flatten(1).sum(1).tolist()))
        match = [next(c for c in range(3) if torch.equal(gt_s[k], gt[c])) for k in range(3)]
        assert torch.equal(lq_s, lq[match])


def test_samples_depend_only_on_the_key(sr_folders: tuple[Path, Path]) -> None:
    data = PairedFolder(*sr_folders, scale=2, augment=Augment(patch=8, flip=True, rot90=True), seed=5)
    a = data[SampleKey(3, 7, 1)]
    again = PairedFolder(*sr_folders, scale=2, augment=Augment(patch=8, flip=True, rot90=True), seed=5)[SampleKey(3, 7, 1)]
    assert torch.equal(a[0], again[0]) and torch.equal(a[1], again[1])
    others = [data[SampleKey(epoch, 7, 1)][1] for epoch in range(4, 10)]
    assert any(not torch.equal(a[1], o) for o in others)  # another epoch draws another crop
    assert a[0].shape == (3, 4, 4) and a[1].shape == (3, 8, 8)


def test_degraded_folder_makes_lq_from_gt_patch(sr_folders: tuple[Path, Path]) -> None:
    _, gt_dir = sr_folders
    data = DegradedFolder(gt_dir, "bicubic:2", scale=2, augment=Augment(patch=8), seed=0)
    lq, gt = data[SampleKey(0, 0, 2)]
    assert lq.shape == (3, 4, 4) and gt.shape == (3, 8, 8)
    noisy = DegradedFolder(gt_dir, "awgn:25", scale=1, augment=Augment(patch=8), seed=0)
    lq1, gt1 = noisy[SampleKey(0, 0, 0)]
    assert lq1.shape == gt1.shape and 0.05 < float((lq1 - gt1).std()) < 0.15  # sigma 25/255 ~ 0.098
    with pytest.raises(ConfigError, match="downscales by 2"):
        DegradedFolder(gt_dir, "bicubic:2", scale=3)


def test_grey_reading(tmp_path: Path) -> None:
    _write(tmp_path / "g.png", np.full((4, 5, 3), 200, np.uint8))
    grey = read_image(tmp_path / "g.png", channels=1)
    assert grey.shape == (1, 4, 5) and torch.allclose(grey, torch.full_like(grey, 200 / 255))


def test_distributed_split_unions_to_the_single_process_batches() -> None:
    single = EpochBatchSampler(10, batch_size=4, seed=3, repeat=2)
    ranks = [EpochBatchSampler(10, batch_size=2, seed=3, repeat=2, rank=r, world_size=2) for r in range(2)]
    for s in [single, *ranks]:
        s.set_epoch(4)
    single_batches = list(single)
    rank_batches = [list(r) for r in ranks]
    assert len(single_batches) == len(rank_batches[0]) == 5  # 20 samples // 4, last partial dropped
    for step, batch in enumerate(single_batches):
        assert batch == rank_batches[0][step] + rank_batches[1][step]
    positions = [key.position for batch in single_batches for key in batch]
    assert len(set(positions)) == 20  # every position once: repeats get distinct keys
    single.set_epoch(4, start_batch=3)
    assert list(single) == single_batches[3:]


def test_sampler_rejects_a_set_smaller_than_one_batch() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        EpochBatchSampler(3, batch_size=4, seed=0)


def test_worker_processes_produce_the_same_batches(sr_folders: tuple[Path, Path]) -> None:
    # Per-sample generators are keyed, not drawn from worker-local RNG state, so the batches do not
    # depend on how many workers load them (and a resumed run sees the same data).
    data = PairedFolder(*sr_folders, scale=2, augment=Augment(patch=8, flip=True, rot90=True), seed=2)
    batches = {}
    for workers in (0, 2):
        sampler = EpochBatchSampler(len(data), batch_size=2, seed=2, repeat=2)
        sampler.set_epoch(1)
        loader = torch.utils.data.DataLoader(data, batch_sampler=sampler, num_workers=workers)
        batches[workers] = [gt for _, gt in loader]
    assert len(batches[0]) == 3
    assert all(torch.equal(a, b) for a, b in zip(batches[0], batches[2]))


def test_deterministic_degradations_are_recognised() -> None:
    from restorekit.data.degrade import parse_degradation

    for spec in ("bicubic:3", "bicubic:3+jpeg:90", "gaussblur:5:1.0", "motionblur:5:3:30"):
        assert parse_degradation(spec).deterministic, spec
    for spec in ("awgn:25", "awgn:0-50", "jpeg:80-95", "gaussblur:5:0.5-2", "bicubic:2+awgn:5"):
        assert not parse_degradation(spec).deterministic, spec


def test_precomputed_lq_is_a_crop_of_the_degraded_whole_image(tmp_path: Path) -> None:
    from restorekit.data.degrade import parse_degradation

    rng = np.random.default_rng(3)
    for folder, count in (("a", 2), ("b", 3)):
        for i in range(count):
            _write(tmp_path / folder / f"{folder}{i}.png", (rng.random((26, 31, 3)) * 255).astype(np.uint8))
    folders = [tmp_path / "a", tmp_path / "b"]
    data = DegradedFolder(folders, "bicubic:3", scale=3, augment=Augment(patch=12), seed=5, precompute_lq=True)
    assert len(data) == 5 and [data.name(i) for i in (0, 2)] == ["a0", "b0"]  # folders in the order given
    for position in range(6):
        key = SampleKey(0, position, position % 5)
        lq, gt = data[key]
        assert lq.shape == (3, 4, 4) and gt.shape == (3, 12, 12)
        whole_gt = read_image(data.files[key.image], 3)[..., :24, :30]  # mod-crop to the scale
        whole_lq = parse_degradation("bicubic:3")(whole_gt)
        # find the patch in the whole-image LQ: it must be an exact, grid-aligned crop
        hits = [(y, x) for y in range(whole_lq.shape[-2] - 3) for x in range(whole_lq.shape[-1] - 3)
                if torch.equal(whole_lq[..., y : y + 4, x : x + 4], lq)]
        assert hits, "LQ patch is not a crop of the degraded whole image"
        y, x = hits[0]
        assert torch.equal(whole_gt[..., 3 * y : 3 * y + 12, 3 * x : 3 * x + 12], gt)
        assert all(torch.equal(a, b) for a, b in zip(data[key], (lq, gt)))  # cached: same sample again


def test_precompute_needs_a_deterministic_degradation(sr_folders: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigError, match="deterministic"):
        DegradedFolder(sr_folders[1], "awgn:0-50", scale=1, precompute_lq=True)
