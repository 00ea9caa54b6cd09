"""ONNX export: parity with PyTorch (<= 1e-4 fp32) at two input sizes per family (dynamic H/W),
metadata, OnnxRunner behaviour, and the `export` CLI verb. Tiny random models keep it fast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("onnxruntime")  # the optional `onnx` extra; CI installs it

from restorekit.archs import FAMILIES
from restorekit.export import ExportError, OnnxRunner, export_onnx
from restorekit.model import build_model

# The smallest config of each family that still exercises every block type. A new family must
# add itself here: test_every_family_has_a_tiny_config fails until it does.
TINY_FIELDS: dict[str, dict[str, Any]] = {
    "vapsr": {"num_feat": 8, "num_block": 2, "d_atten": 8},
    "bicubic_pp": {"channels": 8},
    "nafnet": {"width": 8, "enc_blk_nums": (1, 1), "middle_blk_num": 1, "dec_blk_nums": (1, 1)},
    "hinet": {"width": 4, "depth": 3, "hin_left": 0, "hin_right": 2},
    "rednet": {"depth": 6, "width": 8},
}
# (test id, family, extra fields): every family plus the variants whose graph differs
CASES = [(name, name, {}) for name in TINY_FIELDS] + [("nafnet-baseline", "nafnet", {"block": "baseline"})]


def tiny_model(family: str, device: torch.device, **overrides: Any) -> torch.nn.Module:
    config = FAMILIES[family].Config(**{**TINY_FIELDS[family], **overrides})
    return build_model(family, config).eval().to(device)


def sizes_for(model: Any) -> list[tuple[int, int]]:
    """Two different sizes, neither aligned to the family's pixel grid, so padding is exercised."""
    align = max(model.alignment, 2)
    return [(2 * align + 1, 3 * align + 3), (3 * align + 3, 2 * align + 1)]


def test_every_family_has_a_tiny_config() -> None:
    assert set(FAMILIES) <= set(TINY_FIELDS), f"add a tiny config for {set(FAMILIES) - set(TINY_FIELDS)}"


@pytest.mark.slow
@pytest.mark.parametrize(("family", "extra"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_onnx_matches_pytorch_at_two_sizes(family: str, extra: dict[str, Any], tmp_path: Path) -> None:
    if family not in FAMILIES:
        pytest.fail(f"family {family} is not registered in restorekit.archs.FAMILIES")
    model = tiny_model(family, torch.device("cpu"), **extra)
    path = export_onnx(model, tmp_path / f"{family}.onnx")
    runner = OnnxRunner(path, "cpu")
    for height, width in sizes_for(model):
        x = torch.rand(2, model.in_channels, height, width)  # batch 2: the batch axis is dynamic too
        with torch.inference_mode():
            expected = model(x)
        got = runner(x)
        assert got.shape == (2, model.in_channels, height * model.scale, width * model.scale)
        assert got.dtype == torch.float32
        assert (got - expected).abs().max().item() <= 1e-4, (family, height, width)


def test_metadata_records_family_scale_alignment(tmp_path: Path) -> None:
    model = tiny_model("bicubic_pp", torch.device("cpu"))
    runner = OnnxRunner(export_onnx(model, tmp_path / "b.onnx"))
    assert runner.family == "bicubic_pp"
    assert runner.scale == 3
    assert runner.alignment == 2
    assert runner.metadata["restorekit.precision"] == "fp32"
    assert '"channels": 8' in runner.metadata["restorekit.config"]


@pytest.mark.slow
def test_fp16_export_is_close_and_returns_fp32(tmp_path: Path) -> None:
    model = tiny_model("vapsr", torch.device("cpu"))
    runner = OnnxRunner(export_onnx(model, tmp_path / "v16.onnx", precision="fp16"))
    assert runner.input_dtype == torch.float16
    x = torch.rand(1, 3, 11, 14)
    got = runner(x)
    assert got.dtype == torch.float32
    assert (got - model(x).detach()).abs().max().item() < 5e-2
    # the caller's model must stay fp32 after an fp16 export
    assert next(model.parameters()).dtype == torch.float32


def test_runner_rejects_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="not found"):
        OnnxRunner(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx file")
    with pytest.raises(ExportError, match="garbage.onnx"):
        OnnxRunner(garbage)
    with pytest.raises(ExportError, match="precision"):
        export_onnx(tiny_model("vapsr", torch.device("cpu")), tmp_path / "x.onnx", precision="int3")


def test_runner_returns_on_requested_device(tmp_path: Path, device: torch.device) -> None:
    if device.type not in ("cpu", "cuda"):
        pytest.skip("OnnxRunner supports cpu and cuda")
    model = tiny_model("bicubic_pp", torch.device("cpu"))
    path = export_onnx(model, tmp_path / "b.onnx")
    import onnxruntime as ort

    if device.type == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ExportError, match="CUDA"):
            OnnxRunner(path, device)
        return
    out = OnnxRunner(path, device)(torch.rand(1, 3, 6, 8, device=device))
    assert out.device.type == device.type


def test_export_cli_writes_and_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from restorekit import cli

    model = tiny_model("vapsr", torch.device("cpu"))
    weights = tmp_path / "tiny_vapsr.pth"
    torch.save(model.net.state_dict(), weights)
    out = tmp_path / "out" / "tiny.onnx"
    assert cli.main(["export", str(weights), str(out)]) == 0
    assert out.is_file()
    printed = capsys.readouterr().out
    assert "max abs diff" in printed
    assert OnnxRunner(out).family == "vapsr"  # detected from the tensors alone


@pytest.mark.slow
def test_tlc_model_exports_for_sizes_above_its_window(tmp_path: Path) -> None:
    from restorekit.tlc import convert_to_local

    model = tiny_model("nafnet", torch.device("cpu"))
    convert_to_local(model.net, train_size=(16, 16))  # windows of 1.5 x 16 = 24 pixels at the input level
    runner = OnnxRunner(export_onnx(model, tmp_path / "tlc.onnx"))
    assert runner.min_size == (25, 25)
    for height, width in [(29, 37), (41, 26)]:
        x = torch.rand(1, 3, height, width)
        with torch.inference_mode():
            expected = model(x)
        assert (runner(x) - expected).abs().max().item() <= 1e-4, (height, width)
    with pytest.raises(ExportError, match="at least 25x25"):
        runner(torch.rand(1, 3, 20, 30))


def test_export_cli_refuses_other_suffixes_and_unknown_names(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from restorekit import cli

    weights = tmp_path / "tiny_vapsr.pth"
    torch.save(tiny_model("vapsr", torch.device("cpu")).net.state_dict(), weights)
    assert cli.main(["export", str(weights), str(tmp_path / "out.txt")]) == 2
    assert ".onnx" in capsys.readouterr().err and not (tmp_path / "out.txt").exists()
    assert cli.main(["export", "nosuch", str(tmp_path / "out.onnx")]) == 2
    err = capsys.readouterr().err
    assert "nosuch: neither a preset name" in err and "restorekit models" in err
