"""ONNX export with dynamic height/width, and ``OnnxRunner`` to run an export like a model.

Why the legacy (TorchScript-tracing) exporter: the torch.export-based exporter that PyTorch 2.9+
uses by default needs the extra ``onnxscript`` package and specialises on Python branches just the
same; the tracing exporter ships with torch and keeps shape arithmetic symbolic when it is written
as tensor-size arithmetic, which is all we need.

How sizes stay dynamic: tracing records one path through Python ``if``s, so a pad taken only when
the input is unaligned would be baked in or left out. ``RestorationModel.forward`` (the one place
that pads, runs and crops) always records its pad while tracing (``archs.layers.pad_to_multiple``),
with amounts computed from the input shape in the family's mode, and crops the output to
``scale*H x scale*W`` with size arithmetic. The result is one graph valid for every input size,
computing what ``restorekit restore`` computes, so any ONNX runtime can use it without restorekit.

The export stores what a runner needs in the model's ``metadata_props``: family, config (JSON),
scale, alignment, precision, and the restorekit version.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import RestorekitError, WeightsError
from ..model import RestorationModel
from . import DEFAULT_OPSET, PRECISIONS


class ExportError(RestorekitError):
    """A model could not be exported, or an exported file could not be run."""


def _config_json(config: Any) -> str:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return json.dumps(dataclasses.asdict(config), sort_keys=True)
    return json.dumps(str(config))


def export_onnx(
    model: nn.Module,
    path: str | Path,
    precision: str = "fp32",
    opset: int = DEFAULT_OPSET,
    sample_size: tuple[int, int] | None = None,
) -> Path:
    """Export a ``RestorationModel`` to ONNX with dynamic N, H, W.

    ``precision``: ``fp32``, or ``fp16`` (weights and the graph's input/output are float16; meant
    for the CUDA provider; ONNX Runtime's CPU provider runs it too, mostly through casts).
    ``sample_size``: the H x W traced; any size works afterwards. It defaults to two alignment
    units plus one pixel, so the padding path is the one traced. Models converted with TLC are
    traced on the local-pooling branch, valid for inputs larger than 1.5x the training crop; the
    file records that minimum and ``OnnxRunner`` refuses smaller inputs (see docs/deploy.md).
    Returns the written path.
    """
    if precision not in PRECISIONS:
        raise ExportError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    try:
        import onnx  # noqa: F401  (checked here so a missing extra fails before any tracing)
    except ImportError as exc:  # the optional extra
        raise ExportError("ONNX export needs the onnx extra: pip install 'restorekit[onnx]'") from exc
    if not isinstance(model, RestorationModel):
        raise ExportError(f"export_onnx takes a RestorationModel (restorekit.load), not {type(model).__name__}")
    path = Path(path)
    family, alignment, net = model.family, model.alignment, model.net
    # the network with its pad/run/crop, without what a subclass adds on top (PreUpsampled's
    # upscaling): the file holds the family's own graph at the config's scale
    graph = RestorationModel(net, family, model.config, model.preset).eval()
    dtype = torch.float16 if precision == "fp16" else torch.float32
    device = next(model.parameters()).device
    if precision == "fp16":
        # trace in fp16 on the model's device; copy so the caller's model stays fp32
        import copy

        graph = copy.deepcopy(graph).to(dtype)
    min_size = _tlc_min_size(net)
    sample_size = _trace_size(sample_size, alignment, min_size, path)
    sample = torch.rand(1, model.in_channels, *sample_size, device=device, dtype=dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    _trace(graph, sample, path, opset)
    _write_metadata(path, graph, precision, min_size)
    return path


def _trace_size(
    sample_size: tuple[int, int] | None, alignment: int, min_size: tuple[int, int] | None, path: Path
) -> tuple[int, int]:
    """The H x W to trace at: the caller's, else two alignment units plus one pixel (the padding path)."""
    if sample_size is None:
        side = 2 * max(alignment, 8) + 1
        if min_size:
            # trace the local-pooling branch, the only one valid for the sizes TLC is used at
            side = max(side, max(min_size) + alignment + 1)
        sample_size = (side, side + 2)
    if min_size and (sample_size[0] < min_size[0] or sample_size[1] < min_size[1]):
        raise ExportError(f"{path}: a TLC model must be traced at >= {min_size[0]}x{min_size[1]} (H x W)")
    return sample_size


def _trace(graph: RestorationModel, sample: torch.Tensor, path: Path, opset: int) -> None:
    """``torch.onnx.export`` of ``graph`` with dynamic batch, height and width."""
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # the tracer warns about shape arithmetic being traced, which is exactly what we want here
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                graph,
                (sample,),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={
                    "input": {0: "batch", 2: "height", 3: "width"},
                    "output": {0: "batch", 2: "out_height", 3: "out_width"},
                },
                do_constant_folding=True,
            )
        except Exception as exc:
            raise ExportError(f"{path}: ONNX export of {graph.family} failed: {exc}") from exc


def _write_metadata(path: Path, model: RestorationModel, precision: str, min_size: tuple[int, int] | None) -> None:
    """Store what a runner needs in the file's ``metadata_props``."""
    import onnx

    from .. import __version__

    proto = onnx.load(str(path))
    meta = {
        "restorekit.family": model.family,
        "restorekit.pad_mode": model.pad_mode,
        "restorekit.config": _config_json(model.config),
        "restorekit.scale": str(int(model.config.scale)),
        "restorekit.alignment": str(model.alignment),
        "restorekit.precision": precision,
        "restorekit.version": __version__,
    }
    if min_size:
        meta["restorekit.min_size"] = f"{min_size[0]}x{min_size[1]}"
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def _tlc_min_size(net: nn.Module) -> tuple[int, int] | None:
    """Smallest input H, W for which an exported TLC model is valid, or None without TLC pools.

    A TLC pool takes the global mean when its window covers the feature map and a local box
    filter otherwise; tracing records only one of the two. The window is ``base_size`` scaled to
    each level, so inputs larger than ``base_size`` (1.5x the training crop) use the local branch
    at every level, which is the branch we trace.
    """
    from ..tlc import LocalAvgPool2d

    bases = [m.base_size for m in net.modules() if isinstance(m, LocalAvgPool2d)]
    if not bases:
        return None
    return (max(b[0] for b in bases) + 1, max(b[1] for b in bases) + 1)


class OnnxRunner:
    """Run an exported ``.onnx`` file as a callable: NCHW float tensor in, NCHW tensor out.

    ``device``: ``cpu`` uses ONNX Runtime's CPU provider; ``cuda``/``cuda:N`` uses the CUDA provider
    (an error if onnxruntime-gpu is not installed). The output is float32 on ``device``, whatever
    the graph's precision. ``threads`` sets ONNX Runtime's intra-op threads (0: its default).
    """

    def __init__(self, path: str | Path, device: str | torch.device = "cpu", threads: int = 0) -> None:
        try:
            import onnxruntime as ort  # type: ignore[import-untyped]
        except ImportError as exc:
            raise ExportError("running ONNX models needs the onnx extra: pip install 'restorekit[onnx]'") from exc
        self.path = Path(path)
        if not self.path.is_file():
            raise WeightsError(f"{self.path}: ONNX file not found")
        self.device = torch.device(device)
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ExportError(
                    f"{self.path}: device {self.device} asked for, but this onnxruntime has no CUDA "
                    "provider (install onnxruntime-gpu)"
                )
            providers: list[Any] = [("CUDAExecutionProvider", {"device_id": self.device.index or 0})]
        elif self.device.type == "cpu":
            providers = ["CPUExecutionProvider"]
        else:
            raise ExportError(f"OnnxRunner supports cpu and cuda devices, not {self.device}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:
            raise ExportError(f"{self.path}: ONNX Runtime cannot load it: {exc}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata: dict[str, str] = dict(meta)
        self.scale = int(meta.get("restorekit.scale", "1"))
        self.alignment = int(meta.get("restorekit.alignment", "1"))
        self.family = meta.get("restorekit.family", "unknown")
        self.in_channels = int(self.session.get_inputs()[0].shape[1])  # the channel axis is static
        min_size = meta.get("restorekit.min_size")
        self.min_size = tuple(int(v) for v in min_size.split("x")) if min_size else None
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        self.input_dtype = torch.float16 if graph_input.type == "tensor(float16)" else torch.float32

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Restore a batch: ``x`` is N x C x H x W float; returns float32 N x C x sH x sW on ``device``."""
        if x.dim() != 4:
            raise ExportError(f"{self.path}: expected an NCHW tensor, got shape {tuple(x.shape)}")
        if self.min_size and (x.shape[-2] < self.min_size[0] or x.shape[-1] < self.min_size[1]):
            raise ExportError(
                f"{self.path}: this TLC export is valid for inputs of at least {self.min_size[0]}x"
                f"{self.min_size[1]} (H x W), got {x.shape[-2]}x{x.shape[-1]}; export without TLC for smaller ones"
            )
        array = x.detach().to("cpu", self.input_dtype).contiguous().numpy()
        # numpy in, numpy out: IO binding would save one copy on CUDA, but the restore loop is
        # dominated by the network itself at the image sizes we run
        out = self.session.run(None, {self.input_name: array})[0]
        return torch.from_numpy(out).to(device=self.device, dtype=torch.float32)
