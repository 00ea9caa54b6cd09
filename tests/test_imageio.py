"""Image I/O: depth, channels, alpha, palette/CMYK conversion, EXIF orientation, ICC/EXIF kept,
pixel limit, readable errors and atomic writes. Small synthetic images only."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from restorekit import imageio
from restorekit.errors import ImageError
from restorekit.imageio import Image, encode_png16, read_image, write_image

FAKE_ICC = b"\x00\x00\x01\x00fake-icc-profile-bytes" * 4


def _rgb8(h: int = 9, w: int = 13) -> np.ndarray:
    return (np.random.rand(h, w, 3) * 255).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["png", "tiff", "bmp", "webp"])
def test_8bit_rgb_round_trip_is_lossless_where_the_format_is(tmp_path: Path, fmt: str) -> None:
    pixels = _rgb8()
    path = write_image(Image(pixels), tmp_path / f"a{imageio.FORMATS[fmt][1]}", fmt, quality=100)
    back = read_image(path)
    assert back.pixels.dtype == np.uint8 and back.pixels.shape == pixels.shape and back.format == fmt
    if fmt != "webp":
        np.testing.assert_array_equal(back.pixels, pixels)


def test_jpeg_round_trip_is_close(tmp_path: Path) -> None:
    pixels = np.full((16, 16, 3), 120, np.uint8)
    back = read_image(write_image(Image(pixels), tmp_path / "a.jpg"))
    assert back.format == "jpg" and np.abs(back.pixels.astype(int) - 120).max() <= 2


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_grey_stays_16bit(tmp_path: Path, suffix: str) -> None:
    pixels = (np.random.rand(7, 11, 1) * 65535).astype(np.uint16)
    back = read_image(write_image(Image(pixels), tmp_path / f"g{suffix}"))
    assert back.pixels.dtype == np.uint16
    np.testing.assert_array_equal(back.pixels, pixels)


def test_16bit_colour_png_with_alpha_stays_16bit(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    pixels = (np.random.rand(6, 10, 3) * 65535).astype(np.uint16)
    alpha = (np.random.rand(6, 10) * 65535).astype(np.uint16)
    path = write_image(Image(pixels, alpha, icc_profile=FAKE_ICC), tmp_path / "c.png")
    back = read_image(path)
    assert back.pixels.dtype == np.uint16 and back.alpha is not None
    np.testing.assert_array_equal(back.pixels, pixels)
    np.testing.assert_array_equal(back.alpha, alpha)
    assert back.icc_profile == FAKE_ICC
    # Pillow reads our PNG too (as 8-bit): the file is valid
    with PILImage.open(path) as im:
        assert im.size == (10, 6) and im.mode == "RGBA"


def test_16bit_colour_tiff_stays_16bit(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    pixels = (np.random.rand(5, 8, 3) * 65535).astype(np.uint16)
    back = read_image(write_image(Image(pixels), tmp_path / "c.tif"))
    assert back.pixels.dtype == np.uint16
    np.testing.assert_array_equal(back.pixels, pixels)


def test_16bit_to_8bit_format_rounds(tmp_path: Path) -> None:
    pixels = np.array([[[0, 257, 65535]]], dtype=np.uint16)
    back = read_image(write_image(Image(pixels), tmp_path / "c.bmp"))
    np.testing.assert_array_equal(back.pixels, [[[0, 1, 255]]])


def test_grey_and_rgba_alpha(tmp_path: Path) -> None:
    grey = (np.random.rand(5, 6) * 255).astype(np.uint8)
    PILImage.fromarray(grey, "L").save(tmp_path / "g.png")
    back = read_image(tmp_path / "g.png")
    assert back.pixels.shape == (5, 6, 1) and back.alpha is None
    rgba = (np.random.rand(5, 6, 4) * 255).astype(np.uint8)
    PILImage.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    back = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(back.pixels, rgba[..., :3])
    np.testing.assert_array_equal(back.alpha, rgba[..., 3])
    again = read_image(write_image(back, tmp_path / "b.webp", "webp", quality=100))
    assert again.alpha is not None  # WebP keeps alpha
    assert read_image(write_image(back, tmp_path / "b.jpg")).alpha is None  # JPEG cannot


def test_palette_and_cmyk_are_converted(tmp_path: Path) -> None:
    palette = PILImage.fromarray(_rgb8()).convert("P", palette=PILImage.Palette.ADAPTIVE, colors=8)
    palette.save(tmp_path / "p.png")
    back = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(back.pixels, np.asarray(palette.convert("RGB")))
    palette.save(tmp_path / "pt.png", transparency=0)
    assert read_image(tmp_path / "pt.png").alpha is not None
    cmyk = PILImage.new("CMYK", (4, 3), (0, 255, 255, 0))  # pure red
    cmyk.save(tmp_path / "c.jpg", icc_profile=FAKE_ICC)
    back = read_image(tmp_path / "c.jpg")
    assert back.pixels.shape == (3, 4, 3) and back.icc_profile is None  # a CMYK profile no longer applies
    assert back.pixels[..., 0].min() > 200 and back.pixels[..., 1].max() < 60


def test_exif_orientation_is_applied_and_reset(tmp_path: Path) -> None:
    pixels = np.zeros((4, 6, 3), np.uint8)
    pixels[0, 0] = 255  # top-left marker
    im = PILImage.fromarray(pixels)
    exif = im.getexif()
    exif[0x0112] = 6  # stored rotated: display needs 90 degrees clockwise
    exif[0x010F] = "restorekit-test"  # camera make, must survive
    im.save(tmp_path / "o.jpg", exif=exif.tobytes(), quality=100)
    back = read_image(tmp_path / "o.jpg")
    assert back.pixels.shape == (6, 4, 3)
    assert back.pixels[0, -1].min() > 200  # the marker moved to the top-right
    out = write_image(back, tmp_path / "out.png")
    with PILImage.open(out) as written:
        assert written.getexif().get(0x0112) == 1 and written.getexif().get(0x010F) == "restorekit-test"


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
def test_icc_profile_is_kept(tmp_path: Path, suffix: str) -> None:
    out = write_image(Image(_rgb8(), icc_profile=FAKE_ICC), tmp_path / f"i{suffix}")
    assert read_image(out).icc_profile == FAKE_ICC


def test_pixel_limit_is_checked_before_decoding(tmp_path: Path) -> None:
    PILImage.fromarray(_rgb8(20, 30)).save(tmp_path / "big.png")
    with pytest.raises(ImageError, match=r"big\.png.*600.*exceeds the limit of 500"):
        read_image(tmp_path / "big.png", max_pixels=500)
    assert read_image(tmp_path / "big.png", max_pixels=600).width == 30


def test_unreadable_files_name_the_path(tmp_path: Path) -> None:
    data = io.BytesIO()
    PILImage.fromarray(_rgb8(40, 40)).save(data, "PNG")
    (tmp_path / "cut.png").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    (tmp_path / "text.png").write_text("not an image")
    for name in ("cut.png", "text.png", "missing.png"):
        with pytest.raises(ImageError, match=name):
            read_image(tmp_path / name)


def test_failed_write_leaves_nothing_under_the_final_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_replace(src: str, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(imageio.os, "replace", broken_replace)
    with pytest.raises(ImageError, match="disk full"):
        write_image(Image(_rgb8()), tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []  # neither the output nor the temp file


def test_png16_encoder_is_read_back_by_pillow_as_grey_plus_colour_bytes() -> None:
    planes = np.array([[[65535, 0, 256]]], dtype=np.uint16)
    with PILImage.open(io.BytesIO(encode_png16(planes))) as im:
        assert im.size == (1, 1) and im.getpixel((0, 0)) == (255, 0, 1)  # Pillow keeps the high byte


# --- reliability (issue 13): orientation once, metadata without layout, refusals, temp files ----

_LOSSLESS_MODES = {"png": ("L", "LA", "RGB", "RGBA", "I;16"), "tiff": ("L", "LA", "RGB", "RGBA", "I;16", "F", "CMYK"),
                   "webp": ("RGB", "RGBA"), "bmp": ("L", "RGB")}


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(fmt=st.sampled_from(sorted(_LOSSLESS_MODES)), pick=st.integers(0, 6), orientation=st.integers(1, 8),
       height=st.integers(1, 23), width=st.integers(1, 23), seed=st.integers(0, 2**16))
def test_any_file_reads_upright_once_and_round_trips(fmt: str, pick: int, orientation: int, height: int, width: int,
                                                     seed: int) -> None:
    """Property: a file stored turned, with an EXIF orientation, reads as the upright picture (numpy's
    rot90/flip decide what upright is, not restorekit), once; writing it back and reading again gives
    the same pixels and no orientation left to apply."""
    from fuzz_images import display

    mode = _LOSSLESS_MODES[fmt][pick % len(_LOSSLESS_MODES[fmt])]
    orientation = 1 if fmt == "bmp" else orientation
    rng = np.random.default_rng(seed)
    upright_size = (height, width)
    stored_size = upright_size[::-1] if orientation >= 5 else upright_size
    if mode == "I;16":
        stored = PILImage.fromarray(rng.integers(0, 65536, stored_size, dtype=np.uint16))
    elif mode == "F":
        stored = PILImage.fromarray(rng.random(stored_size, dtype=np.float32), "F")
    else:
        channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4}[mode]
        planes = rng.integers(0, 256, (*stored_size, channels), dtype=np.uint8)
        stored = PILImage.fromarray(planes[..., 0] if channels == 1 else planes, mode)
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    options: dict[str, object] = {"exif": exif.tobytes()} if orientation != 1 else {}
    if fmt == "webp":
        options.update(lossless=True, exact=True)  # keep colour under transparent pixels
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"in{imageio.FORMATS[fmt][1]}"
        stored.save(path, format=imageio.FORMATS[fmt][0], **options)
        image = read_image(path)
        colour = stored.convert("RGB") if mode == "CMYK" else stored
        expected = np.asarray(colour.convert("L") if mode == "LA" else colour.convert("RGB") if mode == "RGBA"
                              else colour)
        expected = display(expected if expected.ndim == 3 else expected[..., None], orientation)
        np.testing.assert_array_equal(image.pixels, expected)
        if mode in ("LA", "RGBA"):
            np.testing.assert_array_equal(image.alpha, display(np.asarray(stored)[..., -1], orientation))
        else:
            assert image.alpha is None
        again = read_image(write_image(image, Path(folder) / f"out{imageio.FORMATS[fmt][1]}"))
        if fmt == "webp":  # restorekit writes lossy WebP (quality 95)
            assert again.pixels.shape == image.pixels.shape
        else:
            np.testing.assert_array_equal(again.pixels, image.pixels)
        written = PILImage.Exif()  # whatever EXIF is carried, it has nothing left to turn
        written.load(image.exif or b"")
        assert written.get(0x0112, 1) == 1


def test_exif_keeps_what_describes_the_picture_not_the_file(tmp_path: Path) -> None:
    """QA: a TIFF's width, strips, photometric... went back into outputs (x3 SR kept the input width)."""
    im = PILImage.fromarray(_rgb8(6, 8))
    exif = im.getexif()
    exif[0x010F] = "maker"  # Make: kept
    exif[0x0100] = 8  # ImageWidth: the file's, dropped
    exif[0x8482] = (0.0, 0.0, 0.0, 1.0, 2.0, 0.0)  # GeoTIFF ModelTiepoint: dropped
    exif.get_ifd(0x8769).update({0x9003: "2024:01:02 03:04:05", 0xA002: 8, 0xA003: 6})
    im.save(tmp_path / "t.tif", exif=exif.tobytes())
    image = read_image(tmp_path / "t.tif")
    kept = PILImage.Exif()
    kept.load(image.exif)
    assert kept.get(0x010F) == "maker" and 0x0100 not in kept and 0x8482 not in kept
    assert kept.get_ifd(0x8769).get(0x9003) == "2024:01:02 03:04:05"  # DateTimeOriginal kept
    assert 0xA002 not in kept.get_ifd(0x8769)  # PixelXDimension: the input's size, wrong after SR
    big = replace(image, pixels=np.repeat(np.repeat(image.pixels, 3, 0), 3, 1))
    with PILImage.open(write_image(big, tmp_path / "x3.tif")) as written:
        assert written.size == (24, 18) and written.tag_v2.get(0x010F) == "maker"


def test_what_is_not_a_regular_file_is_refused_by_name(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.png")
    os.symlink("nowhere.png", tmp_path / "dangling.png")
    os.symlink("loop.png", tmp_path / "loop.png")
    (tmp_path / "folder.png").mkdir()
    cases = {"fifo.png": "not a regular file (a FIFO)", "dangling.png": "broken symbolic link (points to nowhere.png)",
             "loop.png": "symbolic link loop", "folder.png": "not a regular file (a folder)",
             "missing.png": "no such file"}
    for name, reason in cases.items():
        with pytest.raises(ImageError) as caught:
            read_image(tmp_path / name)  # a FIFO must not block: it is never opened for a blocking read
        assert str(caught.value) == f"{tmp_path / name}: {reason}"


def test_non_finite_values_are_never_written(tmp_path: Path) -> None:
    pixels = np.full((4, 5, 1), 0.5, np.float32)
    pixels[1, 2] = np.nan
    for suffix in (".tif", ".png"):
        with pytest.raises(ImageError, match="1 of 20 values to write are NaN or infinite"):
            write_image(Image(pixels), tmp_path / f"nan{suffix}")
    assert list(tmp_path.iterdir()) == []


def test_reader_warnings_come_back_naming_the_file(tmp_path: Path) -> None:
    exif = PILImage.Exif()
    exif[0x010F] = "maker"
    exif[0x0110] = "a model name long enough to be stored out of line"
    PILImage.fromarray(_rgb8()).save(tmp_path / "e.jpg", exif=exif.tobytes()[:-12])  # EXIF cut short
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may leak out as a bare warning
        image = read_image(tmp_path / "e.jpg")
    assert image.notes and all(note.startswith(f"{tmp_path / 'e.jpg'}: ") for note in image.notes)


def test_temp_names_are_short_and_abandoned_ones_are_cleaned(tmp_path: Path) -> None:
    """QA: the temp name was 15 characters longer than the output's (a 250-character name failed),
    and a SIGKILL mid-write left hidden .part files that no later run removed."""
    long_name = "L" * 251 + ".png"  # 255: the longest name most file systems allow
    write_image(Image(_rgb8()), tmp_path / long_name)
    assert (tmp_path / long_name).is_file()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = tmp_path / f"{imageio.TEMP_PREFIX}{child.pid}-abcdefgh{imageio.TEMP_SUFFIX}"
    alive = tmp_path / f"{imageio.TEMP_PREFIX}{os.getpid()}-abcdefgh{imageio.TEMP_SUFFIX}"
    old = tmp_path / "sub" / f"{imageio.TEMP_PREFIX}{os.getpid()}-old{imageio.TEMP_SUFFIX}"
    not_ours = tmp_path / ".photo.png.abcdefgh.part"
    for path in (dead, alive, old, not_ours):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"partial")
    os.utime(old, (time.time() - 2 * imageio.STALE_TEMP_SECONDS,) * 2)
    assert imageio.clean_stale_temp_files(tmp_path) == [dead]
    assert imageio.clean_stale_temp_files(tmp_path, recursive=True) == [old]
    assert alive.exists() and not_ours.exists()


def test_luma_is_pillows_l_bit_for_bit_and_keeps_16_bits() -> None:
    # the one grey rule for training data (channels=1): ITU-R 601 in Pillow's fixed point
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    rgb[0, :4] = [[255, 255, 255], [0, 0, 0], [128, 128, 128], [254, 1, 127]]
    assert np.array_equal(imageio.luma(rgb)[..., 0], np.asarray(PILImage.fromarray(rgb).convert("L")))
    wide = np.minimum(rgb.astype(np.int64) * 257 + rng.integers(0, 257, rgb.shape), 65535).astype(np.uint16)
    grey = imageio.luma(wide)
    assert grey.dtype == np.uint16 and len(np.unique(grey)) > 256
    assert np.abs(grey.astype(np.int64) - imageio.luma(rgb).astype(np.int64) * 257).max() <= 2 * 257
    assert imageio.to_channels(grey, 3).shape == (64, 80, 3) and imageio.to_channels(rgb, None) is rgb
