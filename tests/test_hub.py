"""Weights lookup order and the download path (exercised with file:// URLs: no network in tests)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from restorekit import hub
from restorekit.errors import WeightsError
from restorekit.zoo import get_preset


def test_weights_folder_is_searched_recursively(shared_weights: Path) -> None:
    path = hub.resolve(get_preset("vapsr-x4"), download=False)
    assert path == shared_weights / "vapsr" / "VapSR_X4.pth"
    assert hub.sha256_of(path) == get_preset("vapsr-x4").sha256


def test_download_verifies_checksum_and_is_atomic(tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(b"weights" * 1000)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    target = tmp_path / "cache" / "model.pth"
    assert hub.download_file(source.as_uri(), target, digest).read_bytes() == source.read_bytes()

    wrong = tmp_path / "cache" / "wrong.pth"
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        hub.download_file(source.as_uri(), wrong, "0" * 64)
    assert not wrong.exists()
    assert not list(wrong.parent.glob("*.part"))


def test_resolve_downloads_into_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_data: Path) -> None:
    monkeypatch.setenv("RESTOREKIT_WEIGHTS", "")
    monkeypatch.setenv("RESTOREKIT_CACHE", str(tmp_path / "cache"))
    official = shared_data / "weights" / "bicubicpp" / "bicubic_pp_x3.pth"
    preset = dataclasses.replace(get_preset("bicubic-pp-x3"), url=official.as_uri())
    assert not hub.is_available(preset)
    path = hub.resolve(preset)
    assert path.parent == tmp_path / "cache"
    assert hub.is_available(preset)


def test_preset_without_weights_says_where_they_come_from(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RESTOREKIT_CACHE", str(tmp_path))
    with pytest.raises(WeightsError, match="no released weights"):
        hub.resolve(get_preset("red30-gray"))
    with pytest.raises(WeightsError, match="Google Drive"):
        hub.resolve(get_preset("hinet-gopro"))


def _fresh_offline_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No RESTOREKIT_WEIGHTS files, an empty cache, downloads off."""
    folder = tmp_path / "my-weights"
    folder.mkdir()
    monkeypatch.setenv("RESTOREKIT_WEIGHTS", str(folder))
    monkeypatch.setenv("RESTOREKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RESTOREKIT_OFFLINE", "1")
    return folder


def test_missing_weights_message_says_what_where_how_and_license(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    folder = _fresh_offline_machine(monkeypatch, tmp_path)
    preset = get_preset("nafnet-sidd-w32")
    with pytest.raises(WeightsError) as info:
        hub.resolve(preset)
    message = str(info.value)
    first = message.splitlines()[0]
    assert "'nafnet-sidd-w32'" in first and "offline" in first
    for needed in (preset.filename, preset.sha256, str(folder), str(hub.PACKAGE_WEIGHTS), str(tmp_path / "cache"),
                   "drive.google.com", preset.url, "license: MIT"):
        assert needed in message, needed
    assert not (tmp_path / "cache").exists()  # offline: nothing was attempted

    hinet = str(hub.missing_weights_error(get_preset("hinet-gopro")))
    assert "Google Drive only" in hinet and "HINet-GoPro.pth" in hinet and "drive.google.com/file/d/" in hinet
    bicubic = str(hub.missing_weights_error(get_preset("bicubic-pp-x3")))
    assert "CC BY-NC-SA 4.0 (non-commercial use only)" in bicubic


def test_unreachable_server_is_reported_as_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import socket
    import urllib.error
    import urllib.request

    monkeypatch.setenv("RESTOREKIT_WEIGHTS", "")
    monkeypatch.setenv("RESTOREKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RESTOREKIT_OFFLINE", raising=False)

    def no_network(url: str, timeout: float) -> None:
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(WeightsError) as info:
        hub.resolve(get_preset("vapsr-x4"))
    first = str(info.value).splitlines()[0]
    assert "offline (cannot reach github.com: Temporary failure in name resolution)" in first
    assert "URLError" not in str(info.value) and "Errno" not in str(info.value)

    def not_found(url: str, timeout: float) -> None:
        raise urllib.error.HTTPError(url, 404, "Not Found", None, None)  # type: ignore[arg-type]

    monkeypatch.setattr(urllib.request, "urlopen", not_found)
    with pytest.raises(WeightsError) as info:
        hub.resolve(get_preset("vapsr-x4"))
    assert "HTTP 404 Not Found" in str(info.value) and "offline" not in str(info.value)
    assert not list((tmp_path / "cache").glob("*.part"))


def test_every_entry_point_shows_the_same_missing_weights_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np
    from PIL import Image

    import restorekit
    from restorekit.cli import main
    from restorekit.ui import app

    _fresh_offline_machine(monkeypatch, tmp_path)
    image = tmp_path / "images" / "a.png"
    image.parent.mkdir()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(image)
    preset = get_preset("nafnet-gopro-w32")  # also the default --task deblur model
    expected = str(hub.missing_weights_error(preset, f"offline ({hub.OFFLINE_ENV}=1)"))

    with pytest.raises(WeightsError) as info:
        restorekit.load(preset.name)
    assert str(info.value) == expected
    commands = {
        "restore --model": ["restore", str(image), "-o", str(tmp_path / "out"), "--model", preset.name],
        "restore --task": ["restore", str(image), "-o", str(tmp_path / "out"), "--task", "deblur"],
        "eval": ["eval", preset.name, "--hr", str(image.parent), "--degrade", "awgn:25"],
        "export": ["export", preset.name, str(tmp_path / "m.onnx")],
    }
    for what, argv in commands.items():
        assert main(argv) == 2, what
        err = capsys.readouterr().err
        assert f"error: {expected}" in err, f"{what}:\n{err}"
    # the UI downloads nothing, so its reason differs; the rest of the message is the same
    with pytest.raises(WeightsError) as info:
        app.create_server(port=0, models=[preset.name], device="cpu")
    assert str(info.value).splitlines()[1:] == expected.splitlines()[1:]
