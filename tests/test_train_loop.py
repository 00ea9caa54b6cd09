"""Training engine: losses, schedules, EMA, an end-to-end run, exact resume after SIGKILL, DDP parity."""

from __future__ import annotations

import importlib.util
import json
import math
import multiprocessing
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import restorekit
from restorekit.archs import bicubic_pp
from restorekit.errors import ConfigError, DetectionError
from restorekit.model import build_model
from restorekit.train import config_from_dict, train
from restorekit.train.checkpoint import load_checkpoint
from restorekit.train.config import ScheduleSection
from restorekit.train.ema import EMA
from restorekit.train.losses import l1_loss, psnr_loss, staged_loss
from restorekit.train.schedules import lr_at

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------
# Fixtures: tiny SR data (x3, 24x24 GT) made in tmp_path, and a tiny Bicubic++ config.


def _smooth_images(rng: np.random.Generator, count: int, size: int) -> list[np.ndarray]:
    # Low-frequency content so a 4-channel net can actually learn something in a few steps.
    out = []
    for _ in range(count):
        coarse = rng.random((4, 4, 3))
        img = Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR)
        out.append(np.asarray(img))
    return out


@pytest.fixture
def sr_data(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("val", 2)):
        for i, gt in enumerate(_smooth_images(rng, count, 24)):
            for sub, array, name in (("gt", gt, f"{i}.png"), ("lq", gt[1::3, 1::3], f"{i}x3.png")):
                (tmp_path / split / sub).mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.ascontiguousarray(array)).save(tmp_path / split / sub / name)
    return tmp_path


def tiny_config(data: Path, out: Path, name: str = "tiny", **sections: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": name,
        "model": {"family": "bicubic_pp", "arch": {"channels": 4, "bias": True}},
        "data": {
            "train": {"gt": str(data / "train/gt"), "lq": str(data / "train/lq"), "patch": 12,
                      "flip": True, "rot90": True, "repeat": 2},
            "batch_size": 2,
        },
        "optim": {"name": "adam", "lr": 5e-3, "grad_clip": 1.0},
        "schedule": {"name": "cosine", "min_lr": 1e-4},
        "train": {"total_steps": 12, "checkpoint_every": 4, "log_every": 2, "out_dir": str(out),
                  "deterministic": True, "progress": False, "plot": False, "device": "cpu"},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    return config


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Bit-exact comparisons across processes need the same intra-op thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------
# Pieces.


def test_psnr_loss_is_minus_mean_per_image_psnr() -> None:
    target = torch.rand(3, 3, 8, 8)
    pred = target + 0.1 * torch.randn_like(target)
    per_image_psnr = [10 * math.log10(1 / float(((p - t) ** 2).mean())) for p, t in zip(pred, target)]
    assert psnr_loss(pred, target).item() == pytest.approx(-sum(per_image_psnr) / 3, rel=1e-5)


def test_staged_loss_weights_every_stage_and_demands_weights() -> None:
    target = torch.zeros(1, 1, 2, 2)
    stages = [torch.ones(1, 1, 2, 2), 3 * torch.ones(1, 1, 2, 2)]
    assert staged_loss(l1_loss, stages, target, (0.5, 0.25)).item() == pytest.approx(0.5 * 1 + 0.25 * 3)
    with pytest.raises(ConfigError, match="stage_weights"):
        staged_loss(l1_loss, stages, target, None)


def test_schedules() -> None:
    knee = ScheduleSection(name="knee", unit="epoch", min_lr=5e-6)
    assert lr_at(knee, 5e-4, 0, 1000) == 5e-4
    assert lr_at(knee, 5e-4, 500, 1000) == pytest.approx(2.5e-4)
    assert lr_at(knee, 5e-4, 999, 1000) == 5e-6  # floored
    cosine = ScheduleSection(name="cosine", min_lr=1e-7)
    assert lr_at(cosine, 1e-3, 0, 100) == pytest.approx(1e-3)
    assert lr_at(cosine, 1e-3, 50, 100) == pytest.approx((1e-3 + 1e-7) / 2)
    assert lr_at(cosine, 1e-3, 100, 100) == pytest.approx(1e-7)
    multistep = ScheduleSection(name="multistep", milestones=(60000, 1000000), gamma=0.7)
    assert lr_at(multistep, 1e-3, 59999, 10**6) == 1e-3
    assert lr_at(multistep, 1e-3, 60000, 10**6) == pytest.approx(7e-4)
    warm = ScheduleSection(name="cosine", warmup=10)
    assert lr_at(warm, 1.0, 0, 100) == pytest.approx(0.1) and lr_at(warm, 1.0, 9, 100) == pytest.approx(1.0)


def test_auto_validation_convention_follows_the_zoo_preset() -> None:
    from restorekit import conventions
    from restorekit.train.loop import _convention

    assert _convention("auto", "nafnet", "nafnet_sidd_w32", 1) == conventions.SIDD_FLOAT
    assert _convention("auto", "hinet", "hinet_rain13k", 1) == conventions.DERAIN_Y
    assert _convention("auto", "vapsr", None, 4) == conventions.SR_Y
    assert _convention("gray", "vapsr", "vapsr_x4", 4) == conventions.GRAY
    with pytest.raises(ConfigError, match="val.convention"):
        _convention("y", "vapsr", None, 4)


def test_ema_update_rule() -> None:
    net = torch.nn.Linear(2, 1)
    ema = EMA(net, decay=0.9)
    before = ema.net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    torch.testing.assert_close(ema.net.weight, 0.9 * before + 0.1 * net.weight.detach())
    assert not any(p.requires_grad for p in ema.net.parameters())


# ------------------------------------------------------------------------------------------------
# Whole runs.


@pytest.mark.slow
def test_run_learns_validates_exports_and_reloads(sr_data: Path, tmp_path: Path, device: torch.device) -> None:
    raw = tiny_config(sr_data, tmp_path / "runs", train={"total_steps": 30, "device": str(device), "plot": True},
                      ema={"decay": 0.5}, val={"every": 10, "convention": "sr_y"})
    raw["data"]["val"] = {"gt": str(sr_data / "val/gt"), "lq": str(sr_data / "val/lq")}
    result = train(config_from_dict(raw))
    run_dir = tmp_path / "runs/tiny"
    assert result.run_dir == run_dir and result.step == 30
    assert yaml.safe_load((run_dir / "config.yml").read_text())["train"]["total_steps"] == 30
    assert result.best_checkpoint is not None and result.best_checkpoint.is_file()
    assert set(result.metrics) >= {"psnr", "ssim"}
    state = load_checkpoint(result.last_checkpoint)
    losses = [h["loss"] for h in state["history"] if "loss" in h]
    assert losses[-1] < losses[0]  # it learned something
    assert [h["step"] for h in state["history"] if "val_psnr" in h] == [10, 20, 30]
    # The export is the EMA network and loads through the public one-path loader.
    model = restorekit.load(result.weights)  # on CPU: compare with the checkpoint, which is on CPU too
    assert model.family == "bicubic_pp" and model.config.channels == 4
    for key, tensor in model.net.state_dict().items():
        assert torch.equal(tensor, state["ema"][key])
    # Optional extras: curves and TensorBoard scalars appear exactly when their packages are installed.
    assert (run_dir / "curves.png").is_file() == (importlib.util.find_spec("matplotlib") is not None)
    assert any((run_dir / "tb").glob("events.*")) == (importlib.util.find_spec("tensorboard") is not None)
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 30 and "val_psnr" in records[-1]


def test_hinet_two_stage_loss_and_bf16_autocast(tmp_path: Path, device: torch.device) -> None:
    rng = np.random.default_rng(1)
    for i, img in enumerate(_smooth_images(rng, 2, 32)):
        (tmp_path / "gt").mkdir(exist_ok=True)
        Image.fromarray(img).save(tmp_path / "gt" / f"{i}.png")
    raw = {
        "name": "hinet",
        "model": {"family": "hinet", "arch": {"width": 4, "depth": 2}},
        "data": {"train": {"gt": str(tmp_path / "gt"), "kind": "degraded", "degradation": "awgn:25", "patch": 16},
                 "batch_size": 2},
        "loss": {"name": "psnr", "stage_weights": [0.5, 0.5]},
        "train": {"total_steps": 2, "out_dir": str(tmp_path / "runs"), "progress": False, "plot": False, "amp": "bf16",
                  "device": str(device)},
    }
    result = train(config_from_dict(raw))
    assert result.step == 2 and restorekit.load(result.weights).family == "hinet"
    raw["loss"] = {"name": "psnr"}
    raw["name"] = "hinet_no_weights"
    with pytest.raises(ConfigError, match="stage_weights"):
        train(config_from_dict(raw))


def test_init_starts_from_given_weights(sr_data: Path, tmp_path: Path) -> None:
    first = train(config_from_dict(tiny_config(sr_data, tmp_path, name="a", train={"total_steps": 2})))
    raw = tiny_config(sr_data, tmp_path, name="b", train={"total_steps": 1}, optim={"lr": 0.0})
    raw["model"]["init"] = str(first.weights)
    second = train(config_from_dict(raw))  # lr 0: the weights must stay exactly the initial ones
    a, b = restorekit.load(first.weights).net.state_dict(), restorekit.load(second.weights).net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    raw["name"], raw["model"]["arch"] = "c", {"channels": 6}
    with pytest.raises(DetectionError, match="does not fit bicubic_pp"):
        train(config_from_dict(raw))


def test_knee_schedule_steps_once_per_epoch(sr_data: Path, tmp_path: Path) -> None:
    # 3 images x repeat 2 / batch 2 = 3 steps per epoch; 2 epochs -> schedule total 2 epochs.
    raw = tiny_config(sr_data, tmp_path, train={"total_steps": 6, "log_every": 1},
                      schedule={"name": "knee", "unit": "epoch", "total": 4, "min_lr": 0.0}, optim={"lr": 1e-3})
    train(config_from_dict(raw))
    records = [json.loads(line) for line in (tmp_path / "tiny/log.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in records] == pytest.approx([1e-3] * 3 + [0.75e-3] * 3)
    assert [r["epoch"] for r in records] == [0, 0, 0, 1, 1, 1]


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from restorekit.train import checkpoint

    path = tmp_path / "last.pt"
    checkpoint.save_checkpoint({"model": {}, "step": 1}, path)

    def torn_write(obj: Any, f: Any) -> None:
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", torn_write)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_checkpoint({"model": {}, "step": 2}, path)
    assert checkpoint.load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


TINY_ARCHS: dict[str, tuple[dict[str, Any], str, str]] = {  # family -> (arch overrides, degradation, loss)
    "nafnet": ({"width": 8, "enc_blk_nums": [1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1]}, "awgn:25", "psnr"),
    "hinet": ({"width": 4, "depth": 2}, "awgn:25", "psnr"),
    "rednet": ({"depth": 4, "width": 8}, "awgn:25", "mse"),
    "vapsr": ({"scale": 2, "num_feat": 8, "num_block": 1, "d_atten": 8}, "bicubic:2", "l1"),
    "bicubic_pp": ({"channels": 4}, "bicubic:3", "mse"),
}


@pytest.mark.parametrize("family", sorted(TINY_ARCHS))
def test_every_family_trains_validates_and_exports(family: str, tmp_path: Path) -> None:
    arch, degradation, loss = TINY_ARCHS[family]
    rng = np.random.default_rng(2)
    for i, img in enumerate(_smooth_images(rng, 2, 36)):
        (tmp_path / "gt").mkdir(exist_ok=True)
        Image.fromarray(img).save(tmp_path / "gt" / f"{i}.png")
    folder = {"gt": str(tmp_path / "gt"), "kind": "degraded", "degradation": degradation}
    raw = {
        "name": family,
        "model": {"family": family, "arch": arch},
        "data": {"train": {**folder, "patch": 24, "flip": True}, "val": folder, "batch_size": 2},
        "loss": {"name": loss, "stage_weights": [0.5, 0.5] if family == "hinet" else None},
        "optim": {"grad_clip": 0.01},
        "train": {"total_steps": 2, "out_dir": str(tmp_path / "runs"), "progress": False, "plot": False,
                  "device": "cpu"},
    }
    result = train(config_from_dict(raw))
    assert result.step == 2 and math.isfinite(result.metrics["psnr"])
    model = restorekit.load(result.weights)
    assert model.family == family and model.scale == {"bicubic:2": 2, "bicubic:3": 3}.get(degradation, 1)


def test_refuses_to_overwrite_or_resume_nothing(sr_data: Path, tmp_path: Path) -> None:
    config = config_from_dict(tiny_config(sr_data, tmp_path, train={"total_steps": 1}))
    with pytest.raises(ConfigError, match="no checkpoint to resume"):
        train(config, resume=True)
    train(config)
    with pytest.raises(ConfigError, match="already holds a run"):
        train(config)


# The two process tests fork the already-initialised test process (no second ``import torch``,
# which is most of the cost on a loaded CI machine); the children run with one thread like the parent.
_FORK = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
needs_fork = pytest.mark.skipif(_FORK is None, reason="needs the fork start method (Linux/macOS)")


def _train_and_get_killed(path: str, kill_at_step: int) -> None:
    """Child process: train, and SIGKILL itself right after optimizer step ``kill_at_step``."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    steps = [0]

    def hook(optimizer: Any, args: Any, kwargs: Any) -> None:
        steps[0] += 1
        if steps[0] == kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)

    register_optimizer_step_post_hook(hook)
    train(path)


def _train_as_rank(path: str, rank: int, port: int) -> None:
    """Child process: one rank of a 2-process run, with the environment torchrun would set."""
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    train(path)


@pytest.mark.slow
@needs_fork
def test_resume_after_sigkill_is_bit_exact(sr_data: Path, tmp_path: Path, one_thread: None) -> None:
    # EMA, grad clipping, cosine lr, flips/rot90 and an epoch boundary (3 steps per epoch) are all on,
    # and the checkpoint at step 4 sits in the middle of an epoch.
    raw = tiny_config(sr_data, tmp_path / "runs", name="killed", ema={"decay": 0.9})
    path = tmp_path / "killed.yml"
    path.write_text(yaml.safe_dump(raw))
    child = _FORK.Process(target=_train_and_get_killed, args=(str(path), 7))
    child.start()
    child.join(timeout=300)
    assert child.exitcode == -signal.SIGKILL
    assert load_checkpoint(tmp_path / "runs/killed/last.pt")["step"] == 4

    resumed = train(path, resume=True)
    reference = train(config_from_dict({**raw, "name": "reference"}))
    got, want = load_checkpoint(resumed.last_checkpoint), load_checkpoint(reference.last_checkpoint)
    assert got["step"] == want["step"] == 12
    for part in ("model", "ema"):
        for key in want[part]:
            assert torch.equal(got[part][key], want[part][key]), f"{part}.{key} differs after resume"
    for key, value in want["optimizer"]["state"].items():
        assert torch.equal(got["optimizer"]["state"][key]["exp_avg_sq"], value["exp_avg_sq"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@needs_fork
def test_two_process_gloo_ddp_matches_single_process_with_doubled_batch(
    sr_data: Path, tmp_path: Path, one_thread: None
) -> None:
    # Adam on a net without batch norm (no per-process statistics), so 2 x batch 2 must equal 1 x batch 4;
    # clipping stays on (it acts after the all-reduce).
    ddp_raw = tiny_config(sr_data, tmp_path / "runs", name="ddp", train={"total_steps": 6})
    path = tmp_path / "ddp.yml"
    path.write_text(yaml.safe_dump(ddp_raw))
    port = _free_port()
    children = [_FORK.Process(target=_train_as_rank, args=(str(path), rank, port)) for rank in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=300)
        assert child.exitcode == 0

    single_raw = tiny_config(sr_data, tmp_path / "runs", name="single", train={"total_steps": 6})
    single_raw["data"]["batch_size"] = 4
    train(config_from_dict(single_raw))
    ddp = load_checkpoint(tmp_path / "runs/ddp/last.pt")["model"]
    single = load_checkpoint(tmp_path / "runs/single/last.pt")["model"]
    assert ddp.keys() == single.keys()
    for key in single:
        torch.testing.assert_close(ddp[key], single[key], rtol=0, atol=1e-6)
    torch.manual_seed(0)  # the runs' seed: this is the initialisation both started from
    initial = build_model("bicubic_pp", bicubic_pp.Config(channels=4, bias=True)).net.state_dict()
    assert all((single[key] - initial[key]).abs().max() > 1e-4 for key in single)  # six steps really moved it


# ------------------------------------------------------------------------------------------------
# Run-folder reliability: checksummed checkpoints with a fallback, one trainer per folder, stale temp
# files, disk full, a checkpoint of another family, worker errors, names confined to out_dir.


def _flip_a_bit(path: Path, member: str = "data/0") -> None:
    """Flip one bit inside a member's stored bytes (what a bad disk or a bad copy does)."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(member))
    data = bytearray(path.read_bytes())
    offset = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[offset + info.file_size // 2] ^= 0x10
    path.write_bytes(bytes(data))


def test_checkpoint_damage_is_detected(tmp_path: Path) -> None:
    from restorekit.train.checkpoint import CheckpointError, save_checkpoint

    state = {"model": {"w": torch.arange(1000.0)}, "step": 3}
    path = save_checkpoint(state, tmp_path / "last.pt")
    assert load_checkpoint(path)["step"] == 3
    _flip_a_bit(path)
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)
    save_checkpoint(state, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file"):
        load_checkpoint(path)


def test_resume_falls_back_to_the_previous_checkpoint(
    sr_data: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from restorekit.train.checkpoint import CheckpointError, previous_path

    raw = tiny_config(sr_data, tmp_path, train={"total_steps": 8, "checkpoint_every": 2})
    train(config_from_dict(raw))
    last = tmp_path / "tiny" / "last.pt"
    prev = previous_path(last)
    assert load_checkpoint(last)["step"] == 8 and load_checkpoint(prev)["step"] == 6
    capfd.readouterr()
    for damage in ("flip", "truncate", "zero"):
        good = prev.read_bytes()
        if damage == "flip":
            _flip_a_bit(last)
        elif damage == "truncate":
            last.write_bytes(last.read_bytes()[:1000])
        else:
            last.write_bytes(b"")
        result = train(config_from_dict({**raw, "train": {**raw["train"], "total_steps": 9}}), resume=True)
        assert result.step == 9
        err = capfd.readouterr().err
        assert f"note: {last}: " in err and "resuming from last.prev.pt (step 6) instead" in err, err
        assert len([line for line in err.splitlines() if line.startswith("note: ")]) >= 1
        prev.write_bytes(good)  # reset: step-6 checkpoint as previous, a damaged newest
        last.write_bytes(good)
    _flip_a_bit(last)
    prev.write_bytes(b"")
    with pytest.raises(CheckpointError, match="damaged.*and the fallback .*empty file") as info:
        train(config_from_dict(raw), resume=True)
    assert "\n" not in str(info.value)


def test_one_trainer_per_run_folder_and_stale_locks(sr_data: Path, tmp_path: Path) -> None:
    from restorekit.train.rundir import RunLock

    config = config_from_dict(tiny_config(sr_data, tmp_path, train={"total_steps": 1}))
    with RunLock(tmp_path / "tiny"), pytest.raises(ConfigError, match=f"another trainer is using .*pid {os.getpid()}"):
        train(config)
    assert not (tmp_path / "tiny" / "last.pt").exists()
    # a lock file left by a dead trainer holds no lock: the next run takes it over
    (tmp_path / "tiny" / ".lock").write_text("pid 999999 on elsewhere\n")
    assert train(config).step == 1


def test_stale_temp_files_are_cleaned_and_others_kept(sr_data: Path, tmp_path: Path) -> None:
    raw = tiny_config(sr_data, tmp_path, train={"total_steps": 2})
    train(config_from_dict(raw))
    run = tmp_path / "tiny"
    stale = [run / "last.pt.k3j_x9az.part", run / "final.safetensors.abcdefgh.part"]
    kept = [run / "notes.part", run / "mine.pt.abcdefgh.part"]
    for path in stale + kept:
        path.write_bytes(b"partial")
    train(config_from_dict({**raw, "train": {**raw["train"], "total_steps": 3}}), resume=True)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)


def test_disk_full_is_one_line(sr_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from restorekit.errors import DiskFullError
    from restorekit.train import checkpoint

    def full(obj: Any, f: Any) -> None:
        f.write(b"some bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(DiskFullError, match="disk full") as info:
        train(config_from_dict(tiny_config(sr_data, tmp_path, train={"total_steps": 4, "checkpoint_every": 2})))
    assert "\n" not in str(info.value)
    assert not list((tmp_path / "tiny").glob("*.part"))


def test_resuming_another_familys_checkpoint_is_one_line(sr_data: Path, tmp_path: Path) -> None:
    from restorekit.train.checkpoint import CheckpointError

    raw = tiny_config(sr_data, tmp_path, train={"total_steps": 1})
    train(config_from_dict(raw))
    other = {**raw, "model": {"family": "vapsr", "arch": {"scale": 3, "num_feat": 8, "num_block": 1, "d_atten": 8}}}
    with pytest.raises(CheckpointError, match="a checkpoint of a bicubic_pp run, but this config trains vapsr"):
        train(config_from_dict(other), resume=True)
    wider = {**raw, "model": {"family": "bicubic_pp", "arch": {"channels": 6, "bias": True}}}
    with pytest.raises(DetectionError, match="does not fit bicubic_pp") as info:
        train(config_from_dict(wider), resume=True)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_corrupt_training_image_is_one_line_naming_it(workers: int, sr_data: Path, tmp_path: Path) -> None:
    from restorekit.errors import RestorekitError

    broken = sr_data / "train" / "gt" / "1.png"
    broken.write_bytes(broken.read_bytes()[:40])  # a truncated download
    raw = tiny_config(sr_data, tmp_path, train={"total_steps": 3})
    raw["data"]["num_workers"] = workers
    with pytest.raises(RestorekitError) as info:
        train(config_from_dict(raw))
    message = str(info.value)
    assert "\n" not in message and str(broken) in message, message


def test_run_names_cannot_leave_out_dir(sr_data: Path, tmp_path: Path) -> None:
    import dataclasses

    config = config_from_dict(tiny_config(sr_data, tmp_path / "runs", train={"total_steps": 1}))
    escaped = dataclasses.replace(config, name="../escaped")  # built in Python, not read from a file
    with pytest.raises(ConfigError, match="not a plain folder name"):
        train(escaped)
    assert not (tmp_path / "escaped").exists()


def test_training_leaves_global_torch_switches_as_it_found_them(sr_data: Path, tmp_path: Path) -> None:
    """A deterministic run switches cuDNN autotuning off and deterministic algorithms on while it trains."""
    before = torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled()
    torch.backends.cudnn.benchmark = True
    try:
        train(config_from_dict(tiny_config(sr_data, tmp_path, train={"total_steps": 1})))
        assert torch.backends.cudnn.benchmark is True
        assert torch.are_deterministic_algorithms_enabled() is before[1]
    finally:
        torch.backends.cudnn.benchmark = before[0]


def test_run_outputs_get_normal_permissions_not_mkstemps_0600(sr_data: Path, tmp_path: Path) -> None:
    """Weights, checkpoints, metrics and the resolved config go through the one atomic writer, which gives
    them what a plain open() would (0666 & ~umask); mkstemp's 0600 used to leak into final.safetensors."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        result = train(config_from_dict(tiny_config(sr_data, tmp_path, train={"total_steps": 2})))
    finally:
        os.umask(old)
    for path in (result.weights, result.last_checkpoint, result.run_dir / "metrics.json", result.run_dir / "config.yml"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert not list(result.run_dir.glob("*.part"))


def test_validation_psnr_equals_eval_psnr_of_the_exported_weights(sr_data: Path, tmp_path: Path) -> None:
    """One evaluator: the run's last validation and `restorekit eval` of its final weights on the same
    images under the same convention give the same number."""
    from restorekit.conventions import SR_Y
    from restorekit.evaluate import EvalData, evaluate

    raw = tiny_config(sr_data, tmp_path / "runs", train={"total_steps": 4}, val={"convention": "sr_y"})
    raw["data"]["val"] = {"gt": str(sr_data / "val/gt"), "lq": str(sr_data / "val/lq")}
    result = train(config_from_dict(raw))
    measured = evaluate(result.weights, EvalData(sr_data / "val/gt", lr_dir=sr_data / "val/lq"), convention=SR_Y,
                        device="cpu")
    assert measured.mean["psnr"] == pytest.approx(result.metrics["psnr"], abs=1e-9)
    assert measured.mean["ssim"] == pytest.approx(result.metrics["ssim"], abs=1e-9)
