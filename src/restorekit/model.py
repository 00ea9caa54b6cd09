"""RestorationModel: a network plus what callers need to know about it (family, config, scale,
task, tile alignment, pad mode), and ``load()``, the public entry point that turns a preset name or
a weights path into one.

``RestorationModel.forward`` is the one place a network runs on an image: it pads the input to the
family's alignment with the family's ``PAD_MODE``, runs the network, crops the output back and
keeps the last stage. Restore, eval, training validation, the Bicubic++ pipeline, ONNX export,
tiling and the UI all call it, so they compute the same function of the same pixels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import hub, loading
from .archs import get_family
from .archs.layers import PadMode, pad_to_multiple
from .errors import UnknownNameError
from .inference.runner import pick_device
from .zoo import PRESETS, Preset, get_preset

WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors", ".bin")


class RestorationModel(nn.Module):
    """Maps an NCHW float tensor in [0, 1] of any H x W to the restored NCHW tensor (final output only).

    Training runs ``net`` itself on aligned patches (HINet's loss needs every stage's output).
    """

    def __init__(self, net: nn.Module, family: str, config: Any, preset: Preset | None = None) -> None:
        super().__init__()
        self.net = net
        self.family = family
        self.config = config
        self.preset = preset
        self.pad_mode: PadMode = get_family(family).PAD_MODE

    @property
    def scale(self) -> int:
        return int(self.config.scale)

    @property
    def in_channels(self) -> int:
        return int(self.config.in_channels)

    @property
    def alignment(self) -> int:
        return int(self.config.alignment)

    @property
    def global_statistics(self) -> bool:
        """True when an output pixel depends on the whole image (global pooling, instance norm)."""
        return bool(get_family(self.family).global_statistics(self.net))

    @property
    def task(self) -> str:
        if self.preset is not None:
            return self.preset.task
        return "sr" if self.scale > 1 else "restore"

    @property
    def name(self) -> str:
        return self.preset.name if self.preset is not None else self.family

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def restore(
        self,
        image: Any,
        *,
        tile: int | None = None,
        tile_overlap: int | None = None,
        tta: bool = False,
        precision: str = "fp32",
        progress: bool = False,
    ) -> Any:
        """Restore a numpy array (H x W [x C], uint8/uint16/float), PIL image or tensor
        ([N x] C x H x W); returns the same kind, dtype and layout.

        Runs on the model's device in tiles sized from free memory (``tile=0``: whole image);
        ``tta``: x8 self-ensemble; ``precision``: fp32, fp16 or bf16 (autocast).
        See ``restorekit.inference`` for how tiling stays exact.
        """
        from .inference import RestoreOptions, restore_any

        options = RestoreOptions(tile=tile, tile_overlap=tile_overlap, tta=tta, progress=progress)
        return restore_any(self, image, precision=precision, options=options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run_aligned(x)

    def _run_aligned(self, x: torch.Tensor) -> torch.Tensor:
        """Pad to the alignment (the family's mode), run the network, crop to ``config.scale`` x the
        input, keep the last stage."""
        alignment = self.alignment
        height, width = x.shape[-2], x.shape[-1]
        out = self.net(pad_to_multiple(x, alignment, self.pad_mode))
        if isinstance(out, (list, tuple)):  # multi-stage nets (HINet) return every stage in training mode
            out = out[-1]
        if alignment <= 1:  # the output is already the right size; no no-op slices in a traced graph
            return out
        scale = int(self.config.scale)
        return out[..., : height * scale, : width * scale]


class PreUpsampled(RestorationModel):
    """A scale-1 model of a pre-upsampling family (RED-Net: SRCNN/VDSR-style SR) run as a x``factor`` model.

    The network restores a bicubic-upscaled image, so the input is first upscaled by ``factor`` with MATLAB
    ``imresize`` (float, as ``restorekit eval`` and the ``bicubicdu`` training degradation do) and then
    restored. Tiling, the luminance/chroma split for colour images and alpha see an ordinary x``factor``
    model: the receptive radius and memory are measured through the upscaling, so tiles stay exact.
    """

    def __init__(self, model: RestorationModel, factor: int) -> None:
        if model.scale != 1 or factor < 2:
            raise ValueError(f"PreUpsampled: needs a scale-1 model and a factor >= 2, got x{model.scale} and {factor}")
        super().__init__(model.net, model.family, model.config, model.preset)
        self.factor = int(factor)

    @property
    def scale(self) -> int:
        return self.factor

    @property
    def task(self) -> str:
        return "sr"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from .data.degrade import imresize

        return self._run_aligned(imresize(x, scale=self.factor))


def build_model(family_name: str, config: Any, preset: Preset | None = None) -> RestorationModel:
    """A randomly initialised model of a family and config (for training and tests)."""
    family = get_family(family_name)
    return RestorationModel(family.build(config), family.NAME, config, preset)


def load(
    name_or_path: str | Path,
    device: str | torch.device = "cpu",
    tlc: bool | None = None,
    preset: str | None = None,
) -> RestorationModel:
    """Load a model in eval mode from a preset name or a weights file.

    ``name_or_path``: a preset name (``restorekit models`` lists them) or a ``.pth``/``.safetensors``
    path. With a path, the family and hyper-parameters are detected from the tensors; ``preset``
    names the architecture the file is expected to have, and a contradiction is an error.
    ``tlc``: convert global average pooling to the local form of the test-time local converter;
    ``None`` follows the preset (on where the paper evaluated with it).
    ``device``: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto``; an unavailable one is a
    ``RestorekitError``, checked before any weights are read.
    """
    target = pick_device(device)
    chosen: Preset | None = None
    name = str(name_or_path)
    if name in PRESETS and not Path(name).exists():
        chosen = get_preset(name)
        path = hub.resolve(chosen)
    else:
        path = Path(name_or_path)
        looks_like_path = path.suffix in WEIGHT_SUFFIXES or len(path.parts) > 1
        if not path.exists() and not looks_like_path:  # a typo in a preset name is not a missing file
            raise UnknownNameError(f"{name}: neither a preset name (see `restorekit models`) nor a file")
        if preset is not None:
            chosen = get_preset(preset)
    raw, metadata = loading.read_weights(path)
    family, config, state = loading.resolve(raw, metadata, source=str(path))  # checked: building cannot blow up
    if chosen is not None:
        loading.check_expected(family, config, get_family(chosen.family), chosen.config, str(path))
    net = family.build(config)
    loading.load_strict(net, state, family.NAME, source=str(path))
    model = RestorationModel(net, family.NAME, config, chosen)
    use_tlc = chosen.tlc if (tlc is None and chosen is not None) else bool(tlc)
    if use_tlc:
        from .tlc import convert_to_local

        train_size = chosen.train_size if chosen is not None else 256
        convert_to_local(model.net, train_size=(train_size, train_size))
    return model.eval().to(target)
