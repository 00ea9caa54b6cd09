"""`restorekit bench`: correctness of what it reports (never the timings themselves)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from restorekit.archs import bicubic_pp, vapsr
from restorekit.bench import BenchOptions, BenchResult, bench_model, format_table, parse_size, time_callable
from restorekit.complexity import count_macs, count_params
from restorekit.errors import RestorekitError
from restorekit.model import build_model


def tiny_vapsr() -> torch.nn.Module:
    return build_model("vapsr", vapsr.Config(num_feat=8, num_block=1, d_atten=8)).eval()


def test_parse_size() -> None:
    assert parse_size("320x180") == (320, 180)
    assert parse_size("64X32") == (64, 32)
    for bad in ("320", "axb", "0x10", "-4x4"):
        with pytest.raises(RestorekitError):
            parse_size(bad)


def test_time_callable_counts_runs_and_measures_memory(device: torch.device) -> None:
    calls = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return torch.ones(2_000_000, device=x.device)  # 8 MB live during the call

    times, peak, method = time_callable(fn, torch.zeros(1, device=device), runs=4, warmup=2)
    assert len(calls) == 6 and len(times) == 4
    assert all(t >= 0 for t in times)
    assert peak >= 0
    if method == "cuda-max-allocated":
        assert peak >= 8_000_000


@pytest.mark.slow
def test_bench_model_reports_consistent_numbers(device: torch.device) -> None:
    model = tiny_vapsr()
    params, macs = count_params(model), count_macs(model, 12, 16)
    result = bench_model(model, "tiny", 16, 12, BenchOptions(runs=3, warmup=1, device=device))
    assert isinstance(result, BenchResult)
    assert result.params == params and result.macs == macs and result.size == "16x12"
    assert result.min_ms <= result.median_ms
    # throughput is derived from the median latency
    assert result.megapixels_per_s == pytest.approx(16 * 12 / (result.median_ms / 1e3) / 1e6)
    assert result.gmacs_per_s == pytest.approx(macs / (result.median_ms / 1e3) / 1e9)
    assert "tiny" in format_table([result])


def test_bench_onnx_backend_runs(device: torch.device) -> None:
    pytest.importorskip("onnxruntime")
    if device.type != "cpu":
        pytest.skip("ONNX backend timing on CPU only here")
    model = build_model("bicubic_pp", bicubic_pp.Config(channels=4)).eval()
    result = bench_model(model, "bpp", 10, 8, BenchOptions(backend="onnx", runs=2, warmup=1))
    assert result.backend == "onnx" and result.median_ms > 0


def test_bench_options_are_checked_against_the_one_tables(capsys: pytest.CaptureFixture) -> None:
    from restorekit import cli
    from restorekit.inference.runner import PRECISIONS

    with pytest.raises(RestorekitError, match="backend"):
        BenchOptions(backend="eager")  # the eager PyTorch backend is called "torch", as in `restore --backend`
    for precision in PRECISIONS:
        assert BenchOptions(precision=precision).precision == precision
    with pytest.raises(RestorekitError, match="precision"):
        BenchOptions(precision="fp8")
    with pytest.raises(RestorekitError, match="ONNX"):
        BenchOptions(backend="onnx", precision="bf16")
    with pytest.raises(RestorekitError, match="--runs"):
        BenchOptions(runs=0)
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses it before any model is built
        cli.main(["bench", "vapsr-x4", "--precision", "fp8"])
    assert exit_info.value.code == 2 and "'fp32', 'fp16', 'bf16'" in capsys.readouterr().err


def test_bench_cli_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from restorekit import cli

    weights = tmp_path / "tiny.pth"
    torch.save(tiny_vapsr().net.state_dict(), weights)
    out = tmp_path / "r.json"
    assert cli.main(["bench", str(weights), "--size", "16x12", "--runs", "2", "--warmup", "0", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 1 and rows[0]["size"] == "16x12" and rows[0]["runs"] == 2
    assert rows[0]["params"] == count_params(tiny_vapsr())
    assert "median ms" in capsys.readouterr().out


def test_bench_cli_unknown_model_is_one_line_error(capsys: pytest.CaptureFixture) -> None:
    from restorekit import cli

    assert cli.main(["bench", "no-such-model", "--runs", "1"]) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_bench_cli_unavailable_device_is_one_line_error(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    from restorekit import cli

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU-only build, on any machine
    code = cli.main(["bench", "vapsr-x4", "--size", "32x18", "--device", "cuda", "--runs", "1", "--warmup", "0"])
    assert code == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_bicubic_floor_benchmark_has_help(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bicubic_floor.py"
    monkeypatch.syspath_prepend(str(script.parent))  # as when run as a script: imports benchmarks/timing.py
    spec = importlib.util.spec_from_file_location("bicubic_floor", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])  # must print usage and stop, not run the benchmark
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage:" in out and "--runs" in out and "median CPU ms" not in out


def test_rtsr_score_follows_the_organisers_formula() -> None:
    from restorekit.bench import rtsr_score

    # 1 dB over bicubic at 4 ms: 2 * 2**1 / (0.1 * 2) = 20
    assert rtsr_score(31.0, 30.0, 4.0) == pytest.approx(20.0)
    # every extra dB doubles it; four times the runtime halves it
    assert rtsr_score(32.0, 30.0, 4.0) == pytest.approx(40.0)
    assert rtsr_score(31.0, 30.0, 16.0) == pytest.approx(10.0)
    # no gain over bicubic scores nothing, however fast
    assert rtsr_score(30.0, 30.0, 0.5) == 0.0 and rtsr_score(29.0, 30.0, 0.5) == 0.0
    with pytest.raises(RestorekitError):
        rtsr_score(31.0, 30.0, 0.0)


def test_bench_cli_prints_rtsr_score_for_sr_models(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from restorekit import cli
    from restorekit.bench import rtsr_score

    out = tmp_path / "r.json"
    args = ["bench", "bicubic-pp-x3", "restorekit-denoise", "--size", "32x18", "--runs", "1", "--warmup", "0",
            "--psnr", "31.5", "--bicubic-psnr", "30.4", "--json", str(out)]
    assert cli.main(args) == 0
    assert "RTSR score" in capsys.readouterr().out
    sr, denoise = json.loads(out.read_text())
    assert sr["rtsr_score"] == pytest.approx(rtsr_score(31.5, 30.4, sr["median_ms"]))
    assert denoise["rtsr_score"] is None  # not an SR model: no score


def test_bench_cli_psnr_needs_bicubic_psnr(capsys: pytest.CaptureFixture) -> None:
    from restorekit import cli

    assert cli.main(["bench", "bicubic-pp-x3", "--size", "32x18", "--runs", "1", "--psnr", "31"]) == 2
    assert "--bicubic-psnr" in capsys.readouterr().err


def test_bench_progress_covers_warm_up_and_each_timed_run(capsys: pytest.CaptureFixture) -> None:
    model = tiny_vapsr()
    bench_model(model, "tiny", 16, 12, BenchOptions(runs=3, warmup=2, progress=True))
    err = capsys.readouterr().err
    assert "tiny: warm-up" in err and "tiny: timed runs" in err and "5/5" in err
    assert " ms]" in err  # each timed run shows its time
    bench_model(model, "tiny", 16, 12, BenchOptions(runs=3, warmup=2, progress=None))  # stderr is not a terminal here
    bench_model(model, "tiny", 16, 12, BenchOptions(runs=3, warmup=2))  # the library default: silent
    assert capsys.readouterr().err == ""


def test_bench_cli_quiet_prints_no_bar(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from restorekit import cli

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)  # as on a terminal
    assert cli.main(["bench", "bicubic-pp-x3", "--size", "16x12", "--runs", "2", "--warmup", "1"]) == 0
    assert "timed runs" in capsys.readouterr().err
    assert cli.main(["bench", "bicubic-pp-x3", "--size", "16x12", "--runs", "2", "--warmup", "1", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
