"""Synthetic camera noise: a clean sRGB image, unprocessed to linear sensor values, given
signal-dependent (Poisson-Gaussian) noise on a Bayer mosaic, demosaiced and processed back to sRGB.

The recipe follows "Unprocessing Images for Learned Raw Denoising" (Brooks et al., CVPR 2019,
https://github.com/google-research/google-research/tree/master/unprocessing) and the in-camera
pipeline model of CBDNet ("Toward Convolutional Blind Denoising of Real Photographs", Guo et al.,
CVPR 2019): inverse tone curve, inverse gamma, inverse colour matrix, inverse white-balance gains,
RGGB mosaic, shot + read noise whose levels follow the log-linear relation measured for real sensors,
bilinear demosaicing, then the forward pipeline. On top of that, what real in-camera JPEGs show and
plain unprocessing does not: optional sharpening or in-camera noise reduction (both act on the noise,
since the camera applies them to the clean signal as well) and optional JPEG at a random quality.

What we changed and why:

- The ground truth stays the input image. Only the *noise* goes through the mosaic/demosaic path:
  ``noisy = clean + F(L + demosaic(n)) - F(L)`` where ``L`` is the unprocessed clean image and ``F`` the
  forward pipeline. Benchmark ground truths of real noise (PolyU, SIDD) are camera output themselves,
  demosaicing included, so a target re-demosaiced by us would teach the network our artefacts.
- Noise levels are set by an ISO value: shot noise ``1e-6 * ISO`` (ISO 100-12800 spans Brooks' shot range
  1e-4 to 1.2e-2), read noise from Brooks' fit ``log(read) = 2.18 log(shot) + 1.20 + N(0, 0.26)``.
- The tone curve is a random blend of the identity and Brooks' smoothstep, and the gamma a random
  exponent around 2.2, because cameras differ there too.

Every random choice comes from the ``torch.Generator`` passed in, so one sample key gives one sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["CameraNoise", "CameraParams", "bilinear_demosaic", "draw_params", "mosaic_masks", "poisson_gaussian"]

# XYZ -> camera matrices of four cameras, the ones Brooks et al. mix at random (published in their code).
_XYZ_TO_CAM = torch.tensor(
    [
        [[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]],
        [[0.4913, -0.0541, -0.0202], [-0.6130, 1.3513, 0.2906], [-0.1564, 0.2151, 0.7183]],
        [[0.8380, -0.2630, -0.0639], [-0.2887, 1.0725, 0.2496], [-0.0627, 0.1427, 0.5438]],
        [[0.6596, -0.2079, -0.0562], [-0.4782, 1.3016, 0.1933], [-0.0970, 0.1581, 0.5181]],
    ],
    dtype=torch.float64,
)
# linear sRGB (D65) -> XYZ
_RGB_TO_XYZ = torch.tensor(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]],
    dtype=torch.float64,
)


@dataclass(frozen=True)
class CameraNoise:
    """Ranges of the synthetic camera pipeline (see the module docstring for the model).

    Probabilities are per sample. JPEG and sharpening/noise reduction act on the noisy output only.
    """

    iso_low: float = 100.0
    iso_high: float = 12800.0  # ISO drawn log-uniformly in [iso_low, iso_high]
    jpeg_probability: float = 0.6
    jpeg_quality: tuple[int, int] = (70, 95)
    sharpen_probability: float = 0.3  # unsharp mask on the noise, amount U[0.3, 1.5], radius sigma 1
    smooth_probability: float = 0.3  # in-camera noise reduction: Gaussian blur of the noise, sigma U[0.4, 1.2]

    def __post_init__(self) -> None:
        if not 0 < self.iso_low <= self.iso_high:
            raise ValueError(f"camera noise: need 0 < iso_low <= iso_high, got {self.iso_low}-{self.iso_high}")
        for name in ("jpeg_probability", "sharpen_probability", "smooth_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"camera noise: {name} must be in [0, 1], got {getattr(self, name)}")
        if self.sharpen_probability + self.smooth_probability > 1.0:
            raise ValueError("camera noise: sharpen and smooth probabilities exclude each other; their sum must be <= 1")
        low, high = self.jpeg_quality
        if not 1 <= low <= high <= 100:
            raise ValueError(f"camera noise: JPEG quality range must lie in 1..100, got {low}-{high}")

    @property
    def scale(self) -> int:
        return 1

    def describe(self) -> str:
        return (
            f"camera noise ISO {self.iso_low:g}-{self.iso_high:g} (shot + read, RGGB mosaic, bilinear demosaic), "
            f"sharpen p={self.sharpen_probability:g}, "
            f"noise reduction p={self.smooth_probability:g}, JPEG p={self.jpeg_probability:g} "
            f"q {self.jpeg_quality[0]}-{self.jpeg_quality[1]}"
        )

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Degrade ``(3, H, W)`` or ``(N, 3, H, W)`` float sRGB in [0, 1]; output clipped, on the 8-bit grid."""
        if image.ndim == 4:
            return torch.stack([self(item, generator) for item in image])
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"camera noise needs an RGB (3, H, W) image, got shape {tuple(image.shape)}")
        params = draw_params(self, generator)
        return apply_camera_noise(image, params, generator)


@dataclass(frozen=True)
class CameraParams:
    """One draw of the pipeline: what :func:`apply_camera_noise` needs for one image."""

    rgb_to_cam: torch.Tensor  # (3, 3) float64, rows sum to 1
    wb_gains: tuple[float, float, float]  # red, green, blue gains the camera applies (>= 1 for red/blue)
    brightness: float  # global gain Brooks divides by when unprocessing (1 / N(0.8, 0.1))
    gamma: float
    tone_strength: float  # 0: no tone curve, 1: Brooks' smoothstep
    shot: float
    read: float
    sharpen: float  # unsharp-mask amount on the noise (0: off)
    smooth_sigma: float  # Gaussian blur of the noise (0: off)
    jpeg_quality: int | None


def _draw(generator: torch.Generator | None) -> float:
    device = generator.device if generator is not None else "cpu"
    return float(torch.rand((), generator=generator, device=device))


def _draw_normal(generator: torch.Generator | None) -> float:
    device = generator.device if generator is not None else "cpu"
    return float(torch.randn((), generator=generator, device=device))


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * _draw(generator)


def draw_params(noise: CameraNoise, generator: torch.Generator | None) -> CameraParams:
    """Draw every random choice of one sample, always in the same order (stable streams)."""
    weights = torch.tensor([_draw(generator) for _ in range(len(_XYZ_TO_CAM))], dtype=torch.float64)
    xyz_to_cam = (weights[:, None, None] * _XYZ_TO_CAM).sum(0) / weights.sum()
    rgb_to_cam = xyz_to_cam @ _RGB_TO_XYZ
    rgb_to_cam = rgb_to_cam / rgb_to_cam.sum(dim=1, keepdim=True)
    red, blue = _uniform(1.9, 2.4, generator), _uniform(1.5, 1.9, generator)
    brightness = 1.0 / min(max(0.8 + 0.1 * _draw_normal(generator), 0.5), 1.1)
    gamma = _uniform(2.0, 2.4, generator)
    tone = _draw(generator)
    log_iso = _uniform(math.log(noise.iso_low), math.log(noise.iso_high), generator)
    shot = 1e-6 * math.exp(log_iso)
    read = math.exp(2.18 * math.log(shot) + 1.20 + 0.26 * _draw_normal(generator))
    effect, amount, sigma = _draw(generator), _uniform(0.3, 1.5, generator), _uniform(0.4, 1.2, generator)
    use_jpeg, quality = _draw(generator), _uniform(noise.jpeg_quality[0], noise.jpeg_quality[1] + 1, generator)
    sharpen = amount if effect < noise.sharpen_probability else 0.0
    smooth = sigma if noise.sharpen_probability <= effect < noise.sharpen_probability + noise.smooth_probability else 0.0
    return CameraParams(
        rgb_to_cam=rgb_to_cam, wb_gains=(red, 1.0, blue), brightness=brightness, gamma=gamma, tone_strength=tone,
        shot=shot, read=read, sharpen=sharpen, smooth_sigma=smooth,
        jpeg_quality=min(int(quality), noise.jpeg_quality[1]) if use_jpeg < noise.jpeg_probability else None,
    )


# --- the pipeline's pieces ---------------------------------------------------------------------------

_TONE_GRID = torch.linspace(0.0, 1.0, 1025, dtype=torch.float64)


def _tone(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Blend of the identity and the smoothstep ``3x^2 - 2x^3`` (monotone for strength in [0, 1])."""
    return (1.0 - strength) * x + strength * (3.0 * x * x - 2.0 * x * x * x)


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation of increasing ``xp`` -> ``fp`` at ``x`` (numpy's ``interp``)."""
    xp, fp = xp.to(x), fp.to(x)
    index = torch.searchsorted(xp, x.clamp(xp[0], xp[-1]).contiguous()).clamp(1, len(xp) - 1)
    x0, x1, f0, f1 = xp[index - 1], xp[index], fp[index - 1], fp[index]
    return f0 + (f1 - f0) * (x - x0) / (x1 - x0).clamp_min(1e-12)


def _inverse_tone(y: torch.Tensor, strength: float) -> torch.Tensor:
    return _interp(y, _tone(_TONE_GRID, strength), _TONE_GRID)


def _mix(image: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,jhw->ihw", matrix.to(image), image)


def _gains(params: CameraParams) -> torch.Tensor:
    return torch.tensor(params.wb_gains, dtype=torch.float64) * params.brightness


def unprocess(image: torch.Tensor, params: CameraParams) -> torch.Tensor:
    """sRGB (3, H, W) in [0, 1] -> linear camera RGB before white balance (Brooks' ``unprocess``)."""
    linear = _inverse_tone(image.clamp(0, 1), params.tone_strength).clamp_min(1e-8) ** params.gamma
    camera = _mix(linear, params.rgb_to_cam)
    gains = _gains(params).to(image)[:, None, None]
    # Brooks' highlight-preserving inverse gains: near white, blend the inverse gain towards 1 so that
    # saturated highlights do not turn a colour after the forward gains clip them again.
    grey = camera.mean(0, keepdim=True)
    blend = ((grey - 0.9).clamp_min(0) / 0.1) ** 2
    inverse = (1 - blend) / gains + blend * torch.ones_like(gains)
    return (camera * torch.maximum(inverse, 1 / gains)).clamp(0, 1)


def process(camera: torch.Tensor, params: CameraParams) -> torch.Tensor:
    """Linear camera RGB -> sRGB: white balance, colour matrix, gamma, tone curve (the forward pipeline)."""
    balanced = camera * _gains(params).to(camera)[:, None, None]
    linear = _mix(balanced.clamp(0, 1), torch.linalg.inv(params.rgb_to_cam)).clamp(0, 1)
    return _tone(linear.clamp_min(1e-8) ** (1.0 / params.gamma), params.tone_strength)


def mosaic_masks(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(3, H, W) 0/1 masks of an RGGB Bayer pattern: which colour each photosite records."""
    masks = torch.zeros(3, height, width, device=device)
    masks[0, 0::2, 0::2] = 1
    masks[1, 0::2, 1::2] = 1
    masks[1, 1::2, 0::2] = 1
    masks[2, 1::2, 1::2] = 1
    return masks


def bilinear_demosaic(planes: torch.Tensor) -> torch.Tensor:
    """Bilinear demosaic of mosaic samples given as (3, H, W) planes (zero where a colour is not sampled).

    Each plane is interpolated from its own samples by a normalised convolution, so borders and odd
    sizes need no special case.
    """
    kernel = torch.tensor([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]], dtype=planes.dtype,
                          device=planes.device)
    masks = mosaic_masks(planes.shape[-2], planes.shape[-1], planes.device).to(planes.dtype)
    weight = kernel[None, None].expand(3, 1, 3, 3)
    summed = F.conv2d(F.pad((planes * masks)[None], (1, 1, 1, 1)), weight, groups=3)[0]
    counts = F.conv2d(F.pad(masks[None], (1, 1, 1, 1)), weight, groups=3)[0]
    interpolated = summed / counts.clamp_min(1e-12)
    return torch.where(masks > 0, planes, interpolated)


def poisson_gaussian(signal: torch.Tensor, shot: float, read: float, generator: torch.Generator | None) -> torch.Tensor:
    """Zero-mean sensor noise for linear ``signal``: variance ``read + shot * signal`` (Gaussian
    approximation of Poisson shot noise plus Gaussian read noise, as Brooks et al.)."""
    variance = read + shot * signal.clamp_min(0)
    if generator is None:
        normal = torch.randn(signal.shape, dtype=torch.float32)
    else:
        normal = torch.randn(signal.shape, generator=generator, device=generator.device, dtype=torch.float32)
    return normal.to(signal) * variance.sqrt()


def apply_camera_noise(image: torch.Tensor, params: CameraParams, generator: torch.Generator | None) -> torch.Tensor:
    """The noisy sRGB version of ``image`` (3, H, W) under ``params``, clipped and on the 8-bit grid."""
    from .degrade import blur, gaussian_kernel, jpeg  # degrade imports this module for its spec parser

    work = image.double()
    camera = unprocess(work, params)
    # One noise value per photosite, at the variance of the colour that photosite records.
    masks = mosaic_masks(work.shape[-2], work.shape[-1]).to(work)
    raw = (camera * masks).sum(0, keepdim=True)
    noise = poisson_gaussian(raw, params.shot, params.read, generator) * masks
    noisy_camera = camera + bilinear_demosaic(noise)
    difference = process(noisy_camera, params) - process(camera, params)
    if params.sharpen > 0:
        difference = difference + params.sharpen * (difference - blur(difference, gaussian_kernel(5, 1.0).double()))
    elif params.smooth_sigma > 0:
        difference = blur(difference, gaussian_kernel(5, params.smooth_sigma).double())
    noisy = (work + difference).clamp(0, 1)
    if params.jpeg_quality is not None:
        return jpeg(noisy.float(), params.jpeg_quality).to(image.dtype)
    return (noisy * 255).round().div(255).to(image.dtype)
