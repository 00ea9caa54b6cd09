"""Image I/O: depth, channels, alpha, palette/CMYK conversion, EXIF orientation, ICC/EXIF kept,
pixel limit, readable errors and atomic writes. Small synthetic images only."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
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
