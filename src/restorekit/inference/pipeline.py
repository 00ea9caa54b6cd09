"""From an image of any kind to a restored image of the same kind.

Colour handling (per tile, on the model's device):
- model and image have the same channel count: straight through;
- 3-channel model, grey image: the grey plane is replicated to RGB and the result is turned back
  to grey with BT.601 luma weights;
- 1-channel model (RED-Net), colour image: the image is converted to YCbCr (BT.601 full range,
  as in JPEG), only the luminance Y is restored, and the chroma is kept (bicubic-upscaled for SR);
- alpha: carried over unchanged, bicubic-upscaled for SR.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import RestorekitError
from ..imageio import BT601_LUMA, Image, from_pil, max_value, to_pil
from .runner import Backend, TorchBackend, available_memory
from .tiling import (
    SMALL_IMAGE_PIXELS,
    TileFn,
    TilePlan,
    activation_bytes_per_pixel,
    auto_tile_size,
    default_overlap,
    make_plan,
    minimum_tile,
    receptive_radius,
    run_tiled,
)
from .tta import ensemble_x8

_KR, _KG, _KB = BT601_LUMA
_RESAMPLE_RADIUS = 2  # bicubic chroma/alpha upscaling looks 2 px around each pixel


@dataclass(frozen=True)
class RestoreOptions:
    """How to run a model over an image.

    ``tile``: tile side in input pixels; None picks it from free memory, 0 disables tiling.
    ``tile_overlap``: tile overlap in input pixels (``--tile-overlap``); None uses twice the measured
    receptive radius plus a blending ramp (exact), or 64 px for models with global statistics.
    ``tta``: x8 self-ensemble. ``progress``: show a per-tile progress bar.
    """

    tile: int | None = None
    tile_overlap: int | None = None
    tta: bool = False
    progress: bool = False

    def __post_init__(self) -> None:
        if self.tile is not None and self.tile < 0:
            raise RestorekitError(f"tile size must be >= 0 (0 = no tiling), got {self.tile}")
        if self.tile_overlap is not None and self.tile_overlap < 0:
            raise RestorekitError(f"tile overlap must be >= 0, got {self.tile_overlap}")


def rgb_to_luma(x: torch.Tensor) -> torch.Tensor:
    """NCHW RGB -> N1HW full-range BT.601 luma (``imageio.BT601_LUMA``, the one luma rule), unrounded.

    Spelled out, not a sum over dim 1: a reduction's order depends on the batch size, and an image must
    come out the same alone or in a batch. ``restorekit eval`` feeds grey models this same function.
    """
    return x[:, 0:1] * _KR + x[:, 1:2] * _KG + x[:, 2:3] * _KB


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """NCHW RGB in [0, 1] -> YCbCr, BT.601 full range (chroma centred on 0.5)."""
    r, b = x[:, 0:1], x[:, 2:3]
    y = rgb_to_luma(x)
    cb = (b - y) / (2 * (1 - _KB)) + 0.5  # exact inverses of ycbcr_to_rgb, so untouched chroma round-trips
    cr = (r - y) / (2 * (1 - _KR)) + 0.5
    return torch.cat([y, cb, cr], dim=1)


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of ``rgb_to_ycbcr``."""
    y, cb, cr = x[:, 0:1], x[:, 1:2] - 0.5, x[:, 2:3] - 0.5
    r = y + 2 * (1 - _KR) * cr
    b = y + 2 * (1 - _KB) * cb
    g = (y - _KR * r - _KB * b) / _KG
    return torch.cat([r, g, b], dim=1)


def _upscale(x: torch.Tensor, scale: int) -> torch.Tensor:
    if scale == 1:
        return x
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


def make_tile_fn(backend: Backend, channels: int, has_alpha: bool, tta: bool) -> TileFn:
    """The per-tile function: colour adaptation, optional x8 ensemble, alpha handling."""
    model_channels = backend.in_channels
    if (model_channels, channels) not in {(1, 1), (3, 3), (3, 1), (1, 3)}:
        raise RestorekitError(f"cannot run a {model_channels}-channel model on a {channels}-channel image")
    scale = backend.scale

    def run(x: torch.Tensor) -> torch.Tensor:
        out = ensemble_x8(backend, x) if tta else backend(x)
        # NaN would leave as black pixels (inf as white) once quantised: refuse rather than write it.
        if not bool(torch.isfinite(out).all()):
            raise RestorekitError("the model's output holds NaN or infinite values (damaged weights, a NaN in "
                                  "the input, or an fp16 overflow: try --precision fp32)")
        return out

    def fn(x: torch.Tensor) -> torch.Tensor:
        colour = x[:, :channels]
        if model_channels == channels:
            out = run(colour)
        elif model_channels == 3:  # grey image through an RGB model
            out = rgb_to_luma(run(colour.expand(-1, 3, -1, -1).contiguous()))
        else:  # colour image through a grey model: restore luminance, keep chroma
            ycc = rgb_to_ycbcr(colour)
            luma = run(ycc[:, :1].contiguous())
            out = ycbcr_to_rgb(torch.cat([luma, _upscale(ycc[:, 1:], scale)], dim=1))
        if has_alpha:
            alpha = x[:, channels:]
            out = torch.cat([out, _upscale(alpha, scale).clamp(0, 1) if scale > 1 else alpha], dim=1)
        return out

    return fn


def restore_planes(
    pixels: np.ndarray, alpha: np.ndarray | None, backend: Backend, options: RestoreOptions = RestoreOptions()
) -> tuple[np.ndarray, np.ndarray | None]:
    """Restore ``H x W x C`` pixels (C = 1 or 3; uint8, uint16 or float32) and an optional alpha plane.

    Returns arrays of the same dtypes, ``backend.scale`` times larger.
    """
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3):
        raise RestorekitError(f"expected H x W x 1 or H x W x 3 pixels, got shape {pixels.shape}")
    height, width, channels = pixels.shape
    planes = pixels if alpha is None else np.concatenate([pixels, alpha.astype(pixels.dtype)[..., None]], axis=2)
    fn = make_tile_fn(backend, channels, alpha is not None, options.tta)
    has_alpha = alpha is not None
    tile = _tile_size(backend, options, channels, has_alpha, height, width)
    while True:
        plan = _plan(backend, options, channels, has_alpha, height, width, tile)
        try:
            out = run_tiled(planes, fn, plan, backend.device, progress=options.progress)
            break
        except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
            if "out of memory" not in str(exc).lower():
                raise
            largest = max(max(e - s for s, e in plan.rows), max(e - s for s, e in plan.cols))
            smallest = max(64, minimum_tile(_overlap(backend, options, channels, has_alpha)[0], backend.alignment))
            if options.tile is not None or largest // 2 < smallest:  # halving again would not help
                raise RestorekitError(
                    f"out of memory on {backend.device} with {largest}px tiles; pass a smaller --tile "
                    "or --precision fp16/bf16"
                ) from None
            _release_cached_memory(backend.device)
            tile = largest // 2  # automatic size was too optimistic: halve and redo this image
    if alpha is None:
        return out, None
    return np.ascontiguousarray(out[..., :channels]), np.ascontiguousarray(out[..., channels])


def _overlap(backend: Backend, options: RestoreOptions, channels: int, has_alpha: bool) -> tuple[int, int | None]:
    """The tile overlap (the user's, or the exact default) and the receptive radius (None: unbounded)."""
    radius = receptive_radius(backend)
    if radius is not None and (backend.in_channels != channels or has_alpha) and backend.scale > 1:
        radius = max(radius, _RESAMPLE_RADIUS)
    overlap = options.tile_overlap if options.tile_overlap is not None else default_overlap(radius, backend.alignment)
    return overlap, radius


def _plan(backend: Backend, options: RestoreOptions, channels: int, has_alpha: bool, height: int, width: int,
          tile: int) -> TilePlan:
    if tile == 0 or (height <= tile and width <= tile):
        return make_plan(height, width, backend.scale, max(height, width), 0, 1, 0)
    overlap, radius = _overlap(backend, options, channels, has_alpha)
    smallest = minimum_tile(overlap, backend.alignment)
    if options.tile is None:  # automatic tiles always leave room for the overlap on both sides
        tile = max(tile, smallest)
    elif tile < smallest:
        # A tile that cannot hold the overlap on both sides would advance by a few pixels: thousands
        # of tiles, and a cut overlap is no longer exact. Refuse, and say what would work.
        if options.tile_overlap is not None:
            held = f"--tile-overlap {overlap}"
        elif radius is None:
            held = f"this model's default overlap of {overlap} px"
        else:
            held = f"this model's exact overlap of {overlap} px"
        inexact = "" if options.tile_overlap is not None or radius is None else " (inexact)"
        raise RestorekitError(
            f"--tile {tile} is too small for {held}: use --tile >= {smallest}, --tile 0 (whole image) "
            f"or a smaller --tile-overlap{inexact}"
        )
    return make_plan(height, width, backend.scale, tile, overlap, backend.alignment, radius)


def _release_cached_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def _tile_size(backend: Backend, options: RestoreOptions, channels: int, has_alpha: bool, height: int,
               width: int) -> int:
    """The requested tile side, or one that fits in memory (0 or >= the image: one piece)."""
    if options.tile is not None:
        return options.tile
    if height * width <= SMALL_IMAGE_PIXELS:
        return max(height, width)
    return _memory_tile(backend, options, channels, has_alpha)


def _memory_tile(backend: Backend, options: RestoreOptions, channels: int, has_alpha: bool) -> int:
    """The automatic tile side: the largest square whose activations fit the memory budget."""
    model = getattr(backend, "model", None)
    if model is None:
        per_pixel = 4096.0  # unknown runtime: a conservative 4 KB per pixel
    else:
        per_pixel = activation_bytes_per_pixel(model, backend.in_channels, backend.alignment, backend.device)
    overlap = _overlap(backend, options, channels, has_alpha)[0]  # the real one: tiles must hold it twice
    return auto_tile_size(per_pixel, available_memory(backend.device), backend.device, overlap, backend.alignment)


def restore_image(image: Image, backend: Backend, options: RestoreOptions = RestoreOptions()) -> Image:
    """Restore a decoded ``Image``; metadata (ICC, EXIF, format) is carried over."""
    pixels, alpha = restore_planes(image.pixels, image.alpha, backend, options)
    return Image(pixels, alpha, image.icc_profile, image.exif, image.format)


def batch_key(image: Image) -> tuple[object, ...]:
    """Images with equal keys can go through the network together (same size, depth, planes)."""
    return (image.pixels.shape, image.pixels.dtype.str, image.alpha is not None)


def batch_capacity(backend: Backend, options: RestoreOptions, height: int, width: int, channels: int = 3,
                   has_alpha: bool = False) -> int:
    """How many ``height x width`` images one forward pass may hold; 0 when one image needs tiles.

    The memory rule is the tiling's: a batch holds as many pixels as one tile would (the automatic
    tile fits the memory budget; an explicit ``--tile`` caps the pixels per forward). ``tile=0``
    (no tiling) puts no limit.
    """
    if options.tile == 0:
        return 1 << 30
    if options.tile is not None:
        tile = options.tile
    else:  # not _tile_size: a small image is one piece alone, but a batch of them still has to fit
        tile = max(_tile_size(backend, options, channels, has_alpha, height, width),
                   _memory_tile(backend, options, channels, has_alpha))
    if height > tile or width > tile:
        return 0
    return max(1, (tile * tile) // (height * width))


def restore_batch(images: Sequence[Image], backend: Backend, options: RestoreOptions = RestoreOptions()) -> list[Image]:
    """Restore images of one ``batch_key`` with as few forward passes as memory allows.

    Each image comes out exactly as ``restore_image`` would make it from the same network output:
    the batch's output slices go through the single-tile path of ``run_tiled`` (same float
    conversion, rounding and clipping). Kernels whose rounding depends on the batch size can still
    differ from one-at-a-time by float rounding. Images that need tiles, and a batch that runs out
    of memory, go one at a time through ``restore_image`` (which halves its tiles on OOM).
    """
    if len(images) <= 1:
        return [restore_image(image, backend, options) for image in images]
    key = batch_key(images[0])
    if any(batch_key(image) != key for image in images[1:]):
        raise RestorekitError("restore_batch: images differ in size, depth or alpha; group them by batch_key")
    first = images[0]
    height, width, channels = first.pixels.shape
    has_alpha = first.alpha is not None
    capacity = batch_capacity(backend, options, height, width, channels, has_alpha)
    if capacity <= 1:
        return [restore_image(image, backend, options) for image in images]
    fn = make_tile_fn(backend, channels, has_alpha, options.tta)
    plan = make_plan(height, width, backend.scale, max(height, width), 0, 1, 0)  # one tile: the whole image
    restored: list[Image] = []
    for start in range(0, len(images), capacity):
        group = images[start : start + capacity]
        planes = [_planes(image) for image in group]
        try:
            outputs = _forward_together(planes, fn, backend.device)
        except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
            if "out of memory" not in str(exc).lower():
                raise
            _release_cached_memory(backend.device)
            restored.extend(restore_image(image, backend, options) for image in group)
            continue
        for image, plane, output in zip(group, planes, outputs):
            out = run_tiled(plane, lambda _x, y=output: y, plan, backend.device)
            if has_alpha:
                pixels, alpha = np.ascontiguousarray(out[..., :channels]), np.ascontiguousarray(out[..., channels])
            else:
                pixels, alpha = out, None
            restored.append(Image(pixels, alpha, image.icc_profile, image.exif, image.format))
    return restored


def _planes(image: Image) -> np.ndarray:
    """Colour and alpha in one ``H x W x C`` array, as ``restore_planes`` feeds the tiler."""
    if image.alpha is None:
        return image.pixels
    return np.concatenate([image.pixels, image.alpha.astype(image.pixels.dtype)[..., None]], axis=2)


def _forward_together(planes: Sequence[np.ndarray], fn: TileFn, device: torch.device) -> list[torch.Tensor]:
    """One forward pass over a stack of same-size planes; returns each image's ``1 x C x H x W`` output.

    The input conversion is ``run_tiled``'s, element for element (to float, divide by the dtype's top).
    """
    top = max_value(planes[0].dtype)
    x = torch.stack([torch.from_numpy(np.ascontiguousarray(p)).to(device).permute(2, 0, 1).float() for p in planes])
    if top != 1.0:
        x = x / top
    y = fn(x)
    return [y[i : i + 1] for i in range(len(planes))]


def _backend_for(model: torch.nn.Module | Backend, precision: str) -> Backend:
    if isinstance(model, torch.nn.Module):
        return TorchBackend(model, precision)
    return model


def restore_any(model: torch.nn.Module | Backend, image: Any, precision: str = "fp32",
                options: RestoreOptions = RestoreOptions()) -> Any:
    """Restore a numpy array, PIL image or tensor and return the same kind.

    - numpy ``H x W``, ``H x W x 1``, ``H x W x 3`` or ``H x W x 4`` (RGBA); uint8, uint16 or float
      (float in [0, 1]); the result has the same dtype and layout.
    - PIL images of any mode: the result is a PIL image (8-bit, or ``I;16`` / ``F`` grey).
    - torch tensors ``C x H x W`` or ``N x C x H x W``, float in [0, 1] (or uint8): same shape
      convention, dtype and device.
    """
    backend = _backend_for(model, precision)
    try:
        from PIL import Image as PILImage
    except ImportError:  # pragma: no cover - pillow is a dependency
        PILImage = None  # type: ignore[assignment]
    if PILImage is not None and isinstance(image, PILImage.Image):
        return to_pil(restore_image(from_pil(image), backend, options))
    if isinstance(image, torch.Tensor):
        return _restore_tensor(image, backend, options)
    if isinstance(image, np.ndarray):
        return _restore_numpy(image, backend, options)
    raise RestorekitError(f"cannot restore an object of type {type(image).__name__}; pass numpy, PIL or torch")


def _restore_numpy(array: np.ndarray, backend: Backend, options: RestoreOptions) -> np.ndarray:
    squeeze = array.ndim == 2
    if squeeze:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise RestorekitError(f"expected an H x W (x 1, 3 or 4) array, got shape {array.shape}")
    dtype = array.dtype
    if dtype.kind == "f":
        work = array.astype(np.float32, copy=False)
    elif dtype in (np.uint8, np.uint16):
        work = array
    else:
        raise RestorekitError(f"unsupported array dtype {dtype}; use uint8, uint16 or float in [0, 1]")
    pixels, alpha = (work[..., :3], work[..., 3]) if work.shape[2] == 4 else (work, None)
    out, out_alpha = restore_planes(np.ascontiguousarray(pixels), alpha, backend, options)
    if out_alpha is not None:
        out = np.concatenate([out, out_alpha[..., None]], axis=2)
    out = out.astype(dtype, copy=False)
    return out[..., 0] if squeeze else out


def _restore_tensor(tensor: torch.Tensor, backend: Backend, options: RestoreOptions) -> torch.Tensor:
    if tensor.ndim not in (3, 4):
        raise RestorekitError(f"expected a C x H x W or N x C x H x W tensor, got shape {tuple(tensor.shape)}")
    batch = tensor if tensor.ndim == 4 else tensor.unsqueeze(0)
    outputs = []
    for item in batch:
        array = item.detach().permute(1, 2, 0).cpu().numpy()
        if array.dtype not in (np.uint8,):
            array = array.astype(np.float32, copy=False)
        restored = _restore_numpy(array, backend, options)
        outputs.append(torch.from_numpy(restored).permute(2, 0, 1))
    result = torch.stack(outputs).to(device=tensor.device, dtype=tensor.dtype)
    return result if tensor.ndim == 4 else result[0]
