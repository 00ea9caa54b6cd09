"""Reading and writing images without losing what the user cares about.

- Pixels come back as ``H x W x C`` numpy arrays (C = 1 grey or 3 RGB) in the file's own depth:
  ``uint8``, ``uint16`` (16-bit PNG/TIFF stay 16-bit end to end) or ``float32`` (float TIFF).
  No full-size float copy is made here; conversion to float happens per tile during inference.
- Alpha is split off into its own ``H x W`` plane and written back where the format allows.
- Palette, CMYK, YCbCr, LAB, 1-bit and grey+alpha images are converted to grey/RGB(+alpha).
- The EXIF orientation is applied to the pixels (and reset to 1 in the EXIF we write back).
- The ICC profile and the descriptive EXIF tags are carried to the output where the format stores
  them (PNG, JPEG, WebP, TIFF). Outputs are built from pixels plus that metadata only: a TIFF's
  layout tags (size, strips, photometric, colour map...) are never copied. A CMYK file's ICC
  profile describes CMYK, so it is dropped.
- Refused with a one-line ``ImageError`` naming the file: anything that is not a regular file
  (FIFO, device, broken or looping link), animations and multi-page files, truncated data
  (including a PNG whose compressed stream ends early, which Pillow pads with black), and float
  pixels that are NaN or infinite. Nothing non-finite is ever written.
- Writes go to a short-named temp file in the destination folder, then ``os.replace`` gives it
  its final name: a crash or a full disk never leaves a half-written file under the final name,
  and ``clean_stale_temp_files`` removes what a killed process left behind.
- A pixel limit (``max_pixels``) is checked from the header, before any pixel is decoded
  (decompression-bomb guard).

Pillow cannot hold 16-bit colour (it silently truncates 48-bit PNG/TIFF to 8 bits), so 16-bit RGB(A)
files are decoded with OpenCV when it is installed (``pip install "restorekit[image16]"``), and
16-bit RGB(A) PNGs are written by a small PNG encoder below (keeps iCCP/eXIf); 16-bit colour TIFFs
are written with OpenCV (their ICC profile and EXIF are not kept).
"""

from __future__ import annotations

import errno
import io
import os
import stat
import struct
import tempfile
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from .atomic import TEMP_PREFIX, TEMP_SUFFIX, write_bytes_atomic
from .errors import ImageError, RestorekitError

if TYPE_CHECKING:
    import torch

DEFAULT_MAX_PIXELS = 400_000_000  # 400 MP: well above any camera, far below a decompression bomb

# output format name -> (Pillow format, file suffix)
FORMATS: dict[str, tuple[str, str]] = {
    "png": ("PNG", ".png"),
    "jpg": ("JPEG", ".jpg"),
    "webp": ("WEBP", ".webp"),
    "tiff": ("TIFF", ".tif"),
    "bmp": ("BMP", ".bmp"),
}
_PIL_TO_FORMAT = {pil: name for name, (pil, _) in FORMATS.items()} | {"MPO": "jpg"}  # MPO: a camera's JPEG
# file suffix -> the output format it names (the data written always matches the name)
SUFFIX_FORMATS: dict[str, str] = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".webp": "webp", ".tif": "tiff",
                                  ".tiff": "tiff", ".bmp": "bmp"}
# The one list of image suffixes: what a folder input picks up in restore, eval and training data.
# Any file Pillow reads works when named explicitly.
READABLE_SUFFIXES = (*SUFFIX_FORMATS, ".ppm", ".pgm")
# Our temp files: short (a long output name still fits NAME_MAX) and tagged with the writer's pid,
# so a later run can tell an abandoned one (its writer is gone) from one being written right now.
STALE_TEMP_SECONDS = 24 * 3600  # past this age a temp file is abandoned whatever its pid says (other hosts)
_ALPHA_FORMATS = {"png", "webp", "tiff"}
_EXIF_FORMATS = {"png", "jpg", "webp", "tiff"}
_ICC_FORMATS = {"png", "jpg", "webp", "tiff"}
_SIXTEEN_BIT_FORMATS = {"png", "tiff"}


@dataclass(frozen=True)
class Image:
    """Decoded pixels plus the metadata we write back.

    ``pixels``: ``H x W x C`` with C = 1 (grey) or 3 (RGB); dtype uint8, uint16 or float32.
    ``alpha``: ``H x W`` of the same dtype, or None. ``format``: the source format name
    (a key of ``FORMATS``) or None for images that did not come from a file. ``notes``: warnings
    from reading the file, for the caller to show; they are not written anywhere.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    format: str | None = None
    notes: tuple[str, ...] = ()  # what the reader warned about, each naming the file (see read_image)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])

    @property
    def max_value(self) -> float:
        """The value that means full intensity: 255, 65535, or 1.0 for float images."""
        return max_value(self.pixels.dtype)


def max_value(dtype: np.dtype) -> float:
    """Full intensity for a pixel dtype (integers use their full range, floats use 1.0)."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if dtype.kind == "f":
        return 1.0
    raise ImageError(f"unsupported pixel type {dtype}; use uint8, uint16 or float")


@contextmanager
def _pixel_limit_off() -> Iterator[None]:
    """Pillow's own bomb check is a process-wide global with a fixed limit; we check ourselves."""
    saved = PILImage.MAX_IMAGE_PIXELS
    PILImage.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            yield
    finally:
        PILImage.MAX_IMAGE_PIXELS = saved


def _rawmode(im: PILImage.Image) -> str:
    tiles = getattr(im, "tile", None)  # decoder descriptors of a not-yet-loaded ImageFile
    if not tiles:
        return ""
    args = tiles[0].args
    return args if isinstance(args, str) else str(args[0]) if args else ""


def _orientation(exif: PILImage.Exif) -> int:
    value = exif.get(0x0112, 1)
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an ``H x W (x C)`` array the way EXIF orientation 1-8 says (same result as Pillow's)."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: a.swapaxes(0, 1)[:, ::-1],
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda a: a.swapaxes(0, 1)[::-1],
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(array)) if op else array


# IFD0 tags that describe the picture, not how a file lays out its pixels. Everything else in a
# TIFF's first directory (width, strips, bits per sample, photometric, colour map, sub-IFDs,
# GeoTIFF, Photoshop layers...) describes the input file only: copied into an output it makes
# an unreadable or wrongly-sized file. XMP, IPTC and Photoshop blocks are not carried either.
_KEPT_IFD0_TAGS = frozenset({
    0x010D, 0x010E, 0x010F, 0x0110,  # DocumentName, ImageDescription, Make, Model
    0x0112,  # Orientation (reset to 1: the pixels are turned upright)
    0x011A, 0x011B, 0x0128,  # XResolution, YResolution, ResolutionUnit
    0x0131, 0x0132, 0x013B, 0x013C,  # Software, DateTime, Artist, HostComputer
    0x8298,  # Copyright
    0x8769, 0x8825,  # the Exif and GPS sub-directories
    0x4746, 0x4749,  # Rating, RatingPercent
    0x9C9B, 0x9C9C, 0x9C9D, 0x9C9E, 0x9C9F,  # Windows XPTitle, XPComment, XPAuthor, XPKeywords, XPSubject
})
_EXIF_SIZE_TAGS = (0xA002, 0xA003)  # PixelXDimension, PixelYDimension: the input's size, wrong after SR


def _kept_exif(exif: PILImage.Exif) -> bytes | None:
    """The EXIF we write back: descriptive tags only, orientation reset, no stored size.

    Built as a new block, so the caller's (possibly a user's Pillow image's) EXIF is not changed.
    """
    kept = PILImage.Exif()
    for tag in exif:
        if tag in _KEPT_IFD0_TAGS and tag not in (0x8769, 0x8825):
            kept[tag] = exif[tag]
    if 0x0112 in kept:
        kept[0x0112] = 1  # the pixels are already turned upright
    try:
        if sub := {tag: value for tag, value in exif.get_ifd(0x8769).items() if tag not in _EXIF_SIZE_TAGS}:
            if 0xA005 in sub:  # a pointer into the input file: written back as the directory it points to
                sub[0xA005] = exif.get_ifd(0xA005)
            kept[0x8769] = sub
        if gps := exif.get_ifd(0x8825):
            kept[0x8825] = dict(gps)
        return kept.tobytes() if len(kept) else None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for odd tag values; metadata is optional
        warnings.warn(f"EXIF dropped: it cannot be written back ({type(exc).__name__}: {exc})", stacklevel=2)
        return None


class ImageWarning(UserWarning):
    """Something odd in a file that did not stop it from being read (the message names the file)."""


def open_regular_file(path: str | Path) -> BinaryIO:
    """Open ``path`` for reading, refusing anything but a regular file with a one-line reason.

    Opened with ``O_NONBLOCK`` and checked with ``fstat`` on the open descriptor, so a FIFO never
    blocks the batch and nothing can swap the file between the check and the read.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        if path.is_symlink():
            raise ImageError(f"{path}: broken symbolic link (points to {os.readlink(path)})") from None
        raise ImageError(f"{path}: no such file") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageError(f"{path}: symbolic link loop") from None
        raise ImageError(f"{path}: cannot open ({exc.strerror or exc})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ImageError(f"{path}: not a regular file (a {_file_kind(mode)})")
    return os.fdopen(fd, "rb")


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
             (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))
    return next((name for test, name in kinds if test(mode)), "special file")


# warnings.catch_warnings swaps process-wide state: two threads inside it at once can leave
# warnings captured forever. Reads that capture Pillow's warnings therefore take turns.
_WARNING_CAPTURE = threading.Lock()
_PIL_DIR = os.path.dirname(PILImage.__file__)


def read_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image:
    """Decode an image file into an ``Image`` (see the module docstring for what is converted).

    Raises ``ImageError`` naming the file for unreadable, truncated, multi-frame, non-finite,
    unsupported or too-large files. What Pillow warns about while reading (corrupt EXIF and the
    like) is returned in ``Image.notes``, each note prefixed with the file's path, for the caller
    to report; nothing is printed here. Reads from several threads take turns (see above).
    """
    path = Path(path)
    with _WARNING_CAPTURE, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            image = _read(path, max_pixels)
        except ImageError as exc:
            message = str(exc)
            raise ImageError(message if message.startswith(f"{path}: ") else f"{path}: {message}") from None
    notes: list[str] = []
    for item in caught:
        if item.filename.startswith(_PIL_DIR) or item.filename == __file__:
            notes.append(f"{path}: {str(item.message).strip()}")
        else:  # another thread's warning, caught while this read held the capture: pass it on
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
    return replace(image, notes=tuple(dict.fromkeys(notes))) if notes else image


def _read(path: Path, max_pixels: int | None) -> Image:
    try:
        with open_regular_file(path) as file, _pixel_limit_off(), PILImage.open(file) as im:
            width, height = im.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageError(
                    f"{width}x{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,} "
                    "(raise it with --max-pixels if you trust this file)"
                )
            fmt = _PIL_TO_FORMAT.get(im.format or "", None)
            sixteen_bit_colour = im.mode in ("RGB", "RGBA") and "16" in _rawmode(im)  # before anything loads
            if getattr(im, "is_animated", False) and im.format != "MPO":
                # An MPO's first frame is the picture itself (the others are previews or a stereo pair).
                raise ImageError("has more than one frame (animated or multi-page); restorekit restores single "
                                 "images, so extract the frame or page you want first")
            icc = im.info.get("icc_profile") or None
            if im.mode == "CMYK":
                icc = None  # describes the CMYK data, not the RGB we produce
            if sixteen_bit_colour:
                if im.format == "PNG":  # refused here with a reason, before libpng prints its own line
                    _check_png_complete(file)
                # OpenCV's IMREAD_UNCHANGED ignores the EXIF orientation, so it is applied below.
                exif = im.getexif()
                file.seek(0)
                pixels, alpha = _read_16bit_colour(file.read())
            else:
                im.load()
                if im.format == "PNG":
                    _check_png_complete(file)
                # Read after load(): Pillow turns TIFFs upright itself and then drops their orientation tag.
                exif = im.getexif()
                pixels, alpha = _pil_to_arrays(im)
            orientation = _orientation(exif)
            exif_out = _kept_exif(exif)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image, or a format Pillow cannot read") from None
    except (OSError, SyntaxError, ValueError, struct.error, zlib.error, EOFError) as exc:
        raise ImageError(f"cannot decode ({exc})") from None
    if pixels.dtype.kind == "f" and (bad := int(np.count_nonzero(~np.isfinite(pixels)))):
        raise ImageError(f"{bad:,} of {pixels.size:,} values are NaN or infinite; only finite pixels can be restored")
    pixels = apply_orientation(pixels, orientation)
    alpha = apply_orientation(alpha, orientation) if alpha is not None else None
    return Image(pixels, alpha, icc, exif_out, fmt)


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _check_png_complete(file: BinaryIO) -> None:
    """Refuse a PNG whose image data stops early or fails its checksum.

    Pillow fills the missing rows with black without a word when the zlib stream ends before the
    last row, so the decompressed size is counted here against the size the header promises.
    (16-bit colour PNGs are decoded by OpenCV, whose libpng would print its own unnamed line.)
    """
    file.seek(8)
    header = file.read(25)
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header[8:21])
    bits = _PNG_CHANNELS.get(colour, 1) * depth
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    expected = 0
    for x0, y0, dx, dy in passes:
        cols, rows = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if cols > 0 and rows > 0:
            expected += rows * (1 + (cols * bits + 7) // 8)
    inflater, produced = zlib.decompressobj(), 0
    file.seek(8)
    while produced < expected:
        head = file.read(8)
        if len(head) < 8:
            break
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IEND":
            break
        if kind != b"IDAT":
            file.seek(length + 4, io.SEEK_CUR)
            continue
        data = file.read(length)
        (crc,) = struct.unpack(">I", file.read(4).rjust(4, b"\0"))
        if zlib.crc32(b"IDAT" + data) & 0xFFFFFFFF != crc:
            raise ImageError("damaged: an image data chunk fails its checksum")
        while data and produced < expected:
            produced += len(inflater.decompress(data, 1 << 24))  # bounded: a small chunk may inflate 1000x
            data = inflater.unconsumed_tail
        if inflater.eof:
            break
    if produced < expected:
        raise ImageError(f"truncated: the image data ends after {produced:,} of {expected:,} bytes")


def _pil_to_arrays(im: PILImage.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Pixels (H x W x C) and alpha (H x W or None) from a loaded Pillow image of any mode."""
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa"):
        im = im.convert("RGB")
    elif mode == "1":
        im = im.convert("L")
    elif mode == "La":
        im = im.convert("LA")
    mode = im.mode
    if mode in ("L", "RGB"):
        array = np.asarray(im)
        return (array[..., None] if array.ndim == 2 else array).copy(), None
    if mode in ("LA", "RGBA"):
        array = np.asarray(im)
        return array[..., :-1].copy(), array[..., -1].copy()
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)[..., None], None
    if mode == "I":
        array = np.asarray(im)
        if array.min() >= 0 and array.max() <= 65535:
            return array.astype(np.uint16)[..., None], None
        return (array.astype(np.float32) / 65535.0)[..., None], None
    if mode == "F":
        return np.asarray(im, dtype=np.float32)[..., None].copy(), None
    raise ImageError(f"unsupported image mode {mode!r}")


def _read_16bit_colour(data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        import cv2
    except ImportError:
        raise ImageError(
            "16-bit colour images need OpenCV to decode without losing bits (pip install 'restorekit[image16]')"
        ) from None
    array = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.dtype != np.uint16 or array.ndim != 3:
        raise ImageError("cannot decode as a 16-bit colour image (damaged or truncated)")
    if array.shape[2] == 4:
        return np.ascontiguousarray(array[..., 2::-1]), np.ascontiguousarray(array[..., 3])
    return np.ascontiguousarray(array[..., ::-1]), None


# The one luma rule: ITU-R BT.601 weights on the full range. Grey training data, a grey model's input
# in restore and eval, and the Y/Cb/Cr split in inference/pipeline.py all use it. (MATLAB's Y, on which
# the SR metrics compare, is the same luma on the studio range: ``restorekit.metrics.studio_range``.)
BT601_LUMA = (0.299, 0.587, 0.114)
# The same weights in 1/65536 units, which is Pillow's own ``convert("L")`` fixed point (19595, 38470,
# 7471), so the luma of an 8-bit image is bit-identical to Pillow's; 16-bit pixels get it at 16 bits.
_LUMA_FIXED = tuple(round(w * 65536) for w in BT601_LUMA)


def luma(pixels: np.ndarray) -> np.ndarray:
    """``H x W x 1`` BT.601 luma (:data:`BT601_LUMA`) of ``H x W x 3`` pixels, in the same dtype (full range).

    Integers: ``(19595 R + 38470 G + 7471 B + 32768) >> 16``, exactly Pillow's ``L`` for uint8.
    Floats: ``0.299 R + 0.587 G + 0.114 B``, unrounded.
    """
    if pixels.shape[-1] != 3:
        raise ImageError(f"luma needs 3 channels, got {pixels.shape[-1]}")
    if pixels.dtype.kind == "f":
        return (pixels.astype(np.float32) @ np.asarray(BT601_LUMA, dtype=np.float32))[..., None]
    wide = pixels.astype(np.int64)
    y = (wide[..., 0] * _LUMA_FIXED[0] + wide[..., 1] * _LUMA_FIXED[1] + wide[..., 2] * _LUMA_FIXED[2]
         + 0x8000) >> 16
    return y.astype(pixels.dtype)[..., None]


def to_channels(pixels: np.ndarray, channels: int | None) -> np.ndarray:
    """The one grey/RGB rule: ``None`` keeps the file's (1 or 3), 3 repeats grey, 1 takes the ``luma``."""
    have = pixels.shape[-1]
    if channels is None or channels == have:
        return pixels
    if channels == 3 and have == 1:
        return np.repeat(pixels, 3, axis=-1)
    if channels == 1 and have == 3:
        return luma(pixels)
    raise ImageError(f"cannot make {channels} channels from {have}")


def to_float(pixels: np.ndarray) -> np.ndarray:
    """float32 in [0, 1] from any pixel dtype: ``value / 255`` or ``value / 65535`` (float32 division,
    so 16-bit keeps its 65536 levels), float pixels clipped to [0, 1]."""
    if pixels.dtype.kind == "f":
        return np.clip(pixels.astype(np.float32), 0.0, 1.0)
    return pixels.astype(np.float32) / np.float32(max_value(pixels.dtype))


def read_tensor(path: str | Path, channels: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """``read_image`` as a float32 ``C x H x W`` tensor in [0, 1], for evaluation and training data.

    Same refusals as ``read_image`` (one-line ``ImageError`` naming the file), EXIF orientation
    applied, 16-bit precision kept, alpha dropped; ``channels`` as in ``to_channels``. What the
    reader noted about the file is passed on as an ``ImageWarning``.
    """
    import torch

    image = read_image(path, max_pixels)
    for note in image.notes:
        warnings.warn(note, ImageWarning, stacklevel=2)
    array = to_float(to_channels(image.pixels, channels))
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def from_pil(im: PILImage.Image) -> Image:
    """An ``Image`` from a Pillow image (orientation applied, ICC and EXIF kept)."""
    exif = im.getexif()
    orientation = _orientation(exif)
    icc = None if im.mode == "CMYK" else im.info.get("icc_profile") or None
    pixels, alpha = _pil_to_arrays(im)
    pixels = apply_orientation(pixels, orientation)
    alpha = apply_orientation(alpha, orientation) if alpha is not None else None
    return Image(pixels, alpha, icc, _kept_exif(exif), _PIL_TO_FORMAT.get(im.format or ""))


def to_pil(image: Image) -> PILImage.Image:
    """A Pillow image (8-bit RGB/RGBA/L/LA, 16-bit grey ``I;16``, float grey ``F``).

    16-bit colour cannot be held by Pillow; it is reduced to 8 bits here (``write_image`` keeps 16 bits).
    """
    pixels, alpha = image.pixels, image.alpha
    if pixels.dtype.kind == "f":
        if image.channels == 1 and alpha is None:
            im = PILImage.fromarray(np.ascontiguousarray(pixels[..., 0], dtype=np.float32))  # mode F
            return _with_metadata(im, image)
        pixels, alpha = to_uint8(pixels), (to_uint8(alpha) if alpha is not None else None)
    if pixels.dtype == np.uint16:
        if image.channels == 1 and alpha is None:
            im = PILImage.fromarray(np.ascontiguousarray(pixels[..., 0]))  # mode I;16
            return _with_metadata(im, image)
        pixels, alpha = to_uint8(pixels), (to_uint8(alpha) if alpha is not None else None)
    planes = pixels if alpha is None else np.concatenate([pixels, alpha[..., None]], axis=2)
    array = planes[..., 0] if planes.shape[2] == 1 else planes  # uint8: L, LA, RGB or RGBA by shape
    return _with_metadata(PILImage.fromarray(np.ascontiguousarray(array)), image)


def _with_metadata(im: PILImage.Image, image: Image) -> PILImage.Image:
    if image.icc_profile:
        im.info["icc_profile"] = image.icc_profile
    if image.exif:
        im.info["exif"] = image.exif
    return im


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Any supported pixel dtype -> uint8 with rounding (16-bit: 65535 -> 255)."""
    if array.dtype == np.uint8:
        return array
    scaled = array.astype(np.float32) * (255.0 / max_value(array.dtype))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def format_of_suffix(path: str | Path) -> str | None:
    """The output format a file name's extension names (``.jpeg`` -> ``jpg``), or None."""
    return SUFFIX_FORMATS.get(Path(path).suffix.lower())


def output_suffix(source: str | Path, requested: str) -> str:
    """The extension of the output for ``source`` under ``--format requested``.

    ``same`` keeps the input's extension when restorekit writes that format, and is ``.png``
    otherwise (GIF, PPM, no extension...), so an output's name always says what its data is.
    """
    if requested == "same":
        suffix = Path(source).suffix
        return suffix if suffix.lower() in SUFFIX_FORMATS else FORMATS["png"][1]
    if requested not in FORMATS:
        raise ImageError(f"unknown output format {requested!r}; choose one of same, {', '.join(FORMATS)}")
    return FORMATS[requested][1]


def output_format(source: Image, requested: str, path: Path | None = None) -> str:
    """Resolve ``--format``: ``same`` keeps the input's format (PNG when unknown)."""
    if requested == "same":
        if source.format is not None:
            return source.format
        if path is not None and (named := format_of_suffix(path)) is not None:
            return named
        return "png"
    if requested not in FORMATS:
        raise ImageError(f"unknown output format {requested!r}; choose one of same, {', '.join(FORMATS)}")
    return requested


def encode_image(image: Image, fmt: str, quality: int = 95) -> bytes:
    """The bytes of ``image`` in format ``fmt`` (a key of ``FORMATS``), keeping what the format can hold.

    16-bit survives in PNG and TIFF; JPEG/WebP/BMP get 8 bits; alpha is dropped by JPEG and BMP;
    float images become 16-bit PNG, or stay float in grey TIFF.
    """
    if fmt not in FORMATS:
        raise ImageError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    _check_finite(image)
    if fmt not in _ALPHA_FORMATS and image.alpha is not None:
        image = replace(image, alpha=None)
    if fmt not in _ICC_FORMATS:
        image = replace(image, icc_profile=None)
    if fmt not in _EXIF_FORMATS:
        image = replace(image, exif=None)
    pixels = image.pixels
    if pixels.dtype.kind == "f" and not (fmt == "tiff" and image.channels == 1 and image.alpha is None):
        image = replace(image, pixels=_float_to_uint16(pixels),
                        alpha=_float_to_uint16(image.alpha) if image.alpha is not None else None)
    if image.pixels.dtype == np.uint16 and fmt not in _SIXTEEN_BIT_FORMATS:
        image = replace(image, pixels=to_uint8(image.pixels),
                        alpha=to_uint8(image.alpha) if image.alpha is not None else None)
    if image.pixels.dtype == np.uint16 and (image.channels == 3 or image.alpha is not None):
        return _encode_16bit_colour(image, fmt)
    im = to_pil(image)
    options: dict[str, object] = {}
    if image.icc_profile:
        options["icc_profile"] = image.icc_profile
    if image.exif:
        options["exif"] = image.exif
    if fmt in ("jpg", "webp"):
        options["quality"] = quality
    if fmt == "tiff":
        # Compression goes through libtiff, which cannot write EXIF sub-directories (camera data,
        # GPS): with those the file is written uncompressed by Pillow's own writer instead.
        options["compression"] = "raw" if _has_exif_subdirectories(image.exif) else "tiff_adobe_deflate"
    buffer = io.BytesIO()
    im.save(buffer, format=FORMATS[fmt][0], **options)
    return buffer.getvalue()


def _has_exif_subdirectories(exif: bytes | None) -> bool:
    if not exif:
        return False
    parsed = PILImage.Exif()
    parsed.load(exif)
    return 0x8769 in parsed or 0x8825 in parsed


def _check_finite(image: Image) -> None:
    """NaN would become black (or stay NaN in a float TIFF) without a word: refuse to write it."""
    for plane in (image.pixels, image.alpha):
        if plane is not None and plane.dtype.kind == "f":
            bad = int(np.count_nonzero(~np.isfinite(plane)))
            if bad:
                raise ImageError(f"{bad:,} of {plane.size:,} values to write are NaN or infinite; nothing was written")


def _float_to_uint16(array: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(array.astype(np.float32) * 65535.0), 0, 65535).astype(np.uint16)


def _encode_16bit_colour(image: Image, fmt: str) -> bytes:
    planes = image.pixels
    if image.channels == 1:
        planes = np.repeat(planes, 3, axis=2)  # grey+alpha at 16 bits: PNG has it, but keep one code path
    if image.alpha is not None:
        planes = np.concatenate([planes, image.alpha[..., None]], axis=2)
    if fmt == "png":
        return encode_png16(planes, image.icc_profile, image.exif)
    try:
        import cv2
    except ImportError:
        raise ImageError("writing 16-bit colour TIFF needs OpenCV (pip install 'restorekit[image16]'); use png") from None
    bgr = planes[..., [2, 1, 0, 3]] if planes.shape[2] == 4 else planes[..., ::-1]
    # Deflate, as Pillow's TIFFs: OpenCV's default LZW needs an extra codec in some readers (tifffile).
    ok, data = cv2.imencode(".tif", np.ascontiguousarray(bgr), [cv2.IMWRITE_TIFF_COMPRESSION, 8])
    if not ok:
        raise ImageError("OpenCV failed to encode a 16-bit TIFF")
    return data.tobytes()


def encode_png16(planes: np.ndarray, icc_profile: bytes | None = None, exif: bytes | None = None) -> bytes:
    """A 16-bit RGB or RGBA PNG (no row filters, zlib level 6) with optional iCCP and eXIf chunks."""
    height, width, channels = planes.shape
    colour_type = {3: 2, 4: 6}[channels]

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    rows = np.empty((height, 1 + width * channels * 2), dtype=np.uint8)
    rows[:, 0] = 0  # filter type None
    rows[:, 1:] = planes.astype(">u2").reshape(height, -1).view(np.uint8)
    parts = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0))]
    if icc_profile:
        parts.append(chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc_profile)))
    if exif:
        parts.append(chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    parts.append(chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)))
    parts.append(chunk(b"IEND", b""))
    return b"".join(parts)


def ensure_writable_folder(folder: str | Path) -> Path:
    """Create ``folder`` (and its parents) and check that a file can be written in it, by creating
    and deleting one of our temp files. Raises ``RestorekitError`` with the reason otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=TEMP_SUFFIX)
        os.close(handle)
        os.unlink(probe)
    except FileExistsError:
        raise RestorekitError(f"{folder}: cannot be the output folder: a file of that name exists") from None
    except OSError as exc:
        raise RestorekitError(f"{folder}: cannot write in the output folder ({exc.strerror or exc})") from None
    return folder


def _writer_gone(name: str) -> bool:
    """True when the pid in one of our temp names is not a running process on this machine."""
    pid_text = name[len(TEMP_PREFIX):].split("-", 1)[0]
    if not pid_text.isdigit():
        return True
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: alive, another user's
        return False
    return False


def clean_stale_temp_files(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Delete the temp files ``write_bytes_atomic`` left in ``folder`` when its process was killed.

    Only our own names are touched (``.restorekit-<pid>-*.part``), and only when that process is
    gone or the file is older than a day (a writer on another machine sharing the folder).
    Returns what was removed. A missing or unreadable folder is not an error.
    """
    folder = Path(folder)
    removed: list[Path] = []
    pattern = f"{TEMP_PREFIX}*{TEMP_SUFFIX}"
    try:
        candidates = list(folder.rglob(pattern) if recursive else folder.glob(pattern))
    except OSError:
        return removed
    now = time.time()
    for path in candidates:
        try:
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode):
                continue
            if _writer_gone(path.name) or now - info.st_mtime > STALE_TEMP_SECONDS:
                path.unlink()
                removed.append(path)
        except OSError:
            continue  # vanished meanwhile, or not ours to delete
    return removed


def write_image(image: Image, destination: str | Path, fmt: str | None = None, quality: int = 95) -> Path:
    """Encode and write ``image`` atomically. ``fmt`` defaults to the destination's suffix."""
    destination = Path(destination)
    if fmt is None:
        fmt = format_of_suffix(destination) or "png"
    try:
        data = encode_image(image, fmt, quality)
        return write_bytes_atomic(data, destination)
    except ImageError as exc:
        raise ImageError(f"{destination}: {exc}") from None
    except OSError as exc:
        raise ImageError(f"{destination}: cannot write ({exc})") from None
