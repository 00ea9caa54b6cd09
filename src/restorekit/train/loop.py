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
from ..data.datasets import DegradedFolder, EpochBatchSampler, PairedFolder
from ..errors import ConfigError, DiskFullError, RestorekitError, is_disk_full
from ..evaluate import evaluate_set
from ..model import RestorationModel, build_model
from . import distributed
from .checkpoint import CheckpointError, capture_rng, load_latest, previous_path, restore_rng, save_checkpoint
from .config import CONVENTIONS, RunConfig, config_from_dict, dump_config, load_config, to_dict
from .ema import EMA
from .losses import get_loss, staged_loss
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
    device = pick_device(cfg.train.device, info)
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


def pick_device(name: str, info: distributed.DistInfo) -> torch.device:
    """``auto`` prefers CUDA (one GPU per local rank), then Apple MPS, then CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", info.local_rank)
        if torch.backends.mps.is_available() and not info.enabled:
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"train.device: {name!r} is not a device ({exc})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("train.device: cuda requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", info.local_rank)
    return device


def _train(cfg: RunConfig, resume: bool, info: distributed.DistInfo, device: torch.device) -> TrainResult:
    run_dir = Path(cfg.train.out_dir) / cfg.name
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    has_run = last_path.is_file() or previous_path(last_path).is_file()
    if resume and not has_run:
        raise ConfigError(f"{last_path}: no checkpoint to resume from")
    if not resume and has_run:
        raise ConfigError(f"{run_dir}: already holds a run; pass --resume to continue it or pick another name")
    if info.is_main:
        stale = clean_stale_temps(run_dir)  # safe: we hold the run folder's lock
        if stale:
            print(f"note: removed {len(stale)} temp file(s) an interrupted write left in {run_dir}", file=sys.stderr)
    if cfg.train.deterministic:
        # cuBLAS needs this for deterministic matmuls; harmless elsewhere.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch sizes: let cuDNN pick the fastest kernels
    _seed_everything(cfg.train.seed)

    # --- model, EMA, optimizer, loss -------------------------------------------------------------
    arch = cfg.arch_config()
    model = build_model(cfg.model.family, arch).to(device)
    if cfg.model.init is not None:
        _load_init(model.net, cfg.model.init, cfg.model.family)
    ema = EMA(model.net, cfg.ema.decay) if cfg.ema.decay > 0 else None
    optimizer = _make_optimizer(cfg, model.net.parameters())
    loss_fn = get_loss(cfg.loss.name)
    amp_dtype = _amp_dtype(cfg.train.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    net: nn.Module = model.net
    if info.enabled:
        net = nn.parallel.DistributedDataParallel(model.net, device_ids=[device.index] if device.type == "cuda" else None)

    # --- data --------------------------------------------------------------------------------------
    train_set, repeat = make_train_set(cfg.data.train, arch.scale, arch.in_channels, cfg.train.seed)
    sampler = EpochBatchSampler(len(train_set), cfg.data.batch_size, cfg.train.seed, repeat, info.rank, info.world_size)
    # Persistent workers keep their in-memory image caches across epochs; the sampler itself runs
    # in this process, so its (epoch, start batch) changes still reach every worker.
    loader = torch.utils.data.DataLoader(
        train_set, batch_sampler=sampler, num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda",
        collate_fn=_collate, persistent_workers=cfg.data.num_workers > 0,
    )
    val_set = make_dataset(cfg.data.val, arch.scale, arch.in_channels, cfg.train.seed, train=False) if cfg.data.val else None
    convention = _convention(cfg.val.convention, cfg.model.family, cfg.model.preset, arch.scale)
    steps_per_epoch = len(sampler)
    total_steps = cfg.train.total_steps
    if cfg.schedule.total is not None:
        schedule_total = cfg.schedule.total
    elif cfg.schedule.unit == "step":
        schedule_total = total_steps
    else:
        schedule_total = math.ceil(total_steps / steps_per_epoch)

    # --- state (fresh or resumed) -----------------------------------------------------------------
    step, epoch, batch_in_epoch = 0, 0, 0
    best: float | None = None
    history: list[dict[str, float]] = []
    if resume:
        state, used, note = load_latest(last_path, map_location=device)
        if note and info.is_main:
            print(f"note: {note}", file=sys.stderr)
        _check_same_family(state, cfg, used)
        try:
            _load_strict(model.net, state["model"], cfg.model.family, str(used))
            if ema is not None:
                if state.get("ema") is None:
                    raise ConfigError(f"{used}: the run had no EMA but ema.decay is now {cfg.ema.decay}")
                ema.load_state_dict(state["ema"])
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            step, epoch, batch_in_epoch = int(state["step"]), int(state["epoch"]), int(state["batch_in_epoch"])
            best = state.get("best")
            history = list(state.get("history", []))
            restore_rng(state["rng"])
        except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
            # torch's messages for a mismatched optimizer or RNG state run to pages; the cause is one line
            reason = " ".join(str(exc).split())[:160]
            raise CheckpointError(f"{used}: does not fit this run's config ({type(exc).__name__}: {reason})") from None
        changed = _changed_keys(state.get("config", {}), to_dict(cfg))
        if changed and info.is_main:
            # Allowed (e.g. a longer train.total_steps), but the run is then no longer the one it started as.
            print(f"note: resuming {used} with changed config keys: {', '.join(changed)}", file=sys.stderr)
    elif info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run_dir / "config.yml")
    distributed.barrier(info)

    def checkpoint_state() -> dict[str, Any]:
        return {
            "model": model.net.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": capture_rng(),
            "step": step,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "best": best,
            "history": history,
            "config": to_dict(cfg),
            "family": cfg.model.family,
        }

    writer = _tensorboard(run_dir) if info.is_main else None
    bar = _progress(cfg, info, total_steps, step)
    log_file = (run_dir / "log.jsonl").open("a", encoding="utf-8") if info.is_main else None
    metrics: dict[str, float] = {}
    running, running_count, started = torch.zeros((), device=device), 0, time.perf_counter()

    # --- the loop ----------------------------------------------------------------------------------
    model.net.train()
    while step < total_steps:
        sampler.set_epoch(epoch, batch_in_epoch)
        for lq, gt in _batches(loader):
            lq, gt = lq.to(device, non_blocking=True), gt.to(device, non_blocking=True)
            lr = lr_at(cfg.schedule, cfg.optim.lr, step if cfg.schedule.unit == "step" else epoch, schedule_total)
            for group in optimizer.param_groups:
                group["lr"] = lr

            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                out = net(lq)
            out = [o.float() for o in out] if isinstance(out, (list, tuple)) else out.float()
            loss = staged_loss(loss_fn, out, gt, cfg.loss.stage_weights)

            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.optim.grad_clip is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.net.parameters(), cfg.optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if ema is not None:
                ema.update(model.net)
            step += 1
            batch_in_epoch += 1
            running += loss.detach()
            running_count += 1

            if step % cfg.train.log_every == 0 or step == total_steps:
                # .item() syncs the device, so it happens only every log_every steps.
                mean_loss = float(running) / running_count
                if not math.isfinite(mean_loss):
                    raise ConfigError(f"loss became {mean_loss} at step {step}; lower optim.lr or enable grad_clip")
                record = {"step": step, "epoch": epoch, "loss": mean_loss, "lr": lr,
                          "time": time.perf_counter() - started}
                history.append({k: float(v) for k, v in record.items()})
                running, running_count = torch.zeros((), device=device), 0
                if info.is_main:
                    _log(record, bar, writer, log_file)
            if bar is not None:
                bar.update(1)

            if val_set is not None and cfg.val.every and step % cfg.val.every == 0 and step < total_steps:
                metrics, best = _validate_and_keep_best(
                    cfg, info, model, ema, val_set, convention, device, amp_dtype, step, history,
                    best, best_path, run_dir, checkpoint_state, writer, log_file,
                )
            if step % cfg.train.checkpoint_every == 0 and step < total_steps and info.is_main:
                save_checkpoint(checkpoint_state(), last_path, keep_previous=True)
            if step >= total_steps:
                break
        else:  # the epoch ran out (not a break): move the data position to the next epoch
            epoch += 1
            batch_in_epoch = 0

    # --- end: final validation, last checkpoint, exports ---------------------------------------------
    if bar is not None:
        bar.close()
    if val_set is not None:
        metrics, best = _validate_and_keep_best(
            cfg, info, model, ema, val_set, convention, device, amp_dtype, step, history,
            best, best_path, run_dir, checkpoint_state, writer, log_file,
        )
    weights = run_dir / "final.safetensors"
    if info.is_main:
        save_checkpoint(checkpoint_state(), last_path, keep_previous=True)
        _export(ema.net if ema is not None else model.net, cfg, arch, weights, step)
        write_text_atomic(json.dumps({"step": step, **metrics}, indent=2), run_dir / "metrics.json")
        if cfg.train.plot:
            _plot_curves(history, run_dir / "curves.png")
        if writer is not None:
            writer.close()
    if log_file is not None:
        log_file.close()
    distributed.barrier(info)
    has_best = best_path.is_file()
    return TrainResult(
        run_dir=run_dir,
        last_checkpoint=last_path,
        weights=weights,
        best_checkpoint=best_path if has_best else None,
        best_weights=run_dir / "best.safetensors" if has_best else None,
        step=step,
        metrics=metrics,
    )


# ------------------------------------------------------------------------------------------------
# Pieces the loop picks by config.


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype. ``auto`` uses bf16 on CUDA GPUs that have it (no loss scaling needed), fp16 on
    older ones, and nothing on CPU/MPS, where autocast is slower or less complete than float32."""
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"train.amp: {torch.cuda.get_device_name(device)} has no bfloat16; use fp16 or off")
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


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


def _validate_and_keep_best(
    cfg: RunConfig, info: distributed.DistInfo, model: RestorationModel, ema: EMA | None,
    val_set: PairedFolder | DegradedFolder, convention: MetricConvention, device: torch.device,
    amp_dtype: torch.dtype | None, step: int, history: list[dict[str, float]], best: float | None,
    best_path: Path, run_dir: Path, checkpoint_state: Any, writer: Any, log_file: Any,
) -> tuple[dict[str, float], float | None]:
    """Validate (rank 0 only; the EMA weights when EMA is on) and write best.pt/best.safetensors on improvement.

    Other ranks wait at the barrier and get empty metrics back; they never save, so they need no score.
    """
    metrics: dict[str, float] = {}
    if info.is_main:
        eval_net = ema.net if ema is not None else model.net
        eval_model = RestorationModel(eval_net, model.family, model.config)
        metrics = evaluate_set(eval_model, val_set, convention, model.scale, device, amp_dtype)
        history.append({"step": float(step), **{f"val_{k}": v for k, v in metrics.items()}})
        score = metrics.get(cfg.val.metric)
        _log({"step": step, **{f"val_{k}": v for k, v in metrics.items()}}, None, writer, log_file)
        if score is not None and (best is None or score > best):
            best = score
            save_checkpoint(checkpoint_state() | {"best": best}, best_path)
            _export(eval_net, cfg, model.config, run_dir / "best.safetensors", step)
    distributed.barrier(info)
    return metrics, best


def _export(net: nn.Module, cfg: RunConfig, arch: Any, path: Path, step: int) -> None:
    from ..loading import save_safetensors

    model = RestorationModel(net, cfg.model.family, arch)
    save_safetensors(model, path, extra={"train_run": cfg.name, "train_step": str(step)})


# ------------------------------------------------------------------------------------------------
# Visibility: progress bar, TensorBoard, JSON lines, a PNG of the curves.


def _progress(cfg: RunConfig, info: distributed.DistInfo, total: int, initial: int) -> Any:
    if not (info.is_main and cfg.train.progress):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=cfg.name, unit="it", dynamic_ncols=True, file=sys.stderr)


def _tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is in the optional ``train`` extra
        return None
    return SummaryWriter(log_dir=str(run_dir / "tb"))


def _log(record: dict[str, Any], bar: Any, writer: Any, log_file: Any) -> None:
    step = int(record["step"])
    if bar is not None and "loss" in record:
        bar.set_postfix(loss=f"{record['loss']:.4g}", lr=f"{record['lr']:.3g}", refresh=False)
    if writer is not None:
        for key, value in record.items():
            if key not in ("step", "epoch", "time"):
                writer.add_scalar(key, value, step)
    if log_file is not None:
        log_file.write(json.dumps(record) + "\n")
        log_file.flush()


def _plot_curves(history: list[dict[str, float]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib not installed; skipping curves.png (pip install 'restorekit[train]')", file=sys.stderr)
        return
    losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    psnrs = [(h["step"], h["val_psnr"]) for h in history if "val_psnr" in h]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    if losses:
        axes[0].plot(*zip(*losses))
    axes[0].set(title="training loss", xlabel="step")
    if psnrs:
        axes[1].plot(*zip(*psnrs), marker="o")
    axes[1].set(title="validation PSNR (dB)", xlabel="step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
