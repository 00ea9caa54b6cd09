"""Architecture families.

Every family module exposes the same small surface (no base classes, no registry decorators):

- ``NAME``: the family key used in safetensors metadata and error messages.
- ``Config``: a frozen dataclass of typed hyper-parameters with ``scale``, ``in_channels`` and an
  ``alignment`` property (the pixel grid the network's strides impose; tiles start on it).
- ``PAD_MODE``: how an input is padded up to ``alignment`` (``constant`` zeros, ``reflect`` or
  ``replicate``), with the reason next to it: the official test-time behaviour where there is one.
- ``PRESETS``: official architecture configs by name.
- ``build(config) -> nn.Module``: a network whose ``forward`` takes H and W that are multiples of
  ``alignment`` and returns the restored image; HINet returns the list of stage outputs in
  training mode. ``RestorationModel`` (``model.py``) is what pads, runs and crops: call that.
- ``global_statistics(net) -> bool``: whether some layer sees the whole image (global pooling,
  instance norm), so an output pixel has no bounded receptive field (tiling reads it).
- ``matches(state_dict) -> bool``: cheap key-pattern test.
- ``infer_config(state_dict) -> Config``: hyper-parameters from tensor shapes.

``FAMILIES`` is the single place that lists them, in detection order (most specific first).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import torch
from torch import nn

from ..errors import UnknownNameError
from . import bicubic_pp, hinet, nafnet, rednet, vapsr
from .layers import PadMode


class Family(Protocol):
    """The surface every family module exposes (see the module docstring); a module satisfies it
    structurally, so type checkers see ``family.build`` instead of an untyped ``ModuleType``."""

    # read-only (properties), so a module's more specific types (dict[str, vapsr.Config]) still fit
    @property
    def NAME(self) -> str: ...

    @property
    def PAD_MODE(self) -> PadMode: ...

    @property
    def PRESETS(self) -> Mapping[str, Any]: ...

    @property
    def Config(self) -> type: ...

    def build(self, config: Any) -> nn.Module: ...

    def global_statistics(self, net: nn.Module) -> bool: ...

    def matches(self, state_dict: dict[str, torch.Tensor]) -> bool: ...

    def infer_config(self, state_dict: dict[str, torch.Tensor]) -> Any: ...


FAMILY_SURFACE = ("NAME", "PAD_MODE", "PRESETS", "Config", "build", "global_statistics", "matches", "infer_config")

FAMILIES: dict[str, Family] = {
    hinet.NAME: hinet,
    nafnet.NAME: nafnet,
    vapsr.NAME: vapsr,
    rednet.NAME: rednet,
    bicubic_pp.NAME: bicubic_pp,
}


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnknownNameError(f"unknown family {name!r}; valid families: {', '.join(FAMILIES)}") from None
