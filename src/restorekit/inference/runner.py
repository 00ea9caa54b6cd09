"""Running a network on tensors: device choice, precision, and the one callable the rest of the
inference code talks to.

``Backend`` is the seam for other runtimes (ONNX Runtime later): anything with ``scale``,
``alignment``, ``in_channels``, ``device`` and ``__call__(NCHW float32 tensor in [0, 1]) -> NCHW
float32 tensor`` can be tiled, ensembled and written by the same code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

import torch

from ..errors import DeviceError, RestorekitError
from ..precision import DTYPE_NAMES

PRECISIONS: dict[str, torch.dtype] = {name: getattr(torch, dtype) for name, dtype in DTYPE_NAMES.items()}
DEVICES = ("auto", "cpu", "cuda", "mps")


class Backend(Protocol):
    """What tiling and TTA need from a model runtime."""

    scale: int
    alignment: int
    in_channels: int
    device: torch.device

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW float32 in [0, 1] on ``device`` -> NCHW float32, ``scale`` times larger."""
        ...


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def pick_device(name: str | torch.device = "auto", local_rank: int = 0, distributed: bool = False) -> torch.device:
    """The one device chooser, for restore, eval, bench, the UI, training and compression.

    ``auto``: CUDA, then MPS, then CPU. Naming an unavailable device is a :class:`DeviceError`, never a
    silent fallback. ``local_rank``: the GPU of this process under ``torchrun`` (``auto`` and a bare
    ``cuda`` pick ``cuda:<local_rank>``). ``distributed``: a multi-process run, which ``auto`` keeps off
    MPS (there is no MPS process group).
    """
    if isinstance(name, torch.device) and name.type == "cpu":
        return name
    text = str(name)
    if text not in DEVICES and not text.startswith("cuda:"):
        raise DeviceError(f"unknown device {text!r}; choose one of {', '.join(DEVICES)} or cuda:N")
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if _mps_available() and not distributed:
            return torch.device("mps")
        return torch.device("cpu")
    if text.startswith("cuda"):
        try:
            device = torch.device(text)
        except RuntimeError:
            raise DeviceError(f"unknown device {text!r}; choose one of {', '.join(DEVICES)} or cuda:N") from None
        if not torch.cuda.is_available():
            raise DeviceError(f"device {text!r}: CUDA is not available in this PyTorch build or machine")
        return device if device.index is not None else torch.device("cuda", local_rank)
    if text == "mps" and not _mps_available():
        raise DeviceError("device 'mps': MPS is not available on this machine")
    return torch.device(text)


def check_precision(precision: str, device: torch.device) -> torch.dtype:
    """The autocast dtype for ``precision`` on ``device`` (fp32 means no autocast)."""
    if precision not in PRECISIONS:
        raise RestorekitError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise RestorekitError("bf16 is not supported by this GPU; use fp16 or fp32")
    return dtype


@dataclass
class TorchBackend:
    """A ``RestorationModel`` run under ``torch.inference_mode`` with optional fp16/bf16 autocast.

    Autocast keeps weights in fp32 and runs convolutions in half precision, which is the safe way
    to get the speed: layer norms and reductions stay in fp32. Outputs come back as fp32.
    """

    model: torch.nn.Module
    precision: str = "fp32"

    def __post_init__(self) -> None:
        self.device: torch.device = next(self.model.parameters()).device
        self.dtype = check_precision(self.precision, self.device)
        self.scale: int = int(getattr(self.model, "scale", 1))
        self.alignment: int = int(getattr(self.model, "alignment", 1))
        self.in_channels: int = int(getattr(self.model, "in_channels", 3))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            if self.dtype is torch.float32:
                out = self.model(x)
            else:
                with torch.autocast(device_type=self.device.type, dtype=self.dtype):
                    out = self.model(x)
            return out.float()


def available_memory(device: torch.device) -> int:
    """Bytes that inference may use on ``device`` right now.

    CUDA: free device memory (``cudaMemGetInfo``). MPS: the recommended working set minus what is
    allocated. CPU: ``MemAvailable`` from /proc/meminfo (Linux), else physical pages from sysconf,
    else 4 GiB. Kept simple on purpose: it sizes tiles, it does not police memory.
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "mps":
        try:
            return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
        except (AttributeError, RuntimeError):
            return 4 << 30
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30
