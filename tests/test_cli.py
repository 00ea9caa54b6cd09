"""The console script: verb table, `models` listing, `convert` round trip and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import restorekit
from restorekit.archs import bicubic_pp
from restorekit.cli import VERBS, main
from restorekit.loading import save_safetensors
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


@pytest.mark.slow
def test_preset_footprints_match_the_networks() -> None:
    """zoo.FOOTPRINTS (what `restorekit models` lists without torch) against every preset, rebuilt."""
    from restorekit.complexity import footprint_line, measure_preset
    from restorekit.zoo import FOOTPRINTS, PRESETS

    wrong = []
    for name, preset in PRESETS.items():
        measured = measure_preset(preset)
        if FOOTPRINTS.get(name) != measured:
            wrong.append(footprint_line(name, measured))
        assert preset.scale == int(preset.config.scale) == measured.scale
    stale = sorted(set(FOOTPRINTS) - set(PRESETS))
    lines = "\n".join(wrong)
    assert not wrong, f"zoo.FOOTPRINTS is missing or wrong for these presets; the lines should read:\n{lines}"
    assert not stale, f"zoo.FOOTPRINTS lists presets that do not exist: {stale}"


def test_models_lists_a_preset_missing_from_the_footprints(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new preset without its footprint line is counted (slower), not dropped or wrong."""
    from restorekit import catalog, zoo

    monkeypatch.delitem(zoo.FOOTPRINTS, "vapsr-x4")
    row = catalog.describe(zoo.PRESETS["vapsr-x4"])
    assert row["params"] == 342_220 and row["scale"] == 4 and row["macs_input"] == "320x180"


# what a fresh interpreter imports for a command, and the command's output
_IMPORT_PROBE = """
import contextlib, io, json, sys
from restorekit.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
print(json.dumps([sorted(m for m in ("torch", "numpy", "PIL", "tqdm") if m in sys.modules), code, out.getvalue()]))
"""


def _fresh_run(argv: list[str]) -> tuple[list[str], int | None, str]:
    """The heavy modules a fresh interpreter imported for `restorekit ARGV`, its exit code and its stdout."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, *argv], capture_output=True, text=True,
                            timeout=120, check=True)
    imported, code, printed = json.loads(result.stdout.strip().splitlines()[-1])
    return imported, code, printed


@pytest.mark.parametrize("argv", [["--help"], ["models"], ["models", "--json"], ["models", "--help"],
                                  ["info", "--help"], ["bench", "--help"]])
def test_listing_commands_do_not_import_torch(argv: list[str]) -> None:
    """Importing torch takes longer than everything else these commands do."""
    imported, code, printed = _fresh_run(argv)
    assert imported == [], f"`restorekit {' '.join(argv)}` imported {imported}"
    assert code in (0, None) and len(printed) > 100  # it did answer


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_verb_help_does_not_import_torch(verb: str) -> None:
    """`restorekit VERB --help` only parses: a verb imports PyTorch in `run`, when it runs a network."""
    imported, code, printed = _fresh_run([verb, "--help"])
    assert "torch" not in imported, f"`restorekit {verb} --help` imported {imported}"
    assert code == 0 and printed.startswith(f"usage: restorekit {verb}")


def test_package_exports_still_resolve() -> None:
    """restorekit.load and friends are imported on first use; they must still be there."""
    import restorekit.model

    assert restorekit.load is restorekit.model.load and restorekit.RestorationModel is restorekit.model.RestorationModel
    assert "vapsr-x4" in restorekit.list_models()
    with pytest.raises(AttributeError):
        restorekit.no_such_thing  # noqa: B018


def test_eval_progress_is_per_image_and_quiet_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    from restorekit.evaluate import EvalData, evaluate

    for i in range(3):
        Image.new("RGB", (24, 24), (40 * i, 90, 200)).save(tmp_path / f"{i}.png")
    evaluate("bicubic", EvalData(tmp_path, scale=2), progress=True)
    err = capsys.readouterr().err
    assert "eval bicubic" in err and "3/3" in err and "<" in err  # "elapsed<remaining": the ETA
    evaluate("bicubic", EvalData(tmp_path, scale=2), progress=None)  # stderr here is not a terminal
    evaluate("bicubic", EvalData(tmp_path, scale=2), progress=False)
    assert capsys.readouterr().err == ""
    assert main(["eval", "bicubic", "--hr", str(tmp_path), "--scale", "2", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "bicubic" in captured.out


def test_closed_pipe_is_not_a_traceback() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        f"{sys.executable} -m restorekit models --json --no-macs | head -c 10",
        check=False, shell=True, capture_output=True, text=True, timeout=120,
    )
    assert result.stdout.startswith("[")
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_only_short_lived_network_verbs_retain_freed_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    from restorekit import cli, runtime

    calls: list[bool] = []
    monkeypatch.setattr(runtime, "retain_freed_memory", lambda: calls.append(True) or True)
    assert "ui" not in cli.RETAIN_MEMORY_VERBS and "restore" in cli.RETAIN_MEMORY_VERBS
    assert cli.main(["models", "--task", "sr"]) == 0
    assert calls == []  # listing models leaves the allocator alone
    assert cli.main(["export", "no-such-model", "out.onnx"]) == 2
    assert calls == [True]
