"""A corpus of odd, broken and hostile image files for ``restorekit restore``, generated on demand,
with the outcome each file must have. Nothing binary is committed: the corpus is rebuilt from a
seed in a temp folder at test time (tests/test_fuzz_restore.py), small enough for CI.

Every file is one ``Expect``: ``restored`` (output name, upright size, channels, depth, alpha and
the upright pixels, so orientation and layout can be checked), ``refused`` (a substring of the
one-line reason), ``skipped`` (likewise), or ``either`` for seeded byte-flip mutants, which may
decode to something or be refused but must never crash, hang or leave a temp file.

The expected values are written here from the formats' rules, independently of restorekit's
reader: orientations use numpy's rot90/flip (EXIF 2.32 meanings), colour conversions use Pillow's.

Run it by hand to look at a corpus: ``python tests/fuzz_images.py OUT_FOLDER [--seed N]``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import stat
import struct
import subprocess
import sys
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

SCALE = 3  # the corpus is run through restorekit-sr-x3 (the shipped Bicubic++)
MAX_PIXELS = 5000  # passed as --max-pixels; generated images stay far below it, except the refused ones
FORMAT_OF_SUFFIX = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".webp": "webp", ".tif": "tiff", ".bmp": "bmp"}


@dataclass
class Expect:
    """What must become of one input file (``name`` is relative to the corpus root)."""

    name: str
    outcome: str  # restored | refused | skipped | either
    reason: str = ""  # refused/skipped: a substring of the reported line
    output: str | None = None  # restored: output path relative to the output folder
    upright: np.ndarray | None = None  # restored: expected decoded pixels, H x W x C float in [0, 1]
    alpha: np.ndarray | None = None  # restored: expected alpha, H x W float in [0, 1], or None
    channels: int | None = None  # restored: channels of the output file as read back
    depth: str | None = None  # restored: uint8 | uint16 | float32 of the output file as read back
    keeps_alpha: bool | None = None
    in_depth: str | None = None  # restored: depth of the decoded input (for other --format runs)
    tolerance: float = 0.1  # mean absolute error allowed between the output (3x3 block means) and upright
    warning: str = ""  # a substring of a "warning:" line that must name this file
    checked_orientation: bool = True  # False where the content cannot show orientation (1-bit, tiny)
    tags: dict[int, object] = field(default_factory=dict)  # TIFF/EXIF tags the output must hold


@dataclass
class Corpus:
    """Generated files: the folder given to ``restorekit restore`` and files named one by one."""

    root: Path
    folder: Path  # passed as a folder input (with --recursive)
    explicit: list[Path]  # passed by name, after the folder
    expects: list[Expect]
    pre_existing_outputs: list[str]  # output names created before the run (must be skipped)
    stale_temp: str  # a temp-file name of a dead process, created in the output folder

    def counts(self) -> Counter[str]:
        return Counter(expect.outcome for expect in self.expects)


# --- pixels ----------------------------------------------------------------------------------


def pattern(height: int, width: int, channels: int) -> np.ndarray:
    """Smooth gradients that no flip or rotation maps onto themselves (float in [0.1, 0.9])."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    fx, fy = x / max(width - 1, 1), y / max(height - 1, 1)
    planes = [0.1 + 0.55 * fx + 0.25 * fy, 0.1 + 0.8 * fy, 0.2 + 0.3 * fx + 0.4 * fy * (1 - fx)]
    return np.stack(planes[:channels] if channels == 3 else planes[:1], axis=2)


def display(stored: np.ndarray, orientation: int) -> np.ndarray:
    """What a viewer shows for ``stored`` pixels under EXIF orientation 1-8."""
    ops = {1: lambda a: a, 2: np.fliplr, 3: lambda a: np.rot90(a, 2), 4: np.flipud,
           5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.rot90(a, -1),
           7: lambda a: np.rot90(np.swapaxes(a, 0, 1), 2), 8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(ops[orientation](stored))


STORE_FOR = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}  # display(display(u, STORE_FOR[o]), o) == u


def dihedral(array: np.ndarray) -> list[np.ndarray]:
    """The eight flips/rotations of an array (the first is the array itself)."""
    return [display(array, o) for o in range(1, 9)]


def _u8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values * 255), 0, 255).astype(np.uint8)


def _u16(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values * 65535), 0, 65535).astype(np.uint16)


def _as_float(array: np.ndarray) -> np.ndarray:
    array = array if array.ndim == 3 else array[..., None]
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255
    if array.dtype == np.uint16:
        return array.astype(np.float64) / 65535
    return array.astype(np.float64)


# --- writers ---------------------------------------------------------------------------------


def _exif(orientation: int, extra: dict[int, object] | None = None) -> bytes:
    exif = PILImage.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    for tag, value in (extra or {}).items():
        exif[tag] = value
    return exif.tobytes()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def raw_png(width: int, height: int, rows: bytes, colour: int = 2, depth: int = 8, interlace: int = 0) -> bytes:
    """A PNG from already-filtered scanline bytes (which may be short: a truncated stream)."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(rows))
            + _png_chunk(b"IEND", b""))


def _encode(im: PILImage.Image, fmt: str, orientation: int = 1, **options: object) -> bytes:
    buffer = io.BytesIO()
    pil_format = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "tiff": "TIFF", "bmp": "BMP", "gif": "GIF",
                  "ppm": "PPM"}[fmt]
    if fmt in ("png", "jpg", "webp", "tiff") and (orientation != 1 or "exif" in options):
        options.setdefault("exif", _exif(orientation))
    if fmt == "jpg":
        options.setdefault("quality", 95)
    if fmt == "webp":
        options.setdefault("lossless", True)
    im.save(buffer, format=pil_format, **options)
    return buffer.getvalue()


def _cv2_png16(planes: np.ndarray) -> bytes:
    import cv2

    bgr = planes[..., [2, 1, 0, 3]] if planes.shape[2] == 4 else planes[..., ::-1]
    ok, data = cv2.imencode(".png", np.ascontiguousarray(bgr))
    assert ok
    return data.tobytes()


# --- output rules ----------------------------------------------------------------------------


def output_rules(fmt: str, channels: int, depth: str, alpha: bool) -> tuple[int, str, bool]:
    """(channels, depth, alpha) of the output file as read back, from the format's limits:
    JPEG/WebP/BMP hold 8 bits; JPEG/BMP drop alpha; WebP has no grey; a float image stays float
    only in a grey TIFF (else 16-bit); 16-bit grey+alpha is written as 16-bit RGBA."""
    if depth == "float32" and not (fmt == "tiff" and channels == 1 and not alpha):
        depth = "uint16"
    if fmt in ("jpg", "webp", "bmp"):
        depth = "uint8"
    keeps_alpha = alpha and fmt in ("png", "webp", "tiff")
    if fmt == "webp" or (depth == "uint16" and channels == 1 and keeps_alpha):
        channels = 3
    return channels, depth, keeps_alpha


# --- the corpus ------------------------------------------------------------------------------


class _Builder:
    def __init__(self, root: Path, seed: int) -> None:
        self.root = root
        self.folder = root / "corpus"
        self.side = root / "side"
        self.folder.mkdir(parents=True)
        self.side.mkdir()
        self.rng = np.random.default_rng(seed)
        self.expects: list[Expect] = []
        self.explicit: list[Path] = []

    def path(self, name: str, explicit: bool = False) -> Path:
        path = (self.side if explicit else self.folder) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if explicit:
            self.explicit.append(path)
        return path

    def rel(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    def refused(self, name: str, data: bytes, reason: str, explicit: bool = False) -> None:
        path = self.path(name, explicit)
        path.write_bytes(data)
        self.expects.append(Expect(self.rel(path), "refused", reason))

    def restored(self, name: str, data: bytes, upright: np.ndarray, in_depth: str, alpha: np.ndarray | None = None,
                 explicit: bool = False, output: str | None = None, out_format: str | None = None,
                 **extra: object) -> Expect:
        """Write ``data`` and expect an output whose content is ``upright`` (``alpha``) scaled x3."""
        path = self.path(name, explicit)
        path.write_bytes(data)
        if output is None:
            suffix = path.suffix if path.suffix.lower() in FORMAT_OF_SUFFIX else ".png"
            relative = path.relative_to(self.side if explicit else self.folder)
            output = str(relative.with_name(relative.stem + suffix))
        fmt = out_format or FORMAT_OF_SUFFIX[Path(output).suffix.lower()]
        channels, depth, keeps_alpha = output_rules(fmt, upright.shape[2], in_depth, alpha is not None)
        expect = Expect(self.rel(path), "restored", output=output, upright=upright, alpha=alpha, channels=channels,
                        depth=depth, keeps_alpha=keeps_alpha, in_depth=in_depth, **extra)  # type: ignore[arg-type]
        self.expects.append(expect)
        return expect


def _pil_case(b: _Builder, name: str, fmt: str, mode: str, height: int, width: int, orientation: int,
              explicit: bool = False, tolerance: float = 0.1, **options: object) -> Expect:
    """An 8-bit (or I;16 / F grey) file written by Pillow, stored so that ``orientation`` shows it upright."""
    base_channels = 3 if mode in ("RGB", "RGBA", "P", "PA", "CMYK", "LAB") else 1
    stored_h, stored_w = (width, height) if orientation >= 5 else (height, width)
    upright = pattern(height, width, base_channels)
    stored = display(upright, STORE_FOR[orientation])
    alpha_plane = 0.3 + 0.6 * pattern(stored_h, stored_w, 1)[..., 0] ** 2 if mode in ("RGBA", "LA", "PA") else None
    if mode == "I;16":
        im = PILImage.fromarray(_u16(stored[..., 0]))
        depth = "uint16"
    elif mode == "F":
        im = PILImage.fromarray(stored[..., 0].astype(np.float32), "F")
        depth = "float32"
    else:
        im = PILImage.fromarray(_u8(stored if base_channels == 3 else stored[..., 0]))
        if alpha_plane is not None:
            im.putalpha(PILImage.fromarray(_u8(alpha_plane)))
        if mode in ("P", "PA"):
            im = im.quantize(64)  # from RGB or RGBA: a palette, with transparency for PA
        elif mode not in ("RGB", "RGBA", "L", "LA"):
            im = im.convert(mode)
        depth = "uint8"
    data = _encode(im, fmt, orientation, **options)
    # What the file decodes to, turned upright with numpy (lossy formats: read back; TIFF: Pillow
    # would turn it itself on load, so the in-memory image is used).
    decoded = im if fmt == "tiff" else PILImage.open(io.BytesIO(data))
    alpha = None
    if decoded.mode in ("RGBA", "LA", "PA") or (decoded.mode == "P" and "transparency" in decoded.info):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's advice about palette transparency, not a problem here
            rgba = np.asarray(decoded.convert("RGBA" if base_channels == 3 else "LA"))
        alpha = display(_as_float(rgba[..., -1]), orientation)[..., 0]
    if depth == "uint8":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # as above
            decoded = decoded.convert("RGB" if base_channels == 3 else "L")
    expected = display(_as_float(np.asarray(decoded)), orientation)
    return b.restored(name, data, expected, depth, alpha, explicit=explicit, tolerance=tolerance)


def make_corpus(root: str | Path, seed: int = 0, random_cases: int = 40, mutants: int = 12) -> Corpus:
    """Build the corpus under ``root`` (created) and return it with every file's expected outcome."""
    b = _Builder(Path(root), seed)
    rng = b.rng

    # The cases, each by name.
    _pil_case(b, "tiff_rgb8.tif", "tiff", "RGB", 17, 29, 1)  # x3 kept the input width
    _pil_case(b, "tiff_palette.tif", "tiff", "P", 16, 20, 1, tolerance=0.12)
    _pil_case(b, "tiff_cmyk.tif", "tiff", "CMYK", 16, 20, 1)
    _pil_case(b, "tiff_lab.tif", "tiff", "LAB", 16, 20, 1, tolerance=0.15)
    _pil_case(b, "tiff_bigtiff.tif", "tiff", "RGB", 16, 20, 1, big_tiff=True)
    _pil_case(b, "tiff_grey16.tif", "tiff", "I;16", 18, 14, 1)
    _pil_case(b, "tiff_float.tif", "tiff", "F", 18, 14, 1)
    _pil_case(b, "tiff_rgba.tif", "tiff", "RGBA", 15, 21, 1)
    _pil_case(b, "tiff_deflate.tif", "tiff", "RGB", 15, 21, 1, compression="tiff_deflate")
    _pil_case(b, "tiff_lzw.tif", "tiff", "L", 15, 21, 1, compression="tiff_lzw")
    _pil_case(b, "tiff_jpeg.tif", "tiff", "RGB", 16, 24, 1, compression="jpeg", tolerance=0.12)
    tagged = _pil_case(b, "tiff_tags.tif", "tiff", "RGB", 16, 20, 1,
                       tiffinfo={0x010F: "fuzz-camera", 0x8482: (0.0, 0.0, 0.0, 1.0, 2.0, 0.0), 0x0129: (0, 1)})
    tagged.tags = {0x010F: "fuzz-camera", 0x8482: None, 0x0129: None}  # Make kept; GeoTIFF tie point, PageNumber not
    for orientation in range(1, 9):
        _pil_case(b, f"orient/tiff_o{orientation}.tif", "tiff", "RGB", 12, 20, orientation)
        _pil_case(b, f"orient/jpeg_o{orientation}.jpg", "jpg", "RGB", 12, 20, orientation)
    _pil_case(b, "jpeg_grey.jpg", "jpg", "L", 20, 16, 6)
    _pil_case(b, "jpeg_cmyk.jpg", "jpg", "CMYK", 20, 16, 1)
    _pil_case(b, "jpeg_progressive.jpg", "jpg", "RGB", 20, 16, 3, progressive=True)
    _pil_case(b, "png_la.png", "png", "LA", 14, 19, 8)
    _pil_case(b, "png_palette_alpha.png", "png", "PA", 14, 19, 1, tolerance=0.12)
    _pil_case(b, "png_interlaced.png", "png", "RGB", 14, 19, 1, interlace=1)
    _pil_case(b, "webp_rgba.webp", "webp", "RGBA", 14, 19, 6)
    _pil_case(b, "bmp_rgb.bmp", "bmp", "RGB", 14, 19, 1)
    _pil_case(b, "bmp_grey.bmp", "bmp", "L", 14, 19, 1)
    _pil_case(b, ".hidden.png", "png", "RGB", 8, 8, 1)
    _pil_case(b, "sub/deep/nested.png", "png", "RGB", 9, 11, 1)
    for height, width in ((1, 1), (1, 17), (17, 1), (2, 3)):
        expect = _pil_case(b, f"tiny_{height}x{width}.png", "png", "RGB", height, width, 1, tolerance=0.2)
        expect.checked_orientation = False  # too small for its content to show a turn, or to be smooth
    one_bit = PILImage.fromarray(_u8(pattern(16, 24, 1)[..., 0]) > 128)
    expect = b.restored("one_bit.png", _encode(one_bit, "png"), _as_float(np.asarray(one_bit.convert("L"))), "uint8")
    expect.checked_orientation, expect.tolerance = False, 0.2

    try:  # 16-bit colour needs OpenCV (restorekit[image16]); without it these are refused, as documented
        import cv2  # noqa: F401

        rgb16 = _u16(pattern(13, 17, 3))
        b.restored("png_rgb16.png", _cv2_png16(rgb16), _as_float(rgb16), "uint16")
        alpha16 = _u16(0.2 + 0.7 * pattern(13, 17, 1))
        b.restored("png_rgba16.png", _cv2_png16(np.concatenate([rgb16, alpha16], 2)), _as_float(rgb16), "uint16",
                   alpha=_as_float(alpha16)[..., 0])
        b.refused("png_rgb16_cut.png", _cv2_png16(rgb16)[:-40], "")
    except ImportError:
        pass

    # Names: existing names are never globs; any script; long; leading dash.
    rgb = PILImage.fromarray(_u8(pattern(10, 12, 3)))
    up = _as_float(np.asarray(rgb))
    b.restored("[brackets].png", _encode(rgb, "png"), up, "uint8", explicit=True)
    os.symlink("nowhere.png", b.path("[gone].png", explicit=True))  # read as a glob, it would pick g.png
    b.expects.append(Expect("side/[gone].png", "refused", "broken symbolic link"))
    (b.side / "g.png").write_bytes(_encode(rgb, "png"))  # not an input: must not be restored
    b.restored("a.png", _encode(rgb, "png"), up, "uint8")
    for name in ("图片.png", "фото.png", "with space.png", "-dash.png", "L" * 240 + ".png"):
        b.restored(name, _encode(rgb, "png"), up, "uint8")

    # Formats restorekit reads but does not write: the output is PNG under a .png name.
    b.restored("still.gif", _encode(rgb.quantize(256), "gif"), _as_float(np.asarray(rgb.quantize(256).convert("RGB"))),
               "uint8", explicit=True)
    b.restored("pixmap.ppm", _encode(rgb, "ppm"), up, "uint8", explicit=True)
    b.restored("no_extension", _encode(rgb, "png"), up, "uint8", explicit=True)
    mislabelled = b.restored("png_named.jpg", _encode(rgb, "png"), up, "uint8")  # written as JPEG: the name says so
    mislabelled.tolerance = 0.1

    # Multi-frame files: refused, never silently their first frame.
    frames = [rgb, PILImage.fromarray(255 - np.asarray(rgb))]
    for name, fmt in (("anim.png", "png"), ("anim.webp", "webp"), ("pages.tif", "tiff")):
        b.refused(name, _encode(frames[0], fmt, save_all=True, append_images=frames[1:]), "more than one frame")
    b.refused("anim_side.gif", _encode(frames[0], "gif", save_all=True, append_images=frames[1:]),
              "more than one frame", explicit=True)

    # Truncated, empty, not images, non-finite, too large.
    row_bytes = 1 + 16 * 3
    b.refused("short_stream.png", raw_png(16, 16, bytes(row_bytes)), "truncated")
    b.refused("short_stream_interlaced.png", raw_png(16, 16, bytes(row_bytes * 3), interlace=1), "truncated")
    b.refused("short_stream_rgb16.png", raw_png(16, 16, bytes(1 + 16 * 6), depth=16), "truncated")
    for fmt, suffix in (("png", ".png"), ("jpg", ".jpg"), ("webp", ".webp"), ("tiff", ".tif"), ("bmp", ".bmp")):
        data = _encode(PILImage.fromarray(_u8(pattern(24, 24, 3))), fmt)
        b.refused(f"cut_half{suffix}", data[: len(data) // 2], "")
    b.refused("empty.png", b"", "not an image")
    b.refused("text.png", b"this is not an image\n", "not an image")
    b.refused("noise.jpg", rng.integers(0, 256, 3000, dtype=np.uint8).tobytes(), "")
    for name, bad in (("float_nan.tif", np.nan), ("float_inf.tif", np.inf)):
        values = pattern(8, 8, 1)[..., 0].astype(np.float32)
        values[3, 4] = bad
        b.refused(name, _encode(PILImage.fromarray(values, "F"), "tiff"), "NaN or infinite")
    b.refused("too_large.png", _encode(PILImage.fromarray(_u8(pattern(80, 80, 3))), "png"), "exceeds the limit")
    b.refused("bomb_header.png", raw_png(100_000, 100_000, b""), "exceeds the limit")

    # Links, special files, a looping TIFF directory chain.
    link_target = b.folder / "a.png"
    os.symlink(link_target.name, b.folder / "b_link_to_a.png")
    b.expects.append(Expect("corpus/b_link_to_a.png", "skipped", "same file as"))
    os.symlink("nowhere.png", b.folder / "dangling.png")
    b.expects.append(Expect("corpus/dangling.png", "refused", "broken symbolic link"))
    os.symlink("loop.png", b.folder / "loop.png")
    b.expects.append(Expect("corpus/loop.png", "refused", "symbolic link loop"))
    os.mkfifo(b.folder / "fifo.png")
    b.expects.append(Expect("corpus/fifo.png", "refused", "not a regular file"))
    if os.path.exists("/dev/zero"):
        os.symlink("/dev/zero", b.folder / "zero.png")
        b.expects.append(Expect("corpus/zero.png", "refused", "not a regular file"))
    os.symlink("sub", b.folder / "linked_folder")
    b.expects.append(Expect("corpus/linked_folder", "skipped", "not followed"))
    looped = bytearray(_encode(rgb, "tiff"))
    first_ifd = struct.unpack("<I", looped[4:8])[0]
    count = struct.unpack("<H", looped[first_ifd:first_ifd + 2])[0]
    looped[first_ifd + 2 + 12 * count:first_ifd + 6 + 12 * count] = struct.pack("<I", first_ifd)  # next IFD: itself
    b.restored("tiff_ifd_loop.tif", bytes(looped), up, "uint8")

    # Corrupt EXIF: restored, and the warning names the file.
    exif = bytearray(_exif(1, {0x010F: "maker", 0x0110: "model-name-long-enough"}))
    corrupt_exif = _encode(rgb, "jpg", exif=bytes(exif[:-12]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about the EXIF here too; restorekit must name the file
        decoded = _as_float(np.asarray(PILImage.open(io.BytesIO(corrupt_exif))))
    b.restored("corrupt_exif.jpg", corrupt_exif, decoded, "uint8", warning="Truncated File Read")

    # A camera's EXIF (sub-directories for exposure and GPS): kept, in every output format.
    camera = PILImage.Exif()
    camera[0x010F], camera[0x0110] = "fuzz-camera", "model 1"
    camera[0x8769] = {0x9003: "2024:01:02 03:04:05", 0xA002: 20, 0xA003: 12}
    camera[0x8825] = {1: "N", 2: (48.0, 51.0, 30.0)}
    shot = _encode(rgb, "jpg", exif=camera.tobytes())
    expect = b.restored("camera_exif.jpg", shot, _as_float(np.asarray(PILImage.open(io.BytesIO(shot)))), "uint8")
    expect.tags = {0x010F: "fuzz-camera", 0x0110: "model 1"}

    # Outputs that cannot be written as asked.
    b.restored("clash.png", _encode(rgb, "png"), up, "uint8")
    b.refused("clash.gif", _encode(rgb.quantize(256), "gif"), "is also the output of", explicit=True)
    b.path("exists.png").write_bytes(_encode(rgb, "png"))
    b.expects.append(Expect("corpus/exists.png", "skipped", "exists", output="exists.png"))  # reported by output

    # Property cases: random sizes, modes, formats and orientations.
    choices = [("png", m) for m in ("L", "LA", "RGB", "RGBA", "P", "I;16")] + \
              [("jpg", m) for m in ("L", "RGB")] + [("webp", m) for m in ("RGB", "RGBA")] + \
              [("tiff", m) for m in ("L", "LA", "RGB", "RGBA", "I;16", "F", "CMYK")] + [("bmp", m) for m in ("L", "RGB")]
    suffix_of = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tif", "bmp": ".bmp"}
    for index in range(random_cases):
        fmt, mode = choices[int(rng.integers(len(choices)))]
        height, width = (int(v) for v in rng.integers(4, 41, size=2))
        orientation = 1 if fmt == "bmp" else int(rng.integers(1, 9))
        tolerance = 0.15 if mode == "P" else 0.1
        _pil_case(b, f"random/r{index:03d}_{mode.replace(';', '')}_o{orientation}{suffix_of[fmt]}", fmt, mode,
                  height, width, orientation, tolerance=tolerance)

    # Mutants: valid files with a few bytes flipped. Anything but a crash, a hang or a temp file.
    sources = [e for e in b.expects if e.outcome == "restored" and "random/" in e.name]
    for index in range(mutants if sources else 0):
        source = b.root / sources[int(rng.integers(len(sources)))].name
        data = bytearray(source.read_bytes())
        for position in rng.integers(0, len(data), size=int(rng.integers(1, 6))):
            data[int(position)] = int(rng.integers(0, 256))
        path = b.path(f"mutants/m{index:03d}{source.suffix}")
        path.write_bytes(bytes(data))
        b.expects.append(Expect(b.rel(path), "either", output=str(path.relative_to(b.folder))))

    dead_pid = _dead_pid()
    return Corpus(b.root, b.folder, b.explicit, b.expects, ["exists.png"], f".restorekit-{dead_pid}-abcd1234.part")


def _dead_pid() -> int:
    """The pid of a process that has exited (so a temp file named after it is abandoned)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --- checking a run --------------------------------------------------------------------------

PIL_FORMAT = {".png": "PNG", ".jpg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".bmp": "BMP"}
UNEXPECTED_EXCEPTION = re.compile(r"^failed: .*: [A-Z]\w*(Error|Exception|Warning)\b")
OUTCOME_LINES = ("failed: ", "skipped: ", "warning: ")


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: regular files by content hash, links by target, others by kind."""
    state: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                state[str(path)] = "link:" + os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                state[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                state[str(path)] = f"mode:{stat.S_IFMT(info.st_mode)}"
    return state


def read_back(path: Path) -> tuple[np.ndarray, np.ndarray | None, str, str, int]:
    """(pixels H x W x C float in [0, 1], alpha or None, dtype, Pillow's format name, EXIF orientation)
    of an output, read with independent readers: tifffile for TIFF (the layout tags must describe
    the data), OpenCV for 16-bit colour PNG (Pillow reads it as 8 bits), Pillow for the rest."""
    with PILImage.open(path) as im:
        im.load()
        pil_format, mode, orientation = im.format or "", im.mode, int(im.getexif().get(0x0112, 1))
        if path.suffix == ".tif":
            import tifffile

            with tifffile.TiffFile(path) as tif:
                array = tif.asarray()
                if tif.pages[0].photometric.name not in ("MINISBLACK", "RGB"):  # type: ignore[union-attr]
                    raise ValueError(f"written as {tif.pages[0].photometric.name}")  # type: ignore[union-attr]
            samples = 1 if array.ndim == 2 else array.shape[2]
        elif path.suffix == ".png" and mode in ("RGB", "RGBA") and path.read_bytes()[24] == 16:  # IHDR bit depth
            import cv2

            array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            array = array[..., [2, 1, 0, 3]] if array.shape[2] == 4 else array[..., ::-1]
            samples = array.shape[2]
        else:
            array = np.asarray(im)
            samples = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "I;16": 1, "F": 1}[mode]
    array = array if array.ndim == 3 else array[..., None]
    dtype = str(array.dtype)
    values = array.astype(np.float64) / {"uint8": 255.0, "uint16": 65535.0}.get(dtype, 1.0)
    if samples in (2, 4):
        return values[..., :-1], values[..., -1], dtype, pil_format, orientation
    return values, None, dtype, pil_format, orientation


def _block_mean(values: np.ndarray) -> np.ndarray:
    height, width = values.shape[0] // SCALE, values.shape[1] // SCALE
    return values[: height * SCALE, : width * SCALE].reshape(height, SCALE, width, SCALE, -1).mean(axis=(1, 3))


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def check_output(expect: Expect, path: Path, channels: int, depth: str, keeps_alpha: bool) -> str | None:
    """What is wrong with the output ``path`` of a restored ``expect`` (None: nothing)."""
    if not path.is_file():
        return f"no output {path.name}"
    try:
        pixels, alpha, dtype, pil_format, orientation = read_back(path)
    except Exception as exc:  # noqa: BLE001 - an unreadable output is the finding
        return f"output unreadable ({type(exc).__name__}: {exc})"
    assert expect.upright is not None
    height, width = expect.upright.shape[:2]
    if pil_format != PIL_FORMAT.get(path.suffix.lower()):
        return f"{pil_format} data under a {path.suffix} name"
    if orientation != 1:
        return f"output EXIF orientation {orientation}: viewers would turn it again"
    if pixels.shape[:2] != (height * SCALE, width * SCALE):
        return f"output is {pixels.shape[1]}x{pixels.shape[0]}, expected {width * SCALE}x{height * SCALE}"
    if (pixels.shape[2], dtype) != (channels, depth):
        return f"output has {pixels.shape[2]} channels of {dtype}, expected {channels} of {depth}"
    if (alpha is not None) != keeps_alpha:
        return f"output alpha {'kept' if alpha is not None else 'lost'}, expected {'kept' if keeps_alpha else 'none'}"
    down = _block_mean(pixels)
    upright = np.broadcast_to(expect.upright, down.shape) if expect.upright.shape[2] == 1 else expect.upright
    error = _mae(down, upright)
    if error >= expect.tolerance:
        return f"output differs from the upright input by {error:.3f} (allowed {expect.tolerance})"
    if expect.checked_orientation:
        for turned in dihedral(upright)[1:]:
            if turned.shape == upright.shape and _mae(turned, upright) > 0.05 and _mae(down, turned) <= error:
                return "output is turned or flipped"
    if keeps_alpha and alpha is not None and expect.alpha is not None:
        alpha_error = _mae(_block_mean(alpha[..., None])[..., 0], expect.alpha)
        if alpha_error >= expect.tolerance:
            return f"output alpha differs by {alpha_error:.3f}"
    if expect.tags:
        with PILImage.open(path) as im:
            exif = im.getexif()  # a TIFF's own first directory, or the EXIF block of other formats
            for tag, value in expect.tags.items():
                if exif.get(tag) != value:
                    return f"tag {tag} is {exif.get(tag)!r}, expected {value!r}"
    return None


@dataclass
class Audit:
    """How a run over the corpus went: outcome counts and every departure from the expectations."""

    counts: Counter[str]
    problems: list[str]


def audit(corpus: Corpus, outdir: Path, code: int, out: str, err: str, before: dict[str, str]) -> Audit:
    """Compare a ``restorekit restore`` run (exit code, stdout, stderr) with the corpus' expectations."""
    problems: list[str] = []
    counts: Counter[str] = Counter()
    lines = [line for line in err.splitlines() if line.startswith(OUTCOME_LINES)]
    claimed: set[str] = set()
    expected_outputs = set(corpus.pre_existing_outputs)
    for expect in corpus.expects:
        path = str(corpus.root / expect.name)
        if expect.outcome == "skipped" and expect.reason == "exists":
            path = str(outdir / (expect.output or ""))
        failed = [line for line in lines if line.startswith(f"failed: {path}: ")]
        skipped = [line for line in lines if line.startswith((f"skipped: {path}: ", f"skipped: {path} "))]
        warned = [line for line in lines if line.startswith(f"warning: {path}: ")]
        claimed.update(failed + skipped + warned)
        wrong: str | None = None
        if expect.outcome == "restored":
            assert expect.output and expect.channels and expect.depth and expect.keeps_alpha is not None
            expected_outputs.add(expect.output)
            if failed or skipped:
                wrong = f"not restored: {(failed + skipped)[0]}"
            else:
                wrong = check_output(expect, outdir / expect.output, expect.channels, expect.depth, expect.keeps_alpha)
            if wrong is None and expect.warning and not any(expect.warning in line for line in warned):
                wrong = f"no warning naming the file about {expect.warning!r}"
            counts["restored" if wrong is None else "wrong"] += 1
        elif expect.outcome in ("refused", "skipped"):
            said = failed if expect.outcome == "refused" else skipped
            if len(said) != 1 or expect.reason not in said[0]:
                wrong = f"expected one {expect.outcome} line with {expect.reason!r}, got {said or 'none'}"
            counts[expect.outcome if wrong is None else "wrong"] += 1
        else:  # a mutant: refused, or restored into a readable image
            output = outdir / (expect.output or "")
            if len(failed) + output.is_file() != 1:
                wrong = f"mutant: {len(failed)} failure lines and output {output.is_file()}"
            elif output.is_file():
                expected_outputs.add(expect.output or "")
                try:
                    with PILImage.open(output) as im:
                        im.load()
                except Exception as exc:  # noqa: BLE001 - an unreadable output is the finding
                    wrong = f"mutant output unreadable ({exc})"
            counts[("mutant restored" if output.is_file() else "mutant refused") if wrong is None else "wrong"] += 1
        if wrong is not None:
            problems.append(f"{expect.name}: {wrong}")
    problems += [f"line about no corpus file: {line}" for line in sorted(set(lines) - claimed)]
    problems += [f"unexpected exception: {line}" for line in lines if UNEXPECTED_EXCEPTION.match(line)]
    if "Traceback" in err:
        problems.append("a traceback was printed")
    written = {str(p.relative_to(outdir)) for p in outdir.rglob("*") if p.is_file() or p.is_symlink()}
    problems += [f"unexpected file in the output folder: {name}" for name in sorted(written - expected_outputs)]
    problems += [f"input changed: {name}" for name, digest in snapshot(corpus.root).items() if before.get(name) != digest]
    problems += [f"input gone: {name}" for name in before if not os.path.lexists(name)]
    restored = counts["restored"] + counts["mutant restored"]
    failed_total = sum(e.outcome == "refused" for e in corpus.expects) + counts["mutant refused"]
    skipped_total = sum(e.outcome == "skipped" for e in corpus.expects)
    if f"done {restored}, failed {failed_total}, skipped {skipped_total}" not in out:
        problems.append(f"summary does not say done {restored}, failed {failed_total}, skipped {skipped_total}")
    if code != (1 if failed_total else 0):
        problems.append(f"exit code {code}")
    return Audit(counts, problems)


def run_corpus(corpus: Corpus, outdir: Path, extra: list[str] | None = None) -> tuple[int, str, str]:
    """Run ``restorekit restore`` on the corpus in this process; returns (exit code, stdout, stderr)."""
    from contextlib import redirect_stderr, redirect_stdout

    from restorekit.cli import main as cli_main

    outdir.mkdir(parents=True, exist_ok=True)
    for name in corpus.pre_existing_outputs:
        (outdir / name).write_bytes(b"made before the run")
    (outdir / corpus.stale_temp).write_bytes(b"left by a killed run")
    out, err = io.StringIO(), io.StringIO()
    argv = ["restore", str(corpus.folder), *map(str, corpus.explicit), "-o", str(outdir), *RUN_OPTIONS, *(extra or [])]
    with redirect_stdout(out), redirect_stderr(err):
        code = cli_main(argv)
    return code, out.getvalue(), err.getvalue()


RUN_OPTIONS = ["--recursive", "--task", "sr", "--model", "restorekit-sr-x3", "--device", "cpu", "--quiet",
               "--max-pixels", str(MAX_PIXELS)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="folder to create the corpus in")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random-cases", type=int, default=40)
    parser.add_argument("--mutants", type=int, default=12)
    parser.add_argument("--run", action="store_true", help="also restore it (into ROOT-out) and audit the outcomes")
    args = parser.parse_args()
    corpus = make_corpus(args.root, args.seed, args.random_cases, args.mutants)
    print(f"{len(corpus.expects)} files in {corpus.root}: {dict(corpus.counts())}")
    if args.run:
        before, outdir = snapshot(corpus.root), Path(f"{corpus.root}-out")
        code, out, err = run_corpus(corpus, outdir)
        result = audit(corpus, outdir, code, out, err, before)
        print(f"exit code {code}; outcomes: {dict(result.counts)}; problems: {len(result.problems)}")
        for problem in result.problems:
            print(" ", problem)


if __name__ == "__main__":
    main()
