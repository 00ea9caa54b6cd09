"""Named presets: architecture, weights source (URL + sha256), license, task, paper numbers and the
metric convention those numbers were measured under.

Architecture hyper-parameters live with each family (``archs/<family>.py: PRESETS``); a zoo preset
points at one by name so the two never drift apart. What building a preset's network tells (its
scale, parameter count and MACs) is also kept here, as data (:data:`FOOTPRINTS`), so that listing
presets needs no PyTorch; ``tests/test_cli.py`` rebuilds every preset and checks that data exactly.

This module must stay importable without PyTorch: ``restorekit --help`` and ``restorekit models``
go through it, and importing torch costs more than everything else they do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .conventions import DERAIN_Y, GRAY, RESTORATION_RGB, SIDD_FLOAT, SR_Y, MetricConvention
from .errors import UnknownNameError

TASKS = ("denoise", "deblur", "derain", "sr")


@dataclass(frozen=True)
class PaperResult:
    psnr: float
    ssim: float | None = None


@dataclass(frozen=True)
class Preset:
    name: str
    family: str
    arch: str  # key into the family's PRESETS
    task: str
    description: str
    convention: MetricConvention
    filename: str | None = None  # weights file name, searched in RESTOREKIT_WEIGHTS, package, cache
    url: str | None = None
    sha256: str | None = None
    license: str = "unknown"
    non_commercial: bool = False
    tlc: bool = False  # the paper evaluated these weights with the test-time local converter
    train_size: int = 256  # training crop, which sets TLC's pooling window
    paper: dict[str, PaperResult] = field(default_factory=dict)
    source: str = ""  # where the weights come from, in words
    # where the authors publish the file, when that is not ``url`` (Google-Drive-only files: the
    # Drive page, which needs a browser); shown in the missing-weights message
    official_url: str | None = None

    @property
    def config(self) -> Any:
        from .archs import get_family  # imports torch: only where a network is built

        return get_family(self.family).PRESETS[self.arch]

    @property
    def scale(self) -> int:
        # from the footprint table when it has the preset, so that reading a scale needs no torch;
        # the test that checks the table checks this value against the architecture config
        footprint = FOOTPRINTS.get(self.name)
        return footprint.scale if footprint is not None else int(self.config.scale)


_VAPSR_URL = "https://github.com/zhoumumu/VapSR/raw/404c584e21ed92b3c9ddc3da8272d366c978148f/"
_BICUBIC_PP_URL = (
    "https://github.com/aselsan-research-imaging-team/bicubic-plusplus/raw/"
    "52084c8d016f5e8a5cd62c050e47536a0d022177/pretrained/"
)
# Official NAFNet files are on Google Drive; this git-LFS mirror serves byte-identical copies
# (same sha256 as the table the NAFNet authors' community republished).
_NAFNET_URL = "https://github.com/marduk191/ComfyUI-NAFNet_plus/raw/1a141beb16869b2ea4d3effe2b3431cc21f343c7/models/"


def _drive(file_id: str) -> str:
    """The Google Drive page of a file the authors publish there (their README's "gdrive" links)."""
    return f"https://drive.google.com/file/d/{file_id}/view"

_PRESETS: list[Preset] = [
    # --- VapSR (weights in the official git repo; no license stated upstream) ---
    Preset("vapsr-x2", "vapsr", "vapsr_x2", "sr", "VapSR x2 (DF2K, bicubic)", SR_Y,
           "VapSR_X2.pth", _VAPSR_URL + "VapSR_X2.pth",
           "6cbe6af3c18c16c8a2c9b83f484761693884f972e29a4a20e84f64b84d0a10cc",
           license="none stated", source="zhoumumu/VapSR"),
    Preset("vapsr-x3", "vapsr", "vapsr_x3", "sr", "VapSR x3 (DF2K, bicubic)", SR_Y,
           "VapSR_X3.pth", _VAPSR_URL + "VapSR_X3.pth",
           "5c0052ea719174ea43e55f337655196fa1564ba2e0b04c3220a1312a18405a09",
           license="none stated", source="zhoumumu/VapSR"),
    Preset("vapsr-x4", "vapsr", "vapsr_x4", "sr", "VapSR x4 (DF2K, bicubic)", SR_Y,
           "VapSR_X4.pth", _VAPSR_URL + "VapSR_X4.pth",
           "fa6b84a174d8994eaaaa38156c9d751109b27c833bceeeb6018523e4d8a48ea0",
           license="none stated", source="zhoumumu/VapSR",
           paper={"Set5": PaperResult(32.38, 0.8978), "Set14": PaperResult(28.77, 0.7852),
                  "B100": PaperResult(27.68, 0.7398), "Urban100": PaperResult(26.35, 0.7941)}),
    Preset("vapsr-s", "vapsr", "vapsr_s", "sr", "VapSR-S x4, NTIRE22 efficient SR", SR_Y,
           "VapSR-S.pth", _VAPSR_URL + "VapSR-S.pth",
           "4ca434fcdd4abb327e281b3f7930fe9802b36d3d6acfbe785843fee5db7e0cfe",
           license="none stated", source="zhoumumu/VapSR",
           paper={"Set5": PaperResult(32.14, 0.8951), "Set14": PaperResult(28.64, 0.7826),
                  "B100": PaperResult(27.60, 0.7373), "Urban100": PaperResult(26.05, 0.7852)}),
    # --- Bicubic++ (CC BY-NC-SA 4.0) ---
    Preset("bicubic-pp-x3", "bicubic_pp", "bicubic_pp_x3", "sr", "Bicubic++ x3, real-time SR", SR_Y,
           "bicubic_pp_x3.pth", _BICUBIC_PP_URL + "bicubic_pp_x3.pth",
           "38a0cff7927b7658c78f19df2281d0e5c3b20e948955e9dd58e9f91d13ebc7df",
           license="CC BY-NC-SA 4.0", non_commercial=True,
           source="aselsan-research-imaging-team/bicubic-plusplus"),
    # --- restorekit's own weights, embedded in the package (src/restorekit/weights/<name>.md: model cards) ---
    Preset("restorekit-denoise", "nafnet", "restorekit_denoise", "denoise",
           "small NAFNet for real photos: camera noise (ISO, demosaicing, JPEG) and Gaussian noise", RESTORATION_RGB,
           "restorekit-denoise.safetensors", license="PolyU data terms",
           non_commercial=True, source="trained by restorekit"),
    Preset("restorekit-denoise-gaussian", "nafnet", "restorekit_denoise", "denoise",
           "small NAFNet, blind colour Gaussian denoising (sigma 0-50)", RESTORATION_RGB,
           "restorekit-denoise-gaussian.safetensors", license="MIT", source="trained by restorekit"),
    Preset("restorekit-sr-x3", "bicubic_pp", "bicubic_pp_x3", "sr",
           "Bicubic++ x3 for clean bicubic inputs (three-stage pipeline)", SR_Y,
           "restorekit-sr-x3.safetensors", license="MIT", source="trained by restorekit"),
    Preset("restorekit-sr-x3-jpeg", "bicubic_pp", "bicubic_pp_x3", "sr",
           "Bicubic++ x3 for JPEG-Q90 inputs (three-stage pipeline)", SR_Y,
           "restorekit-sr-x3-jpeg.safetensors", license="MIT", source="trained by restorekit"),
]


def _nafnet_presets() -> list[Preset]:
    rows = [
        # name, arch, task, tlc, file, sha256, dataset, psnr, ssim, convention, Google Drive id
        ("nafnet-sidd-w32", "nafnet_sidd_w32", "denoise", False, "NAFNet-SIDD-width32.pth",
         "89c70e808d1783b6c07911306e106aaf0d4f7f3da8c61078b99ff7f8929a26f4", "SIDD", 39.9672, 0.9599, SIDD_FLOAT,
         "1lsByk21Xw-6aW7epCwOQxvm6HYCQZPHZ"),
        ("nafnet-sidd-w64", "nafnet_sidd_w64", "denoise", False, "NAFNet-SIDD-width64.pth",
         "cd685efaae01f7c4e9951f2deab05780079c8eb1e49ed664b72f6db04dabb445", "SIDD", 40.3045, 0.9614, SIDD_FLOAT,
         "14Fht1QQJ2gMlk4N1ERCRuElg8JfjrWWR"),
        ("nafnet-gopro-w32", "nafnet_gopro_w32", "deblur", True, "NAFNet-GoPro-width32.pth",
         "19394e6155d12ef6371d1d57496f87f0ec88f92bdffa27c0792690722d5d1a5c", "GoPro", 32.8705, 0.9606, RESTORATION_RGB,
         "1Fr2QadtDCEXg6iwWX8OzeZLbHOx2t5Bj"),
        ("nafnet-gopro-w64", "nafnet_gopro_w64", "deblur", True, "NAFNet-GoPro-width64.pth",
         "329d3ab4077b8d6b7ff61de376e483714667960bf85be027bf4335cda701196f", "GoPro", 33.7103, 0.9668, RESTORATION_RGB,
         "1S0PVRbyTakYY9a82kujgZLbMihfNBLfC"),
        ("nafnet-reds-w64", "nafnet_reds_w64", "deblur", True, "NAFNet-REDS-width64.pth",
         "175fe8b3cdf3abedfbc87769779c3d9f491e05bb2e73ea9d627883f90a4b2df3", "REDS", 29.0903, 0.8671, RESTORATION_RGB,
         "14D4V4raNYIOhETfcuuLI3bGLB-OYIv6X"),
    ]
    presets = [
        Preset(name, "nafnet", arch, task, f"NAFNet {arch.split('_', 1)[1]}", conv, file, _NAFNET_URL + file, sha,
               license="MIT", tlc=tlc, source="megvii-research/NAFNet (Google Drive; LFS mirror)",
               paper={dataset: PaperResult(psnr, ssim)}, official_url=_drive(drive_id))
        for name, arch, task, tlc, file, sha, dataset, psnr, ssim, conv, drive_id in rows
    ]
    baseline_rows = [
        ("baseline-sidd-w32", "baseline_sidd_w32", "denoise", False, "Baseline-SIDD-width32.pth", "SIDD", 39.8857, 0.9596, SIDD_FLOAT,
         "1NhqVcqkDcYvYgF_P4BOOfo9tuTcKDuhW"),
        ("baseline-sidd-w64", "baseline_sidd_w64", "denoise", False, "Baseline-SIDD-width64.pth", "SIDD", 40.2970, 0.9617, SIDD_FLOAT,
         "1wQ1HHHPhSp70_ledMBZhDhIGjZQs16wO"),
        ("baseline-gopro-w32", "baseline_gopro_w32", "deblur", True, "Baseline-GoPro-width32.pth", "GoPro", 32.4799, 0.9575, RESTORATION_RGB,
         "14z7CxRzVkYEhFgsZg79GlPTEr3VFIGyl"),
        ("baseline-gopro-w64", "baseline_gopro_w64", "deblur", True, "Baseline-GoPro-width64.pth", "GoPro", 33.3960, 0.9649, RESTORATION_RGB,
         "1yy0oPNJjJxfaEmO0pfPW_TpeoCotYkuO"),
    ]
    presets += [
        Preset(name, "nafnet", arch, task, f"Baseline {arch.split('_', 1)[1]}", conv, file, license="MIT", tlc=tlc,
               source="megvii-research/NAFNet (Google Drive only: download by hand into RESTOREKIT_WEIGHTS)",
               paper={dataset: PaperResult(psnr, ssim)}, official_url=_drive(drive_id))
        for name, arch, task, tlc, file, dataset, psnr, ssim, conv, drive_id in baseline_rows
    ]
    return presets


def _hinet_presets() -> list[Preset]:
    # Drive ids from the HINet README; its SIDD line gives two links for "HINet-SIDD-0.5x.pth
    # (HINet-SIDD-1x.pth)", in that order.
    rows = [
        ("hinet-sidd-1x", "hinet_sidd_1x", "denoise", "HINet-SIDD-1x.pth", {"SIDD": PaperResult(39.99, 0.958)}, SIDD_FLOAT,
         "1CU5z-M90Jc-TAcVpEaFjDCYA09fkubGi"),
        ("hinet-sidd-0.5x", "hinet_sidd_0.5x", "denoise", "HINet-SIDD-0.5x.pth", {"SIDD": PaperResult(39.82, 0.958)}, SIDD_FLOAT,
         "1Y5YJQVNL0weifE--5us344bLwzBNS_sU"),
        ("hinet-gopro", "hinet_gopro", "deblur", "HINet-GoPro.pth", {"GoPro": PaperResult(32.77, 0.959)}, RESTORATION_RGB,
         "1dw8PKVkLfISzNtUu3gqGh83NBO83ZQ5n"),
        ("hinet-reds", "hinet_reds", "deblur", "HINet-REDS.pth", {"REDS": PaperResult(28.83, 0.862)}, RESTORATION_RGB,
         "1uYH8XvLgrn-Vg6L0NjUcO2Fblhqrc8TU"),
        ("hinet-rain13k", "hinet_rain13k", "derain", "HINet-Rain13k.pth",
         {"Test100": PaperResult(30.29, 0.906), "Rain100H": PaperResult(30.65, 0.894),
          "Rain100L": PaperResult(37.28, 0.970), "Test2800": PaperResult(33.91, 0.941),
          "Test1200": PaperResult(33.05, 0.919)}, DERAIN_Y, "1AVedAkb1B2F2b3XGWlMFFVSsNfQlCwxa"),
    ]
    return [
        Preset(name, "hinet", arch, task, f"HINet {arch.split('_', 1)[1]}", conv, file, license="MIT",
               source="megvii-model/HINet (Google Drive only: download by hand into RESTOREKIT_WEIGHTS)", paper=paper,
               official_url=_drive(drive_id))
        for name, arch, task, file, paper, conv, drive_id in rows
    ]


def _rednet_presets() -> list[Preset]:
    # No official PyTorch weights exist (Caffe only); these presets give the architecture.
    return [
        Preset("red30-gray", "rednet", "red30", "denoise", "RED30, 1 channel, 128 wide (released layout)", GRAY,
               source="architecture only: official weights are Caffe models that are not retrievable",
               paper={"BSD200-sigma30": PaperResult(27.95, 0.8019), "Set5-x3": PaperResult(33.82, 0.9230)}),
    ]


PRESETS: dict[str, Preset] = {
    p.name: p for p in [*_PRESETS, *_nafnet_presets(), *_hinet_presets(), *_rednet_presets()]
}


@dataclass(frozen=True)
class Footprint:
    """What building a preset's network tells: its upscaling factor, its parameter count, and the
    multiply-adds of one forward pass at the preset's reference input (:func:`reference_size`)."""

    scale: int
    params: int
    macs: int


# MACs are reported at the input each family's paper uses as reference: SR at the LR size that
# gives a 1280x720 output (the efficient-SR convention), everything else at 256x256.
REFERENCE_INPUT = {"sr_x2": (640, 360), "sr_x3": (427, 240), "sr_x4": (320, 180), "restore": (256, 256)}


def reference_size(scale: int) -> tuple[int, int]:
    """(width, height) of the input at which a preset's MACs are counted, for its ``scale``."""
    if scale == 1:
        return REFERENCE_INPUT["restore"]
    return REFERENCE_INPUT.get(f"sr_x{scale}", (1280 // scale, 720 // scale))


# One line per preset: measured once with `python -m restorekit.complexity` (which prints these
# lines), checked exactly by tests/test_cli.py. A preset missing here still lists correctly, only
# slower (its network is built to count it), and that test says which line to add.
FOOTPRINTS: dict[str, Footprint] = {
    "vapsr-x2": Footprint(scale=2, params=329_236, macs=73_998_028_800),
    "vapsr-x3": Footprint(scale=3, params=336_811, macs=33_693_567_360),
    "vapsr-x4": Footprint(scale=4, params=342_220, macs=19_522_771_200),
    "vapsr-s": Footprint(scale=4, params=154_956, macs=8_996_140_800),
    "bicubic-pp-x3": Footprint(scale=3, params=50_400, macs=1_294_272_000),
    "restorekit-denoise": Footprint(scale=1, params=972_075, macs=2_689_704_576),
    "restorekit-denoise-gaussian": Footprint(scale=1, params=972_075, macs=2_689_704_576),
    "restorekit-sr-x3": Footprint(scale=3, params=50_400, macs=1_294_272_000),
    "restorekit-sr-x3-jpeg": Footprint(scale=3, params=50_400, macs=1_294_272_000),
    "nafnet-sidd-w32": Footprint(scale=1, params=29_159_715, macs=16_045_035_520),
    "nafnet-sidd-w64": Footprint(scale=1, params=115_982_915, macs=63_236_423_680),
    "nafnet-gopro-w32": Footprint(scale=1, params=17_111_907, macs=15_956_027_392),
    "nafnet-gopro-w64": Footprint(scale=1, params=67_888_835, macs=63_054_979_072),
    "nafnet-reds-w64": Footprint(scale=1, params=67_888_835, macs=63_054_979_072),
    "baseline-sidd-w32": Footprint(scale=1, params=29_056_227, macs=15_865_729_024),
    "baseline-sidd-w64": Footprint(scale=1, params=194_419_779, macs=82_610_814_976),
    "baseline-gopro-w32": Footprint(scale=1, params=17_023_875, macs=15_820_367_872),
    "baseline-gopro-w64": Footprint(scale=1, params=112_036_291, macs=82_408_800_256),
    "hinet-sidd-1x": Footprint(scale=1, params=88_669_702, macs=157_600_972_800),
    "hinet-sidd-0.5x": Footprint(scale=1, params=22_176_518, macs=39_541_800_960),
    "hinet-gopro": Footprint(scale=1, params=88_668_806, macs=157_600_972_800),
    "hinet-reds": Footprint(scale=1, params=88_668_806, macs=157_600_972_800),
    "hinet-rain13k": Footprint(scale=1, params=88_669_702, macs=157_600_972_800),
    "red30-gray": Footprint(scale=1, params=4_134_785, macs=270_733_934_592),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown preset {name!r}; valid presets: {', '.join(sorted(PRESETS))} (`restorekit models` lists them)"
        ) from None
