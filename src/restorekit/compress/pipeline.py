"""The Bicubic++ three-stage pipeline (``restorekit compress CONFIG.yml``).

Stage 1 ``wide``: train the wide model (34 channels, with biases) through the training engine.
Stage 2 ``pruned``: prune it globally to 32 channels (``compress.prune``) and finetune.
Stage 3 ``bias_free``: drop the biases (the released layout) and finetune.

PSNR (Y channel, border = scale, the paper's convention) is measured on the ``eval`` sets after each
stage *and* right after each surgery (prune, bias removal), so the report shows what the surgery cost
and what the finetune won back. Everything goes to ``<out_dir>/<name>/report.json``.

A compression config is a YAML mapping::

    name: restorekit-sr-x3
    out_dir: runs/compress
    channels: 32                  # width after pruning
    recipe: {...}                 # a training recipe (see ``restorekit.train.config``) for stage 1,
                                  # without ``name``; its model must be a wide bicubic_pp with bias
    stages:                       # per-stage overrides of the recipe, as ``key=value`` strings
      wide: []
      pruned: [train.total_steps=1000, optim.lr=2e-4]
      bias_free: [train.total_steps=1000, optim.lr=2e-4]
    eval:                         # paired test sets measured after each stage
      - {name: Set5, gt: .../Set5/HR, lq: .../Set5/LR_bicubic/X3}

Re-running with ``resume=True`` skips finished stages and resumes an interrupted one from its
``last.pt``, so a killed job loses at most ``train.checkpoint_every`` steps.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..archs import bicubic_pp
from ..atomic import write_text_atomic
from ..conventions import SR_Y
from ..errors import ConfigError
from ..model import RestorationModel, load
from ..train.config import read_yaml_mapping
from . import prune as P

STAGES = ("wide", "pruned", "bias_free")


@dataclass(frozen=True)
class EvalSet:
    name: str
    gt: str
    lq: str


@dataclass(frozen=True)
class CompressConfig:
    name: str
    recipe: dict[str, Any]
    channels: int = 32
    out_dir: str = "runs/compress"
    stages: dict[str, tuple[str, ...]] = field(default_factory=dict)
    eval: tuple[EvalSet, ...] = ()
    device: str = "auto"


def load_compress_config(path: str | Path) -> CompressConfig:
    """Read and validate a compression config (unknown keys, wrong types and bad stage names are errors)."""
    path = Path(path)
    raw = read_yaml_mapping(path)
    try:
        return config_from_mapping(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_from_mapping(raw: dict[str, Any]) -> CompressConfig:
    """Validate a compression config given as a mapping; the recipe is checked by the train engine."""
    from ..train.config import config_from_dict

    known = {f.name for f in dataclasses.fields(CompressConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]}; valid keys: {', '.join(sorted(known))}")
    for key in ("name", "recipe"):
        if key not in raw:
            raise ConfigError(f"missing required key {key}")
    if not isinstance(raw["recipe"], dict):
        raise ConfigError("recipe: expected a mapping (a training recipe without name)")
    stages = raw.get("stages") or {}
    if not isinstance(stages, dict) or set(stages) - set(STAGES):
        raise ConfigError(f"stages: expected a mapping with keys among {', '.join(STAGES)}")
    for stage, overrides in stages.items():
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise ConfigError(f"stages.{stage}: expected a list of key=value strings")
    evals = []
    for i, item in enumerate(raw.get("eval") or []):
        if not isinstance(item, dict) or set(item) != {"name", "gt", "lq"}:
            raise ConfigError(f"eval[{i}]: expected a mapping with exactly name, gt and lq")
        evals.append(EvalSet(str(item["name"]), str(item["gt"]), str(item["lq"])))
    channels = raw.get("channels", 32)
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ConfigError(f"channels: expected a positive integer, got {channels!r}")
    config = CompressConfig(
        name=str(raw["name"]), recipe=raw["recipe"], channels=channels,
        out_dir=str(raw.get("out_dir", "runs/compress")),
        stages={k: tuple(v) for k, v in stages.items()}, eval=tuple(evals), device=str(raw.get("device", "auto")),
    )
    # Validate every stage's recipe now, so a typo in stage 3 fails before hours of stage 1.
    for stage in STAGES:
        run = config_from_dict(_stage_recipe(config, stage, init=None), config.stages.get(stage, ()))
        if run.model.family != bicubic_pp.NAME:
            raise ConfigError(f"recipe.model.family: the pipeline compresses bicubic_pp, not {run.model.family}")
    wide = config_from_dict(_stage_recipe(config, "wide", init=None), config.stages.get("wide", ())).arch_config()
    if not wide.bias or wide.channels <= channels:
        raise ConfigError(
            f"recipe.model: stage 1 must be wider than {channels} channels and have biases "
            f"(got channels={wide.channels}, bias={wide.bias}); use preset bicubic_pp_x3_wide"
        )
    return config


def _stage_recipe(config: CompressConfig, stage: str, init: str | None) -> dict[str, Any]:
    """The training recipe of one stage: the base recipe with the stage's architecture and start weights."""
    recipe = json.loads(json.dumps(config.recipe))  # deep copy of plain YAML data
    recipe["name"] = f"{config.name}-{stage}"
    recipe.setdefault("train", {})
    if isinstance(recipe["train"], dict):
        recipe["train"]["out_dir"] = str(Path(config.out_dir) / config.name)
    model = recipe.setdefault("model", {})
    if stage != "wide" and isinstance(model, dict):
        arch = dict(model.get("arch") or {})
        arch["channels"] = config.channels
        arch["bias"] = stage == "pruned"
        model["arch"] = arch
        model["init"] = init
    return recipe


@torch.no_grad()
def evaluate(net: nn.Module, sets: tuple[EvalSet, ...], scale: int, device: torch.device) -> dict[str, float]:
    """Mean PSNR (Y, border = scale) per eval set."""
    from ..data.build import make_dataset
    from ..evaluate import evaluate_set
    from ..train.config import DatasetSection

    model = RestorationModel(net, bicubic_pp.NAME, net.config)  # type: ignore[arg-type]
    scores = {}
    for item in sets:
        dataset = make_dataset(DatasetSection(gt=item.gt, lq=item.lq), scale, 3, 0, train=False)
        scores[item.name] = round(evaluate_set(model, dataset, SR_Y, scale, device)["psnr"], 4)
    return scores


def _save(net: nn.Module, path: Path, stage: str) -> Path:
    from ..loading import save_safetensors

    model = RestorationModel(net, bicubic_pp.NAME, net.config)  # type: ignore[arg-type]
    return save_safetensors(model, path, extra={"compress_stage": stage})


def run_pipeline(config: CompressConfig, resume: bool = False) -> dict[str, Any]:
    """Run the three stages; return (and write) the report. See the module docstring."""
    from ..inference.runner import pick_device
    from ..train import distributed
    from ..train.config import config_from_dict
    from ..train.loop import train as train_run

    root = Path(config.out_dir) / config.name
    report_path = root / "report.json"
    if report_path.is_file() and not resume:
        raise ConfigError(f"{root}: already holds a compression run; pass --resume to continue it")
    root.mkdir(parents=True, exist_ok=True)
    info = distributed.from_env()
    device = pick_device(config.device, info.local_rank, info.enabled)
    report: dict[str, Any] = {"name": config.name, "channels": config.channels, "stages": [],
                              "convention": SR_Y.describe(3)}

    def record(stage: str, net: nn.Module, weights: Path, steps: int, wall: float) -> None:
        net = net.to(device).eval()
        entry = {
            "stage": stage, "channels": net.config.channels, "bias": net.config.bias,
            "params": sum(p.numel() for p in net.parameters()), "steps": steps, "wall_s": round(wall, 1),
            "weights": str(weights), "psnr_y": evaluate(net, config.eval, net.config.scale, device),
        }
        report["stages"].append(entry)
        write_text_atomic(json.dumps(report, indent=2), report_path)
        print(json.dumps(entry), flush=True)

    init: str | None = None
    for stage in STAGES:
        run_cfg = config_from_dict(_stage_recipe(config, stage, init), config.stages.get(stage, ()))
        run_dir = Path(run_cfg.train.out_dir) / run_cfg.name
        final = run_dir / "final.safetensors"
        started = time.perf_counter()
        if final.is_file() and resume:
            steps = run_cfg.train.total_steps  # finished earlier: reuse its export
        else:
            result = train_run(run_cfg, resume=resume and (run_dir / "last.pt").is_file())
            final, steps = result.weights, result.step
        trained = load(final).net
        record(stage, trained, final, steps, time.perf_counter() - started)
        if stage == "wide":
            pruned = P.prune(trained, config.channels)
            init = str(_save(pruned, root / "pruned-before-finetune.safetensors", "pruned (no finetune)"))
            record("pruned (no finetune)", pruned, Path(init), 0, 0.0)
        elif stage == "pruned":
            free, largest = P.remove_bias(trained)
            report["largest_dropped_bias"] = round(largest, 6)
            init = str(_save(free, root / "bias-free-before-finetune.safetensors", "bias removed (no finetune)"))
            record("bias removed (no finetune)", free, Path(init), 0, 0.0)
        else:
            report["weights"] = str(final)
            write_text_atomic(json.dumps(report, indent=2), report_path)
    return report
