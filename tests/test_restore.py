"""``model.restore`` returns the same kind it was given; ``restorekit restore`` batches never lose
work (corrupt files, existing outputs, inputs never overwritten, pixel limit); end to end with the
official VapSR weights and with tiny random models passed by ``--weights``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

import restorekit
from restorekit import restore as restore_module
from restorekit.archs import bicubic_pp, rednet, vapsr
from restorekit.cli import main
from restorekit.errors import RestorekitError, WeightsError
from restorekit.inference.pipeline import rgb_to_ycbcr, ycbcr_to_rgb
from restorekit.loading import save_safetensors
from restorekit.model import RestorationModel, build_model
from restorekit.restore import DEFAULT_PRESETS, SAMPLE_IMAGE, choose_preset, restore_file


@pytest.fixture
def tiny_sr(device: torch.device) -> RestorationModel:
    return build_model("vapsr", vapsr.Config(scale=2, num_feat=8, num_block=2, d_atten=8)).eval().to(device)


@pytest.fixture
def tiny_weights(tmp_path: Path) -> Path:
    """A tiny x3 Bicubic++ saved as safetensors, as a user's own weights file would be."""
    model = build_model("bicubic_pp", bicubic_pp.Config(channels=8))
    return save_safetensors(model, tmp_path / "weights" / "tiny.safetensors")


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(array).save(path)
    return path


@pytest.mark.parametrize(
    "array",
    [
        (np.random.rand(10, 12, 3) * 255).astype(np.uint8),
        (np.random.rand(10, 12, 3) * 65535).astype(np.uint16),
        np.random.rand(10, 12, 3).astype(np.float32),
        np.random.rand(10, 12, 3),  # float64
        (np.random.rand(10, 12) * 255).astype(np.uint8),  # grey H x W
        (np.random.rand(10, 12, 4) * 255).astype(np.uint8),  # RGBA
    ],
    ids=["u8", "u16", "f32", "f64", "grey", "rgba"],
)
def test_numpy_in_numpy_out(tiny_sr: RestorationModel, array: np.ndarray) -> None:
    out = tiny_sr.restore(array)
    assert isinstance(out, np.ndarray) and out.dtype == array.dtype
    assert out.shape == (20, 24, *array.shape[2:])


def test_pil_and_tensor_give_the_same_pixels(tiny_sr: RestorationModel, device: torch.device) -> None:
    array = (np.random.rand(10, 12, 3) * 255).astype(np.uint8)
    from_numpy = tiny_sr.restore(array)
    from_pil = tiny_sr.restore(PILImage.fromarray(array))
    assert isinstance(from_pil, PILImage.Image) and from_pil.mode == "RGB" and from_pil.size == (24, 20)
    np.testing.assert_array_equal(np.asarray(from_pil), from_numpy)
    grey = tiny_sr.restore(PILImage.fromarray(array[..., 0]))
    assert grey.mode == "L"
    tensor = torch.from_numpy(array).permute(2, 0, 1).float().div(255).to(device)
    out = tiny_sr.restore(tensor)
    assert isinstance(out, torch.Tensor) and out.shape == (3, 20, 24) and out.device == tensor.device
    assert out.dtype == torch.float32
    assert np.abs(np.clip(out.permute(1, 2, 0).cpu().numpy() * 255, 0, 255) - from_numpy).max() <= 0.51
    batch = tiny_sr.restore(torch.stack([tensor, tensor]))
    assert batch.shape == (2, 3, 20, 24)
    torch.testing.assert_close(batch[1], out)


def test_alpha_is_kept_and_upscaled(tiny_sr: RestorationModel) -> None:
    rgba = (np.random.rand(8, 9, 4) * 255).astype(np.uint8)
    rgba[..., 3] = 200
    out = tiny_sr.restore(rgba)
    assert out.shape == (16, 18, 4) and np.all(out[..., 3] == 200)


def test_grey_model_on_colour_keeps_chroma(device: torch.device) -> None:
    model = build_model("rednet", rednet.Config(depth=4, width=8, in_channels=1)).eval().to(device)
    rgb = np.random.rand(12, 14, 3).astype(np.float32) * 0.5 + 0.25
    out = model.restore(rgb)
    assert out.shape == rgb.shape
    ycc_in = rgb_to_ycbcr(torch.from_numpy(rgb).permute(2, 0, 1)[None])
    ycc_out = rgb_to_ycbcr(torch.from_numpy(out).permute(2, 0, 1)[None])
    torch.testing.assert_close(ycc_out[:, 1:], ycc_in[:, 1:], atol=1e-5, rtol=0)
    assert not torch.allclose(ycc_out[:, :1], ycc_in[:, :1])  # luminance was processed
    torch.testing.assert_close(ycbcr_to_rgb(ycc_in), torch.from_numpy(rgb).permute(2, 0, 1)[None], atol=1e-5, rtol=0)


def test_restore_rejects_what_it_cannot_handle(tiny_sr: RestorationModel) -> None:
    with pytest.raises(RestorekitError, match="int32"):
        tiny_sr.restore(np.zeros((4, 4, 3), np.int32))
    with pytest.raises(RestorekitError, match="shape"):
        tiny_sr.restore(np.zeros((4, 4, 5), np.uint8))


def test_preset_choice() -> None:
    assert DEFAULT_PRESETS["denoise"] == "restorekit-denoise" and DEFAULT_PRESETS["sr"] == "restorekit-sr-x3"
    assert choose_preset("denoise", None, None) == "restorekit-denoise"
    assert choose_preset("sr", None, 4) == "vapsr-x4"
    assert choose_preset("sr", "vapsr-x4", 2) == "vapsr-x2"
    assert choose_preset("sr", "vapsr-x4", None) == "vapsr-x4"
    with pytest.raises(RestorekitError, match="scale 2"):
        choose_preset("sr", "bicubic-pp-x3", 2)
    with pytest.raises(RestorekitError, match="unknown model"):
        choose_preset("sr", "no-such-model", None)


def test_batch_continues_past_a_corrupt_file(tmp_path: Path, tiny_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inputs = tmp_path / "in"
    _save(inputs / "a.png", (np.random.rand(9, 10, 3) * 255).astype(np.uint8))
    _save(inputs / "sub" / "b.png", (np.random.rand(8, 6) * 255).astype(np.uint8))
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    code = main(["restore", str(inputs), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights),
                 "--recursive", "--quiet", "--suffix", "_x3"])
    captured = capsys.readouterr()
    assert code == 1
    assert "broken.png" in captured.err and "done 2, failed 1, skipped 0" in captured.out
    assert captured.err.count("broken.png") == 1  # reported once, not again in the summary
    with PILImage.open(tmp_path / "out" / "a_x3.png") as im:
        assert im.size == (30, 27) and im.mode == "RGB"
    with PILImage.open(tmp_path / "out" / "sub" / "b_x3.png") as im:
        assert im.size == (18, 24) and im.mode == "L"
    assert not list((tmp_path / "out").rglob("*.part"))


def test_existing_outputs_are_skipped_unless_overwrite(tmp_path: Path, tiny_weights: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    source = _save(tmp_path / "in" / "a.png", (np.random.rand(6, 6, 3) * 255).astype(np.uint8))
    existing = tmp_path / "out" / "a.png"
    existing.parent.mkdir()
    existing.write_bytes(b"keep me")
    argv = ["restore", str(source), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights), "--quiet"]
    assert main(argv) == 0
    assert existing.read_bytes() == b"keep me" and "skipped 1" in capsys.readouterr().out
    assert main([*argv, "--overwrite", "--format", "png"]) == 0
    with PILImage.open(existing) as im:
        assert im.size == (18, 18)


def test_input_is_never_overwritten(tmp_path: Path, tiny_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _save(tmp_path / "a.png", (np.random.rand(6, 6, 3) * 255).astype(np.uint8))
    before = source.read_bytes()
    code = main(["restore", str(source), "-o", str(tmp_path), "--weights", str(tiny_weights), "--overwrite", "--quiet"])
    assert code == 1 and "is an input file" in capsys.readouterr().err
    assert source.read_bytes() == before
    with pytest.raises(RestorekitError, match="overwrite the input"):
        restore_file(source, source, tiny_weights, overwrite=True)


def test_pixel_limit_and_missing_inputs_are_failures(tmp_path: Path, tiny_weights: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    source = _save(tmp_path / "a.png", (np.random.rand(6, 7, 3) * 255).astype(np.uint8))
    code = main(["restore", str(source), str(tmp_path / "nope*.png"), "-o", str(tmp_path / "out"),
                 "--weights", str(tiny_weights), "--max-pixels", "40", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "exceeds the limit of 40" in err and "nope*.png" in err
    assert not (tmp_path / "out" / "a.png").exists()


def test_missing_weights_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _save(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    code = main(["restore", str(source), "-o", str(tmp_path / "out"), "--weights", str(tmp_path / "none.pth")])
    assert code == 2 and "none.pth: no such weights file" in capsys.readouterr().err


def test_precisions_come_from_the_one_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from restorekit import export, precision
    from restorekit.inference.runner import PRECISIONS

    assert tuple(PRECISIONS) == precision.NAMES and PRECISIONS["bf16"] is torch.bfloat16  # dtypes from the names
    assert set(export.PRECISIONS) < set(PRECISIONS)  # ONNX: a subset (no bf16 export)
    source = _save(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(SystemExit) as exit_info:
        main(["restore", str(source), "-o", str(tmp_path / "out"), "--precision", "fp8"])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and all(name in error for name in PRECISIONS)
    assert not (tmp_path / "out").exists()  # refused before anything was made


def test_restore_file_api(tmp_path: Path, tiny_sr: RestorationModel) -> None:
    source = _save(tmp_path / "a.png", (np.random.rand(6, 7, 3) * 255).astype(np.uint8))
    out = restorekit.restore_file(source, tmp_path / "out" / "a.webp", tiny_sr, format="webp",
                                  options=restorekit.RestoreOptions(tile=4, tile_overlap=1))
    with PILImage.open(out) as im:
        assert im.format == "WEBP" and im.size == (14, 12)
    with pytest.raises(RestorekitError, match="exists"):
        restorekit.restore_file(source, out, tiny_sr)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def test_official_vapsr_beats_bicubic_end_to_end(shared_data: Path, shared_weights: Path, tmp_path: Path) -> None:
    """CLI with the official VapSR x4 weights on a Set5 crop: better than bicubic upscaling."""
    lr = np.asarray(PILImage.open(shared_data / "sr/Set5/LR_bicubic/X4/babyx4.png").convert("RGB"))
    hr = np.asarray(PILImage.open(shared_data / "sr/Set5/HR/baby.png").convert("RGB"))
    crop = lr[40:76, 40:76]
    _save(tmp_path / "crop.png", crop)
    code = main(["restore", str(tmp_path / "crop.png"), "-o", str(tmp_path / "out"), "--model", "vapsr-x4",
                 "--task", "sr", "--device", "cpu", "--quiet"])
    assert code == 0
    out = np.asarray(PILImage.open(tmp_path / "out" / "crop.png"))
    target = hr[160:304, 160:304]
    bicubic = np.asarray(PILImage.fromarray(crop).resize((144, 144), PILImage.Resampling.BICUBIC))
    inner = np.s_[8:-8, 8:-8]  # the crop's own border lacks context
    assert _psnr(out[inner], target[inner]) > _psnr(bicubic[inner], target[inner]) + 0.5


def test_shipped_sample_image(tiny_sr: RestorationModel) -> None:
    assert SAMPLE_IMAGE.stat().st_size <= 300 * 1024
    with PILImage.open(SAMPLE_IMAGE) as im:
        assert im.size == (256, 256) and im.mode == "RGB"
        noisy = np.asarray(im)
    assert noisy.astype(np.float64).std() > 20  # really noisy, not a blank
    assert tiny_sr.restore(noisy[:32, :32]).shape == (64, 64, 3)


def test_half_precision_autocast_and_bad_precision(tiny_sr: RestorationModel, device: torch.device) -> None:
    array = np.random.rand(10, 12, 3).astype(np.float32)
    reference = tiny_sr.restore(array)
    half = tiny_sr.restore(array, precision="bf16")
    assert half.dtype == np.float32 and np.abs(half - reference).max() < 0.05
    with pytest.raises(RestorekitError, match="precision"):
        tiny_sr.restore(array, precision="fp8")


def test_out_of_memory_halves_automatic_tiles(tiny_sr: RestorationModel, monkeypatch: pytest.MonkeyPatch) -> None:
    """An OOM with automatic tiles retries the image with smaller tiles; the result is unchanged."""
    from restorekit.inference import pipeline

    monkeypatch.setattr(pipeline, "_tile_size", lambda *args: 4096)
    calls = {"n": 0}
    real = tiny_sr.net.forward

    def flaky(x: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if x.shape[-1] > 150:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")
        return real(x)

    array = np.random.rand(90, 300, 3).astype(np.float32)
    expected = tiny_sr.restore(array, tile=0)
    monkeypatch.setattr(tiny_sr.net, "forward", flaky)
    out = tiny_sr.restore(array)
    assert calls["n"] > 1 and np.abs(out - expected).max() < 1e-4
    with pytest.raises(RestorekitError, match="out of memory"):
        tiny_sr.restore(array, tile=300)


def test_onnx_backend_gives_the_torch_result(tmp_path: Path) -> None:
    """`restorekit restore --backend onnx` runs an export of the same model through ONNX Runtime."""
    pytest.importorskip("onnxruntime")
    weights = save_safetensors(
        build_model("vapsr", vapsr.Config(scale=2, num_feat=8, num_block=1, d_atten=8)), tmp_path / "m.safetensors"
    )
    source = tmp_path / "in.png"
    PILImage.fromarray((np.random.default_rng(0).random((21, 30, 3)) * 255).astype(np.uint8)).save(source)
    outputs = {}
    for backend in ("torch", "onnx"):
        outdir = tmp_path / backend
        assert main(["restore", str(source), "-o", str(outdir), "--weights", str(weights),
                         "--backend", backend, "--quiet", "--device", "cpu"]) == 0
        outputs[backend] = np.asarray(PILImage.open(outdir / "in.png")).astype(int)
    assert outputs["torch"].shape == (42, 60, 3)
    assert np.abs(outputs["torch"] - outputs["onnx"]).max() <= 1


def test_missing_default_model_suggests_one_that_is_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """QA: the hint named the model that had just failed, after a double period."""
    def no_weights(name: str, **_kwargs: object) -> RestorationModel:
        raise WeightsError(f"weights for {name!r} not found locally. Put the file in RESTOREKIT_WEIGHTS.")

    monkeypatch.setattr(restore_module, "load", no_weights)
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("RESTOREKIT_WEIGHTS", str(folder))
    monkeypatch.setenv("RESTOREKIT_CACHE", str(tmp_path / "cache"))
    source = _save(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    argv = ["restore", str(source), "-o", str(tmp_path / "out"), "--task", "derain"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert ".." not in err and "RESTOREKIT_WEIGHTS. The default model for --task derain is 'hinet-rain13k'" in err
    assert "no other --task derain model has weights here" in err and "(e.g." not in err
    default = restore_module.PRESETS[DEFAULT_PRESETS["deblur"]].filename
    other = next(p for p in restore_module.PRESETS.values() if p.task == "deblur" and p.filename != default)
    (folder / other.filename).write_bytes(b"")  # only its presence counts for the hint
    assert main([*argv[:-1], "deblur"]) == 2
    err = capsys.readouterr().err
    assert f"choose another with --model (with weights here: {other.name}) or pass --weights FILE." in err


# --- reliability (issue 13) -------------------------------------------------------------------


def test_an_output_folder_that_cannot_be_made_stops_the_run_before_the_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """QA: a 288-file batch ran the model for 75 s, then failed every file on the output folder."""
    source = _save(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "file").write_text("a file, not a folder")

    def no_model(*_: object, **__: object) -> RestorationModel:
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(restore_module, "load_model", no_model)
    assert main(["restore", str(source), "-o", str(tmp_path / "file"), "--quiet"]) == 2
    assert f"{tmp_path / 'file'}: cannot be the output folder: a file of that name exists" in capsys.readouterr().err
    assert main(["restore", str(source), "-o", str(tmp_path / "file" / "sub"), "--quiet"]) == 2
    assert "cannot write in the output folder (Not a directory)" in capsys.readouterr().err


def test_a_write_killed_midway_leaves_a_temp_file_that_the_next_run_removes(
        tmp_path: Path, tiny_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """QA: a SIGKILL during a write left hidden .part files that later runs never cleaned."""
    source = _save(tmp_path / "in" / "a.png", (np.random.rand(6, 7, 3) * 255).astype(np.uint8))
    outdir = tmp_path / "out"
    killed = subprocess.run([sys.executable, "-c", (
        "import os, signal, sys, numpy as np\n"
        "from restorekit import imageio\n"
        "imageio.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)  # die between write and rename\n"
        "imageio.write_image(imageio.Image(np.zeros((4, 4, 3), np.uint8)), sys.argv[1])\n"
    ), str(outdir / "a.png")], check=False)
    assert killed.returncode == -signal.SIGKILL
    leftovers = list(outdir.glob(".restorekit-*.part"))
    assert len(leftovers) == 1 and not (outdir / "a.png").exists()  # nothing under the final name
    assert main(["restore", str(source), "-o", str(outdir), "--weights", str(tiny_weights), "--quiet"]) == 0
    assert f"removed an abandoned temp file: {leftovers[0]}" in capsys.readouterr().err
    assert [p.name for p in outdir.iterdir()] == ["a.png"]


def test_non_finite_model_output_fails_the_file(tmp_path: Path, tiny_sr: RestorationModel,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """QA: NaN weights gave an all-black image reported as done."""
    source = _save(tmp_path / "a.png", (np.random.rand(6, 7, 3) * 255).astype(np.uint8))
    monkeypatch.setattr(tiny_sr.net, "forward", lambda x: torch.full_like(x, float("nan")).repeat(1, 1, 2, 2))
    with pytest.raises(RestorekitError, match="NaN or infinite"):
        restore_file(source, tmp_path / "out.png", tiny_sr)
    assert not (tmp_path / "out.png").exists()


def test_inputs_expand_without_surprises(tmp_path: Path) -> None:
    """Existing names are never globs; a file reached twice is restored once and the other name is
    reported; broken links are inputs (refused later, by name), not silently dropped."""
    folder = tmp_path / "in"
    for name in ("[x].png", "x.png", "b.png"):
        _save(folder / name, np.zeros((4, 4, 3), np.uint8))
    os.symlink("b.png", folder / "c_link.png")
    os.symlink("gone.png", folder / "d_dangling.png")
    os.symlink("x.png", folder / "[y].png")
    _save(folder / "out" / "old.png", np.zeros((4, 4, 3), np.uint8))  # a previous run's output inside the input
    found = restore_module.collect_inputs([str(folder / "[x].png"), str(folder), str(folder / "b.png"),
                                           str(folder / "nope*.png")], recursive=True, exclude=folder / "out")
    names = [f.name for f, _ in found.files]
    assert names == ["[x].png", "[y].png", "b.png", "d_dangling.png"]  # [y].png is x.png: x.png is the duplicate
    assert sorted((p.name, r.split(",")[0]) for p, r in found.skipped) == [
        ("[x].png", "given twice"), ("b.png", "given twice"), ("c_link.png", f"same file as {folder / 'b.png'}"),
        ("x.png", f"same file as {folder / '[y].png'}")]
    assert found.failed == [(folder / "nope*.png", "no file matches this glob")]


def test_output_names_say_what_their_data_is(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cases = {"a.gif": "a.png", "b.ppm": "b.png", "scan": "scan.png", "c.JPEG": "c.JPEG", "d.tiff": "d.tiff"}
    for name, expected in cases.items():
        assert restore_module.output_path(tmp_path / name, tmp_path, out, "", "same") == out / expected
    assert restore_module.output_path(tmp_path / "a.gif", tmp_path, out, "_x", "webp") == out / "a_x.webp"


def test_exit_codes_say_what_happened(tmp_path: Path, tiny_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _save(tmp_path / "in" / "a.png", (np.random.rand(6, 7, 3) * 255).astype(np.uint8))
    argv = ["restore", str(source), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights), "--quiet"]
    assert main(argv) == 0  # restored
    assert main(argv) == 0  # resumed: every output already there, nothing failed
    (tmp_path / "in" / "bad.png").write_bytes(b"not a png")
    assert main([*argv[:2], str(tmp_path / "in" / "bad.png"), *argv[2:]]) == 1  # one input failed
    assert main([*argv[:-3], "--weights", str(tmp_path / "none.pth")]) == 2  # could not start
    capsys.readouterr()


def test_mcmaster_tiff_keeps_its_width_at_x3(shared_data: Path, tmp_path: Path) -> None:
    """QA: the x3 SR of an 8-bit TIFF kept the input's width tag (500 x 1500 instead of 1500 x 1500)."""
    assert main(["restore", str(shared_data / "denoise/McMaster/1.tif"), "-o", str(tmp_path), "--task", "sr",
                 "--device", "cpu", "--quiet"]) == 0
    import tifffile

    with PILImage.open(tmp_path / "1.tif") as im:
        assert im.size == (1500, 1500)
    assert tifffile.imread(tmp_path / "1.tif").shape == (1500, 1500, 3)
