"""Reading and writing images without losing what the user cares about.

- Pixels come back as ``H x W x C`` numpy arrays (C = 1 grey or 3 RGB) in the file's own depth:
  ``uint8``, ``uint16`` (16-bit PNG/TIFF stay 16-bit end to end) or ``float32`` (float TIFF).
  No full-size float copy is made here; conversion to float happens per tile during inference.
- Alpha is split off into its own ``H x W`` plane and written back where the format allows.
- Palette, CMYK, YCbCr, LAB, 1-bit and grey+alpha images are converted to grey/RGB(+alpha).
- The EXIF orientation is applied to the pixels (and reset to 1 in the EXIF we write back).
- The ICC profile and EXIF block are carried to the output where the format stores them
  (PNG, JPEG, WebP, TIFF). A CMYK file's ICC profile describes CMYK, so it is dropped.
- Writes go to a temporary file in the destination folder, then ``os.replace`` gives it its final
  name: a crash or a full disk never leaves a half-written file under the final name.
- A pixel limit (``max_pixels``) is checked from the header, before any pixel is decoded
  (decompression-bomb guard).

Pillow cannot hold 16-bit colour (it silently truncates 48-bit PNG/TIFF to 8 bits), so 16-bit RGB(A)
files are decoded with OpenCV when it is installed (``pip install "restorekit[image16]"``), and
16-bit RGB(A) PNGs are written by a small PNG encoder below (keeps iCCP/eXIf); 16-bit colour TIFFs
are written with OpenCV (their ICC profile and EXIF are not kept).
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from .errors import ImageError

DEFAULT_MAX_PIXELS = 400_000_000  # 400 MP: well above any camera, far below a decompression bomb

# output format name -> (Pillow format, file suffix)
FORMATS: dict[str, tuple[str, str]] = {
    "png": ("PNG", ".png"),
    "jpg": ("JPEG", ".jpg"),
    "webp": ("WEBP", ".webp"),
    "tiff": ("TIFF", ".tif"),
    "bmp": ("BMP", ".bmp"),
}
_PIL_TO_FORMAT = {pil: name for name, (pil, _) in FORMATS.items()}
READABLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
_ALPHA_FORMATS = {"png", "webp", "tiff"}
_EXIF_FORMATS = {"png", "jpg", "webp", "tiff"}
_ICC_FORMATS = {"png", "jpg", "webp", "tiff"}
_SIXTEEN_BIT_FORMATS = {"png", "tiff"}


@dataclass(frozen=True)
class Image:
    """Decoded pixels plus the metadata we write back.

    ``pixels``: ``H x W x C`` with C = 1 (grey) or 3 (RGB); dtype uint8, uint16 or float32.
    ``alpha``: ``H x W`` of the same dtype, or None. ``format``: the source format name
    (a key of ``FORMATS``) or None for images that did not come from a file.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    format: str | None = None

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


def _exif_bytes(exif: PILImage.Exif) -> bytes | None:
    if not len(exif):
        return None
    if 0x0112 in exif:
        exif[0x0112] = 1  # the pixels are already turned upright
    return exif.tobytes()


def read_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image:
    """Decode an image file into an ``Image`` (see the module docstring for what is converted).

    Raises ``ImageError`` naming the file for unreadable, truncated, unsupported or too-large files.
    """
    path = Path(path)
    try:
        with _pixel_limit_off(), PILImage.open(path) as im:
            width, height = im.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageError(
                    f"{path}: {width}x{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,} "
                    "(raise it with --max-pixels if you trust this file)"
                )
            fmt = _PIL_TO_FORMAT.get(im.format or "", None)
            sixteen_bit_colour = im.mode in ("RGB", "RGBA") and "16" in _rawmode(im)  # before getexif() loads
            exif = im.getexif()
            orientation = _orientation(exif)
            icc = im.info.get("icc_profile") or None
            if sixteen_bit_colour:
                pixels, alpha = _read_16bit_colour(path)
            else:
                if im.mode == "CMYK":
                    icc = None  # describes the CMYK data, not the RGB we produce
                im.load()
                pixels, alpha = _pil_to_arrays(im)
            exif_out = _exif_bytes(exif)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image, or a format Pillow cannot read") from None
    except (OSError, SyntaxError, ValueError, struct.error, zlib.error) as exc:
        raise ImageError(f"{path}: cannot decode ({exc})") from None
    pixels = apply_orientation(pixels, orientation)
    alpha = apply_orientation(alpha, orientation) if alpha is not None else None
    return Image(pixels, alpha, icc, exif_out, fmt)


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
    raise ImageError(f"unsupported image mode {mode}")


def _read_16bit_colour(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        import cv2
    except ImportError:
        raise ImageError(
            f"{path}: 16-bit colour images need OpenCV to decode without losing bits "
            "(pip install 'restorekit[image16]')"
        ) from None
    data = np.fromfile(path, dtype=np.uint8)
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if array is None or array.dtype != np.uint16 or array.ndim != 3:
        raise ImageError(f"{path}: cannot decode as a 16-bit colour image")
    if array.shape[2] == 4:
        return np.ascontiguousarray(array[..., 2::-1]), np.ascontiguousarray(array[..., 3])
    return np.ascontiguousarray(array[..., ::-1]), None


def from_pil(im: PILImage.Image) -> Image:
    """An ``Image`` from a Pillow image (orientation applied, ICC and EXIF kept)."""
    exif = im.getexif()
    orientation = _orientation(exif)
    icc = None if im.mode == "CMYK" else im.info.get("icc_profile") or None
    pixels, alpha = _pil_to_arrays(im)
    pixels = apply_orientation(pixels, orientation)
    alpha = apply_orientation(alpha, orientation) if alpha is not None else None
    return Image(pixels, alpha, icc, _exif_bytes(exif), _PIL_TO_FORMAT.get(im.format or ""))


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


def output_format(source: Image, requested: str, path: Path | None = None) -> str:
    """Resolve ``--format``: ``same`` keeps the input's format (PNG when unknown)."""
    if requested == "same":
        if source.format is not None:
            return source.format
        if path is not None:
            suffix = path.suffix.lower()
            for name, (_, ext) in FORMATS.items():
                if suffix == ext or (name == "jpg" and suffix == ".jpeg") or (name == "tiff" and suffix == ".tiff"):
                    return name
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
        options["compression"] = "tiff_adobe_deflate"
    buffer = io.BytesIO()
    im.save(buffer, format=FORMATS[fmt][0], **options)
    return buffer.getvalue()


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
    ok, data = cv2.imencode(".tif", np.ascontiguousarray(bgr))
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(data: bytes, destination: str | Path) -> Path:
    """Write ``data`` to a temp file beside ``destination`` then rename it; nothing partial is left."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get normal permissions
        os.replace(tmp_name, destination)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return destination


def write_image(image: Image, destination: str | Path, fmt: str | None = None, quality: int = 95) -> Path:
    """Encode and write ``image`` atomically. ``fmt`` defaults to the destination's suffix."""
    destination = Path(destination)
    if fmt is None:
        fmt = output_format(replace(image, format=None), "same", destination)
    try:
        data = encode_image(image, fmt, quality)
        return write_bytes_atomic(data, destination)
    except ImageError as exc:
        raise ImageError(f"{destination}: {exc}") from None
    except OSError as exc:
        raise ImageError(f"{destination}: cannot write ({exc})") from None
