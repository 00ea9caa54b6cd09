"""Synthetic degradations: MATLAB-compatible bicubic resizing, Gaussian noise, JPEG, blur kernels,
and a small spec language (``"bicubic:3+jpeg:90"``) that chains them.

Everything works on float tensors shaped ``(..., C, H, W)`` with values in [0, 1] (JPEG, which goes
through Pillow, needs ``(C, H, W)`` or ``(N, C, H, W)``). Nothing here clamps or rounds unless the
degradation itself quantises (JPEG): the standard denoising protocol adds noise without clipping, and
``imresize`` returns MATLAB's unrounded double result so callers choose when to quantise.

Randomness comes only from the ``torch.Generator`` passed in, so a degradation applied with a
generator seeded per image is reproducible on every device.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import ConfigError
from .camera import CameraNoise

__all__ = [
    "DEGRADATION_FORMS",
    "Degradation",
    "add_gaussian_noise",
    "blur",
    "gaussian_kernel",
    "imresize",
    "jpeg",
    "motion_kernel",
    "parse_degradation",
]


# --------------------------------------------------------------------------------------------------
# MATLAB imresize (bicubic)
# --------------------------------------------------------------------------------------------------


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``), support [-2, 2]."""
    ax = x.abs()
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def _resize_matrix(in_len: int, out_len: int, scale: float, antialias: bool) -> torch.Tensor:
    """Dense (out_len, in_len) float64 matrix reproducing MATLAB ``imresize``'s ``contributions``.

    MATLAB maps output pixel x (1-based) to input coordinate ``u = x/scale + 0.5*(1 - 1/scale)``.
    When shrinking with antialiasing the kernel is stretched by 1/scale (and scaled by ``scale``)
    so it acts as a low-pass filter. Taps that fall outside the image are mirrored symmetrically
    (edge pixel repeated: ``[1..n, n..1]``), and each row is normalised to sum to 1.
    """
    kernel_width = 4.0
    if scale < 1 and antialias:
        kernel_width /= scale
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = torch.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]  # 1-based input positions
    dist = u[:, None] - idx
    if scale < 1 and antialias:
        weights = scale * _cubic(dist * scale)
    else:
        weights = _cubic(dist)
    weights = weights / weights.sum(dim=1, keepdim=True)
    # symmetric boundary: index sequence 1..n, n..1 repeated
    mirror = torch.cat([torch.arange(in_len), torch.arange(in_len - 1, -1, -1)])
    src = mirror[torch.remainder(idx.long() - 1, 2 * in_len)]
    matrix = torch.zeros(out_len, in_len, dtype=torch.float64)
    matrix.scatter_add_(1, src, weights)
    return matrix


def _resize_dim(image: torch.Tensor, dim: int, out_len: int, scale: float, antialias: bool) -> torch.Tensor:
    in_len = image.shape[dim]
    matrix = _resize_matrix(in_len, out_len, scale, antialias).to(device=image.device, dtype=image.dtype)
    moved = image.movedim(dim, -1)
    out = moved @ matrix.T
    return out.movedim(-1, dim)


def imresize(
    image: torch.Tensor,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
    *,
    matlab_uint8: bool = False,
) -> torch.Tensor:
    """Bicubic resize matching MATLAB ``imresize(img, scale)`` / ``imresize(img, [h, w])``.

    ``image``: float tensor ``(..., C, H, W)`` (any range; SR data is [0, 1]). Give exactly one of
    ``scale`` (output size ``ceil(H*scale) x ceil(W*scale)``, as MATLAB) or ``size`` ``(h, w)``.
    ``antialias``: widen the kernel when shrinking (MATLAB's default). The result is float, neither
    rounded nor clamped; to match MATLAB on uint8 images, round ``255 * out`` afterwards.

    MATLAB resizes the dimension with the smaller scale factor first (height on ties); so do we,
    because with antialiasing the two orders differ slightly.

    ``matlab_uint8``: emulate MATLAB on a *uint8* image, which is how benchmark LR sets (Set5/Set14
    ``LR_bicubic``, DIV2K) were made: MATLAB casts back to uint8 (round half away from zero, clamp
    to 0..255) after EACH 1-D pass, not just at the end. Without this, about 15% of the pixels of the
    shipped LR images differ by one grey level; with it, >99.5% match exactly. The output then lies on
    the 1/255 grid in [0, 1].
    """
    if image.ndim < 2:
        raise ValueError(f"imresize needs a (..., H, W) tensor, got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise TypeError(f"imresize needs a float tensor, got {image.dtype}")
    if (scale is None) == (size is None):
        raise ValueError("imresize: give exactly one of scale= or size=")
    in_h, in_w = image.shape[-2], image.shape[-1]
    if scale is not None:
        if scale <= 0:
            raise ValueError(f"imresize: scale must be positive, got {scale}")
        scale_h = scale_w = float(scale)
        out_h, out_w = math.ceil(in_h * scale_h), math.ceil(in_w * scale_w)
    else:
        assert size is not None
        out_h, out_w = int(size[0]), int(size[1])
        if out_h <= 0 or out_w <= 0:
            raise ValueError(f"imresize: size must be positive, got {size}")
        scale_h, scale_w = out_h / in_h, out_w / in_w
    order = [(-2, out_h, scale_h), (-1, out_w, scale_w)]
    if scale_w < scale_h:  # MATLAB: sort(scale) picks the smallest factor first, dim 1 on ties
        order.reverse()
    out = _to_uint8_grid(image) if matlab_uint8 else image
    for dim, length, factor in order:
        out = _resize_dim(out, dim, length, factor, antialias)
        if matlab_uint8:
            out = _to_uint8_grid(out)
    return out


def _to_uint8_grid(image: torch.Tensor) -> torch.Tensor:
    """Quantise [0, 1] floats as MATLAB's uint8 cast does: round half away from zero, saturate."""
    return torch.floor(image * 255.0 + 0.5).clamp_(0, 255) / 255.0


# --------------------------------------------------------------------------------------------------
# Noise and JPEG
# --------------------------------------------------------------------------------------------------


def _randn_like(image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like ``image``, drawn on the generator's device.

    Drawing on the generator's device (CPU for a default ``torch.Generator()``) and then moving the
    result keeps the noise bit-identical whatever device the image lives on.
    """
    if generator is None:
        return torch.randn(image.shape, device=image.device, dtype=image.dtype)
    noise = torch.randn(image.shape, generator=generator, device=generator.device, dtype=torch.float32)
    return noise.to(device=image.device, dtype=image.dtype)


def add_gaussian_noise(
    image: torch.Tensor, sigma: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Add white Gaussian noise of standard deviation ``sigma`` on the 0-255 scale.

    ``image`` is a float tensor in [0, 1]; the result is NOT clipped (the DnCNN/FFDNet/RED-Net test
    protocol: ``noisy = clean + sigma/255 * randn``).
    """
    if sigma < 0:
        raise ValueError(f"add_gaussian_noise: sigma must be >= 0, got {sigma}")
    return image + _randn_like(image, generator) * (sigma / 255.0)


def _jpeg_one(image: torch.Tensor, quality: int) -> torch.Tensor:
    channels = image.shape[0]
    if channels not in (1, 3):
        raise ValueError(f"jpeg: needs 1 or 3 channels, got {channels}")
    array = (image.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu()
    if channels == 1:
        pil = Image.fromarray(array[0].numpy(), mode="L")
    else:
        pil = Image.fromarray(array.permute(1, 2, 0).contiguous().numpy(), mode="RGB")
    buffer = io.BytesIO()
    # 4:2:0 chroma subsampling is Pillow's default and what OpenCV/MATLAB writers use; say it anyway
    save_kwargs: dict[str, object] = {"quality": int(quality)}
    if channels == 3:
        save_kwargs["subsampling"] = "4:2:0"
    pil.save(buffer, format="JPEG", **save_kwargs)
    buffer.seek(0)
    decoded = np.asarray(Image.open(buffer).convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    tensor = torch.from_numpy(decoded.copy()).float() / 255.0
    tensor = tensor[None] if channels == 1 else tensor.permute(2, 0, 1)
    return tensor.to(device=image.device, dtype=image.dtype)


def jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG-compress and decode through Pillow at ``quality`` (1-95 is Pillow's useful range).

    ``image``: ``(C, H, W)`` or ``(N, C, H, W)`` float in [0, 1], C = 1 (grey) or 3 (RGB). The input is
    clamped and rounded to uint8 first (JPEG is an 8-bit format), so the result lies on the 1/255 grid.
    """
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"jpeg: quality must be in 1..100, got {quality}")
    if image.ndim == 3:
        return _jpeg_one(image, quality)
    if image.ndim == 4:
        return torch.stack([_jpeg_one(item, quality) for item in image])
    raise ValueError(f"jpeg: needs (C,H,W) or (N,C,H,W), got shape {tuple(image.shape)}")


# --------------------------------------------------------------------------------------------------
# Blur kernels
# --------------------------------------------------------------------------------------------------


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd number, got {size}")
    half = (size - 1) / 2.0
    coords = torch.arange(size, dtype=torch.float64) - half
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    return yy, xx


def gaussian_kernel(size: int, sigma: float | tuple[float, float], angle: float = 0.0) -> torch.Tensor:
    """A normalised ``size x size`` Gaussian blur kernel (float32).

    ``sigma``: one value (isotropic) or ``(sigma_x, sigma_y)`` in pixels along the kernel's own axes,
    which are rotated counter-clockwise by ``angle`` degrees (anisotropic kernels as in BSRGAN/Real-ESRGAN).
    """
    sx, sy = (float(sigma), float(sigma)) if isinstance(sigma, (int, float)) else (float(sigma[0]), float(sigma[1]))
    if sx <= 0 or sy <= 0:
        raise ValueError(f"gaussian_kernel: sigma must be positive, got {sigma}")
    yy, xx = _grid(size)
    theta = math.radians(angle)
    # rotate image coordinates into the kernel's frame (y axis points down in images, hence -yy)
    u = xx * math.cos(theta) + (-yy) * math.sin(theta)
    v = -xx * math.sin(theta) + (-yy) * math.cos(theta)
    kernel = torch.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    return (kernel / kernel.sum()).float()


def motion_kernel(size: int, length: float, angle: float) -> torch.Tensor:
    """A normalised linear motion-blur kernel: a centred line segment ``length`` pixels long at
    ``angle`` degrees (counter-clockwise from the x axis), anti-aliased by 8x supersampling."""
    if length <= 0:
        raise ValueError(f"motion_kernel: length must be positive, got {length}")
    yy, xx = _grid(size)
    theta = math.radians(angle)
    direction = (math.cos(theta), -math.sin(theta))  # (x, y) with y pointing down
    sub = 8
    offsets = (torch.arange(sub, dtype=torch.float64) + 0.5) / sub - 0.5
    oy, ox = torch.meshgrid(offsets, offsets, indexing="ij")
    px = xx[..., None, None] + ox  # (size, size, sub, sub) sample positions
    py = yy[..., None, None] + oy
    along = px * direction[0] + py * direction[1]
    across = -px * direction[1] + py * direction[0]
    inside = (along.abs() <= length / 2) & (across.abs() <= 0.5)
    kernel = inside.double().mean(dim=(-1, -2))
    if kernel.sum() == 0:  # a very short line between sample points: fall back to a delta
        kernel[size // 2, size // 2] = 1.0
    return (kernel / kernel.sum()).float()


def blur(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve every channel of ``image`` ``(..., C, H, W)`` with a 2-D ``kernel`` (odd size),
    replicate-padding the borders so the output keeps the input size."""
    if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ValueError(f"blur: kernel must be 2-D with odd sides, got shape {tuple(kernel.shape)}")
    lead = image.shape[:-3]
    c, h, w = image.shape[-3:]
    flat = image.reshape(-1, c, h, w)
    kh, kw = kernel.shape
    padded = F.pad(flat, (kw // 2, kw // 2, kh // 2, kh // 2), mode="replicate")
    weight = kernel.to(device=image.device, dtype=image.dtype).flip(0, 1)  # true convolution
    weight = weight[None, None].expand(c, 1, kh, kw)
    out = F.conv2d(padded, weight, groups=c)
    return out.reshape(*lead, c, h, w)


# --------------------------------------------------------------------------------------------------
# Degradation spec language
# --------------------------------------------------------------------------------------------------


class _Step(Protocol):
    @property
    def scale(self) -> int: ...

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor: ...

    def describe(self) -> str: ...


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    if low == high:
        return low
    draw = torch.rand((), generator=generator, device=generator.device if generator is not None else "cpu")
    return low + (high - low) * float(draw)


def _fmt(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class _Noise:
    low: float
    high: float
    scale: int = 1

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.low == self.high:
            return add_gaussian_noise(image, self.low, generator)
        if image.ndim == 4:  # one sigma per image of a batch, as blind-denoising training expects
            return torch.stack([add_gaussian_noise(x, _uniform(self.low, self.high, generator), generator) for x in image])
        return add_gaussian_noise(image, _uniform(self.low, self.high, generator), generator)

    def describe(self) -> str:
        if self.low == self.high:
            return f"Gaussian noise sigma={_fmt(self.low)}/255 (unclipped)"
        return f"Gaussian noise sigma~U[{_fmt(self.low)},{_fmt(self.high)}]/255 (unclipped)"


@dataclass(frozen=True)
class _Bicubic:
    factor: int

    @property
    def scale(self) -> int:
        return self.factor

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        # uint8 emulation: reproduces the benchmark LR files (made by MATLAB from uint8 images)
        return imresize(image, scale=1.0 / self.factor, matlab_uint8=True)

    def describe(self) -> str:
        return f"MATLAB bicubic downscale x{self.factor} (antialiased, uint8 as MATLAB)"


@dataclass(frozen=True)
class _BicubicDownUp:
    """MATLAB bicubic down by K and back up to the input size: the SR training input of pre-upsampling
    networks (SRCNN, VDSR, RED-Net), which restore a bicubic-upscaled image at scale 1.

    The way down quantises as MATLAB does on uint8 images (it reproduces the benchmark LR files); the way
    up stays float, as ``restorekit eval`` and ``restore`` upscale a LR image before such a model. Sides
    that are not a multiple of K are first extended by mirroring (imresize's own boundary rule) and the
    result is cropped back, so the LR grid is always exactly K times coarser. With several factors, K is
    drawn uniformly per image from the generator.
    """

    factors: tuple[int, ...]
    scale: int = 1

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if image.ndim == 4 and len(self.factors) > 1:  # one factor per image of a batch
            return torch.stack([self._down_up(x, self._draw(generator)) for x in image])
        return self._down_up(image, self._draw(generator))

    def _draw(self, generator: torch.Generator | None) -> int:
        if len(self.factors) == 1:
            return self.factors[0]
        device = generator.device if generator is not None else "cpu"
        return self.factors[int(torch.randint(len(self.factors), (), generator=generator, device=device))]

    @staticmethod
    def _down_up(image: torch.Tensor, factor: int) -> torch.Tensor:
        height, width = image.shape[-2:]
        pad_h, pad_w = -height % factor, -width % factor
        if pad_h > height or pad_w > width:
            raise ValueError(f"bicubicdu: a {width}x{height} image is too small to scale by {factor}")
        padded = image
        if pad_h:
            padded = torch.cat([padded, padded[..., height - pad_h :, :].flip(-2)], dim=-2)
        if pad_w:
            padded = torch.cat([padded, padded[..., :, width - pad_w :].flip(-1)], dim=-1)
        low = imresize(padded, scale=1.0 / factor, matlab_uint8=True)
        up = imresize(low, size=(padded.shape[-2], padded.shape[-1]))
        return up[..., :height, :width]

    def describe(self) -> str:
        k = str(self.factors[0]) if len(self.factors) == 1 else "{" + ",".join(map(str, self.factors)) + "} (uniform)"
        return f"MATLAB bicubic down x{k} (uint8 as MATLAB) and back up to the same size (float)"


@dataclass(frozen=True)
class _Jpeg:
    low: int
    high: int
    scale: int = 1

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.low == self.high:
            return jpeg(image, self.low)
        if image.ndim == 4:
            return torch.stack([jpeg(x, round(_uniform(self.low, self.high, generator))) for x in image])
        return jpeg(image, round(_uniform(self.low, self.high, generator)))

    def describe(self) -> str:
        q = str(self.low) if self.low == self.high else f"U[{self.low},{self.high}]"
        return f"JPEG quality {q} (Pillow, 4:2:0)"


@dataclass(frozen=True)
class _GaussBlur:
    size: int
    low: float
    high: float
    scale: int = 1

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return blur(image, gaussian_kernel(self.size, _uniform(self.low, self.high, generator)))

    def describe(self) -> str:
        s = _fmt(self.low) if self.low == self.high else f"U[{_fmt(self.low)},{_fmt(self.high)}]"
        return f"Gaussian blur {self.size}x{self.size} sigma={s} (replicate borders)"


@dataclass(frozen=True)
class _MotionBlur:
    size: int
    length: float
    angle: float
    scale: int = 1

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return blur(image, motion_kernel(self.size, self.length, self.angle))

    def describe(self) -> str:
        return f"motion blur {self.size}x{self.size} length={_fmt(self.length)} angle={_fmt(self.angle)}deg"


class Degradation:
    """A chain of degradation steps; call it as ``degraded = deg(image, generator)``.

    ``scale`` is the total downscaling factor of the chain (1 for pure restoration degradations),
    which evaluation uses to mod-crop the ground truth. ``spec`` is the string it was parsed from.
    """

    def __init__(self, steps: list[_Step], spec: str) -> None:
        self.steps = list(steps)
        self.spec = spec

    @property
    def scale(self) -> int:
        total = 1
        for step in self.steps:
            total *= step.scale
        return total

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for step in self.steps:
            image = step(image, generator)
        return image

    @property
    def deterministic(self) -> bool:
        """True when the chain draws nothing at random (no noise, no quality or sigma ranges), so one
        image always degrades to the same result and can be degraded once and cached."""
        for step in self.steps:
            if isinstance(step, (_Noise, CameraNoise)):
                return False
            if isinstance(step, (_Jpeg, _GaussBlur)) and step.low != step.high:
                return False
            if isinstance(step, _BicubicDownUp) and len(step.factors) > 1:
                return False
        return True

    @property
    def sigma(self) -> float | None:
        """The noise level when the chain adds Gaussian noise of one fixed sigma, else None
        (evaluation uses it to find a paper number such as ``BSD68-sigma25``)."""
        fixed = [s.low for s in self.steps if isinstance(s, _Noise) and s.low == s.high]
        return fixed[0] if len(fixed) == 1 else None

    def describe(self) -> str:
        """Human-readable description of every step, in order."""
        return " -> ".join(step.describe() for step in self.steps)

    def __repr__(self) -> str:
        return f"Degradation({self.spec!r})"


DEGRADATION_FORMS = (
    "awgn:SIGMA | awgn:LOW-HIGH (Gaussian noise, sigma on 0-255), "
    "bicubic:K (MATLAB bicubic downscale by integer K), "
    "bicubicdu:K | bicubicdu:LOW-HIGH | bicubicdu:K1,K2,.. (bicubic down by K >= 2 and back up, same size; "
    "K drawn per image), "
    "jpeg:Q | jpeg:LOW-HIGH (quality 1-100), "
    "gaussblur:SIZE:SIGMA | gaussblur:SIZE:LOW-HIGH (odd SIZE), "
    "motionblur:SIZE:LENGTH:ANGLE (odd SIZE, degrees), "
    "camera | camera:ISO_LOW-ISO_HIGH[:jpeg=P][:q=LOW-HIGH][:sharpen=P][:smooth=P] (synthetic camera noise, RGB); "
    "chain steps with '+', e.g. bicubic:3+jpeg:90"
)

_NUMBER = r"\d+(?:\.\d*)?|\.\d+"
_RANGE = re.compile(rf"^({_NUMBER})(?:-({_NUMBER}))?$")


def _parse_range(text: str) -> tuple[float, float] | None:
    match = _RANGE.match(text.strip())
    if match is None:
        return None
    low = float(match.group(1))
    high = float(match.group(2)) if match.group(2) is not None else low
    return (low, high) if low <= high else None


def _parse_step(part: str, spec: str) -> _Step:
    def bad(reason: str) -> ConfigError:
        return ConfigError(f"bad degradation {spec!r}: {reason}; valid forms: {DEGRADATION_FORMS}")

    name, _, rest = part.strip().partition(":")
    name = name.strip().lower()
    args = [a.strip() for a in rest.split(":")] if rest else []
    if name == "awgn":
        rng = _parse_range(args[0]) if len(args) == 1 else None
        if rng is None:
            raise bad(f"{part!r} needs one sigma or LOW-HIGH range")
        return _Noise(*rng)
    if name == "bicubic":
        if len(args) != 1 or not args[0].isdigit() or int(args[0]) < 1:
            raise bad(f"{part!r} needs a positive integer factor")
        return _Bicubic(int(args[0]))
    if name == "bicubicdu":
        factors = _parse_factors(args[0]) if len(args) == 1 else None
        if not factors:
            raise bad(f"{part!r} needs integer factors >= 2: K, LOW-HIGH or K1,K2,...")
        return _BicubicDownUp(factors)
    if name == "jpeg":
        rng = _parse_range(args[0]) if len(args) == 1 else None
        if rng is None or not (1 <= rng[0] and rng[1] <= 100) or rng[0] != int(rng[0]) or rng[1] != int(rng[1]):
            raise bad(f"{part!r} needs an integer quality (or LOW-HIGH) in 1..100")
        return _Jpeg(int(rng[0]), int(rng[1]))
    if name == "gaussblur":
        rng = _parse_range(args[1]) if len(args) == 2 else None
        if len(args) != 2 or not args[0].isdigit() or int(args[0]) % 2 == 0 or rng is None or rng[0] <= 0:
            raise bad(f"{part!r} needs an odd SIZE and a positive SIGMA (or LOW-HIGH)")
        return _GaussBlur(int(args[0]), *rng)
    if name == "motionblur":
        try:
            size, length, angle = int(args[0]), float(args[1]), float(args[2])
        except (ValueError, IndexError):
            raise bad(f"{part!r} needs SIZE:LENGTH:ANGLE") from None
        if len(args) != 3 or size % 2 == 0 or size < 1 or length <= 0:
            raise bad(f"{part!r} needs an odd SIZE, a positive LENGTH and an ANGLE")
        return _MotionBlur(size, length, angle)
    if name == "camera":
        return _parse_camera(args, bad)
    raise bad(f"unknown degradation {name!r}")


def _parse_factors(text: str) -> tuple[int, ...] | None:
    """``3`` -> (3,), ``2-4`` -> (2, 3, 4), ``2,4`` -> (2, 4); None unless every factor is an integer >= 2."""
    text = text.strip()
    if re.fullmatch(r"\d+-\d+", text):
        low, high = (int(v) for v in text.split("-"))
        factors = tuple(range(low, high + 1))
    elif re.fullmatch(r"\d+(?:\s*,\s*\d+)*", text):
        factors = tuple(sorted({int(v) for v in text.split(",")}))
    else:
        return None
    return factors if factors and min(factors) >= 2 else None


def _parse_camera(args: list[str], bad: Callable[[str], ConfigError]) -> CameraNoise:
    """``camera`` takes an optional ISO range first, then ``key=value`` options (probabilities, JPEG quality)."""
    options: dict[str, object] = {}
    if args and "=" not in args[0]:
        iso = _parse_range(args.pop(0))
        if iso is None or iso[0] <= 0:
            raise bad("camera's first argument is an ISO range such as 100-12800")
        options["iso_low"], options["iso_high"] = iso
    keys = {"jpeg": "jpeg_probability", "sharpen": "sharpen_probability", "smooth": "smooth_probability"}
    for arg in args:
        key, _, value = arg.partition("=")
        if key == "q":
            quality = _parse_range(value)
            if quality is None or quality[0] != int(quality[0]) or quality[1] != int(quality[1]):
                raise bad(f"camera q={value!r} needs integer JPEG qualities LOW-HIGH")
            options["jpeg_quality"] = (int(quality[0]), int(quality[1]))
        elif key in keys:
            try:
                options[keys[key]] = float(value)
            except ValueError:
                raise bad(f"camera {key}={value!r} needs a probability in [0, 1]") from None
        else:
            raise bad(f"camera option {arg!r} is not one of ISO_LOW-ISO_HIGH, jpeg=P, q=LOW-HIGH, sharpen=P, smooth=P")
    try:
        return CameraNoise(**options)  # type: ignore[arg-type]
    except ValueError as exc:
        raise bad(str(exc)) from None


def parse_degradation(spec: str) -> Degradation:
    """Parse a degradation spec such as ``"awgn:25"``, ``"awgn:0-50"``, ``"bicubic:4"``,
    ``"jpeg:90"``, ``"gaussblur:21:2.0"`` or a ``+`` chain (``"bicubic:3+jpeg:90"``).

    Raises :class:`restorekit.errors.ConfigError` naming the spec and the valid forms.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"bad degradation {spec!r}: empty; valid forms: {DEGRADATION_FORMS}")
    steps = [_parse_step(part, spec) for part in spec.split("+")]
    return Degradation(steps, spec.strip())
