"""``restorekit restore``: its options and its run, over the library in ``restorekit.restore``.

PyTorch, the model and the batch engine are imported when the verb runs, not when this module is,
so ``restorekit restore --help`` answers at once. ``restorekit.restore`` says what a run guarantees
(every input restored, failed or skipped, and reported) and its exit codes.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from . import precision as precisions
from .errors import RestorekitError
from .imageio import DEFAULT_MAX_PIXELS, FORMATS  # numpy and Pillow, not PyTorch
from .zoo import TASKS

if TYPE_CHECKING:
    from .inference import Backend
    from .model import RestorationModel

BACKENDS = ("torch", "onnx")  # what make_backend runs a model on


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    parser.add_argument("--task", choices=TASKS, default="denoise", help="picks the default model (default: denoise)")
    parser.add_argument("--model", help="preset name (`restorekit models`); with --weights: the expected architecture")
    parser.add_argument("--weights", help="weights file (.pth/.safetensors); family detected from the tensors")
    parser.add_argument("--scale", type=int, help="SR scale: picks the preset of the model's family at this scale")
    parser.add_argument("--tile", type=int, help="tile side in input px (default: from free memory; 0: no tiling)")
    parser.add_argument("--tile-overlap", type=int, help="tile overlap in px (default: exact, from the receptive field)")
    parser.add_argument("--tta", action="store_true", help="x8 self-ensemble (8x slower, usually a little better)")
    parser.add_argument("--tlc", action=argparse.BooleanOptionalAction, default=None,
                        help="test-time local converter for global pooling (default: the preset's)")
    parser.add_argument("--precision", choices=precisions.NAMES, default="fp32",
                        help="fp32 (default), fp16 or bf16: autocast (weights stay fp32); onnx: fp32 or fp16")
    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="torch (eager) or onnx (ONNX Runtime on an export of the model; needs the onnx extra)")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    parser.add_argument("--suffix", default="", help="added to each output file name before the extension")
    parser.add_argument("--format", choices=("same", *FORMATS), default="same", help="output format")
    parser.add_argument("--recursive", action="store_true", help="descend into sub-folders (and ** in globs)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (inputs: never)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"refuse larger images (decompression-bomb guard; default {DEFAULT_MAX_PIXELS:,})")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    scale = parser.add_argument_group("many files, processes and machines (docs/scale.md)")
    scale.add_argument("--batch-size", type=_positive, default=1, metavar="N",
                       help="restore up to N same-size images per forward pass (as memory allows; default 1)")
    scale.add_argument("--io-threads", type=_non_negative, default=2, metavar="N",
                       help="threads decoding ahead of and encoding behind the network, each (0: inline; default 2)")
    scale.add_argument("--threads", type=_positive, metavar="N",
                       help="torch CPU threads (default: OMP_NUM_THREADS, else CPUs / processes on this machine)")
    scale.add_argument("--shard", metavar="K/N",
                       help="restore only shard K of N of the sorted inputs (Slurm arrays, k8s indexed jobs; "
                            "torchrun's RANK/WORLD_SIZE are read without it)")
    scale.add_argument("--report", metavar="FILE.json",
                       help="write every input's outcome as JSON (per shard FILE.rank<K>.json, then merged)")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    import torch

    from .batch.driver import ShardPlan, finish, join_group, run_shard, summary
    from .batch.engine import EngineOptions
    from .batch.report import Outcome
    from .batch.shard import device_for, parse_shard, placement_from_env, thread_count
    from .inference import RestoreOptions
    from .restore import collect_inputs, load_model, plan_jobs, prepare_output_folder

    placement = placement_from_env(parse_shard(args.shard) if args.shard else None)
    threads = thread_count(placement, args.threads)
    if threads is not None:
        torch.set_num_threads(threads)
    outdir = Path(args.output)
    prepare_output_folder(outdir)
    found = collect_inputs(args.inputs, args.recursive, exclude=outdir)
    jobs = plan_jobs(found.files, outdir, args.suffix, args.format)
    extra = [Outcome(str(path), None, "failed", reason) for path, reason in found.failed]
    extra += [Outcome(str(path), None, "skipped", reason) for path, reason in found.skipped]
    grouped = join_group(placement)  # under torchrun: meet the other processes at the end
    device = device_for(args.device, placement)
    model = load_model(args.task, args.model, args.weights, args.scale, args.tlc, device)
    backend = make_backend(model, args.backend, args.precision)
    options = EngineOptions(
        restore=RestoreOptions(tile=args.tile, tile_overlap=args.tile_overlap, tta=args.tta, progress=not args.quiet),
        overwrite=args.overwrite, max_pixels=args.max_pixels, io_threads=args.io_threads,
    )
    plan = ShardPlan(jobs, placement, args.batch_size, outdir, extra)
    report_path = Path(args.report) if args.report else None
    report = run_shard(plan, backend, options, report_path, model.name, args.quiet)
    print(summary(report))  # each failure was already printed, once, when it happened
    return finish(report, placement, report_path, grouped)



def make_backend(model: RestorationModel, backend: str = "torch", precision: str = "fp32",
                 workdir: str | Path | None = None) -> Backend:
    """The runtime that executes ``model``: eager PyTorch, or ONNX Runtime on an export of it.

    ONNX: the model is exported once per run into ``workdir`` (a temp folder by default) with the
    same precision, then run by ONNX Runtime (CPU provider, or CUDA when the model is on a GPU).
    """
    from .inference import TorchBackend

    if backend == "torch":
        return TorchBackend(model, precision)
    if backend != "onnx":
        raise RestorekitError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    from .export.onnx import OnnxRunner, export_onnx

    if precision not in precisions.ONNX_NAMES:
        raise RestorekitError(f"--backend onnx supports {' and '.join(precisions.ONNX_NAMES)}, not {precision}")
    from .model import PreUpsampled

    if isinstance(model, PreUpsampled):  # the export holds the scale-1 network, not the bicubic upscale before it
        raise RestorekitError(f"--backend onnx cannot run {model.name} with --scale (pre-upsampling); use the "
                              "torch backend, or upscale first and restore at scale 1")
    folder = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="restorekit-onnx-"))
    path = export_onnx(model, folder / f"{model.name}.onnx", precision=precision)
    device = model.device if model.device.type == "cuda" else "cpu"
    return OnnxRunner(path, device)
