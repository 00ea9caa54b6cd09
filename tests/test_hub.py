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
