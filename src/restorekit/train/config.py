"""Typed training configs: YAML -> frozen dataclasses, validated end to end.

A recipe is a YAML mapping whose sections mirror the dataclasses below (``model``, ``data``,
``optim``, ``schedule``, ``loss``, ``train``, ``val``, ``ema``). Every key is checked against the
dataclass fields and every value against the field's type; an unknown key, a missing required key or
a wrong type raises :class:`~restorekit.errors.ConfigError` naming the key path (``optim.betas[1]``).

Overrides (``optim.lr=2e-4``) are parsed with the same safe YAML loader (never ``eval``) and applied to the
raw mapping before validation, so they are checked exactly like the file.

``model.arch`` is validated against the chosen family's own ``Config`` dataclass, so a typo in an
architecture field is caught before anything is built.

Every value is also checked against its allowed range (``RULES``, one line per field, applied by
:func:`from_mapping` as each section is built), so ``restorekit train --dry-run`` rejects a negative
step count or a NaN learning rate instead of the run failing (or silently misbehaving) hours later.
YAML is read with a loader that refuses duplicate keys (a repeated section would silently replace the
first) and aliases (a few hundred bytes of nested aliases expand to gigabytes).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from .. import conventions
from ..errors import ConfigError


@dataclass(frozen=True)
class ModelSection:
    """Which network to train."""

    family: str  # key of restorekit.archs.FAMILIES (nafnet, hinet, rednet, bicubic_pp, vapsr)
    preset: str | None = None  # key of the family's PRESETS; None starts from the family's Config()
    arch: dict[str, Any] = field(default_factory=dict)  # overrides of the family Config fields
    init: str | None = None  # weights to start from (fine-tuning, compression stages); strict load


@dataclass(frozen=True)
class DatasetSection:
    """One image set. ``paired``: LQ/GT folders matched by file name (an ``x4``-style suffix on the
    LQ name is tolerated), or, with ``gt`` only, noisy/clean pairs in one folder (PolyU's
    ``<scene>_real``/``<scene>_mean``, SIDD's ``NOISY``/``GT``). ``degraded``: GT only; the LQ is made on
    the fly by ``degradation`` (a ``restorekit.data.degrade.parse_degradation`` spec such as ``awgn:0-50``,
    ``camera:25-12800`` or ``bicubic:3+jpeg:90``). ``data.train`` may list several sets: each sample then
    comes from one of them with probability proportional to its ``weight``.
    """

    gt: str | tuple[str, ...]  # degraded sets may list several GT folders (used as one set)
    kind: Literal["paired", "degraded"] = "paired"
    lq: str | None = None
    degradation: str | None = None
    patch: int | None = None  # GT crop size (aligned to the scale); None uses whole images
    flip: bool = False
    rot90: bool = False
    channel_shuffle: bool = False  # random RGB order (same for LQ and GT); channel-symmetric degradations only
    cache: bool = True  # keep decoded images in memory (small sets)
    # degraded sets: degrade each whole image once and crop aligned patches from the cached result, like
    # a precomputed DIV2K LR_bicubic folder (and faster); needs a deterministic degradation (no noise/ranges)
    precompute_lq: bool = False
    repeat: int = 1  # passes over the folder per epoch (BasicSR's dataset_enlarge_ratio)
    max_images: int | None = None  # use only the first N files (sorted by name)
    weight: float = 1.0  # share of the samples when data.train lists several sets


@dataclass(frozen=True)
class DataSection:
    train: DatasetSection | tuple[DatasetSection, ...]  # several sets: a weighted mixture
    val: DatasetSection | None = None
    batch_size: int = 16  # per process; the global batch is batch_size * world size
    num_workers: int = 0


@dataclass(frozen=True)
class OptimSection:
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    momentum: float = 0.0  # sgd only
    grad_clip: float | None = None  # max total gradient norm (NAFNet/HINet: 0.01)


@dataclass(frozen=True)
class ScheduleSection:
    """Learning-rate factor as a pure function of progress (see ``schedules.py``)."""

    name: Literal["constant", "cosine", "multistep", "knee"] = "constant"
    unit: Literal["step", "epoch"] = "step"  # Bicubic++ steps its knee schedule once per epoch
    total: int | None = None  # schedule length in ``unit``s; None = train.total_steps (or the epochs it spans)
    min_lr: float = 0.0  # cosine eta_min / knee floor
    milestones: tuple[int, ...] = ()
    gamma: float = 0.5
    warmup: int = 0  # linear warm-up length in ``unit``s


@dataclass(frozen=True)
class LossSection:
    name: Literal["psnr", "l1", "mse"] = "l1"
    stage_weights: tuple[float, ...] | None = None  # multi-stage nets (HINet): weight per stage output


@dataclass(frozen=True)
class TrainSection:
    total_steps: int
    seed: int = 0
    device: str = "auto"  # auto picks cuda, then mps, then cpu
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"  # auto: bf16 (else fp16) on CUDA, off on CPU/MPS
    deterministic: bool = False  # torch.use_deterministic_algorithms(True): bit-exact resume
    checkpoint_every: int = 1000
    log_every: int = 10
    out_dir: str = "runs"
    progress: bool = True  # tqdm bar on rank 0
    plot: bool = True  # curves.png at the end (needs matplotlib)


@dataclass(frozen=True)
class ValSection:
    every: int = 0  # steps between validations; 0 validates only at the end (if data.val is set)
    convention: str = "auto"  # a key of CONVENTIONS, or auto (the preset's paper protocol, else by scale)
    metric: Literal["psnr", "ssim"] = "psnr"  # chooses the best checkpoint


@dataclass(frozen=True)
class EmaSection:
    decay: float = 0.0  # 0 disables; VapSR uses 0.999


@dataclass(frozen=True)
class RunConfig:
    name: str
    model: ModelSection
    data: DataSection
    train: TrainSection
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    loss: LossSection = field(default_factory=LossSection)
    val: ValSection = field(default_factory=ValSection)
    ema: EmaSection = field(default_factory=EmaSection)

    def arch_config(self) -> Any:
        """The family Config this run builds (preset + ``model.arch`` overrides), validated."""
        from ..archs import FAMILIES

        family = FAMILIES.get(self.model.family)
        if family is None:
            raise ConfigError(f"model.family: unknown family {self.model.family!r}; valid: {', '.join(FAMILIES)}")
        if self.model.preset is None:
            base = family.Config()
        elif self.model.preset in family.PRESETS:
            base = family.PRESETS[self.model.preset]
        else:
            raise ConfigError(
                f"model.preset: {self.model.preset!r} is not a {family.NAME} preset; "
                f"valid: {', '.join(family.PRESETS)}"
            )
        merged = {**dataclasses.asdict(base), **self.model.arch}
        return from_mapping(family.Config, merged, "model.arch")


# Metric conventions a run may validate under (``val.convention``), by name: the table lives with them.
CONVENTIONS = conventions.BY_NAME


# --------------------------------------------------------------------------------------------------
# Allowed values, one rule per field: checked by from_mapping as each section is built.


@dataclass(frozen=True)
class Range:
    """Numbers from ``low`` to ``high`` (``None``: unbounded; ``*_open``: the bound itself is excluded).
    A tuple field's rule applies to each item; ``None`` (an optional field left unset) always passes."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def problem(self, value: Any) -> str | None:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return f"must be {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return f"must be {'<' if self.high_open else '<='} {self.high:g}"
        return None

    def describe(self) -> str:
        low = "" if self.low is None else f"{'(' if self.low_open else '['}{self.low:g}"
        high = "" if self.high is None else f"{self.high:g}{')' if self.high_open else ']'}"
        return f"{low or '(-inf'}, {high or 'inf)'}"


@dataclass(frozen=True)
class Check:
    """A rule that is not a numeric range: ``test(value)`` returns what is wrong, or None."""

    test: Any  # Callable[[Any], str | None]; a plain field keeps the dataclass hashable and frozen
    text: str

    def problem(self, value: Any) -> str | None:
        return self.test(value)

    def describe(self) -> str:
        return self.text


def _at_least(low: float) -> Range:
    return Range(low=low)


_POSITIVE = Range(low=0, low_open=True)
_FRACTION = Range(low=0, high=1, high_open=True)  # decays, betas, momentum: 1 would never forget


def _run_name(name: str) -> str | None:
    # The run folder is out_dir/name: a name with a separator, '..' or an absolute path would put it
    # (and everything the run writes) outside out_dir.
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name or Path(name).is_absolute():
        return f"{name!r} is not a plain folder name (no '/', '\\', '..' or absolute path)"
    return None


def _convention(name: str) -> str | None:
    valid = ("auto", *CONVENTIONS)
    return None if name in valid else f"{name!r} is not one of {', '.join(valid)}"


def _degradation(spec: str | None) -> str | None:
    if spec is None:
        return None
    from ..data.degrade import parse_degradation  # lazily: the data package imports this module

    try:
        parse_degradation(spec)
    except ConfigError as exc:
        return str(exc)
    return None


# (section, field) -> rule. Every int/float field of every section has one (tests/test_train_config.py
# checks that a new field cannot be added without its range).
RULES: dict[tuple[type, str], Range | Check] = {
    (RunConfig, "name"): Check(_run_name, "a plain folder name"),
    (DatasetSection, "patch"): _at_least(1),
    (DatasetSection, "repeat"): _at_least(1),
    (DatasetSection, "max_images"): _at_least(1),
    (DatasetSection, "weight"): _POSITIVE,
    (DatasetSection, "degradation"): Check(_degradation, "a degradation spec"),
    (DataSection, "batch_size"): Range(1, 2**16),
    (DataSection, "num_workers"): Range(0, 256),
    (OptimSection, "lr"): _at_least(0),  # 0 keeps the weights fixed (a test of init, a frozen stage)
    (OptimSection, "betas"): _FRACTION,
    (OptimSection, "weight_decay"): _at_least(0),
    (OptimSection, "momentum"): _FRACTION,
    (OptimSection, "grad_clip"): _POSITIVE,  # a negative max norm flips every gradient's sign
    (ScheduleSection, "total"): _at_least(1),
    (ScheduleSection, "min_lr"): _at_least(0),
    (ScheduleSection, "milestones"): _at_least(0),
    (ScheduleSection, "gamma"): _POSITIVE,
    (ScheduleSection, "warmup"): _at_least(0),
    (LossSection, "stage_weights"): _at_least(0),
    (TrainSection, "total_steps"): _at_least(1),
    (TrainSection, "seed"): Range(0, 2**63 - 1),
    (TrainSection, "checkpoint_every"): _at_least(1),
    (TrainSection, "log_every"): _at_least(1),
    (ValSection, "every"): _at_least(0),  # 0: only at the end
    (ValSection, "convention"): Check(_convention, "auto or a convention name"),
    (EmaSection, "decay"): _FRACTION,  # 0 disables EMA
}


def _check_rule(cls: type, name: str, value: Any, path: str) -> None:
    rule = RULES.get((cls, name))
    if rule is None or value is None:
        return
    items = value if isinstance(value, tuple) and isinstance(rule, Range) else (value,)
    for i, item in enumerate(items):
        problem = rule.problem(item)
        if problem:
            where = f"{path}[{i}]" if items is value else path
            got = f", got {item!r}" if isinstance(rule, Range) else ""  # a Check's text names the value
            raise ConfigError(f"{where}: {problem}{got}")


# --------------------------------------------------------------------------------------------------
# Generic validation: mapping -> dataclass, checked against the type hints and RULES.


def from_mapping(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, checking keys and value types; errors name the key path."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"unknown key {where}{unknown[0]}; valid keys here: {', '.join(fields)}")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key_path = f"{path}.{name}" if path else name
        if name in data:
            values[name] = _convert(hints[name], data[name], key_path)
            _check_rule(cls, name, values[name], key_path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key {key_path}")
    try:
        return cls(**values)
    except (TypeError, ValueError, ConfigError) as exc:  # a family Config's own checks (VapSR scale 2-4)
        raise ConfigError(f"{path or 'config'}: {exc}") from exc


def _convert(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, path)
            except ConfigError as exc:
                errors.append(str(exc))
                if _same_shape(option, value):  # the option the value was meant as: its error is the useful one
                    raise
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: {_describe(value)} fits none of {hint}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{path}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, path)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{path}: expected {len(args)} items, got {len(value)}")
        return tuple(_convert(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {_describe(value)}")
        return {str(k): _convert(args[1], v, f"{path}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {_describe(value)}")
        return value
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected a number, got {_describe(value)}")
        number: float | None = None
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            # PyYAML (YAML 1.1) reads ``1e-3`` as a string because it has no dot; accept numeric strings.
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{path}: expected a number, got {_describe(value)}")
        if not math.isfinite(number):  # no setting means anything at NaN or infinity
            raise ConfigError(f"{path}: expected a finite number, got {value!r}")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {_describe(value)}")
        return value
    raise ConfigError(f"{path}: unsupported field type {hint}")  # a bug in a Config class, not user input


def _same_shape(hint: Any, value: Any) -> bool:
    """A mapping given for a dataclass, or a list for a tuple: the union member the value was written as."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return isinstance(value, Mapping)
    return typing.get_origin(hint) is tuple and isinstance(value, (list, tuple))


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) < 60 else text[:57] + '...'}"


# --------------------------------------------------------------------------------------------------
# Files and overrides.


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys and aliases.

    PyYAML keeps the last of two equal keys, so a second ``optim:`` section silently replaced the
    first; and aliases let a 700-byte file expand to gigabytes (each level of ``&a [*b, *b, ...]``
    multiplies). Recipes never need either: a repeated key or an alias is an error at its line.
    """

    # Recipes nest four levels deep; PyYAML's scanner slows quadratically with nesting (a line of
    # 100,000 '[' takes minutes), so nesting stops at the scanner, before any of that work.
    max_depth = 32

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        if self.flow_level >= self.max_depth:
            raise yaml.scanner.ScannerError(None, None, f"nested deeper than {self.max_depth} levels", self.get_mark())
        super().fetch_flow_collection_start(token_class)

    def add_indent(self, column: int) -> bool:
        if len(self.indents) >= self.max_depth:
            raise yaml.scanner.ScannerError(None, None, f"nested deeper than {self.max_depth} levels", self.get_mark())
        return super().add_indent(column)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"alias *{event.anchor} is not allowed in configs (write the value out)", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (a repeated key would silently replace the first)",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    """YAML text -> Python data with :class:`StrictLoader` (safe types only, no duplicates, no aliases)."""
    return yaml.load(text, Loader=StrictLoader)  # a SafeLoader subclass: builds plain types only


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{where}: {problem}"


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply one ``dotted.key=value`` override to a raw mapping (value parsed by :func:`parse_yaml`)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r}: expected KEY=VALUE, e.g. optim.lr=2e-4")
    key, text = override.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {override!r}: empty key component")
    try:
        value = parse_yaml(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {override!r}: value is not valid YAML{_yaml_problem(exc)}") from None
    except RecursionError:
        raise ConfigError(f"override {override!r}: value nests too deeply") from None
    node: dict[str, Any] = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {'.'.join(parts[: i + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file's top-level mapping, with ``name`` defaulting to the file's stem; errors name the file."""
    path = Path(path)
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (not UTF-8)") from None
    except OSError as exc:  # a folder, a permission problem, a device
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML{_yaml_problem(exc)}") from exc
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    raw.setdefault("name", path.stem)
    return raw


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a recipe, apply ``key=value`` overrides, and validate it (family config included)."""
    path = Path(path)
    raw = read_yaml_mapping(path)
    for item in overrides:
        apply_override(raw, item)
    try:
        config = from_mapping(RunConfig, raw)
        config.arch_config()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return config


def config_from_dict(raw: Mapping[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Validate a config given as a Python mapping (same rules as a YAML file)."""
    data = _plain(raw)
    for item in overrides:
        apply_override(data, item)
    config = from_mapping(RunConfig, data)
    config.arch_config()
    return config


def to_dict(config: RunConfig) -> dict[str, Any]:
    """Plain YAML-safe mapping (tuples become lists) that validates back to the same config."""
    return _plain(dataclasses.asdict(config))


def dump_config(config: RunConfig, path: str | Path) -> None:
    from ..atomic import write_text_atomic

    write_text_atomic(yaml.safe_dump(to_dict(config), sort_keys=False), path)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
