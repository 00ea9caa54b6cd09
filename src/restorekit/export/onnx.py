"""ONNX export with dynamic height/width, and ``OnnxRunner`` to run an export like a model.

Why the legacy (TorchScript-tracing) exporter: the torch.export-based exporter that PyTorch 2.9+
uses by default needs the extra ``onnxscript`` package and specialises on Python branches just the
same; the tracing exporter ships with torch and keeps shape arithmetic symbolic when it is written
as tensor-size arithmetic, which is all we need.

How sizes stay dynamic: tracing records one path through Python ``if``s, and several families
pad only when the input is not aligned (``if pad_h or pad_w``). So the exported graph wraps the
network in ``_AlignedGraph``: it always pads H and W up to the family's alignment with an ONNX
``Pad`` whose amounts are computed from the input shape (zeros, or edge replication where the
family pads that way), runs the network on an aligned input (where its own padding branch is a
no-op, the branch that was traced), and crops the output to ``scale*H x scale*W``. The result is
one graph valid for every input size, so any ONNX runtime can use it without restorekit.

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
import torch.nn.functional as F
from torch import nn

from ..errors import RestorekitError, WeightsError
from . import DEFAULT_OPSET, PRECISIONS

# How each family's own forward pads unaligned inputs, so the graph-level pad reproduces it:
# Bicubic++ replicates edges, HINet reflects (it falls back to edge replication only when the pad
# exceeds the image, i.e. inputs smaller than its 16-pixel alignment), the rest pad with zeros.
_PAD_MODE = {"bicubic_pp": "replicate", "hinet": "reflect"}


class ExportError(RestorekitError):
    """A model could not be exported, or an exported file could not be run."""


class _AlignedGraph(nn.Module):
    """Pad to the alignment, run, crop: written with size arithmetic so tracing keeps it dynamic."""

    def __init__(self, net: nn.Module, alignment: int, scale: int, mode: str) -> None:
        super().__init__()
        self.net = net
        self.alignment = alignment
        self.scale = scale
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        if self.alignment > 1:
            pad_h = (self.alignment - height % self.alignment) % self.alignment
            pad_w = (self.alignment - width % self.alignment) % self.alignment
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=self.mode)
        out = self.net(x)
        if isinstance(out, (list, tuple)):  # HINet returns every stage in training mode
            out = out[-1]
        if self.alignment > 1:
            out = out[..., : height * self.scale, : width * self.scale]
        return out


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
    """Export a ``RestorationModel`` (or any module with ``config``) to ONNX with dynamic N, H, W.

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
        import onnx
    except ImportError as exc:  # the optional extra
        raise ExportError("ONNX export needs the onnx extra: pip install 'restorekit[onnx]'") from exc
    path = Path(path)
    config = getattr(model, "config", None)
    family = str(getattr(model, "family", "unknown"))
    scale = int(getattr(config, "scale", 1))
    alignment = int(getattr(config, "alignment", 1))
    channels = int(getattr(config, "in_channels", 3))
    net = model.net if isinstance(getattr(model, "net", None), nn.Module) else model
    assert isinstance(net, nn.Module)
    graph = _AlignedGraph(net, alignment, scale, _PAD_MODE.get(family, "constant")).eval()
    dtype = torch.float16 if precision == "fp16" else torch.float32
    device = next(model.parameters()).device
    if precision == "fp16":
        # trace in fp16 on the model's device; copy so the caller's model stays fp32
        import copy

        graph = copy.deepcopy(graph).to(dtype)
    min_size = _tlc_min_size(net)
    if sample_size is None:
        side = 2 * max(alignment, 8) + 1
        if min_size:
            # trace the local-pooling branch, the only one valid for the sizes TLC is used at
            side = max(side, max(min_size) + alignment + 1)
        sample_size = (side, side + 2)
    if min_size and (sample_size[0] < min_size[0] or sample_size[1] < min_size[1]):
        raise ExportError(f"{path}: a TLC model must be traced at >= {min_size[0]}x{min_size[1]} (H x W)")
    sample = torch.rand(1, channels, *sample_size, device=device, dtype=dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
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
            raise ExportError(f"{path}: ONNX export of {family} failed: {exc}") from exc
    proto = onnx.load(str(path))
    from .. import __version__

    meta = {
        "restorekit.family": family,
        "restorekit.pad_mode": graph.mode,
        "restorekit.config": _config_json(config),
        "restorekit.scale": str(scale),
        "restorekit.alignment": str(alignment),
        "restorekit.precision": precision,
        "restorekit.version": __version__,
    }
    if min_size:
        meta["restorekit.min_size"] = f"{min_size[0]}x{min_size[1]}"
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path


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
