"""The console script: verb table, `models` listing, `convert` round trip and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import restorekit
from restorekit.archs import bicubic_pp
from restorekit.cli import main
from restorekit.convert import save_safetensors
from restorekit.model import build_model


def test_unknown_verb_fails(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["nonsense"])
    assert "invalid choice" in capsys.readouterr().err


def test_models_json_lists_presets_with_params_and_macs(capsys: pytest.CaptureFixture[str], shared_weights: Path) -> None:
    assert main(["models", "--json", "--task", "sr"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["vapsr-x4"]["params"] == 342_220
    # VapSR x4 at 320x180 (1280x720 output): 19.5 G multiply-adds, the figure published with it.
    assert abs(rows["vapsr-x4"]["macs"] / 1e9 - 19.5) < 0.1
    assert rows["vapsr-x4"]["available"] is True
    assert rows["bicubic-pp-x3"]["license"].endswith("(non-commercial)")
    assert all(row["task"] == "sr" for row in rows.values())


def test_convert_round_trip_and_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = build_model("bicubic_pp", bicubic_pp.Config(channels=4)).eval()
    source = tmp_path / "in.pth"
    torch.save(model.net.state_dict(), source)
    out = tmp_path / "out.safetensors"
    assert main(["convert", str(source), str(out)]) == 0
    loaded = restorekit.load(out)
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(loaded(x), model(x))

    out.write_bytes(b"keep me")
    assert main(["convert", str(source), str(out)]) == 2
    assert out.read_bytes() == b"keep me"
    assert "--overwrite" in capsys.readouterr().err
    assert main(["convert", str(source), str(tmp_path / "out.pth")]) == 2


def test_safetensors_metadata_wins_over_detection(tmp_path: Path) -> None:
    model = build_model("bicubic_pp", bicubic_pp.Config(channels=4, negative_slope=0.2))
    path = save_safetensors(model, tmp_path / "m.safetensors")
    # negative_slope cannot be seen in the tensors; the recorded config keeps it.
    assert restorekit.load(path).config.negative_slope == 0.2


def test_closed_pipe_is_not_a_traceback() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        f"{sys.executable} -m restorekit models --json --no-macs | head -c 10",
        check=False, shell=True, capture_output=True, text=True, timeout=120,
    )
    assert result.stdout.startswith("[")
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
