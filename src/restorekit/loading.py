"""The one loading path: read -> unwrap -> detect family -> infer config -> strict load.

Never unpickles arbitrary objects: ``.pth`` files go through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

from .archs import FAMILIES, get_family
from .errors import DetectionError, WeightsError

StateDict = dict[str, torch.Tensor]

# Checkpoint wrappers in preference order: BasicSR saves the EMA copy as ``params_ema`` and the
# official VapSR test config evaluates it, so it wins over ``params``.
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net", "generator")


def read_weights(path: str | Path) -> tuple[Any, dict[str, str]]:
    """Read a ``.safetensors`` or ``.pth``/``.pt``/``.ckpt`` file: (raw object, safetensors metadata)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = dict(handle.metadata() or {})
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - safe_open is not iterable
        except Exception as exc:  # safetensors raises several types for corrupt headers
            raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from exc
        return tensors, metadata
    with open(path, "rb") as handle:
        head = handle.read(2)
    # torch.save writes a zip archive (PK..); very old checkpoints are a bare pickle (protocol byte 0x80)
    if head != b"PK" and head[:1] != b"\x80":
        raise WeightsError(f"{path}: not a PyTorch checkpoint or safetensors file")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message is a page of advice; keep only the line that names what was refused
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = next((line for line in lines if "Unsupported" in line or "WeightsUnpickler" in line),
                      lines[0] if lines else "unpickling refused")
        raise WeightsError(
            f"{path}: holds objects other than tensors and plain containers, which weights_only=True "
            f"refuses to unpickle ({reason[:200]})"
        ) from exc
    except Exception as exc:  # not a zip/pickle at all: an image, a text file, a truncated download
        raise WeightsError(f"{path}: not a PyTorch checkpoint or safetensors file ({type(exc).__name__})") from exc
    return obj, {}


def unwrap(obj: Any, source: str = "checkpoint") -> StateDict:
    """Find the state dict inside common wrappers and strip DataParallel ``module.`` prefixes."""
    while isinstance(obj, Mapping) and not _is_state_dict(obj):
        for key in WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
        else:
            raise DetectionError(
                f"{source}: no state dict found; top-level keys are {sorted(map(str, obj))[:10]}, "
                f"expected tensors or one of the wrappers {WRAPPER_KEYS}"
            )
    if not isinstance(obj, Mapping):
        raise DetectionError(f"{source}: expected a dict of tensors, got {type(obj).__name__}")
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise DetectionError(f"{source}: contains no tensors")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _is_state_dict(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def detect(state: StateDict, source: str = "checkpoint") -> tuple[ModuleType, Any]:
    """Return (family module, config) for a state dict, or raise DetectionError saying what was found."""
    for family in FAMILIES.values():
        if family.matches(state):
            try:
                return family, family.infer_config(state)
            except DetectionError as exc:
                raise DetectionError(f"{source}: {exc}") from exc
    sample = ", ".join(sorted(state)[:8])
    raise DetectionError(
        f"{source}: matches no known family ({', '.join(FAMILIES)}). "
        f"It has {len(state)} tensors; first keys: {sample}"
    )


def load_strict(net: nn.Module, state: StateDict, family: str, source: str = "checkpoint") -> None:
    """``load_state_dict(strict=True)`` with an error that lists what was missing and unexpected."""
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:4])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:4])})")
        if wrong_shape:
            parts.append(f"shape mismatch {len(wrong_shape)} (e.g. {'; '.join(wrong_shape[:3])})")
        raise DetectionError(f"{source}: does not fit {family}: " + "; ".join(parts))
    net.load_state_dict(state, strict=True)


def config_from_metadata(metadata: Mapping[str, str]) -> tuple[ModuleType, Any] | None:
    """The (family, config) recorded by ``restorekit convert``, if present."""
    if "family" not in metadata or "config" not in metadata:
        return None
    family = get_family(metadata["family"])
    return family, family.Config(**json.loads(metadata["config"]))


def config_to_json(config: Any) -> str:
    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def check_expected(found_family: ModuleType, found_config: Any, family: ModuleType, config: Any, source: str) -> None:
    """Raise when a checkpoint contradicts the preset the user named."""
    if found_family is not family:
        raise DetectionError(
            f"{source}: expected a {family.NAME} checkpoint, but its keys are those of {found_family.NAME}"
        )
    if found_config != config:
        diffs = [
            f"{field.name}={getattr(found_config, field.name)!r} (expected {getattr(config, field.name)!r})"
            for field in dataclasses.fields(config)
            if getattr(found_config, field.name) != getattr(config, field.name)
        ]
        raise DetectionError(f"{source}: {family.NAME} checkpoint differs from the preset: {', '.join(diffs)}")
