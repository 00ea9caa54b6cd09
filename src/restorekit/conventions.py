"""How a paper measured its numbers: the metric convention a preset is evaluated under."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MetricConvention:
    """PSNR/SSIM settings.

    - ``y_channel``: compare the MATLAB BT.601 luma (``rgb2ycbcr``) instead of RGB.
    - ``crop_border``: pixels cut from each side first; ``None`` means "the SR scale".
    - ``uint8``: round both images to 8 bits before measuring (BasicSR ``use_image: true``);
      False measures the float output directly (NAFNet/HINet SIDD protocol).
    - ``ssim``: ``"2d"`` is the MATLAB/BasicSR Gaussian SSIM averaged over channels; ``"3d"`` is the
      3-D Gaussian SSIM of the NAFNet evaluation code.
    """

    y_channel: bool = False
    crop_border: int | None = 0
    uint8: bool = True
    ssim: Literal["2d", "3d"] = "2d"

    def border_for(self, scale: int) -> int:
        return scale if self.crop_border is None else self.crop_border

    def describe(self, scale: int = 1) -> str:
        channel = "Y" if self.y_channel else "RGB"
        rounding = "uint8" if self.uint8 else "float"
        return f"{channel}, crop {self.border_for(scale)}, {rounding}, SSIM {self.ssim}"


SR_Y = MetricConvention(y_channel=True, crop_border=None, uint8=True, ssim="2d")
RESTORATION_RGB = MetricConvention(y_channel=False, crop_border=0, uint8=True, ssim="3d")
SIDD_FLOAT = MetricConvention(y_channel=False, crop_border=0, uint8=False, ssim="3d")
DERAIN_Y = MetricConvention(y_channel=True, crop_border=0, uint8=True, ssim="2d")
GRAY = MetricConvention(y_channel=True, crop_border=0, uint8=True, ssim="2d")

# The conventions by name: what a training run's ``val.convention`` may say.
BY_NAME: dict[str, MetricConvention] = {
    "sr_y": SR_Y,
    "restoration_rgb": RESTORATION_RGB,
    "sidd_float": SIDD_FLOAT,
    "derain_y": DERAIN_Y,
    "gray": GRAY,
}
