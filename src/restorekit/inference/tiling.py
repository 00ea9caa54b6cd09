"""Exact tiled inference: overlapping tiles, smooth blending, constant memory in the image size.

Why it is exact. A network whose output pixel depends only on input pixels within ``r`` (its
receptive radius) computes the same value in a tile as in the whole image, provided the pixel lies
at least ``r`` from every tile edge that is not also an image edge, and the tile sees the same pixel
grid (tile starts on the network's stride grid, ``alignment``; the last tile of a row ends exactly
on the image edge so the model's padding to a multiple matches the whole-image padding). Blending
weights are therefore zero within ``r`` of an inner tile edge and ramp smoothly (smoothstep) across
the rest of the overlap, so every pixel is a weighted mean of exact values. With
``overlap >= 2 r`` the tiled result equals the whole-image result up to float rounding.

Networks with global statistics (global average pooling without TLC, instance norm) have an
unbounded receptive field: their tiled output only approximates the whole-image one (see
docs/restore.md for measured differences).

Memory. The input stays in its own dtype (uint8/uint16); each tile is converted on the fly. The
output is accumulated in float32 only for one band of tile rows and converted to the output dtype
as soon as no later tile touches it, so a 24 MP photo needs one uint8 output plus a band buffer.
The blending weights are separable (``w(y) * w(x)``) and normalised per axis, so no full-size
weight buffer exists either.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..imageio import max_value
from .runner import Backend

TileFn = Callable[[torch.Tensor], torch.Tensor]

DEFAULT_OVERLAP_UNBOUNDED = 64  # global-statistics models: enough to hide zero-padding seams
MAX_PROBE_WIDTH = 2048
INFLUENCE_THRESHOLD = 1e-6  # an output change below this is float rounding, not influence
SMALL_IMAGE_PIXELS = 256 * 256  # any model fits this in one piece: no memory probe needed
# Measured once per model, each entry stored with the model's signature (layer types, dtype, device), so
# converting a model in place afterwards (TLC swaps its pooling layers, .half() its dtype) measures again.
_radius_cache: weakref.WeakKeyDictionary[object, tuple[tuple[object, ...], int | None]] = weakref.WeakKeyDictionary()
_bytes_cache: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[object, ...], float]] = weakref.WeakKeyDictionary()


def _signature(model: object) -> tuple[object, ...]:
    """What a measurement depends on besides the weights' values."""
    if not isinstance(model, nn.Module):
        return ()
    first = next(model.parameters(), None)
    where = (first.dtype, first.device) if first is not None else ()
    return (*where, tuple(type(m) for m in model.modules()))


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _round_down(value: int, multiple: int) -> int:
    return value // multiple * multiple


def measure_receptive_radius(
    fn: Callable[[torch.Tensor], torch.Tensor],
    in_channels: int,
    scale: int,
    alignment: int,
    device: torch.device,
    max_width: int = MAX_PROBE_WIDTH,
) -> int | None:
    """The receptive radius in input pixels, measured by changing one input pixel.

    Runs ``fn`` on a random horizontal strip and on the same strip with ``alignment`` columns in its
    centre changed; output columns that differ by more than ``INFLUENCE_THRESHOLD`` span their
    influence (not exactly 0: TLC's prefix sums carry float rounding across the whole row). Strided networks reach differently from each phase of
    their grid, so the result adds ``alignment - 1`` to stay an upper bound for every phase. The strip
    widens until the influence stops short of its ends, up to ``max_width``; ``None`` means unbounded
    (or wider than ``max_width / 2``).
    """
    generator = torch.Generator().manual_seed(0)
    height = _round_up(max(32, 2 * alignment), alignment)
    width = _round_up(max(64, 4 * alignment), alignment)
    while width <= max_width:
        x = torch.rand(1, in_channels, height, width, generator=generator).to(device)
        centre = _round_down(width // 2, alignment)
        changed = x.clone()
        block = slice(centre, centre + alignment)
        changed[..., block] = 1.0 - changed[..., block]
        with torch.inference_mode():
            diff = (fn(changed).float() - fn(x).float()).abs().amax(dim=(0, 1, 2)).cpu()
        columns = torch.nonzero(diff > INFLUENCE_THRESHOLD).flatten()
        if len(columns) == 0:
            return 0
        first, last = int(columns[0]), int(columns[-1])
        if first > 0 and last < width * scale - 1:
            reach = max(centre * scale - first, last - ((centre + alignment) * scale - 1))
            return max(0, math.ceil(reach / scale)) + alignment - 1
        width *= 2
    return None


def receptive_radius(backend: Backend) -> int | None:
    """The backend's receptive radius in input pixels (cached), or None when unbounded."""
    model = getattr(backend, "model", None)
    key = model if model is not None else backend
    signature = _signature(model)
    try:
        cached_signature, cached = _radius_cache[key]
        if cached_signature == signature:
            return cached
    except (KeyError, TypeError):
        pass
    # the family says whether some layer sees the whole image (RestorationModel.global_statistics)
    if model is not None and getattr(model, "global_statistics", False):
        radius: int | None = None
    else:
        radius = measure_receptive_radius(backend, backend.in_channels, backend.scale, backend.alignment, backend.device)
    try:
        _radius_cache[key] = (signature, radius)
    except TypeError:
        pass
    return radius


def default_overlap(radius: int | None, alignment: int) -> int:
    """Overlap that makes tiling exact for a bounded radius (2 r plus a blending ramp)."""
    if radius is None:
        return _round_up(DEFAULT_OVERLAP_UNBOUNDED, alignment)
    ramp = max(8, radius // 4)
    return _round_up(2 * radius + ramp, alignment)


def activation_bytes_per_pixel(model: nn.Module, in_channels: int, alignment: int, device: torch.device) -> float:
    """Estimated peak inference memory per input pixel, from one small probe forward.

    Hooks record the largest output of any leaf layer; peak memory is taken as 6 such tensors
    (a layer's input and output, skip connections held by the U-Nets, allocator slack).
    """
    signature = _signature(model)
    cached = _bytes_cache.get(model)
    if cached is not None and cached[0] == signature:
        return cached[1]
    size = _round_up(max(32, 2 * alignment), alignment)
    largest = 0

    def hook(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal largest
        if isinstance(output, torch.Tensor):
            largest = max(largest, output.numel() * 4)

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, in_channels, size, size, device=device))
    finally:
        for handle in handles:
            handle.remove()
    per_pixel = 6.0 * largest / (size * size)
    _bytes_cache[model] = (signature, per_pixel)
    return per_pixel


def auto_tile_size(
    bytes_per_pixel: float, available: int, device: torch.device, overlap: int, alignment: int
) -> int:
    """The tile side that fits in the memory budget.

    Budget: 60% of free GPU memory; on CPU 40% of available RAM, capped at 768 MiB because larger
    CPU tiles are not faster, and the full-size input/output buffers of a 24 MP photo need room
    too (restoring one with NAFNet-SIDD-w32 stays under 2 GB: benchmarks/restore_memory.py).
    """
    if device.type == "cpu":
        budget = min(0.4 * available, float(768 << 20))
    else:
        budget = 0.6 * available
    side = int(math.sqrt(max(budget, 1.0) / max(bytes_per_pixel, 1e-9)))
    # never so small that the overlap eats the tile: at least 64 px of new pixels per step
    floor = max(128, minimum_tile(overlap, alignment) + 64)
    side = _round_down(min(side, 4096), alignment)
    return max(side, _round_up(floor, alignment))


def minimum_tile(overlap: int, alignment: int = 1) -> int:
    """The smallest tile side that holds ``overlap`` on both sides (``plan_axis`` rounding included).

    ``plan_axis`` rounds the tile down and the overlap up to ``alignment``; a tile must be larger than
    twice the overlap, so that each step adds new pixels and no pixel lies in three tiles' margins.
    """
    alignment = max(alignment, 1)
    return 2 * _round_up(overlap, alignment) + alignment


def plan_axis(length: int, tile: int, overlap: int, alignment: int = 1) -> list[tuple[int, int]]:
    """Tile ``[start, end)`` ranges along one axis.

    Starts are multiples of ``alignment``; consecutive tiles overlap by at least ``overlap``; the last
    tile ends exactly at ``length`` (so it may be up to ``alignment - 1`` larger than ``tile``).
    """
    tile = max(alignment, _round_down(tile, alignment))
    if length <= tile:
        return [(0, length)]
    overlap = min(_round_up(overlap, alignment), tile - alignment)
    stride = tile - overlap
    starts = [0]
    while starts[-1] + tile < length:
        nxt = starts[-1] + stride
        if nxt + tile >= length:
            nxt = _round_down(length - tile, alignment)
            if nxt <= starts[-1]:
                break  # the previous tile simply extends to the end
        starts.append(nxt)
    ends = [s + tile for s in starts[:-1]] + [length]
    return list(zip(starts, ends))


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def axis_weights(ranges: list[tuple[int, int]], scale: int, discard: int, ramp: int) -> list[np.ndarray]:
    """Normalised 1-D blending weights in output pixels for each tile of one axis.

    A weight is 0 within ``discard`` (input px) of an inner tile edge, rises over ``ramp`` px with a
    smoothstep and is 1 elsewhere; image edges get no fade. Weights sum to 1 at every position.
    """
    length = ranges[-1][1] * scale
    weights = []
    total = np.zeros(length, dtype=np.float64)
    margin, width = discard * scale, ramp * scale

    def fade(distance: np.ndarray) -> np.ndarray:
        if width > 0:
            return _smoothstep((distance - margin) / width)
        return (distance > margin).astype(np.float64)

    for index, (start, end) in enumerate(ranges):
        size = (end - start) * scale
        w = np.ones(size, dtype=np.float64)
        t = np.arange(size, dtype=np.float64) + 0.5  # distance of pixel centres from the tile's start
        if index > 0:
            w *= fade(t)
        if index < len(ranges) - 1:
            w *= fade(size - t)
        weights.append(w)
        total[start * scale : end * scale] += w
    if np.any(total <= 0):
        raise ValueError("tile overlap too small for the blending margins")  # cannot happen with plan_axis
    return [
        (w / total[start * scale : end * scale]).astype(np.float32)
        for w, (start, end) in zip(weights, ranges)
    ]


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles go and how they blend."""

    rows: list[tuple[int, int]]
    cols: list[tuple[int, int]]
    row_weights: list[np.ndarray]
    col_weights: list[np.ndarray]
    scale: int

    @property
    def count(self) -> int:
        return len(self.rows) * len(self.cols)


def make_plan(
    height: int, width: int, scale: int, tile: int, overlap: int, alignment: int, radius: int | None
) -> TilePlan:
    """Tiles of side ``tile`` overlapping by ``overlap`` (inputs px), with exact margins where possible."""
    rows = plan_axis(height, tile, overlap, alignment)
    cols = plan_axis(width, tile, overlap, alignment)
    effective = min(_round_up(overlap, alignment), max(_round_down(tile, alignment) - alignment, 0))
    if radius is None:
        discard = effective // 4
    else:
        discard = min(radius, effective // 2)
    ramp = max(effective - 2 * discard, 0)
    return TilePlan(rows, cols, axis_weights(rows, scale, discard, ramp), axis_weights(cols, scale, discard, ramp), scale)


def _to_output(band: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        return band.astype(dtype, copy=False)
    top = max_value(dtype)
    return np.clip(np.rint(band * top), 0, top).astype(dtype)


def run_tiled(
    pixels: np.ndarray,
    fn: TileFn,
    plan: TilePlan,
    device: torch.device,
    out_channels: int | None = None,
    progress: bool = False,
    description: str = "tiles",
) -> np.ndarray:
    """Apply ``fn`` (NCHW float in [0, 1] -> NCHW float, ``plan.scale`` larger) over ``pixels``.

    ``pixels``: ``H x W x C`` uint8/uint16/float. Returns ``sH x sW x C'`` in the same dtype (integers
    rounded and clipped; floats unclipped). Each tile is converted to float on ``device``.
    """
    height, width, channels = pixels.shape
    out_channels = out_channels or channels
    scale = plan.scale
    top = max_value(pixels.dtype)
    output = np.empty((height * scale, width * scale, out_channels), dtype=pixels.dtype)
    band = np.zeros((0, width * scale, out_channels), dtype=np.float32)
    band_y0 = 0
    bar = tqdm(total=plan.count, desc=description, unit="tile", leave=False, disable=not progress or plan.count < 2)
    try:
        for j, (ys, ye) in enumerate(plan.rows):
            needed = ye * scale - band_y0
            if band.shape[0] < needed:
                extra = np.zeros((needed - band.shape[0], width * scale, out_channels), dtype=np.float32)
                band = np.concatenate([band, extra]) if band.shape[0] else extra
            wy = torch.from_numpy(plan.row_weights[j]).to(device)
            for i, (xs, xe) in enumerate(plan.cols):
                tile = torch.from_numpy(np.ascontiguousarray(pixels[ys:ye, xs:xe]))
                x = tile.to(device).permute(2, 0, 1).unsqueeze(0).float()
                if top != 1.0:
                    x = x / top
                y = fn(x)
                expected = (1, out_channels, (ye - ys) * scale, (xe - xs) * scale)
                if tuple(y.shape) != expected:
                    raise RuntimeError(f"model returned {tuple(y.shape)} for a tile, expected {expected}")
                wx = torch.from_numpy(plan.col_weights[i]).to(device)
                weighted = (y[0] * wy[None, :, None] * wx[None, None, :]).permute(1, 2, 0)
                band[ys * scale - band_y0 : ye * scale - band_y0, xs * scale : xe * scale] += weighted.cpu().numpy()
                bar.update(1)
            done_until = plan.rows[j + 1][0] * scale if j + 1 < len(plan.rows) else height * scale
            finished = done_until - band_y0
            output[band_y0:done_until] = _to_output(band[:finished], pixels.dtype)
            band = band[finished:].copy()
            band_y0 = done_until
    finally:
        bar.close()
    return output
