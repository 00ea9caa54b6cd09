"""The ``restorekit`` console script: a thin verb table over the Python API.

Each verb lives in the module that does its job; that module exposes ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their verb runs, so a missing optional extra
(onnx, tensorboard) breaks only the verb that needs it, and ``restorekit --help`` imports none of
them. Importing PyTorch takes longer than everything else ``restorekit models`` does, so neither this
module nor the package's ``__init__`` imports it, nor does any verb module at import: ``models`` and
every ``restorekit VERB --help`` answer without it (tests/test_cli.py checks), and a verb imports it
in ``run`` when it runs a network.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import RestorekitError

# verb -> (module, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "restore": ("restorekit.restore_cli", "restore images (denoise, deblur, derain, super-resolve)"),
    "eval": ("restorekit.eval_cli", "measure PSNR/SSIM of a model on a test set"),
    "models": ("restorekit.catalog", "list the model presets"),
    "convert": ("restorekit.convert", "convert a checkpoint to safetensors with metadata"),
    "train": ("restorekit.train.cli", "train a model from a YAML config"),
    "compress": ("restorekit.compress.cli", "Bicubic++ three-stage pipeline: wide -> prune -> bias-free"),
    "export": ("restorekit.export.cli", "export a model to ONNX"),
    "bench": ("restorekit.bench", "measure params, MACs, latency and memory"),
    "ui": ("restorekit.ui.app", "serve the local web UI"),
    "report": ("restorekit.batch.cli", "merge the shard reports of a sharded restore run"),
    "info": ("restorekit.info", "versions, devices, weights found: what to paste into a bug report"),
}


# Verbs that run networks for a while and then exit: keeping freed memory mapped makes their large
# activations cheap to reuse (runtime.py). Not the UI: a long-lived server must give memory back.
RETAIN_MEMORY_VERBS = frozenset({"restore", "eval", "bench", "export", "train", "compress"})


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="restorekit", description="Image restoration toolkit.")
    parser.add_argument("--version", action="version", version=f"restorekit {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, (_, help_text) in VERBS.items():
        sub.add_parser(verb, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv or argv[0] not in VERBS:
        parser.parse_args(argv or ["--help"])  # prints help or the "invalid choice" error
        return 2
    verb = argv[0]
    module_name, help_text = VERBS[verb]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(f"error: `restorekit {verb}` is unavailable: {exc}", file=sys.stderr)
        return 2
    verb_parser = argparse.ArgumentParser(prog=f"restorekit {verb}", description=help_text)
    module.add_arguments(verb_parser)
    args = verb_parser.parse_args(argv[1:])
    if verb in RETAIN_MEMORY_VERBS:
        from .runtime import retain_freed_memory

        retain_freed_memory()  # a command's large tensors reuse freed memory instead of page-faulting it in again
    try:
        return int(module.run(args) or 0)
    except RestorekitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `restorekit models --json | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
