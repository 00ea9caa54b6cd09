"""The training loop: config -> data -> model -> loss -> optimizer -> checkpoints, top to bottom.

Per-family differences are data in the config (loss name, stage weights, schedule, EMA decay,
gradient clip), not subclasses. The loop is exact-resumable: the checkpoint holds every state
that influences the next step, the learning rate is a pure function of (step, epoch), and every
random choice in the data comes from (seed, epoch, position) (see ``data/datasets.py``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import conventions
from ..atomic import write_text_atomic
from ..conventions import MetricConvention
from ..data.build import make_dataset, make_train_set
from ..data.datasets import EpochBatchSampler
from ..errors import ConfigError, DeviceError, DiskFullError, RestorekitError, is_disk_full
from ..evaluate import evaluate_set
from ..inference.runner import PRECISIONS, pick_device
from ..model import RestorationModel, build_model
from . import distributed
from .checkpoint import CheckpointError, capture_rng, load_latest, previous_path, restore_rng, save_checkpoint
from .config import CONVENTIONS, RunConfig, config_from_dict, dump_config, load_config, to_dict
from .ema import EMA
from .losses import get_loss, staged_loss
from .monitor import Monitor, plot_curves
from .rundir import RunLock, clean_stale_temps
from .schedules import lr_at


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced. ``weights`` is the safetensors export F ships (EMA weights when
    EMA is on); ``best_weights`` the export of the best validation step (None without validation)."""

    run_dir: Path
    last_checkpoint: Path
    weights: Path
    best_checkpoint: Path | None = None
    best_weights: Path | None = None
    step: int = 0
    metrics: dict[str, float] = field(default_factory=dict)


def train(config: RunConfig | str | Path, resume: bool = False, overrides: tuple[str, ...] = ()) -> TrainResult:
    """Train from a config (a :class:`RunConfig` or a YAML path), optionally resuming ``runs/<name>/last.pt``.

    Under ``torchrun`` every process calls this; rank 0 alone logs and writes files, and holds the
    run folder's lock (:class:`~restorekit.train.rundir.RunLock`) for the whole run.
    """
    # A RunConfig built in Python is validated again, so its values meet the same ranges as a file's.
    cfg = config_from_dict(to_dict(config)) if isinstance(config, RunConfig) else load_config(config, overrides)
    info = distributed.from_env()
    device = train_device(cfg.train.device, info)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    created = distributed.init(info, device)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_cudnn_benchmark = torch.backends.cudnn.benchmark
    run_dir = Path(cfg.train.out_dir) / cfg.name  # cfg.name is a plain folder name (config RULES)
    try:
        with RunLock(run_dir) if info.is_main else contextlib.nullcontext():
            return _train(cfg, resume, info, device)
    except Exception as exc:
        # A full disk surfaces from torch, safetensors, tensorboard or a log write, often as pages of
        # traceback that never say why; whichever write hit it, the user gets one line.
        if is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise DiskFullError(
                f"{run_dir}: disk full (ENOSPC); free space and pass --resume (the last good checkpoint is kept)"
            ) from None
        raise
    finally:
        # do not leak global switches into the caller (a notebook that trains, then benchmarks)
        torch.use_deterministic_algorithms(was_deterministic)
        torch.backends.cudnn.benchmark = was_cudnn_benchmark
        distributed.shutdown(created)


def train_device(name: str, info: distributed.DistInfo) -> torch.device:
    """This process's device: :func:`~restorekit.inference.runner.pick_device` with its ``torchrun`` local
    rank (``auto`` stays off MPS in a multi-process run); the error names the config key."""
    try:
        return pick_device(name, info.local_rank, info.enabled)
    except DeviceError as exc:
        raise DeviceError(f"train.device: {exc}") from None


def _train(cfg: RunConfig, resume: bool, info: distributed.DistInfo, device: torch.device) -> TrainResult:
    run_dir = Path(cfg.train.out_dir) / cfg.name
    _check_run_folder(run_dir, resume)
    if info.is_main:
        stale = clean_stale_temps(run_dir)  # safe: we hold the run folder's lock
        if stale:
            print(f"note: removed {len(stale)} temp file(s) an interrupted write left in {run_dir}", file=sys.stderr)
    _set_determinism(cfg.train.deterministic, device)
    _seed_everything(cfg.train.seed)
    run = _Run(cfg, info, device)  # builds in a fixed order after seeding: the same weights every time
    if resume:
        run.resume()
    elif info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run_dir / "config.yml")
    distributed.barrier(info)
    monitor = Monitor(run_dir, cfg.name, cfg.train.total_steps, run.position.step, info.is_main, cfg.train.progress)
    try:
        run.loop(monitor)
        return run.finish(monitor)
    finally:
        monitor.close()


def _check_run_folder(run_dir: Path, resume: bool) -> None:
    last_path = run_dir / "last.pt"
    has_run = last_path.is_file() or previous_path(last_path).is_file()
    if resume and not has_run:
        raise ConfigError(f"{last_path}: no checkpoint to resume from")
    if not resume and has_run:
        raise ConfigError(f"{run_dir}: already holds a run; pass --resume to continue it or pick another name")


def _set_determinism(deterministic: bool, device: torch.device) -> None:
    if deterministic:
        # cuBLAS needs this for deterministic matmuls; harmless elsewhere.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch sizes: let cuDNN pick the fastest kernels


@dataclass
class Position:
    """Where a run stands. With the weights, the optimizer, the grad scaler and the RNG states, this is
    everything a checkpoint holds so that a resumed run continues bit for bit."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of ``epoch`` already trained on
    best: float | None = None  # best validation score so far (``val.metric``)
    history: list[dict[str, float]] = field(default_factory=list)


class _LossMeter:
    """Sum of the step losses since the last log, kept on the device: reading it syncs, so it is read
    only every ``log_every`` steps."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.total, self.count = torch.zeros((), device=device), 0

    def add(self, loss: torch.Tensor) -> None:
        self.total += loss
        self.count += 1

    def take_mean(self) -> float:
        mean = float(self.total) / self.count
        self.total, self.count = torch.zeros((), device=self.device), 0
        return mean


class _Run:
    """One run's parts (model, EMA, optimizer, data) and its :class:`Position`; ``_train`` drives it."""

    def __init__(self, cfg: RunConfig, info: distributed.DistInfo, device: torch.device) -> None:
        self.cfg, self.info, self.device = cfg, info, device
        self.run_dir = Path(cfg.train.out_dir) / cfg.name
        self.last_path, self.best_path = self.run_dir / "last.pt", self.run_dir / "best.pt"
        self.arch = cfg.arch_config()
        self.position = Position()
        self.metrics: dict[str, float] = {}  # of the latest validation
        self._build_model()
        self._build_data()

    def _build_model(self) -> None:
        cfg = self.cfg
        self.model = build_model(cfg.model.family, self.arch).to(self.device)
        if cfg.model.init is not None:
            _load_init(self.model.net, cfg.model.init, cfg.model.family)
        self.ema = EMA(self.model.net, cfg.ema.decay) if cfg.ema.decay > 0 else None
        self.optimizer = _make_optimizer(cfg, self.model.net.parameters())
        self.loss_fn = get_loss(cfg.loss.name)
        self.amp_dtype = _amp_dtype(cfg.train.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype is torch.float16)
        self.net: nn.Module = self.model.net  # what the step calls: the DDP wrapper under torchrun
        if self.info.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model.net, device_ids=device_ids)

    def _build_data(self) -> None:
        cfg, arch, info = self.cfg, self.arch, self.info
        train_set, repeat = make_train_set(cfg.data.train, arch.scale, arch.in_channels, cfg.train.seed)
        self.sampler = EpochBatchSampler(len(train_set), cfg.data.batch_size, cfg.train.seed, repeat,
                                         info.rank, info.world_size)
        # Persistent workers keep their in-memory image caches across epochs; the sampler itself runs
        # in this process, so its (epoch, start batch) changes still reach every worker.
        self.loader = torch.utils.data.DataLoader(
            train_set, batch_sampler=self.sampler, num_workers=cfg.data.num_workers,
            pin_memory=self.device.type == "cuda", collate_fn=_collate, persistent_workers=cfg.data.num_workers > 0,
        )
        self.val_set = (make_dataset(cfg.data.val, arch.scale, arch.in_channels, cfg.train.seed, train=False)
                        if cfg.data.val else None)
        self.convention = _convention(cfg.val.convention, cfg.model.family, cfg.model.preset, arch.scale)
        self.schedule_total = _schedule_total(cfg, len(self.sampler))

    def resume(self) -> None:
        """Load ``last.pt`` (or ``last.prev.pt`` when the newest is damaged) into every part and the position."""
        cfg, info = self.cfg, self.info
        state, used, note = load_latest(self.last_path, map_location=self.device)
        if note and info.is_main:
            print(f"note: {note}", file=sys.stderr)
        _check_same_family(state, cfg, used)
        try:
            _load_strict(self.model.net, state["model"], cfg.model.family, str(used))
            if self.ema is not None:
                if state.get("ema") is None:
                    raise ConfigError(f"{used}: the run had no EMA but ema.decay is now {cfg.ema.decay}")
                self.ema.load_state_dict(state["ema"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
            self.position = Position(int(state["step"]), int(state["epoch"]), int(state["batch_in_epoch"]),
                                     state.get("best"), list(state.get("history", [])))
            restore_rng(state["rng"])
        except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
            # torch's messages for a mismatched optimizer or RNG state run to pages; the cause is one line
            reason = " ".join(str(exc).split())[:160]
            raise CheckpointError(f"{used}: does not fit this run's config ({type(exc).__name__}: {reason})") from None
        changed = _changed_keys(state.get("config", {}), to_dict(cfg))
        if changed and info.is_main:
            # Allowed (e.g. a longer train.total_steps), but the run is then no longer the one it started as.
            print(f"note: resuming {used} with changed config keys: {', '.join(changed)}", file=sys.stderr)

    def checkpoint_state(self) -> dict[str, Any]:
        pos = self.position
        return {
            "model": self.model.net.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng(),
            "step": pos.step,
            "epoch": pos.epoch,
            "batch_in_epoch": pos.batch_in_epoch,
            "best": pos.best,
            "history": pos.history,
            "config": to_dict(self.cfg),
            "family": self.cfg.model.family,
        }

    def loop(self, monitor: Monitor) -> None:
        """Train until ``train.total_steps``, validating and checkpointing on the way (not at the end)."""
        cfg, pos, total = self.cfg, self.position, self.cfg.train.total_steps
        meter, started = _LossMeter(self.device), time.perf_counter()
        self.model.net.train()
        while pos.step < total:
            self.sampler.set_epoch(pos.epoch, pos.batch_in_epoch)
            for lq, gt in _batches(self.loader):
                loss, lr = self.train_step(lq, gt)
                meter.add(loss)
                if pos.step % cfg.train.log_every == 0 or pos.step == total:
                    self._log_loss(meter.take_mean(), lr, time.perf_counter() - started, monitor)
                monitor.advance()
                if pos.step >= total:
                    break
                if self.val_set is not None and cfg.val.every and pos.step % cfg.val.every == 0:
                    self.validate(monitor)
                if pos.step % cfg.train.checkpoint_every == 0 and self.info.is_main:
                    save_checkpoint(self.checkpoint_state(), self.last_path, keep_previous=True)
            else:  # the epoch ran out (not a break): move the data position to the next epoch
                pos.epoch += 1
                pos.batch_in_epoch = 0

    def train_step(self, lq: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, float]:
        """One optimizer step on a batch; returns the (detached) loss and the learning rate used."""
        cfg, pos, device = self.cfg, self.position, self.device
        lq, gt = lq.to(device, non_blocking=True), gt.to(device, non_blocking=True)
        lr = lr_at(cfg.schedule, cfg.optim.lr, pos.step if cfg.schedule.unit == "step" else pos.epoch,
                   self.schedule_total)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            out = self.net(lq)
        out = [o.float() for o in out] if isinstance(out, (list, tuple)) else out.float()
        loss = staged_loss(self.loss_fn, out, gt, cfg.loss.stage_weights)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.optim.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.net.parameters(), cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model.net)
        pos.step += 1
        pos.batch_in_epoch += 1
        return loss.detach(), lr

    def _log_loss(self, mean_loss: float, lr: float, elapsed: float, monitor: Monitor) -> None:
        pos = self.position
        if not math.isfinite(mean_loss):
            raise ConfigError(f"loss became {mean_loss} at step {pos.step}; lower optim.lr or enable grad_clip")
        record = {"step": pos.step, "epoch": pos.epoch, "loss": mean_loss, "lr": lr, "time": elapsed}
        pos.history.append({k: float(v) for k, v in record.items()})
        if self.info.is_main:
            monitor.record(record)

    def validate(self, monitor: Monitor) -> None:
        """Validate (rank 0 only; the EMA weights when EMA is on) and write best.pt/best.safetensors on
        improvement. Other ranks wait at the barrier with empty metrics: they never save, so need no score."""
        pos, self.metrics = self.position, {}
        if self.info.is_main:
            eval_net = self.ema.net if self.ema is not None else self.model.net
            eval_model = RestorationModel(eval_net, self.model.family, self.model.config)
            self.metrics = evaluate_set(eval_model, self.val_set, self.convention, self.model.scale, self.device,
                                        self.amp_dtype)
            record = {"step": pos.step, **{f"val_{k}": v for k, v in self.metrics.items()}}
            pos.history.append({k: float(v) for k, v in record.items()})
            monitor.record(record)
            score = self.metrics.get(self.cfg.val.metric)
            if score is not None and (pos.best is None or score > pos.best):
                pos.best = score
                save_checkpoint(self.checkpoint_state(), self.best_path)
                _export(eval_net, self.cfg, self.model.config, self.run_dir / "best.safetensors", pos.step)
        distributed.barrier(self.info)

    def finish(self, monitor: Monitor) -> TrainResult:
        """Final validation, the last checkpoint, ``final.safetensors``, ``metrics.json`` and curves."""
        pos, run_dir = self.position, self.run_dir
        monitor.close_bar()
        if self.val_set is not None:
            self.validate(monitor)
        weights = run_dir / "final.safetensors"
        if self.info.is_main:
            save_checkpoint(self.checkpoint_state(), self.last_path, keep_previous=True)
            _export(self.ema.net if self.ema is not None else self.model.net, self.cfg, self.arch, weights, pos.step)
            write_text_atomic(json.dumps({"step": pos.step, **self.metrics}, indent=2), run_dir / "metrics.json")
            if self.cfg.train.plot:
                plot_curves(pos.history, run_dir / "curves.png")
        monitor.close()
        distributed.barrier(self.info)
        has_best = self.best_path.is_file()
        return TrainResult(
            run_dir=run_dir,
            last_checkpoint=self.last_path,
            weights=weights,
            best_checkpoint=self.best_path if has_best else None,
            best_weights=run_dir / "best.safetensors" if has_best else None,
            step=pos.step,
            metrics=self.metrics,
        )


# ------------------------------------------------------------------------------------------------
# Pieces the loop picks by config.


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype (``off``: none; ``fp16``/``bf16`` from the one precision table). ``auto`` uses bf16 on
    CUDA GPUs that have it (no loss scaling needed), fp16 on older ones, and nothing on CPU/MPS, where
    autocast is slower or less complete than float32."""
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"train.amp: {torch.cuda.get_device_name(device)} has no bfloat16; use fp16 or off")
    return None if amp == "off" else PRECISIONS[amp]


def _schedule_total(cfg: RunConfig, steps_per_epoch: int) -> int:
    """The length the schedule spans, in its own unit: ``schedule.total``, else the whole run."""
    if cfg.schedule.total is not None:
        return cfg.schedule.total
    if cfg.schedule.unit == "step":
        return cfg.train.total_steps
    return math.ceil(cfg.train.total_steps / steps_per_epoch)


def _make_optimizer(cfg: RunConfig, params: Any) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def _convention(name: str, family: str, arch_preset: str | None, scale: int) -> MetricConvention:
    """``auto``: the convention of the zoo preset built on this architecture preset (the paper's
    protocol), else Y/crop-scale for SR and RGB for restoration."""
    if name == "auto":
        from ..zoo import PRESETS

        for preset in PRESETS.values():
            if preset.family == family and preset.arch == arch_preset:
                return preset.convention
        return conventions.SR_Y if scale > 1 else conventions.RESTORATION_RGB
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise ConfigError(f"val.convention: unknown {name!r}; valid: auto, {', '.join(CONVENTIONS)}") from None


def _check_same_family(state: dict[str, Any], cfg: RunConfig, path: Path) -> None:
    family = state.get("family")
    if family is not None and family != cfg.model.family:
        raise CheckpointError(
            f"{path}: a checkpoint of a {family} run, but this config trains {cfg.model.family}; "
            "check train.out_dir and name"
        )


def _load_strict(net: nn.Module, state: Any, family: str, source: str) -> None:
    from .. import loading

    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: its 'model' entry is not a state dict")
    loading.load_strict(net, state, family, source=source)


def _batches(loader: torch.utils.data.DataLoader) -> Any:
    """Iterate ``loader``; an error raised in a worker process comes back as its own one line.

    DataLoader re-raises a worker's exception with the worker's whole traceback as the message (28
    lines for one unreadable image); the last line is the error itself, which names the file.
    """
    try:
        yield from loader
    except Exception as exc:
        message = str(exc)
        if "Original Traceback" not in message:
            raise
        last = [line for line in message.splitlines() if line.strip()][-1]
        # "restorekit.errors.ImageError: PATH: cannot read image (...)" -> "PATH: cannot read image (...)"
        text = re.sub(r"^[\w.]+(Error|Exception|Warning)\w*: ", "", last.strip())
        error = type(exc) if isinstance(exc, RestorekitError) else RestorekitError
        raise error(f"data loading failed: {text}" if error is RestorekitError else text) from None


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [c for k in keys for c in _changed_keys(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".")]


def _collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    lq, gt = zip(*batch)
    return torch.stack(lq), torch.stack(gt)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _load_init(net: nn.Module, path: str, family: str) -> None:
    from .. import loading

    raw, _ = loading.read_weights(path)
    loading.load_strict(net, loading.unwrap(raw, source=path), family, source=path)


def _export(net: nn.Module, cfg: RunConfig, arch: Any, path: Path, step: int) -> None:
    from ..loading import save_safetensors

    model = RestorationModel(net, cfg.model.family, arch)
    save_safetensors(model, path, extra={"train_run": cfg.name, "train_step": str(step)})
