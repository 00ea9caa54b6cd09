"""``restorekit bench``: params, MACs, latency, throughput and peak memory of models.

Timing protocol: ``warmup`` untimed calls (allocator, oneDNN primitive caches, cuDNN autotuning,
torch.compile's first compile), then ``runs`` timed calls; we report the median (the typical
cost) and the minimum (the least-disturbed run, which matters on a shared machine). CUDA is
synchronised around every call so the wall clock measures the kernels, not their launch.

Memory: on CUDA, ``torch.cuda.max_memory_allocated`` during the timed calls minus what was
allocated before them (tensors only, not the caching allocator's reserve). On CPU there is no
allocator counter, so a background thread samples the process's resident set size (``/proc``)
every millisecond from before the warm-up calls to the end of the timed calls, and we report peak
minus the RSS before them (so ONNX Runtime's arena, grown on the first call, counts); it includes
allocator caching and misses spikes shorter than the sampling period, hence "rss-sampled".
Where ``/proc`` is missing (macOS) we fall back to the growth of ``ru_maxrss``, which is 0 when
an earlier peak was higher ("maxrss-delta"). The method is part of every result.

NTIRE 2023 real-time SR score (``--psnr``/``--bicubic-psnr``, SR models only): the challenge
organisers' scoring function (notebook ``demo/calc_scoring.ipynb`` in ``eduardzamfir/NTIRE23-RTSR``):
``S(P, t) = 2 * 2**(P - P_bicubic) / (C * sqrt(t))`` with ``C = 0.1`` and ``t`` the runtime in ms, and
``S = 0`` when the model does not beat bicubic. It mixes a PSNR measured on a test set with a time
measured here, so it is only comparable between runs that used the same set and the same machine.

Progress: the command shows a bar over the warm-up and timed calls of each model on a terminal
(stderr), and nothing with ``--quiet`` or when stderr is not a terminal. The bar is updated
between calls, outside the timed region. PyTorch is imported inside the functions that use it, so
``restorekit bench --help`` answers without it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import write_text_atomic
from .errors import RestorekitError
from .precision import NAMES as PRECISIONS  # torch-free: --help lists them
from .precision import ONNX_NAMES as ONNX_PRECISIONS

if TYPE_CHECKING:
    import torch
    from torch import nn

BACKENDS = ("torch", "compile", "onnx")  # "torch": eager PyTorch, as in `restorekit restore --backend`


@dataclass
class BenchResult:
    """One model at one size and backend. Latencies in milliseconds, memory in MiB."""

    model: str
    backend: str
    precision: str
    device: str
    threads: int
    size: str  # input W x H
    batch: int
    params: int
    macs: int  # of one image
    runs: int
    median_ms: float
    min_ms: float
    megapixels_per_s: float  # input megapixels per second at the median latency
    gmacs_per_s: float  # achieved multiply-adds per second at the median latency
    peak_memory_mib: float
    memory_method: str
    notes: list[str] = field(default_factory=list)
    rtsr_score: float | None = None  # NTIRE 2023 real-time SR score at the median latency, when asked


RTSR_SCORE_CONSTANT = 0.1


def rtsr_score(psnr: float, bicubic_psnr: float, runtime_ms: float) -> float:
    """NTIRE 2023 real-time SR challenge score: ``2 * 2**(psnr - bicubic_psnr) / (0.1 * sqrt(ms))``,
    0 when the model does not beat bicubic (the organisers' scoring notebook; see the module doc)."""
    if runtime_ms <= 0:
        raise RestorekitError(f"runtime must be positive, got {runtime_ms} ms")
    gain = max(psnr - bicubic_psnr, 0.0)
    if gain == 0.0:
        return 0.0
    return 2.0 * 2.0**gain / (RTSR_SCORE_CONSTANT * runtime_ms**0.5)


class _RssSampler:
    """Peak resident set size over a block, sampled from /proc/self/statm in a thread."""

    def __init__(self, period_s: float = 0.001) -> None:
        self.period_s = period_s
        self.page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def available() -> bool:
        return Path("/proc/self/statm").is_file()

    def rss(self) -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * self.page

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.period_s)

    def __enter__(self) -> _RssSampler:  # noqa: PYI034 (private class, never subclassed)
        self.start = self.rss()
        self.peak = self.start
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class _Progress:
    """A bar over the warm-up and timed calls of one model; does nothing when disabled.

    ``enabled``: True, False, or None for "on a terminal only" (tqdm's own test of stderr).
    """

    def __init__(self, name: str, warmup: int, runs: int, enabled: bool | None) -> None:
        from tqdm import tqdm

        self.name = name
        # redrawn after every call (mininterval=0): a call is slow next to a redraw, and a user
        # watching minutes of warm-up should see each one land
        self.bar = tqdm(total=warmup + runs, desc=f"{name}: warm-up", unit="call", leave=False, mininterval=0,
                        disable=None if enabled is None else not enabled)

    def warmed_up(self) -> None:
        self.bar.update(1)

    def timed(self, seconds: float) -> None:
        self.bar.set_description(f"{self.name}: timed runs", refresh=False)
        self.bar.set_postfix_str(f"{seconds * 1e3:.1f} ms", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def time_callable(
    fn: Callable[[torch.Tensor], Any], x: torch.Tensor, runs: int, warmup: int,
    progress: bool | None = False, name: str = "bench",
) -> tuple[list[float], float, str]:
    """Call ``fn(x)`` ``warmup`` + ``runs`` times: (per-run seconds, peak extra memory in bytes, method).

    ``progress``: show a bar named ``name`` (None: only when stderr is a terminal).
    """
    import torch

    device = x.device
    bar = _Progress(name, warmup, runs, progress)
    try:
        with torch.inference_mode():
            if device.type != "cuda" and _RssSampler.available():
                # sample from before the warm-up: runtimes with their own arena (ONNX Runtime) grow it
                # during the first call and keep it, so a window over the timed calls alone shows ~0
                with _RssSampler() as sampler:
                    _warm_up(fn, x, warmup, bar)
                    times = _timed_calls(fn, x, runs, device, bar)
                return times, float(sampler.peak - sampler.start), "rss-sampled"
            _warm_up(fn, x, warmup, bar)
            _sync(device)
            if device.type == "cuda":
                base = torch.cuda.memory_allocated(device)
                torch.cuda.reset_peak_memory_stats(device)
                times = _timed_calls(fn, x, runs, device, bar)
                return times, float(torch.cuda.max_memory_allocated(device) - base), "cuda-max-allocated"
            import resource

            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            times = _timed_calls(fn, x, runs, device, bar)
            after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return times, float(max(after - before, 0) * 1024), "maxrss-delta"  # Linux reports KiB
    finally:
        bar.close()


def _warm_up(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, warmup: int, bar: _Progress) -> None:
    for _ in range(warmup):
        fn(x)
        bar.warmed_up()


def _timed_calls(
    fn: Callable[[torch.Tensor], Any], x: torch.Tensor, runs: int, device: torch.device, bar: _Progress
) -> list[float]:
    """Wall seconds of each of ``runs`` calls, synchronising the device after each."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(x)
        _sync(device)
        times.append(time.perf_counter() - start)
        bar.timed(times[-1])  # after the clock stopped: drawing the bar is not part of the call
    return times


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` -> (width, height)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise RestorekitError(f"--size must look like 256x256 (W x H), got {text!r}") from None
    if width <= 0 or height <= 0:
        raise RestorekitError(f"--size must be positive, got {text!r}")
    return width, height


def resolve_model(name: str, tlc: bool | None = None) -> tuple[nn.Module, list[str]]:
    """A model to time: a preset name builds its architecture with random weights (timing does
    not depend on the values, and no download is needed); a file path loads the weights."""
    from .model import build_model, load
    from .zoo import PRESETS

    if name in PRESETS and not Path(name).exists():
        preset = PRESETS[name]
        model = build_model(preset.family, preset.config, preset).eval()
        notes = ["random weights (architecture of the preset)"]
        use_tlc = preset.tlc if tlc is None else tlc
        if use_tlc:
            from .tlc import convert_to_local

            convert_to_local(model.net, train_size=(preset.train_size, preset.train_size))
            notes.append("TLC")
        return model, notes
    return load(name, tlc=tlc), ["weights from file"]


@dataclass(frozen=True)
class BenchOptions:
    """How ``bench_model`` times a model: the run options of ``restorekit bench``.

    ``backend``: ``torch`` (eager PyTorch, the name ``restorekit restore --backend`` uses), ``compile``
    (``torch.compile`` of it) or ``onnx`` (ONNX Runtime on a temporary export; fp32 and fp16).
    ``precision``: a name of ``inference.runner.PRECISIONS``; model and input are cast to it (no
    autocast: what a deployment in that precision runs). ``device``: cpu, cuda, cuda:N or mps.
    ``runs`` timed calls after ``warmup`` untimed ones, on batches of ``batch`` images.
    ``channels_last``: run the torch/compile backends in that memory format. ``progress``: a bar over
    the warm-up and timed calls (None: only when stderr is a terminal).
    """

    backend: str = "torch"
    precision: str = "fp32"
    device: str | torch.device = "cpu"
    runs: int = 10
    warmup: int = 2
    batch: int = 1
    channels_last: bool = False
    progress: bool | None = False

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise RestorekitError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise RestorekitError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.backend == "onnx" and self.precision not in ONNX_PRECISIONS:
            raise RestorekitError(f"the ONNX backend supports {', '.join(ONNX_PRECISIONS)}, not {self.precision}")
        if self.runs < 1:
            raise RestorekitError("--runs must be at least 1")


def bench_model(
    model: nn.Module, name: str, width: int, height: int, options: BenchOptions | None = None,
    notes: list[str] | None = None,
) -> BenchResult:
    """Benchmark one model on ``width x height`` inputs; see the module docstring for the protocol.

    ``name`` labels the result and the progress bar; ``notes`` are carried into the result.
    """
    import torch

    from .complexity import count_macs, count_params
    from .inference.runner import pick_device

    options = options or BenchOptions()
    # an unavailable device is a one-line error here, not an AssertionError from model.to()
    device = pick_device(options.device)
    notes = list(notes or [])
    channels = int(getattr(getattr(model, "config", None), "in_channels", 3))
    params = count_params(model)
    model = model.to(device)
    # counted in fp32 before any cast, on the device where the counter runs (not MPS)
    macs = count_macs(model, height, width, channels) if device.type in ("cpu", "cuda") else 0
    x = torch.rand(options.batch, channels, height, width, device=device)
    if options.backend == "onnx":
        fn, x = _onnx_callable(model, options.precision, device), x.float()
    else:
        fn, x = _torch_callable(model, x, options, notes)
    times, peak_bytes, method = time_callable(fn, x, options.runs, options.warmup, progress=options.progress,
                                              name=name)
    median = statistics.median(times)
    batch = options.batch
    return BenchResult(
        model=name, backend=options.backend, precision=options.precision, device=str(device),
        threads=torch.get_num_threads(), size=f"{width}x{height}", batch=batch, params=params, macs=macs,
        runs=options.runs, median_ms=median * 1e3, min_ms=min(times) * 1e3,
        megapixels_per_s=batch * width * height / median / 1e6, gmacs_per_s=batch * macs / median / 1e9,
        peak_memory_mib=peak_bytes / 2**20, memory_method=method, notes=notes,
    )


def _onnx_callable(model: nn.Module, precision: str, device: torch.device) -> Callable[[torch.Tensor], Any]:
    """``model`` exported to ONNX in ``precision`` and run by ONNX Runtime on ``device``."""
    import tempfile

    import torch

    from .export.onnx import OnnxRunner, export_onnx

    tmp_dir = tempfile.mkdtemp(prefix="restorekit-bench-")
    try:
        path = export_onnx(model.to("cpu"), Path(tmp_dir) / "model.onnx", precision=precision)
        return OnnxRunner(path, device, threads=torch.get_num_threads())
    finally:
        shutil.rmtree(tmp_dir)  # the session holds the model in memory


def _torch_callable(
    model: nn.Module, x: torch.Tensor, options: BenchOptions, notes: list[str]
) -> tuple[Callable[[torch.Tensor], Any], torch.Tensor]:
    """``model`` and ``x`` cast to the precision (and memory format), compiled for ``compile``."""
    import torch

    from .inference.runner import PRECISIONS as DTYPES

    dtype = DTYPES[options.precision]
    model = model.to(dtype)
    x = x.to(dtype)
    if options.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = x.contiguous(memory_format=torch.channels_last)
        notes.append("channels_last")
    if options.backend == "compile":
        return torch.compile(model), x
    return model, x


def format_table(results: list[BenchResult]) -> str:
    """A fixed-width text table of results."""
    header: tuple[str, ...] = ("model", "backend", "prec", "size", "params(M)", "GMACs", "median ms", "min ms", "MP/s",
              "GMAC/s", "peak MiB")
    rows: list[tuple[str, ...]] = [header, *(
        (r.model, r.backend, r.precision, r.size, f"{r.params / 1e6:.3f}", f"{r.macs / 1e9:.2f}",
         f"{r.median_ms:.2f}", f"{r.min_ms:.2f}", f"{r.megapixels_per_s:.3f}", f"{r.gmacs_per_s:.1f}",
         f"{r.peak_memory_mib:.1f}")
        for r in results
    )]
    if any(r.rtsr_score is not None for r in results):
        rows[0] = (*header, "RTSR score")
        for i, r in enumerate(results, start=1):
            rows[i] = (*rows[i], "-" if r.rtsr_score is None else f"{r.rtsr_score:.2f}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    methods = sorted({r.memory_method for r in results})
    lines.append(f"peak memory: {', '.join(methods)} (see `restorekit bench --help`); MP/s counts input pixels")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Peak memory on CPU is the resident-set growth sampled every 1 ms during the timed runs "
        "(rss-sampled); on CUDA it is torch.cuda.max_memory_allocated growth."
    )
    parser.add_argument("models", nargs="+", metavar="MODEL", help="preset names (random weights) or weight files")
    parser.add_argument("--size", default="256x256", help="input W x H (default 256x256)")
    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="torch (eager, default), compile (torch.compile) or onnx (ONNX Runtime; fp32/fp16)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="fp32 (default), fp16 or bf16; model and input cast to it")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1 or mps")
    parser.add_argument("--threads", type=int, default=0, help="torch/ONNX Runtime intra-op threads (0: default)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--channels-last", action="store_true", help="run torch/compile in channels_last")
    tlc = parser.add_mutually_exclusive_group()
    tlc.add_argument("--tlc", dest="tlc", action="store_true", default=None)
    tlc.add_argument("--no-tlc", dest="tlc", action="store_false")
    parser.add_argument("--psnr", type=float, help="SR models: the model's PSNR on some test set, for the NTIRE23 score")
    parser.add_argument("--bicubic-psnr", type=float, help="bicubic's PSNR on the same set (with --psnr)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                        help="no progress bar (there is none either when stderr is not a terminal)")


def run(args: argparse.Namespace) -> int:
    import torch

    from .inference.runner import pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = parse_size(args.size)
    if (args.psnr is None) != (args.bicubic_psnr is None):
        raise RestorekitError("--psnr and --bicubic-psnr go together (the NTIRE23 score needs both)")
    # before building any model: fail fast on an unavailable device or a bad option
    options = BenchOptions(backend=args.backend, precision=args.precision, device=pick_device(args.device),
                           runs=args.runs, warmup=args.warmup, batch=args.batch, channels_last=args.channels_last,
                           progress=False if args.quiet else None)
    results = []
    for name in args.models:
        model, notes = resolve_model(name, args.tlc)
        result = bench_model(model, name, width, height, options, notes)
        if args.psnr is not None and int(getattr(model, "scale", 1)) > 1:
            result.rtsr_score = rtsr_score(args.psnr, args.bicubic_psnr, result.median_ms)
        results.append(result)
    print(format_table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(json.dumps([asdict(r) for r in results], indent=2) + "\n", args.json)
        print(f"wrote {args.json}")
    return 0
