"""The web UI's server without a browser: routes, restore runs, readable errors, request guards.

The browser test (tests/e2e/test_ui_browser.py) drives the page itself; these tests check the HTTP
contract the page relies on, on a tiny random x2 model and 24 x 32 images.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import pytest
import torch

from restorekit import RestoreOptions, build_model, hub, imageio, load, restore_file
from restorekit.archs import get_family
from restorekit.errors import RestorekitError
from restorekit.inference.runner import PRECISIONS
from restorekit.loading import save_safetensors
from restorekit.ui import app, jobs
from restorekit.ui.jobs import Options, readable_error
from restorekit.ui.server import UIServer, is_loopback, start


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = build_model("bicubic_pp", get_family("bicubic_pp").Config(scale=2, channels=8))
    return save_safetensors(model, tmp_path_factory.mktemp("weights") / "tiny-x2.safetensors")


@pytest.fixture(scope="module")
def server(tiny_weights: Path) -> Iterator[UIServer]:
    srv = app.create_server("127.0.0.1", 0, models=[str(tiny_weights)], device="cpu", max_pixels=10_000,
                            max_upload_mib=1)
    start(srv)
    yield srv
    srv.shutdown()
    srv.server_close()


def request(srv: UIServer, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    host, port = srv.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def upload(srv: UIServer, data: bytes, query: str) -> dict[str, Any]:
    """POST an image as the page does and poll the job to its end."""
    status, _, body = request(srv, "POST", f"/api/restore?{query}", data, {"X-Restorekit": "1"})
    assert status == 202, body
    job_id = json.loads(body)["id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = json.loads(request(srv, "GET", f"/api/jobs/{job_id}")[2])
        if state["status"] in ("done", "error"):
            return state
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {state}")


def png_bytes(tmp_path: Path, height: int = 24, width: int = 32) -> bytes:
    pixels = np.random.default_rng(1).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return imageio.write_image(imageio.Image(pixels), tmp_path / "in.png").read_bytes()


def test_defaults_bind_to_localhost() -> None:
    parser = argparse.ArgumentParser()
    app.add_arguments(parser)
    args = parser.parse_args([])
    assert args.host == "127.0.0.1" and args.port == 7860
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")


def test_page_and_model_card(server: UIServer, tiny_weights: Path) -> None:
    status, headers, body = request(server, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"/static/app.js" in body and b"http" not in body.replace(b'"http-equiv', b"")  # nothing external
    for static in ("/static/app.js", "/static/style.css"):
        assert request(server, "GET", static)[0] == 200
    models = json.loads(request(server, "GET", "/api/models")[2])
    key = str(tiny_weights.resolve())
    entry = next(m for m in models["models"] if m["key"] == key)
    assert entry["task"] == "sr" and entry["card"]["scale"] == 2 and entry["card"]["family"] == "bicubic_pp"
    assert entry["card"]["license"] and entry["card"]["params"] > 0
    assert models["defaults"]["sr"] in {m["key"] for m in models["models"]}
    assert models["precisions"] == list(PRECISIONS)  # the one table, in its order


def test_download_is_the_restore_file_output(server: UIServer, tiny_weights: Path, tmp_path: Path) -> None:
    data = png_bytes(tmp_path)
    state = upload(server, data, f"model={tiny_weights.resolve()}&tile=16&tile_overlap=4&filename=photo.png")
    assert state["status"] == "done", state
    assert state["info"]["input"]["width"] == 32 and state["info"]["output"]["width"] == 64
    status, headers, result = request(server, "GET", f"/api/jobs/{state['id']}/result")
    assert status == 200 and 'filename="photo_restored.png"' in headers["Content-Disposition"]
    after = request(server, "GET", f"/api/jobs/{state['id']}/after.png")
    assert after[0] == 200 and after[1]["Content-Type"] == "image/png"
    (tmp_path / "downloaded.png").write_bytes(result)
    reference = restore_file(tmp_path / "in.png", tmp_path / "ref.png", load(tiny_weights, device="cpu"),
                             options=RestoreOptions(tile=16, tile_overlap=4))
    got, want = imageio.read_image(tmp_path / "downloaded.png"), imageio.read_image(reference)
    assert got.pixels.dtype == want.pixels.dtype
    np.testing.assert_array_equal(got.pixels, want.pixels)


def test_bad_files_become_messages_and_the_server_keeps_serving(server: UIServer, tiny_weights: Path,
                                                                tmp_path: Path) -> None:
    model = f"model={tiny_weights.resolve()}"
    corrupt = upload(server, b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, f"{model}&filename=bad.png")
    assert corrupt["status"] == "error" and corrupt["message"].startswith("bad.png: ")
    assert "Traceback" not in corrupt["message"]
    too_big = upload(server, png_bytes(tmp_path, 120, 100), f"{model}&filename=big.png")  # 12,000 > 10,000 px
    assert too_big["status"] == "error" and "exceeds the limit" in too_big["message"]
    assert request(server, "GET", f"/api/jobs/{too_big['id']}/result")[0] == 409
    # Still serving, and a good file still runs.
    assert upload(server, png_bytes(tmp_path), f"{model}&filename=ok.png")["status"] == "done"


def test_bad_requests_get_json_errors(server: UIServer, tiny_weights: Path, tmp_path: Path) -> None:
    ok = {"X-Restorekit": "1"}
    cases = [
        (("POST", "/api/restore?model=nope", b"x", ok), 400, "unknown model"),
        (("POST", f"/api/restore?model={tiny_weights.resolve()}&tile=big", b"x", ok), 400, "whole number"),
        (("POST", f"/api/restore?model={tiny_weights.resolve()}&precision=fp8", b"x", ok), 400, "precision"),
        (("POST", f"/api/restore?model={tiny_weights.resolve()}", b"", ok), 400, "empty"),
        (("POST", f"/api/restore?model={tiny_weights.resolve()}", b"x", {}), 403, "restorekit page"),
        (("POST", f"/api/restore?model={tiny_weights.resolve()}", b"x" * ((1 << 20) + 1), ok), 413, "MiB"),
        (("GET", "/", None, {"Host": "attacker.example:80"}), 403, "localhost"),
        (("GET", "/api/jobs/" + "0" * 32, None, {}), 404, "gone"),
        (("GET", "/samples/..%2F..%2Fpyproject.toml", None, {}), 404, "no such sample"),
        (("GET", "/etc/passwd", None, {}), 404, "no such page"),
    ]
    for (method, path, body, headers), want_status, want_text in cases:
        status, _, answer = request(server, method, path, body, headers)
        assert status == want_status, (path, status, answer)
        assert want_text in json.loads(answer)["error"], (path, answer)


def test_samples_are_listed_and_served(server: UIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sample.png").write_bytes(png_bytes(tmp_path))
    (tmp_path / "notes.txt").write_text("not an image")
    monkeypatch.setattr(jobs, "SAMPLES_DIR", tmp_path)
    assert json.loads(request(server, "GET", "/api/samples")[2]) == {"samples": ["in.png", "sample.png"]}
    status, headers, body = request(server, "GET", "/samples/sample.png")
    assert status == 200 and headers["Content-Type"] == "image/png" and body == (tmp_path / "sample.png").read_bytes()
    assert request(server, "GET", "/samples/notes.txt")[0] == 404


def test_model_that_does_not_fit_is_a_readable_message(server: UIServer, tiny_weights: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def out_of_memory(*_: object, **__: object) -> Path:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(jobs, "restore_file", out_of_memory)
    state = upload(server, png_bytes(tmp_path), f"model={tiny_weights.resolve()}&tile=0")
    assert state["status"] == "error"
    assert "does not fit in memory" in state["message"] and "turn on tiling" in state["message"]
    message = readable_error(RuntimeError("something odd"), "cpu", Options())
    assert message.startswith("unexpected error (RuntimeError: something odd)")


def test_start_up_errors_are_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No weights anywhere on this "machine": the UI says so instead of starting a download.
    monkeypatch.setenv("RESTOREKIT_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("RESTOREKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(hub, "PACKAGE_WEIGHTS", tmp_path / "package")
    with pytest.raises(RestorekitError, match="no model is available offline"):
        app.create_server(port=0, device="cpu")
    with pytest.raises(RestorekitError, match="neither a preset name nor an existing weights file"):
        app.create_server(port=0, models=[str(tmp_path / "missing.safetensors")], device="cpu")
    with pytest.raises(RestorekitError, match="not on this machine"):
        app.create_server(port=0, models=["vapsr-x2"], device="cpu")


def test_huge_images_get_a_smaller_preview(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "photo.png").write_bytes(png_bytes(tmp_path, 24, 32))
    monkeypatch.setattr(jobs, "PREVIEW_MAX_PIXELS", 192)  # a quarter of 24 x 32
    data, info = jobs.preview_png(tmp_path / "photo.png", None)
    (tmp_path / "preview.png").write_bytes(data)
    preview = imageio.read_image(tmp_path / "preview.png")
    assert (preview.width, preview.height) == (16, 12)
    assert info["width"] == 32 and info["preview_scale"] == 0.5


def test_preset_cards_carry_license_and_paper_scores() -> None:
    from restorekit.zoo import PRESETS

    card = jobs._preset_card(PRESETS["bicubic-pp-x3"])
    assert card["license"] == "CC BY-NC-SA 4.0" and card["non_commercial"] is True
    assert card["params"] > 0 and card["scale"] == 3
    vapsr = jobs._preset_card(PRESETS["vapsr-x4"])
    assert vapsr["scores"]["Set5"] == {"psnr": 32.38, "ssim": 0.8978}
    assert "Y" in vapsr["convention"] and vapsr["non_commercial"] is False


def test_busy_port_is_a_readable_error(server: UIServer, tiny_weights: Path) -> None:
    busy_port = int(server.server_address[1])
    with pytest.raises(RestorekitError, match=f"cannot listen on 127.0.0.1:{busy_port}"):
        app.create_server("127.0.0.1", busy_port, models=[str(tiny_weights)], device="cpu")


@pytest.mark.parametrize("port", [99999, 65536, -1])
def test_out_of_range_port_is_a_readable_error(tiny_weights: Path, port: int) -> None:
    with pytest.raises(RestorekitError, match="--port must be 1-65535 \\(or 0 for any free port\\)"):
        app.create_server("127.0.0.1", port, models=[str(tiny_weights)], device="cpu")


@pytest.mark.parametrize("name", ["图片.png", "фото.png", "café \"quoted\"; x.png"])
def test_any_upload_name_can_be_downloaded(server: UIServer, tiny_weights: Path, tmp_path: Path, name: str) -> None:
    """QA: a non-Latin-1 name made the Content-Disposition header raise and the download hang."""
    state = upload(server, png_bytes(tmp_path), f"model={tiny_weights.resolve()}&filename={quote(name)}")
    assert state["status"] == "done", state
    status, headers, body = request(server, "GET", f"/api/jobs/{state['id']}/result")
    assert status == 200 and body.startswith(b"\x89PNG")
    disposition = headers["Content-Disposition"]
    disposition.encode("ascii")  # the whole header is ASCII: nothing for the server to fail on
    exact = disposition.split("filename*=UTF-8''", 1)[1]
    assert unquote(exact) == state["download_name"] and state["download_name"].endswith("_restored.png")
    fallback = disposition.split('filename="', 1)[1].split('"', 1)[0]
    assert fallback.endswith("_restored.png") and '"' not in fallback


def test_a_burst_of_uploads_is_accepted(server: UIServer, tiny_weights: Path, tmp_path: Path) -> None:
    """QA: 20 uploads at once overflowed the listen backlog of 5 and some connections were reset."""
    assert server.request_queue_size >= 64
    data = png_bytes(tmp_path, 8, 8)
    barrier = threading.Barrier(40)
    statuses: list[int | str] = []

    def post() -> None:
        barrier.wait()
        try:
            statuses.append(request(server, "POST", f"/api/restore?model={tiny_weights.resolve()}&filename=b.png",
                                    data, {"X-Restorekit": "1"})[0])
        except OSError as exc:  # a reset connection
            statuses.append(type(exc).__name__)

    threads = [threading.Thread(target=post) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == [202] * 40
