"""Evaluate a model on a test set: :func:`evaluate`, which ``restorekit eval`` (``eval_cli``) runs.

Protocol (the one the SR/denoising papers use, spelled out so numbers are comparable):

- Ground truth (HR) images are mod-cropped to the scale (bottom/right pixels dropped).
- Inputs come from ``--lr`` (paired by file name, ``baby.png`` <-> ``babyx4.png`` allowed) or are
  synthesised from the HR image with ``--degrade`` (default ``bicubic:SCALE`` for SR models: MATLAB
  bicubic with uint8 rounding, which reproduces the shipped benchmark LR files). Random
  degradations use a generator seeded from ``seed`` and the image name, so every image gets the
  same input on every run, device and ``--limit``.
- Grey images (Set14 ``bridge``) are repeated to RGB for 3-channel models; 1-channel models
  (RED-Net) get the luma: grey images as they are, RGB images as MATLAB's BT.601 Y.
- A model whose scale is 1 but whose data is downscaled (RED-Net SR) gets the input bicubic-upsampled
  to the HR size first (pre-upsampling networks).
- The model output is clamped to [0, 1] before measuring (what saving an image does), then the metric
  convention of the preset applies (``restorekit.metrics``), unless overridden.
- Per-image PSNR/SSIM are averaged over the set.
"""

from __future__ import annotations

import json
import math
import re
import sys
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .conventions import RESTORATION_RGB, SR_Y, MetricConvention
from .data.degrade import Degradation, imresize, parse_degradation
from .errors import ConfigError, ImageError
from .imageio import READABLE_SUFFIXES, read_tensor
from .inference.pipeline import rgb_to_luma
from .inference.runner import pick_device
from .metrics import measure, studio_range

_GT_FOLDER_NAMES = {"hr", "gt", "target", "targets", "groundtruth", "ground_truth", "original", "clean", "sharp"}
BICUBIC = "bicubic"  # pseudo-model name: MATLAB bicubic upscaling of the LR input
INPUT = "input"  # pseudo-model name: the input itself (what a noisy/degraded set scores before restoration)


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageResult:
    """Metrics of one image."""

    name: str
    psnr: float
    ssim: float


@dataclass(frozen=True)
class EvalResult:
    """Metrics of a model on one test set, with everything needed to interpret them."""

    model: str
    dataset: str | None
    scale: int
    convention: MetricConvention
    input: str  # where the inputs came from: an LR folder or a degradation description
    images: list[ImageResult]
    paper: dict[str, float] | None = None  # the preset's published numbers for this dataset
    paper_convention: MetricConvention | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    total: int | None = None  # images in the set before --limit; None: all of them were measured

    @property
    def subset(self) -> bool:
        """True when ``limit`` cut the set: the mean is then not the paper's whole-set mean."""
        return self.total is not None and len(self.images) < self.total

    @property
    def comparable(self) -> bool | None:
        """Whether our mean can be set beside the paper's (None: no paper number)."""
        if self.paper is None:
            return None
        same_convention = self.paper_convention is None or self.paper_convention == self.convention
        return same_convention and not self.subset

    @property
    def mean(self) -> dict[str, float]:
        """Mean of the per-image PSNR and SSIM."""
        n = len(self.images)
        return {
            "psnr": sum(r.psnr for r in self.images) / n,
            "ssim": sum(r.ssim for r in self.images) / n,
        }

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "model": self.model,
            "dataset": self.dataset,
            "scale": self.scale,
            "input": self.input,
            "mean": self.mean,
            "images": [asdict(r) for r in self.images],
            "conventions": {**asdict(self.convention), "crop_border": self.convention.border_for(self.scale),
                            "clamp": "output clamped to [0, 1]", "description": self.convention.describe(self.scale)},
            "paper": self.paper,
            "comparable": self.comparable,
            "images_in_set": self.total if self.total is not None else len(self.images),
            **self.extra,
        }

    def table(self) -> str:
        """Plain-text per-image table, the mean, and the paper's numbers beside ours."""
        width = max([len(r.name) for r in self.images] + [len("paper"), 4])
        lines = [(f"{self.model} on {self.dataset or 'images'} (x{self.scale}; {self.convention.describe(self.scale)};"
                 f" input: {self.input})"),
                 f"{'image':<{width}}  {'PSNR':>8}  {'SSIM':>7}"]
        for r in self.images:
            lines.append(f"{r.name:<{width}}  {_fmt_psnr(r.psnr)}  {r.ssim:7.4f}")
        mean = self.mean
        lines.append(f"{'mean':<{width}}  {_fmt_psnr(mean['psnr'])}  {mean['ssim']:7.4f}")
        if self.paper is not None:
            ssim = self.paper.get("ssim")
            ssim_text = f"{ssim:7.4f}" if ssim is not None else f"{'-':>7}"
            if self.subset:
                # the paper averages the whole set: a difference to a subset's mean means nothing
                lines.append(f"{'paper':<{width}}  {self.paper['psnr']:8.2f}  {ssim_text}"
                             f"   (whole set; not comparable: subset of {len(self.images)} of {self.total} images)")
            else:
                lines.append(f"{'paper':<{width}}  {self.paper['psnr']:8.2f}  {ssim_text}"
                             f"   (ours {mean['psnr'] - self.paper['psnr']:+.2f} dB)")
            if self.paper_convention is not None and self.paper_convention != self.convention:
                lines.append(f"note: the paper measured {self.paper_convention.describe(self.scale)}; "
                             "the overrides make the numbers not comparable")
        return "\n".join(lines)


def _fmt_psnr(value: float) -> str:
    return f"{'inf':>8}" if math.isinf(value) else f"{value:8.2f}"


# --------------------------------------------------------------------------------------------------
# Images and pairing
# --------------------------------------------------------------------------------------------------


def read_image(path: Path) -> torch.Tensor:
    """An image as a float (C, H, W) tensor in [0, 1], C 1 (grey) or 3 (RGB) as in the file, through
    ``restorekit.imageio`` (16-bit kept; alpha dropped; broken files refused with an ``ImageError`` naming them).
    """
    return read_tensor(path)


def _list_images(folder: Path, role: str) -> list[Path]:
    if not folder.is_dir():
        raise ConfigError(f"{role} folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in READABLE_SUFFIXES)
    if not files:
        raise ConfigError(f"{role} folder {folder} has no images ({', '.join(READABLE_SUFFIXES)})")
    return files


def guess_dataset(hr_dir: Path) -> str:
    """``.../Set5/HR`` -> ``Set5``; ``.../Set12`` -> ``Set12`` (ground-truth folder names are skipped)."""
    hr_dir = hr_dir.resolve()
    if hr_dir.name.lower() in _GT_FOLDER_NAMES and hr_dir.parent.name:
        return hr_dir.parent.name
    return hr_dir.name


def _image_seed(seed: int, name: str) -> int:
    # independent of the order and of --limit: each image's randomness depends on its name only
    return (seed * 1_000_003 + zlib.crc32(name.encode("utf-8"))) % (2**63)


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


class Passthrough:
    """The ``input`` pseudo-model: returns its input, so ``eval input`` scores the degraded images."""

    scale = 1
    in_channels = 3
    alignment = 1
    name = INPUT
    preset = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x


class BicubicUpscaler:
    """The ``bicubic`` pseudo-model: MATLAB bicubic upscaling, the floor every SR paper reports."""

    def __init__(self, scale: int) -> None:
        self.scale = scale
        self.in_channels = 3
        self.alignment = 1
        self.name = BICUBIC
        self.preset = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return imresize(x, scale=self.scale)


def _lookup_paper(preset: Any, dataset: str | None, scale: int, degradation: Degradation | None) -> dict[str, float] | None:
    if preset is None or dataset is None or not getattr(preset, "paper", None):
        return None
    keys = [dataset, f"{dataset}-x{scale}"]
    if degradation is not None and degradation.sigma is not None:
        keys.append(f"{dataset}-sigma{degradation.sigma:g}")
    lowered = {k.lower(): v for k, v in preset.paper.items()}
    for key in keys:
        result = lowered.get(key.lower())
        if result is not None:
            return {"psnr": result.psnr, **({"ssim": result.ssim} if result.ssim is not None else {})}
    return None


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalData:
    """What an evaluation measures: the ground truths and how their inputs come (``restorekit eval``'s
    data options).

    ``hr_dir``: the ground-truth folder. ``lr_dir``: the inputs, paired with the ground truths by name;
    without it, inputs are made from the ground truths with ``degrade`` (a spec such as ``awgn:25``
    or a ``Degradation``; default ``bicubic:<scale>`` for SR). ``paired``: ``hr_dir`` holds noisy/clean
    pairs of a restoration task in one folder, matched by name (PolyU's ``<scene>_real``/``<scene>_mean``,
    SIDD's ``NOISY``/``GT``); no synthetic degradation. ``scale``: the SR factor (default: the model's,
    else the degradation's). ``seed``: of random degradations, per image by name. ``limit``: measure the
    first N images only. ``dataset``: the name used to look up the paper's number (default: guessed from
    the folder, ``.../Set5/HR`` -> ``Set5``).
    """

    hr_dir: str | Path
    lr_dir: str | Path | None = None
    paired: bool = False
    degrade: str | Degradation | None = None
    scale: int | None = None
    seed: int = 0
    limit: int | None = None
    dataset: str | None = None

    def __post_init__(self) -> None:
        # folders kept as Paths, whatever the caller passed (frozen: set through object)
        object.__setattr__(self, "hr_dir", Path(self.hr_dir))
        if self.lr_dir is not None:
            object.__setattr__(self, "lr_dir", Path(self.lr_dir))
        if self.paired and (self.lr_dir is not None or self.degrade is not None):
            raise ConfigError("--pairs reads inputs and ground truths from one folder; drop --lr/--degrade")
        if self.lr_dir is not None and self.degrade is not None:
            raise ConfigError("--degrade makes inputs from the HR images; it cannot be combined with --lr")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {self.limit}")

    def degradation(self) -> Degradation | None:
        """``degrade`` parsed (None: inputs are read, or the default is chosen once the scale is known)."""
        return parse_degradation(self.degrade) if isinstance(self.degrade, str) else self.degrade

    def describe_input(self, degradation: Degradation | None) -> str:
        """Where the inputs came from, as the result reports it."""
        if self.paired:
            return f"noisy/clean pairs in {self.hr_dir}"
        if self.lr_dir is not None:
            return str(self.lr_dir)
        assert degradation is not None  # _data_scale gives inputs made from ground truths a degradation
        return f"{degradation.describe()} of {self.hr_dir} (seed {self.seed})"


def evaluate(
    model: Any,
    data: EvalData,
    *,
    convention: MetricConvention | None = None,
    overrides: dict[str, Any] | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = False,
) -> EvalResult:
    """Measure PSNR/SSIM of ``model`` on ``data`` (:class:`EvalData`: the images and how inputs come).

    ``model``: a :class:`~restorekit.RestorationModel`, a preset name or weights path (loaded with
    :func:`restorekit.load`), ``"bicubic"`` (the MATLAB-bicubic floor; needs ``data.scale``, a
    ``bicubic:K`` degradation, or an LR folder named ``X<K>``) or ``"input"`` (scores the inputs
    themselves). ``convention``: the metric convention (default: the preset's, else Y/crop=scale for
    SR and RGB/crop 0 otherwise). ``overrides``: fields of :class:`MetricConvention` replaced on top of
    that convention (what ``--y/--crop/--float/--ssim`` set). ``device`` is where a model named by
    string is loaded; a model object is used where it already is. ``progress``: a per-image bar
    (None: only when stderr is a terminal).
    """
    hr_dir = Path(data.hr_dir)  # already a Path: spelled out for the type checker
    lr_path = Path(data.lr_dir) if data.lr_dir is not None else None
    degradation = data.degradation()
    net, dev = _pick_model(model, data.scale, degradation, lr_path, pick_device("auto" if device is None else device))

    model_scale = int(net.scale)
    data_scale, degradation = _data_scale(net, model, data.scale, degradation, lr_path is None and not data.paired)

    preset = getattr(net, "preset", None)
    convention = _pick_convention(convention, preset, data_scale, data.paired, overrides)
    name = _model_name(net, model, preset)
    dataset = data.dataset or guess_dataset(hr_dir)
    in_channels = int(net.in_channels)
    if in_channels not in (1, 3):
        raise ConfigError(f"model {name} takes {in_channels} channels; evaluation supports 1 (grey/Y) or 3 (RGB)")
    pairs = _list_pairs(hr_dir, lr_path, data.paired, data_scale, name)
    total = len(pairs)
    if data.limit is not None:
        pairs = pairs[: data.limit]

    results: list[ImageResult] = []
    iterator = _with_progress(pairs, name, progress)
    for hr_file, lr_file in iterator:
        hr, lr = _load_pair(hr_file, lr_file, data_scale, in_channels, degradation, data.seed)
        if model_scale == 1 and data_scale > 1:
            lr = imresize(lr, size=(hr.shape[-2], hr.shape[-1]))  # pre-upsampling network: restores a bicubic upscale
        out = _restore(net, lr, dev)
        if tuple(out.shape) != tuple(hr.shape):
            raise ConfigError(f"model {name} returned {tuple(out.shape)} for {hr_file.name}, expected {tuple(hr.shape)}")
        scores = score(out, hr.to(out.device), convention, data_scale)
        results.append(ImageResult(hr_file.stem, scores["psnr"], scores["ssim"]))
        if hasattr(iterator, "set_postfix"):
            iterator.set_postfix(psnr=f"{scores['psnr']:.2f}")

    return EvalResult(
        model=name, dataset=dataset, scale=data_scale, convention=convention, input=data.describe_input(degradation),
        images=results, paper=_lookup_paper(preset, dataset, data_scale, degradation),
        paper_convention=preset.convention if preset is not None else None, total=total,
    )


def _with_progress(pairs: list[Any], name: str, progress: bool | None) -> Any:
    """``pairs`` as they are, or behind a per-image bar with ETA (``None``: only when stderr is a terminal)."""
    if progress is False:
        return pairs
    from tqdm import tqdm  # type: ignore[import-untyped]

    return tqdm(pairs, desc=f"eval {name}", unit="img", file=sys.stderr, disable=None if progress is None else False)


def _pick_model(
    model: Any, scale: int | None, degradation: Degradation | None, lr_path: Path | None, dev: torch.device
) -> tuple[Any, torch.device]:
    """The callable to evaluate (a pseudo-model, a loaded preset/file, or the object given) and its device."""
    if isinstance(model, (str, Path)) and str(model) == BICUBIC:
        k = scale or (degradation.scale if degradation is not None and degradation.scale > 1 else None)
        if k is None and lr_path is not None:
            match = re.fullmatch(r"x(\d+)", lr_path.name, flags=re.IGNORECASE)
            k = int(match.group(1)) if match else None
        if k is None or k < 2:
            raise ConfigError("the bicubic pseudo-model needs a scale: pass --scale K (K >= 2)")
        return BicubicUpscaler(k), dev
    if isinstance(model, (str, Path)) and str(model) == INPUT:
        return Passthrough(), dev
    if isinstance(model, (str, Path)):
        from .model import load

        return load(model, device=dev), dev
    return model, (next(model.parameters()).device if hasattr(model, "parameters") else dev)


def _data_scale(
    net: Any, model: Any, scale: int | None, degradation: Degradation | None, needs_inputs: bool
) -> tuple[int, Degradation | None]:
    """The data's scale (``scale``, else the degradation's, else the model's) and the degradation,
    ``bicubic:<scale>`` by default for SR data made from ground truths (``needs_inputs``)."""
    model_scale = int(net.scale)
    data_scale = scale if scale is not None else model_scale
    if degradation is not None and degradation.scale > 1 and scale is None:
        data_scale = degradation.scale
    if model_scale not in (1, data_scale):
        raise ConfigError(f"model {getattr(net, 'name', model)} upscales x{model_scale} but the data is x{data_scale}")
    if degradation is not None and degradation.scale not in (1, data_scale):
        raise ConfigError(f"degradation {degradation.spec!r} downscales x{degradation.scale} but the scale is x{data_scale}")
    if needs_inputs and degradation is None:
        if data_scale > 1:
            return data_scale, parse_degradation(f"bicubic:{data_scale}")
        raise ConfigError("no inputs: give an LR/input folder (--lr) or a degradation (--degrade awgn:25)")
    return data_scale, degradation


def _pick_convention(
    convention: MetricConvention | None, preset: Any, data_scale: int, paired: bool,
    overrides: dict[str, Any] | None,
) -> MetricConvention:
    """The explicit convention, else the preset's, else SR (Y, crop = scale) or RGB restoration."""
    if convention is None:
        if preset is not None:
            convention = preset.convention
        elif data_scale > 1:
            convention = SR_Y
        elif paired:  # real pairs: the restoration convention (RGB, uint8, no crop), pseudo-models included
            convention = RESTORATION_RGB
        else:
            convention = MetricConvention()
    if overrides:
        convention = replace(convention, **overrides)
    return convention


def _model_name(net: Any, model: Any, preset: Any) -> str:
    if preset is not None:
        return str(preset.name)
    if isinstance(net, (BicubicUpscaler, Passthrough)):
        return net.name
    if isinstance(model, (str, Path)):
        return Path(model).name
    return str(getattr(net, "family", type(net).__name__))


def _list_pairs(hr_dir: Path, lr_path: Path | None, paired: bool, data_scale: int, name: str) -> list[tuple[Path, Path | None]]:
    """(ground truth, input or None) files: real pairs in one folder, an input folder, or ground truths only."""
    if paired:
        if data_scale != 1:
            raise ConfigError(f"--pairs is for restoration models (scale 1); {name} upscales x{data_scale}")
        from .data.datasets import pair_in_folder

        pairs: list[tuple[Path, Path | None]] = [(clean, noisy) for noisy, clean in pair_in_folder(hr_dir)]
    elif lr_path is not None:
        from .data.datasets import pair_files  # the one pairing rule (training sets use it too)

        pairs = [(gt, lq) for lq, gt in pair_files(lr_path, hr_dir)]
        pairs.sort(key=lambda pair: pair[0].relative_to(hr_dir).as_posix())
    else:
        pairs = [(p, None) for p in _list_images(hr_dir, "ground-truth")]
    return pairs


def _load_pair(
    hr_file: Path, lr_file: Path | None, data_scale: int, in_channels: int, degradation: Degradation | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mod-cropped ground truth and its input (read, or made with the seeded degradation)."""
    hr = read_image(hr_file)
    h, w = hr.shape[-2] // data_scale * data_scale, hr.shape[-1] // data_scale * data_scale
    hr = _to_channels(hr[:, :h, :w], in_channels)
    if lr_file is None:
        assert degradation is not None
        generator = torch.Generator().manual_seed(_image_seed(seed, hr_file.stem))
        return hr, degradation(hr, generator)
    lr = _to_channels(read_image(lr_file), in_channels)
    expected = (h // data_scale, w // data_scale)
    if tuple(lr.shape[-2:]) != expected:
        raise ImageError(f"input {lr_file} is {lr.shape[-1]}x{lr.shape[-2]} but ground truth {hr_file} "
                         f"mod-cropped to x{data_scale} needs {expected[1]}x{expected[0]}")
    return hr, lr


def _restore(net: Any, lr: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """Run the model on one (C, H, W) input: the model pads, runs and crops (``RestorationModel.forward``)."""
    x = lr[None].to(dev)
    if hasattr(net, "parameters"):
        x = x.to(next(net.parameters()).dtype)
    with torch.inference_mode():
        out = net(x)
    return out.float().clamp(0, 1)[0]


def _to_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey -> RGB by repetition for 3-channel models; RGB -> the full-range BT.601 luma for 1-channel
    models: the function restore gives them (``rgb_to_luma``), which is also what they train on."""
    if image.shape[0] == channels:
        return image
    if channels == 3 and image.shape[0] == 1:
        return image.expand(3, -1, -1).contiguous()
    if channels == 1 and image.shape[0] == 3:
        return rgb_to_luma(image[None])[0]
    raise ConfigError(f"cannot feed a {image.shape[0]}-channel image to a {channels}-channel model")


def score(restored: torch.Tensor, reference: torch.Tensor, convention: MetricConvention, scale: int) -> dict[str, float]:
    """PSNR/SSIM of a restored image against its reference: what ``eval`` and training validation report.

    A 1-channel model works on full-range BT.601 luma (what it trains on and what restore gives it).
    Under a Y-channel convention both sides are measured as the RGB images they stand for would be:
    rounded to 8 bits when the convention rounds, then mapped to MATLAB's studio-range Y
    (:func:`~restorekit.metrics.studio_range`, equal to ``rgb2ycbcr`` of the colour original). A grey file
    is the RGB image R = G = B, whose MATLAB Y is the same mapping: BasicSR, which reads every file as
    RGB, measures grey images that way too. Everything else goes to :func:`~restorekit.metrics.measure`
    as it is.
    """
    if convention.y_channel and restored.shape[-3] == 1:
        if convention.uint8:
            restored, reference = ((x.clamp(0, 1) * 255).round() / 255 for x in (restored, reference))
        restored, reference = studio_range(restored), studio_range(reference)
        convention = replace(convention, uint8=False)  # rounded above, before the mapping, as RGB would be
    return measure(restored, reference, convention, scale=scale)


def write_json_atomic(document: dict[str, Any], path: str | Path) -> Path:
    """Write JSON through the one atomic writer: readers never see half a file."""
    from .atomic import write_text_atomic

    return write_text_atomic(json.dumps(document, indent=2, allow_nan=True) + "\n", path)


@torch.no_grad()
def evaluate_set(
    model: Any, dataset: Any, convention: MetricConvention, scale: int,
    device: torch.device, amp_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Mean PSNR/SSIM of ``model`` over an in-memory set of (input, ground truth) pairs: training
    validation and the Bicubic++ pipeline's stage scores. Whole images, batch 1, clamped to [0, 1] and
    measured by :func:`restorekit.metrics.measure` under ``convention``, as :func:`evaluate` does for
    files, so a validation PSNR and an ``eval`` PSNR of the same weights on the same images agree.
    """
    from .data.datasets import SampleKey

    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    for index in range(len(dataset)):
        lq, gt = dataset[SampleKey(0, index, index)]
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out = model(lq[None].to(device))
        pred = out.float().clamp(0, 1).cpu()
        for key, value in score(pred, gt[None], convention, scale).items():
            totals[key] = totals.get(key, 0.0) + float(value)
    model.train(was_training)
    return {key: value / len(dataset) for key, value in totals.items()}
