"""`restorekit info`: the facts a bug report needs, as text and as JSON."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch

import restorekit
from restorekit import hub, info
from restorekit.cli import main
from restorekit.zoo import PRESETS, get_preset


def test_info_json_reports_versions_devices_weights_and_extras(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "weights"
    (folder / "vapsr").mkdir(parents=True)
    placed = folder / "vapsr" / get_preset("vapsr-x4").filename
    placed.write_bytes(b"only its presence counts here")
    monkeypatch.setenv("RESTOREKIT_WEIGHTS", str(folder))
    monkeypatch.setenv("RESTOREKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RESTOREKIT_OFFLINE", raising=False)

    assert main(["info", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["versions"]["restorekit"] == restorekit.__version__
    assert report["versions"]["numpy"] == np.__version__
    assert report["devices"]["torch_version"] == torch.__version__
    assert report["devices"]["cuda"]["available"] == torch.cuda.is_available()
    assert report["devices"]["cpu"]["torch_threads"] == torch.get_num_threads()

    weights = report["weights"]
    assert [p["origin"] for p in weights["search_order"]] == ["RESTOREKIT_WEIGHTS", "package", "cache"]
    assert weights["presets"]["vapsr-x4"] == {"path": str(placed), "origin": "RESTOREKIT_WEIGHTS"}
    assert weights["presets"]["vapsr-x2"] is None
    embedded = {name for name, hit in weights["presets"].items() if hit and hit["origin"] == "package"}
    shipped = {name for name, p in PRESETS.items() if p.filename and (hub.PACKAGE_WEIGHTS / p.filename).is_file()}
    assert embedded == shipped
    assert embedded, "the package embeds weights: at least one preset should be found there"
    assert "red30-gray" not in weights["presets"]  # no released weights: nothing to find
    assert weights["cache"] == str(tmp_path / "cache") and weights["offline"] is False


def test_extras_follow_the_package_metadata() -> None:
    extras = info.extras()
    if not extras:
        pytest.skip("restorekit is not installed as a package here (no metadata to read)")
    assert set(extras) == set(metadata.metadata("restorekit").get_all("Provides-Extra"))
    assert extras["onnx"]["requires"] == ["onnx", "onnxruntime"]
    installed = all(info._version(name) is not None for name in ("onnx", "onnxruntime"))
    assert extras["onnx"]["installed"] is installed


def test_info_text_is_one_fact_a_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESTOREKIT_OFFLINE", "1")
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"restorekit {restorekit.__version__} (Python ")
    assert f"torch        {torch.__version__}" in out
    assert "downloads    off (RESTOREKIT_OFFLINE=1)" in out
    assert "RESTOREKIT_OFFLINE=1" in out.split("settings:")[1]
    for section in ("versions:", "devices:", "weights (searched in this order):", "optional extras", "settings:"):
        assert section in out


def test_info_reports_a_broken_torch_instead_of_failing(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_torch(name: str, *args: object, **kwargs: object) -> object:
        if name == "torch":
            raise ImportError("libtorch_cpu.so: cannot open shared object file")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    report = info.collect()
    assert "libtorch_cpu.so" in report["devices"]["torch_error"]
    assert "cannot be imported: ImportError" in info.format_report(report)
