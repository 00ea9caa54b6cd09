"""The one loading path: read -> unwrap -> check -> detect family -> infer config -> fit check -> strict load.

Never unpickles arbitrary objects: ``.pth`` files go through ``torch.load(weights_only=True)``.

Nothing in a weights file is trusted before it is checked against the tensors the file actually
holds: wrappers are followed to a bounded depth (a self-referential pickle is refused, not followed
forever), every tensor must be a finite floating-point array, and the config (recorded in safetensors
metadata or inferred from shapes) is built on the ``meta`` device under a budget of the file's own
tensor count and element count and must produce exactly the file's keys and shapes. Only then does a
caller allocate the real network, which is therefore never larger than the weights it loads.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from torch import nn
from torch.overrides import TorchFunctionMode

from .archs import FAMILIES, Family, get_family
from .atomic import atomic_path
from .errors import ConfigError, DetectionError, DiskFullError, RestorekitError, WeightsError, is_disk_full

if TYPE_CHECKING:
    from .model import RestorationModel

StateDict = dict[str, torch.Tensor]

# Checkpoint wrappers in preference order: BasicSR saves the EMA copy as ``params_ema`` and the
# official VapSR test config evaluates it, so it wins over ``params``.
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net", "generator")

# Real checkpoints nest a state dict at most two or three wrappers deep; a deeper chain is a crafted file.
MAX_WRAPPER_DEPTH = 8
# The largest preset has under 1,000 tensors; a header listing more than this is not a restoration model.
MAX_TENSORS = 50_000
# How much larger than the file a .pth archive's entries may be once decompressed.
MAX_ZIP_EXPANSION = 4
# Integer buffers that are legitimately not floating point (BatchNorm's step counter); everything else
# in a restoration state dict is a parameter and must be floating point.
INTEGER_BUFFERS = ("num_batches_tracked",)
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@contextmanager
def quiet() -> Iterator[None]:
    """Silence torch's warnings while a file is read or a network built: the user gets our one line
    (or nothing), not a torch warning that names internals and, for pickles, advises unsafe loading."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message as one short line (library messages are often pages long)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_weights(path: str | Path) -> tuple[Any, dict[str, str]]:
    """Read a ``.safetensors`` or ``.pth``/``.pt``/``.ckpt`` file: (raw object, safetensors metadata)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    with quiet():
        if path.suffix == ".safetensors":
            return _read_safetensors(path)
        return _read_pickle(path), {}


def _read_safetensors(path: Path) -> tuple[StateDict, dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            keys = list(handle.keys())
            if len(keys) > MAX_TENSORS:  # checked before a single tensor is materialised
                raise WeightsError(f"{path}: lists {len(keys)} tensors, more than any model reads ({MAX_TENSORS})")
            # safetensors checks each tensor's byte range against its shape and dtype, so a tensor read
            # here occupies at most the bytes the file holds for it.
            tensors = {key: handle.get_tensor(key) for key in keys}
    except RestorekitError:
        raise
    except Exception as exc:  # safetensors raises several types for corrupt headers
        raise WeightsError(f"{path}: not a readable safetensors file ({one_line(exc)})") from exc
    return tensors, metadata


def _read_pickle(path: Path) -> Any:
    with open(path, "rb") as handle:
        head = handle.read(2)
    # torch.save writes a zip archive (PK..); very old checkpoints are a bare pickle (protocol byte 0x80)
    if head != b"PK" and head[:1] != b"\x80":
        raise WeightsError(f"{path}: not a PyTorch checkpoint or safetensors file")
    if head == b"PK":
        _check_zip_size(path)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"{path}: holds objects other than tensors and plain containers, which weights_only=True "
            f"refuses to unpickle ({_refusal_reason(str(exc))})"
        ) from exc
    except RecursionError as exc:  # a pickle of containers nested thousands deep
        raise WeightsError(f"{path}: containers nested too deeply to be a checkpoint") from exc
    except Exception as exc:  # not a zip/pickle at all: an image, a text file, a truncated download
        reason = one_line(exc, 100)
        if "weights_only" in reason:  # torch's advice to load unsafely is never passed on
            reason = type(exc).__name__
        raise WeightsError(f"{path}: not a PyTorch checkpoint or safetensors file ({reason})") from exc


def _check_zip_size(path: Path) -> None:
    """Refuse a zip whose entries expand far beyond the file (a compression bomb) before torch reads it.

    ``torch.save`` stores entries uncompressed and weights barely compress, so a legitimate archive,
    even one repacked with deflate, never expands more than a few times.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            expanded = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a PyTorch checkpoint or safetensors file (damaged zip: {one_line(exc, 80)})") from exc
    size = path.stat().st_size
    if expanded > MAX_ZIP_EXPANSION * size + 2**20:
        raise WeightsError(f"{path}: its zip entries expand to {expanded} bytes from {size}; not a checkpoint")


def _refusal_reason(message: str) -> str:
    """The line of torch's refusal that names what was refused, without its advice (which includes
    retrying with ``weights_only=False``: running the file's code is never the fix we suggest)."""
    for line in message.splitlines():
        line = line.strip()
        if not line or "weights_only" in line or "documentation" in line:
            continue
        # "WeightsUnpickler error: Unsupported global: GLOBAL x.y was not an allowed global by default. Please use ..."
        return line.split(". ")[0].removeprefix("WeightsUnpickler error: ")[:160]
    return "an object that needs code to rebuild"


def unwrap(obj: Any, source: str = "checkpoint") -> StateDict:
    """Find the state dict inside common wrappers, strip DataParallel ``module.`` prefixes, and check
    every tensor (:func:`check_tensors`)."""
    seen: set[int] = set()
    while isinstance(obj, Mapping) and not _is_state_dict(obj):
        if id(obj) in seen or len(seen) >= MAX_WRAPPER_DEPTH:
            raise DetectionError(
                f"{source}: wrappers nest deeper than {MAX_WRAPPER_DEPTH} levels or contain themselves; "
                "not a checkpoint"
            )
        seen.add(id(obj))
        for key in WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
        else:
            keys = sorted(repr(k)[:40] for k in list(obj)[:100])[:10]
            raise DetectionError(
                f"{source}: no state dict found; top-level keys are {keys}, "
                f"expected tensors or one of the wrappers {WRAPPER_KEYS}"
            )
    if not isinstance(obj, Mapping):
        raise DetectionError(f"{source}: expected a dict of tensors, got {type(obj).__name__}")
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise DetectionError(f"{source}: contains no tensors")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    check_tensors(state, source)
    return state


def _is_state_dict(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def check_tensors(state: StateDict, source: str = "checkpoint") -> None:
    """Refuse what no trained network holds: too many tensors, non-float parameters (int64, bool,
    complex), and NaN/Inf values (one NaN weight turns every output black, reported as success)."""
    if len(state) > MAX_TENSORS:
        raise WeightsError(f"{source}: holds {len(state)} tensors, more than any model reads ({MAX_TENSORS})")
    for key, tensor in state.items():
        if tensor.dtype not in _FLOAT_DTYPES and not key.endswith(INTEGER_BUFFERS):
            raise WeightsError(f"{source}: tensor {key} has dtype {tensor.dtype}; weights must be floating point")
        # Any NaN/Inf makes the sum non-finite, and one sum is ~100x faster than an element-wise
        # isfinite over a large model; only a suspicious sum (or a float overflow of it) pays for the count.
        if tensor.dtype in _FLOAT_DTYPES and not bool(torch.isfinite(tensor.sum())):
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise WeightsError(
                    f"{source}: tensor {key} holds {bad} NaN/Inf value(s) of {tensor.numel()}; the weights are damaged"
                )


def detect(state: StateDict, source: str = "checkpoint") -> tuple[Family, Any]:
    """Return (family module, config) for a state dict, or raise DetectionError saying what was found."""
    for family in FAMILIES.values():
        if _guarded(family.matches, state, f"{source}: {family.NAME} key test failed"):
            return family, infer(family, state, source)
    sample = ", ".join(sorted(state)[:8])
    raise DetectionError(
        f"{source}: matches no known family ({', '.join(FAMILIES)}). "
        f"It has {len(state)} tensors; first keys: {sample}"
    )


def infer(family: Family, state: StateDict, source: str = "checkpoint") -> Any:
    """``family.infer_config`` with any failure (a missing key, a 0-d tensor, an impossible shape)
    reported as one line naming the file."""
    return _guarded(family.infer_config, state, f"{source}: not a valid {family.NAME} state dict")


def _guarded(func: Any, state: StateDict, what: str) -> Any:
    try:
        return func(state)
    except DetectionError as exc:
        raise DetectionError(f"{what}: {exc}") from exc
    except (ConfigError, KeyError, IndexError, ValueError, TypeError, ZeroDivisionError, StopIteration,
            RuntimeError, OverflowError) as exc:
        # infer_config reads shapes a crafted file can make nonsensical; every such case is one line
        raise DetectionError(f"{what} ({type(exc).__name__}: {one_line(exc, 120)})") from exc


def config_from_metadata(metadata: Mapping[str, str], source: str = "checkpoint") -> tuple[Family, Any] | None:
    """The (family, config) recorded by ``restorekit convert``, if present, type-checked field by field.

    Not yet trusted: :func:`check_fits` compares it with the tensors before anything is built.
    """
    ours = str(metadata.get("format", "")).startswith("restorekit") or {"family", "config"} <= metadata.keys()
    if not ours:  # no metadata, or another tool's: the tensors alone decide
        return None
    if "family" not in metadata or "config" not in metadata:
        raise WeightsError(f"{source}: restorekit metadata without 'family' or 'config'; the file is damaged")
    if metadata["family"] not in FAMILIES:
        raise WeightsError(f"{source}: metadata names unknown family {metadata['family'][:40]!r}; "
                           f"valid: {', '.join(FAMILIES)}")
    family = get_family(metadata["family"])
    try:
        raw = json.loads(metadata["config"])
    except (ValueError, RecursionError) as exc:
        raise WeightsError(f"{source}: metadata 'config' is not valid JSON ({one_line(exc, 80)})") from exc
    from .train.config import from_mapping  # the one typed mapping -> dataclass validator

    try:
        config = from_mapping(family.Config, raw, "config")
    except ConfigError as exc:
        raise WeightsError(f"{source}: metadata {exc}") from exc
    return family, config


def resolve(raw: Any, metadata: Mapping[str, str], source: str = "checkpoint") -> tuple[Family, Any, StateDict]:
    """(family, config, checked state dict) for what :func:`read_weights` returned; the config is the
    recorded one when the file has metadata, else the one inferred from shapes, and in both cases it
    has passed :func:`check_fits`, so building it allocates no more than the file holds."""
    state = unwrap(raw, source)
    recorded = config_from_metadata(metadata, source)
    family, config = recorded if recorded is not None else detect(state, source)
    check_fits(family, config, state, source)
    return family, config, state


def check_fits(family: Family, config: Any, state: StateDict, source: str = "checkpoint") -> None:
    """Raise unless ``config`` builds a network with exactly the state dict's keys and shapes.

    Checked before any real allocation: every integer hyper-parameter must be no larger than the
    file's tensor count plus element count (a width or a block count can never exceed what its
    tensors hold), then the network is built on the ``meta`` device under a budget of twice the
    file's tensors and elements, so a config that claims gigabytes stops after a few tensors.
    """
    numel = sum(t.numel() for t in state.values())
    limit = len(state) + numel + 64  # small counts (scale 4, 2 levels) are fine even for a tiny file
    for name, value in _numbers(dataclasses.asdict(config)):
        if isinstance(value, float) and not math.isfinite(value):
            raise DetectionError(f"{source}: {family.NAME} {name}={value} is not a finite number")
        if isinstance(value, int) and value > limit:
            raise DetectionError(
                f"{source}: {family.NAME} {name}={value} implies a network larger than the file's "
                f"{len(state)} tensors ({numel} values)"
            )
    budget = _Budget(tensors=2 * len(state) + 64, elements=2 * numel + 2**20)
    try:
        with quiet(), torch.device("meta"), budget:
            shapes = {k: tuple(v.shape) for k, v in family.build(config).state_dict().items()}
    except _OverBudget as exc:
        raise DetectionError(
            f"{source}: its {family.NAME} config describes a network larger than the tensors in the file ({exc})"
        ) from None
    except (RestorekitError, ValueError, TypeError, RuntimeError, OverflowError, ZeroDivisionError) as exc:
        raise DetectionError(f"{source}: {family.NAME} config cannot be built ({one_line(exc, 120)})") from exc
    problem = _mismatch(shapes, state)
    if problem:
        raise DetectionError(f"{source}: does not fit {family.NAME} {_describe(config)}: {problem}")


def _numbers(value: Any, name: str = "") -> Iterator[tuple[str, int | float]]:
    """Every number in a config (tuple lengths included), with its field path."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _numbers(item, f"{name}.{key}" if name else str(key))
    elif isinstance(value, (list, tuple)):
        yield f"len({name})", len(value)
        for i, item in enumerate(value):
            yield from _numbers(item, f"{name}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield name, value


class _OverBudget(Exception):
    pass


class _Budget(TorchFunctionMode):
    """Counts the tensors a module constructor creates (on ``meta``) and stops it past a budget, so
    building a hostile config costs at most a few thousand tensor headers, never memory or hours."""

    _FACTORIES = frozenset({"empty", "zeros", "ones", "full", "arange", "rand", "randn", "randint", "tensor",
                            "empty_strided", "eye", "linspace", "as_tensor"})

    def __init__(self, tensors: int, elements: int) -> None:
        super().__init__()
        self.tensors_left, self.elements_left = tensors, elements

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if getattr(func, "__name__", "") in self._FACTORIES and isinstance(out, torch.Tensor):
            self.tensors_left -= 1
            self.elements_left -= out.numel()
            if self.tensors_left < 0 or self.elements_left < 0:
                raise _OverBudget(f"stopped at a tensor of shape {tuple(out.shape)}")
        return out


def _mismatch(expected: Mapping[str, tuple[int, ...]], state: StateDict) -> str:
    """What separates a state dict from the keys/shapes a network expects ('' when they agree)."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k])}"
        for k in sorted(set(state) & set(expected))
        if tuple(state[k].shape) != tuple(expected[k])
    ]
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:4])})")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:4])})")
    if wrong_shape:
        parts.append(f"shape mismatch {len(wrong_shape)} (e.g. {'; '.join(wrong_shape[:3])})")
    return "; ".join(parts)


def _describe(config: Any) -> str:
    text = ", ".join(f"{f.name}={getattr(config, f.name)!r}" for f in dataclasses.fields(config))
    return f"({text[:160]})"


def load_strict(net: nn.Module, state: StateDict, family: str, source: str = "checkpoint") -> None:
    """``load_state_dict(strict=True)`` with an error that lists what was missing and unexpected."""
    problem = _mismatch({k: tuple(v.shape) for k, v in net.state_dict().items()}, state)
    if problem:
        raise DetectionError(f"{source}: does not fit {family}: {problem}")
    net.load_state_dict(state, strict=True)


def config_to_json(config: Any) -> str:
    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def check_expected(found_family: Family, found_config: Any, family: Family, config: Any, source: str) -> None:
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


def save_safetensors(model: RestorationModel, destination: str | Path, extra: dict[str, str] | None = None) -> Path:
    """Write the model's weights and the metadata that rebuilds it (family, config, scale, task) as
    safetensors, through the one atomic writer; :func:`read_weights` and ``restorekit.load`` read it back."""
    from safetensors.torch import save_file

    destination = Path(destination)
    metadata = {
        "family": model.family,
        "config": config_to_json(model.config),
        "scale": str(model.scale),
        "task": model.task,
        "format": "restorekit-1",
    }
    if model.preset is not None:
        metadata["preset"] = model.preset.name
    metadata.update(extra or {})
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.net.state_dict().items()}
    try:
        # named after the destination, so a run folder's stale-temp cleaner recognises a leftover
        with atomic_path(destination, prefix=destination.name + ".") as temp:
            save_file(tensors, str(temp), metadata=metadata)
    except Exception as exc:
        if is_disk_full(exc):  # safetensors keeps only the OS message: "No space left on device (os error 28)"
            raise DiskFullError(f"{destination}: disk full (ENOSPC) while writing the weights") from None
        raise
    return destination
