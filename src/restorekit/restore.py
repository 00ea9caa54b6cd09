"""Restoring image files in batches that never lose work: what ``restorekit restore`` runs.

Every input ends in exactly one of three ways, each reported on one line naming the file:
restored (an output written atomically under its final name), failed (refused or broken, with
the reason: unreadable, truncated, multi-frame, non-finite, not a regular file, too large...),
or skipped (its output exists and ``--overwrite`` is off, or it is the same file as another
input). The batch goes on past any one file. Exit codes: 0 when nothing failed (skips included),
1 when any input failed, 2 when the run could not start (bad option, no model, an output folder
that cannot be written: checked before the model is loaded), 130 when interrupted.

Outputs are never an input, keep the input's extension when restorekit writes that format (else
``.png``) and always hold the data their extension names. The Python twin of the verb is
``restore_file``; the verb's options and its run are in ``restore_cli``, which parses without PyTorch.
"""

from __future__ import annotations

import glob
import os
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import hub
from .archs import get_family
from .batch.engine import Job
from .errors import RestorekitError, WeightsError
from .imageio import (
    DEFAULT_MAX_PIXELS,
    READABLE_SUFFIXES,
    ImageWarning,
    clean_stale_temp_files,
    ensure_writable_folder,
    format_of_suffix,
    output_format,
    output_suffix,
    read_image,
    write_image,
)
from .inference import RestoreOptions, TorchBackend, pick_device, restore_image
from .model import PreUpsampled, RestorationModel, load
from .zoo import PRESETS, TASKS

# A noisy 256x256 photo the project makes itself (scripts/make_samples.py; see samples/README.md).
SAMPLE_IMAGE = Path(__file__).parent / "samples" / "astronaut_noisy25.png"

# task -> default preset. The restorekit-* presets are the project's own embedded weights.
DEFAULT_PRESETS: dict[str, str] = {
    "denoise": "restorekit-denoise",
    "deblur": "nafnet-gopro-w32",
    "derain": "hinet-rain13k",
    "sr": "restorekit-sr-x3",
}
# --task sr --scale N without --model
DEFAULT_SR_PRESETS: dict[int, str] = {2: "vapsr-x2", 3: "restorekit-sr-x3", 4: "vapsr-x4"}


def choose_preset(task: str, model: str | None, scale: int | None) -> str:
    """The preset to use for ``--task/--model/--scale``.

    With ``--scale``, a preset of another scale is swapped for the preset of the same family and
    task at that scale (``--model vapsr-x4 --scale 2`` -> ``vapsr-x2``); no such preset is an error.
    """
    if task not in TASKS:
        raise RestorekitError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if model is None:
        if task == "sr" and scale is not None:
            if scale not in DEFAULT_SR_PRESETS:
                raise RestorekitError(f"no default model for --scale {scale}; SR scales: 2, 3, 4")
            return DEFAULT_SR_PRESETS[scale]
        return DEFAULT_PRESETS[task]
    if model not in PRESETS:
        raise RestorekitError(
            f"unknown model {model!r}; run `restorekit models` for the list, or pass a file with --weights"
        )
    preset = PRESETS[model]
    if scale is None or _preset_scale(model) == scale or (_preset_scale(model) == 1 and _pre_upsampling(preset.family)):
        return model
    family_presets = [p for p in PRESETS.values() if p.family == preset.family and p.task == preset.task]
    same_scale = [p.name for p in family_presets if _preset_scale(p.name) == scale]
    if not same_scale:
        scales = sorted({_preset_scale(p.name) for p in family_presets})
        raise RestorekitError(f"{model}: no {preset.family} preset for scale {scale} (available: {scales})")
    base = model.rsplit("-x", 1)[0]
    return next((name for name in same_scale if name.startswith(base)), same_scale[0])


def _preset_scale(name: str) -> int:
    return PRESETS[name].scale  # every caller passes a name taken from PRESETS


def load_model(
    task: str = "denoise",
    model: str | RestorationModel | None = None,
    weights: str | Path | None = None,
    scale: int | None = None,
    tlc: bool | None = None,
    device: str | torch.device = "auto",
) -> RestorationModel:
    """The model for a restore run: a given model, a weights file, a preset, or the task's default."""
    if isinstance(model, RestorationModel):
        return model.eval()
    target = pick_device(device)
    if weights is not None:
        if not Path(weights).is_file():
            raise WeightsError(f"{weights}: no such weights file")
        return at_scale(load(weights, device=target, tlc=tlc, preset=model), scale, str(weights))
    name = choose_preset(task, model, scale)
    try:
        return at_scale(load(name, device=target, tlc=tlc), scale, name)
    except (KeyError, WeightsError) as exc:
        # hub.missing_weights_error already says what is missing and how to get it; a --task run
        # adds which other models for the task are here
        message = str(exc.args[0] if exc.args else exc).rstrip(". ")
        if model is None:
            separator = "\n  " if "\n" in message else ". "
            message += f"{separator}The default model for --task {task} is {name!r}; {_alternatives(task, name, scale)}"
        raise WeightsError(message) from None


def _alternatives(task: str, failed: str, scale: int | None) -> str:
    """What to do when the task's default preset has no weights: name presets that are here."""
    here = [p.name for p in PRESETS.values() if p.task == task and p.name != failed and hub.is_available(p)]
    if scale is not None:
        here = [name for name in here if _preset_scale(name) == scale]
    if here:
        return f"choose another with --model (with weights here: {', '.join(here)}) or pass --weights FILE."
    which = f"--task {task}" + (f" --scale {scale}" if scale is not None else "")
    return (f"no other {which} model has weights here: put a preset's weights file (`restorekit models` lists "
            "them) in a folder named by RESTOREKIT_WEIGHTS, or pass --weights FILE.")


@dataclass
class InputList:
    """What the INPUT arguments expand to: files to restore with their base folder, inputs that
    cannot be restored (reported as failures) and files left out on purpose (reported skips)."""

    files: list[tuple[Path, Path]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def collect_inputs(inputs: Iterable[str], recursive: bool = False, exclude: Path | None = None) -> InputList:
    """Expand files, folders and globs into ``(file, base folder)`` pairs; the base folder keeps
    sub-folder structure in the output when a folder is given.

    - An existing name is taken as it is, never as a glob (``[draft].png`` is that file).
    - A name given explicitly is always an input, whatever it is: the reader refuses a broken or
      looping link, a FIFO or a device with its reason. A folder contributes the entries with an
      image suffix (``READABLE_SUFFIXES``), links and special files included, so those are
      refused by name too instead of vanishing; files under ``exclude`` (the output folder) are
      left out. With ``recursive``, a link to a folder is reported as skipped, not followed.
    - A file reached twice (a link beside its target, a file named twice) is restored once; the
      other names are reported as skipped.
    """
    found = InputList()
    candidates: list[tuple[Path, Path]] = []
    for item in inputs:
        path = Path(item)
        if os.path.lexists(path) and not path.is_dir():
            candidates.append((path, path.parent))
        elif path.is_dir():
            files, links = _folder_entries(path, recursive, _strictly_inside(exclude, path))
            found.skipped.extend((link, "a link to a folder inside a --recursive input is not followed")
                                 for link in links)
            if not files and not links:
                found.failed.append((path, "folder has no images" + ("" if recursive else
                                                                      " (use --recursive for sub-folders)")))
            candidates.extend((file, path) for file in files)
        elif glob.has_magic(item):
            matches = sorted(Path(m) for m in glob.glob(item, recursive=recursive))
            files = [m for m in matches if not m.is_dir()]  # a glob selects files
            if not files:
                found.failed.append((path, "no file matches this glob"))
            candidates.extend((file, file.parent) for file in files)
        else:
            found.failed.append((path, "no such file or folder"))
    first: dict[str, Path] = {}
    for file, base in candidates:
        key = os.path.realpath(file)
        if key in first:
            again = "given twice" if first[key] == file else f"same file as {first[key]}, which is restored"
            found.skipped.append((file, again))
            continue
        first[key] = file
        found.files.append((file, base))
    return found


def _strictly_inside(inner: Path | None, outer: Path) -> str | None:
    """The real path of ``inner`` when it is a folder below ``outer`` (not ``outer`` itself), else None."""
    if inner is None:
        return None
    inner_real, outer_real = os.path.realpath(inner), os.path.realpath(outer)
    return inner_real if inner_real.startswith(outer_real.rstrip(os.sep) + os.sep) else None


def _folder_entries(folder: Path, recursive: bool, excluded: str | None) -> tuple[list[Path], list[Path]]:
    """Image-suffixed entries of ``folder`` (sorted) and, with ``recursive``, the links to folders
    in it (pathlib's ``**`` does not follow them, so they would otherwise vanish silently)."""
    files: list[Path] = []
    links: list[Path] = []
    for entry in sorted(folder.glob("**/*" if recursive else "*")):
        if excluded is not None and (os.path.realpath(entry) + os.sep).startswith(excluded + os.sep):
            continue  # a previous run's outputs inside an input folder are not inputs
        if entry.is_dir():
            if recursive and entry.is_symlink():
                links.append(entry)
            continue
        if entry.suffix.lower() in READABLE_SUFFIXES:
            files.append(entry)
    return files, links


def output_path(source: Path, base: Path, outdir: Path, suffix: str, fmt: str) -> Path:
    """``outdir / <path relative to base> / <stem><suffix><ext>``.

    ``fmt='same'`` keeps the input's extension when restorekit writes that format and uses
    ``.png`` otherwise (GIF, PPM, no extension); the data written always matches the extension.
    """
    relative = source.relative_to(base) if source.is_relative_to(base) else Path(source.name)
    return outdir / relative.parent / f"{relative.stem}{suffix}{output_suffix(source, fmt)}"


def _pre_upsampling(family: str) -> bool:
    try:
        return bool(getattr(get_family(family), "PRE_UPSAMPLING", False))
    except KeyError:  # family not built into this install
        return False


def at_scale(model: RestorationModel, scale: int | None, source: str) -> RestorationModel:
    """``model`` for ``--scale``: as it is at its own scale; a scale-1 model of a pre-upsampling family
    (RED-Net) restores the input bicubic-upscaled by ``scale`` first; anything else is an error."""
    if scale is None or model.scale == scale:
        return model
    if model.scale == 1 and scale > 1 and _pre_upsampling(model.family):
        return PreUpsampled(model, scale)
    raise RestorekitError(f"{source}: is a x{model.scale} model, but --scale {scale} was asked for")


def prepare_output_folder(outdir: Path) -> None:
    """Create ``outdir``, prove a file can be written in it, and clear our abandoned temp files,
    before any model is loaded: an unusable folder stops the run at once (exit 2)."""
    ensure_writable_folder(outdir)
    for path in clean_stale_temp_files(outdir, recursive=True):
        print(f"removed an abandoned temp file: {path}", file=sys.stderr)


def restore_file(
    source: str | Path,
    destination: str | Path,
    model: str | Path | RestorationModel | None = None,
    *,
    options: RestoreOptions | None = None,
    precision: str = "fp32",
    format: str = "same",
    overwrite: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Path:
    """Restore one image file into ``destination`` (written atomically) and return its path.

    ``model``: a loaded ``RestorationModel``, a preset name or weights file (loaded by
    ``restorekit.load`` on the best device), or None for the default denoising model. For a task's
    default, ``--scale``, ``--tlc`` or a chosen device, pass :func:`load_model`'s model, as the CLI does.
    ``options``: tiles, their overlap, TTA and the progress bar (None: ``RestoreOptions()``). The other options
    mirror ``restorekit restore --help``. The source is never overwritten.
    """
    source, destination = Path(source), Path(destination)
    if destination.resolve() == source.resolve():
        raise RestorekitError(f"{destination}: the output would overwrite the input")
    if destination.exists() and not overwrite:
        raise RestorekitError(f"{destination}: exists; pass overwrite=True to replace it")
    backend = TorchBackend(_file_model(model), precision)
    image = read_image(source, max_pixels)
    for note in image.notes:
        warnings.warn(ImageWarning(note), stacklevel=2)
    restored = restore_image(image, backend, options or RestoreOptions())
    fmt = format if format != "same" else format_of_suffix(destination) or output_format(image, "same", source)
    return write_image(restored, destination, fmt)


def _file_model(model: str | Path | RestorationModel | None) -> RestorationModel:
    """``restore_file``'s model: the one given, loaded by name or path, or the default denoiser."""
    if isinstance(model, RestorationModel):
        return model.eval()
    if model is None:
        return load_model()  # a missing default names the models whose weights are here
    return load(model, device="auto")


def plan_jobs(files: Sequence[tuple[Path, Path]], outdir: Path, suffix: str, fmt: str) -> list[Job]:
    """The run's jobs in sorted input order, each with its output path or the reason it has none.

    Every process of a sharded run plans the same list, so conflicts (an output that is an input,
    two inputs with one output) are decided the same way everywhere: the first in sorted order wins.
    """
    ordered = sorted(files, key=lambda pair: str(pair[0]))
    inputs = {os.path.realpath(f) for f, _ in ordered}  # realpath: a looping link must not raise here
    claimed: dict[str, Path] = {}
    jobs: list[Job] = []
    for index, (source, base) in enumerate(ordered):
        destination = output_path(source, base, outdir, suffix, fmt)
        resolved = os.path.realpath(destination)
        problem = None
        if resolved in inputs:
            problem = f"output {destination} is an input file; use --suffix or another -o"
        elif resolved in claimed:
            problem = f"output {destination} is also the output of {claimed[resolved]}"
        else:
            claimed[resolved] = source
        jobs.append(Job(index, source, destination, problem))
    return jobs
