"""End to end: the web UI in headless Debian Chromium, driven by Playwright.

Starts ``restorekit ui`` on a free localhost port with a tiny random x2 model, uploads a corrupt
file (the page must show a readable message, and the server must keep serving), then a small 16-bit
image with explicit tiling, runs it, downloads the result and checks it is pixel-identical to
``restorekit restore`` on the same input with the same options.

Chromium: /usr/bin/chromium (``scripts/install_browser.sh``) or ``RESTOREKIT_CHROMIUM``. Playwright
is used only as a driver (``pip install playwright``; never ``playwright install``). Under CI
(CI=true) a missing browser or driver fails the test; elsewhere it skips.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from restorekit import build_model, imageio
from restorekit.archs import get_family
from restorekit.cli import main as cli_main
from restorekit.loading import save_safetensors
from restorekit.ui import create_server, jobs
from restorekit.ui.server import UIServer, start

UNDER_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMEOUT_MS = 30_000
TILE, OVERLAP = 16, 4  # several tiles on a 40 x 48 image, so the tiled path is what gets compared


def _unavailable(reason: str) -> None:
    if UNDER_CI:
        pytest.fail(f"{reason} (required under CI: run scripts/install_browser.sh and pip install playwright)")
    pytest.skip(reason)


def _chromium() -> str:
    path = os.environ.get("RESTOREKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        _unavailable(f"chromium not found at {path}")
    return path


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    family = get_family("bicubic_pp")
    model = build_model("bicubic_pp", family.Config(scale=2, channels=8))
    return save_safetensors(model, tmp_path_factory.mktemp("weights") / "tiny-x2.safetensors")


@pytest.fixture(scope="module")
def ui_server(tiny_weights: Path) -> Iterator[UIServer]:
    server = create_server("127.0.0.1", 0, models=[str(tiny_weights)], device="cpu")
    start(server)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory, ui_server: UIServer) -> Iterator[Any]:
    chromium = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright)")
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh --user-data-dir
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=chromium, headless=True, args=CHROMIUM_FLAGS, accept_downloads=True,
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            page = context.new_page()
            page.goto(ui_server.url)
            page.wait_for_selector("body[data-state=idle]")
            yield page
        finally:
            context.close()


def _write_input(folder: Path) -> Path:
    """A 16-bit grey PNG: the download must come back 16-bit, as the CLI writes it."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 65536, size=(40, 48, 1), dtype=np.uint16)
    return imageio.write_image(imageio.Image(pixels), folder / "small.png")


def _run(page: Any, file: Path, model: Path, tile: int | None = None, overlap: int | None = None) -> str:
    """Upload ``file``, pick the SR task and ``model`` (the page opens on the embedded defaults when
    they are installed), press Restore, and wait for the page to finish; returns the final state."""
    page.select_option("#task", "sr")
    page.select_option("#model", str(model.resolve()))
    page.set_input_files("#file", str(file))
    page.fill("#tile", "" if tile is None else str(tile))
    page.fill("#tile-overlap", "" if overlap is None else str(overlap))
    page.click("#run")
    page.wait_for_selector("body[data-state=done], body[data-state=error]")
    return page.get_attribute("body", "data-state")


def test_corrupt_upload_shows_a_readable_error(page: Any, tiny_weights: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    assert _run(page, broken, tiny_weights) == "error"
    message = page.inner_text("#error")
    assert page.is_visible("#error")
    assert message.startswith("broken.png: ") and ("cannot decode" in message or "not an image" in message), message
    assert "Traceback" not in message and 'File "' not in message


def test_restore_and_download_match_the_cli(page: Any, ui_server: UIServer, tiny_weights: Path,
                                            tmp_path: Path) -> None:
    source = _write_input(tmp_path)
    # The previous test left an error on the page: the server must still serve this run.
    assert _run(page, source, tiny_weights, TILE, OVERLAP) == "done", page.inner_text("#error")
    assert "tiny-x2.safetensors" in page.inner_text("#card")
    assert page.is_hidden("#error")
    # Both previews decoded, at the SR output size for "after", and the zoomed crop was drawn.
    sizes = page.evaluate("[$('before').naturalWidth, $('before').naturalHeight, $('after').naturalWidth, $('after').naturalHeight]")
    assert sizes == [48, 40, 96, 80]
    drawn = page.evaluate("Array.from($('zoom-after').getContext('2d').getImageData(0, 0, 256, 256).data).some(v => v > 0)")
    assert drawn
    page.fill("#split", "20")
    page.dispatch_event("#split", "input")
    assert "80%" in page.evaluate("$('before').style.clipPath")
    # Dragging on the image moves the split; a plain click moves the zoomed crop instead.
    page.evaluate("window.scrollTo(0, 0)")  # filling #split scrolled it into view; mouse positions are in the viewport
    box = page.locator("#compare").bounding_box()
    assert box is not None and box["y"] >= 0
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.5, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.75, y, steps=5)
    page.mouse.up()
    assert 70 <= int(page.input_value("#split")) <= 80
    crop_before = page.evaluate("$('zoom-after').toDataURL()")
    page.mouse.click(box["x"] + 2, box["y"] + 2)
    assert page.evaluate("$('zoom-after').toDataURL()") != crop_before
    assert 70 <= int(page.input_value("#split")) <= 80

    with page.expect_download() as info:
        page.click("#download")
    download = info.value
    assert download.suggested_filename == "small_restored.png"
    downloaded = tmp_path / "downloaded.png"
    download.save_as(str(downloaded))

    outdir = tmp_path / "cli"
    code = cli_main(["restore", str(source), "-o", str(outdir), "--weights", str(tiny_weights),
                     "--tile", str(TILE), "--tile-overlap", str(OVERLAP), "--device", "cpu", "--quiet"])
    assert code == 0
    reference = outdir / "small.png"
    got, want = imageio.read_image(downloaded), imageio.read_image(reference)
    assert got.pixels.dtype == want.pixels.dtype == np.uint16
    assert got.pixels.shape == want.pixels.shape == (80, 96, 1)
    np.testing.assert_array_equal(got.pixels, want.pixels)


def test_bundled_sample_runs(page: Any, tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The server runs in this process, so the sample folder can be pointed at a test image.
    monkeypatch.setattr(jobs, "SAMPLES_DIR", tmp_path)
    pixels = np.random.default_rng(2).integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
    imageio.write_image(imageio.Image(pixels), tmp_path / "tiny-sample.png")
    page.reload()
    page.wait_for_selector("body[data-state=idle]")
    assert page.is_visible("#sample")
    page.select_option("#task", "sr")
    page.select_option("#model", str(tiny_weights.resolve()))
    page.select_option("#sample", "tiny-sample.png")
    page.wait_for_function("document.getElementById('picked').textContent.startsWith('tiny-sample.png')")
    page.click("#run")
    page.wait_for_selector("body[data-state=done], body[data-state=error]")
    assert page.get_attribute("body", "data-state") == "done", page.inner_text("#error")
    assert page.get_attribute("#download", "download") == "tiny-sample_restored.png"
    assert page.evaluate("$('after').naturalWidth") == 48
