"""Eager speed of restorekit's networks against plain implementations of the official layer graphs,
plus the best other backend, and the machine's fp32 multiply-add peak measured in the same run.

Run (from the repository root; ~10-20 minutes on a loaded 2-core machine):

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python benchmarks/speed.py --json benchmarks/results/speed.json

Protocol, chosen for a shared, loaded machine:
- one thread everywhere (``torch.set_num_threads(1)``, ONNX Runtime ``intra_op_num_threads=1``), so
  every backend runs on the calling thread and ``time.thread_time()`` measures the CPU time the
  computation itself used, which other processes' load barely changes (wall time is reported too);
- reference and ours are interleaved call by call (alternating which goes first), after a warm-up
  call each, so drifts in machine load hit both equally; we compare medians and report the ratio;
- both networks get the same random weights (ours' state dict loaded strictly into the reference;
  NAFNet's beta/gamma, zero at init, are randomised so every branch contributes) and the outputs
  must agree within 1e-4 before anything is timed;
- glibc malloc keeps freed memory for reuse (``restorekit.runtime.retain_freed_memory``, which the
  CLI applies too) unless ``--default-malloc``: otherwise every large activation is page-faulted in
  again on each call, which cost up to 40% of the CPU time of the large-image cases;
- the peak is a 1024x1024x1024 fp32 matmul (MKL/oneDNN sgemm), timed the same way at the start and
  at the end; "fraction of peak" is achieved GMAC/s divided by the larger of the two.

References: NAFNet from spandrel 0.4.2's copy of the official code
(``pip install --no-deps spandrel==0.4.2 einops``), Baseline = the official Baseline block in that
U-Net (``reference/baseline.py``); HINet, RED30, VapSR and Bicubic++ from the
transcriptions in ``benchmarks/reference/``. The TLC case uses the reference NAFNet with our TLC
pooling swapped in, so its ratio measures the rest of the graph.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `reference`

from reference import bicubic_pp as ref_bicubic_pp
from reference import hinet as ref_hinet
from reference import rednet as ref_rednet
from reference import vapsr as ref_vapsr

from restorekit.complexity import count_macs
from restorekit.model import RestorationModel, build_model
from restorekit.runtime import retain_freed_memory
from restorekit.zoo import get_preset


@dataclass
class Case:
    name: str
    preset: str
    width: int
    height: int
    tlc: bool = False


CASES = [
    Case("NAFNet-SIDD-w32", "nafnet-sidd-w32", 256, 256),
    Case("NAFNet-GoPro-w32", "nafnet-gopro-w32", 256, 256),
    Case("NAFNet-GoPro-w32 TLC", "nafnet-gopro-w32", 512, 512, tlc=True),
    Case("Baseline-SIDD-w32", "baseline-sidd-w32", 256, 256),
    Case("HINet-SIDD-1x", "hinet-sidd-1x", 256, 256),
    Case("HINet-SIDD-0.5x", "hinet-sidd-0.5x", 256, 256),
    Case("RED30", "red30-gray", 256, 256),
    Case("VapSR-x4", "vapsr-x4", 320, 180),
    Case("VapSR-S", "vapsr-s", 320, 180),
    Case("Bicubic++ x3", "bicubic-pp-x3", 1280, 720),
]


def build_reference(model: RestorationModel) -> nn.Module:
    """The plain official-graph network for ``model``'s family and config."""
    c = model.config
    if model.family == "nafnet":
        if c.block != "nafnet":
            from reference.baseline import build_baseline

            return build_baseline(c.width, c.enc_blk_nums, c.middle_blk_num, c.dec_blk_nums, c.dw_expand,
                                  c.ffn_expand, c.in_channels)
        from reference.spandrel_nafnet import build_nafnet

        return build_nafnet(c.width, c.enc_blk_nums, c.middle_blk_num, c.dec_blk_nums, c.in_channels)
    if model.family == "hinet":
        return ref_hinet.HINet(c.in_channels, c.width, c.depth, c.relu_slope, c.hin_left, c.hin_right)
    if model.family == "rednet":
        return ref_rednet.RED30(c.in_channels, c.width, c.depth // 2)
    if model.family == "vapsr":
        return ref_vapsr.VapSR(c.in_channels, c.in_channels, c.scale, c.num_feat, c.num_block, c.d_atten, c.conv_groups)
    if model.family == "bicubic_pp":
        return ref_bicubic_pp.BicubicPlusPlus(c.scale, c.channels, c.bias)
    raise NotImplementedError(model.family)


def final(out: Any) -> torch.Tensor:
    return out[-1] if isinstance(out, (list, tuple)) else out


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(thread CPU seconds, wall seconds) of one call."""
    cpu, wall = time.thread_time(), time.perf_counter()
    fn()
    return time.thread_time() - cpu, time.perf_counter() - wall


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, dict[str, float]]:
    """Median/min CPU and wall seconds of each callable, called in alternating order per round."""
    for fn in fns.values():
        fn()  # warm-up: allocator, oneDNN primitive caches
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            samples[name].append(timed(fns[name]))
    return {
        name: {
            "cpu_median_s": statistics.median(s[0] for s in runs),
            "cpu_min_s": min(s[0] for s in runs),
            "wall_median_s": statistics.median(s[1] for s in runs),
            "wall_min_s": min(s[1] for s in runs),
        }
        for name, runs in samples.items()
    }


def matmul_peak_gmacs(n: int = 1024, reps: int = 5) -> float:
    a, b = torch.rand(n, n), torch.rand(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    best = min(timed(lambda: torch.mm(a, b, out=out))[0] for _ in range(reps))
    return n**3 / best / 1e9


def run_case(case: Case, rounds: int, backends: list[str]) -> dict[str, Any]:
    preset = get_preset(case.preset)
    ours = build_model(preset.family, preset.config, preset).eval()
    with torch.no_grad():
        for key, value in ours.net.state_dict().items():
            if key.endswith(("beta", "gamma")):  # zero at init: make the residual branches count
                value.normal_(0.0, 0.2)
    row: dict[str, Any] = {"case": case.name, "preset": case.preset, "size": f"{case.width}x{case.height}"}
    x = torch.rand(1, ours.in_channels, case.height, case.width)
    try:
        ref = build_reference(ours).eval()
        ref.load_state_dict(ours.net.state_dict(), strict=True)
    except NotImplementedError as exc:
        ref = None
        row["reference"] = f"none ({exc})"
    if case.tlc:
        from restorekit.tlc import convert_to_local

        convert_to_local(ours.net, train_size=(preset.train_size, preset.train_size))
        if ref is not None:
            convert_to_local(ref, train_size=(preset.train_size, preset.train_size))
    row["gmacs"] = count_macs(ours, case.height, case.width, ours.in_channels) / 1e9
    fns: dict[str, Callable[[], Any]] = {}
    with torch.inference_mode():
        expected = final(ours(x))
        if ref is not None:
            row["max_abs_diff_vs_reference"] = float((final(ref(x)) - expected).abs().max())
            fns["reference"] = lambda: ref(x)
        fns["ours"] = lambda: ours(x)
        if "channels_last" in backends:
            ours_cl = build_model(preset.family, preset.config, preset).eval()
            ours_cl.load_state_dict(ours.state_dict())
            ours_cl = ours_cl.to(memory_format=torch.channels_last)
            x_cl = x.contiguous(memory_format=torch.channels_last)
            row["max_abs_diff_channels_last"] = float((final(ours_cl(x_cl)) - expected).abs().max())
            fns["ours_channels_last"] = lambda: ours_cl(x_cl)
    if "onnx" in backends:
        from restorekit.export.onnx import OnnxRunner, export_onnx

        path = Path(tempfile.mkdtemp(prefix="rk-speed-")) / "model.onnx"
        export_onnx(ours, path)
        runner = OnnxRunner(path, "cpu", threads=1)
        row["max_abs_diff_onnx"] = float((runner(x) - expected).abs().max())
        fns["onnxruntime"] = lambda: runner(x)
    with torch.inference_mode():
        row["timings"] = interleaved(fns, rounds)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="*", help="case names (default: all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", nargs="*", default=["onnx"], choices=["onnx", "channels_last"])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc malloc as it is (default: retain freed memory, as the restorekit CLI does)")
    args = parser.parse_args()
    retained = False if args.default_malloc else retain_freed_memory()
    torch.set_num_threads(1)
    cases = [c for c in CASES if not args.cases or c.name in args.cases]
    peak_start = matmul_peak_gmacs()
    rows = []
    for case in cases:
        row = run_case(case, args.rounds, args.backends)
        rows.append(row)
        print(json.dumps(row), flush=True)
    peak_end = matmul_peak_gmacs()
    failed = [r["case"] for r in rows if max(v for k, v in r.items() if k.startswith("max_abs_diff")) > 1e-4]
    peak = max(peak_start, peak_end)
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu": _cpu_name(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "malloc": "freed memory retained" if retained else "default"},
        "peak_gmacs_per_s": {"start": peak_start, "end": peak_end},
        "cases": rows,
    }
    print()
    print(markdown(report, peak))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if failed:
        print(f"PARITY FAILURE (max abs diff > 1e-4): {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def markdown(report: dict[str, Any], peak: float) -> str:
    """Tables for BENCHMARKS.md: CPU-time medians, ratios, GMAC/s and fraction of the matmul peak."""
    lines = [
        (
            f"fp32 matmul peak (1 thread): {peak:.1f} GMAC/s "
            f"(start {report['peak_gmacs_per_s']['start']:.1f}, end {report['peak_gmacs_per_s']['end']:.1f})"
        ),
        f"malloc: {report['machine'].get('malloc', 'default')}",
        "",
        (
            "| case | size | GMACs | reference ms | ours ms | ours/ref | other backend ms | best GMAC/s "
            "| best % peak | ref % peak | max diff |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["cases"]:
        t = row["timings"]
        ref = t.get("reference", {}).get("cpu_median_s")
        ours = t["ours"]["cpu_median_s"]
        others = {k: v["cpu_median_s"] for k, v in t.items() if k not in ("reference", "ours")}
        best = min([ours, *others.values()])
        gm = row["gmacs"]
        other_txt = ", ".join(f"{k} {v * 1e3:.0f}" for k, v in others.items()) or "-"
        diffs = [v for k, v in row.items() if k.startswith("max_abs_diff")]
        lines.append(
            f"| {row['case']} | {row['size']} | {gm:.2f} | "
            + (f"{ref * 1e3:.0f}" if ref else "-")
            + f" | {ours * 1e3:.0f} | "
            + (f"{ours / ref:.2f}" if ref else "-")
            + f" | {other_txt} | {gm / best:.1f} | {100 * gm / best / peak:.0f}% | "
            + (f"{100 * gm / ref / peak:.0f}%" if ref else "-")
            + f" | {max(diffs):.1e} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
