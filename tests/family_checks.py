"""Checks every family's tests share (tier 2 of STYLE.md: state dict -> detect -> load -> same output)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
from torch import nn

from restorekit import loading
from restorekit.model import RestorationModel


def assert_detects_and_reproduces(family: ModuleType, config: Any, net: nn.Module, height: int, width: int) -> None:
    """The state dict alone gives back ``family`` and ``config``, and the rebuilt net's output is identical
    (both through ``RestorationModel``, which pads ``height`` x ``width`` to the family's alignment)."""
    net.eval()
    state = net.state_dict()
    found_family, found_config = loading.detect(state)
    assert found_family is family
    assert found_config == config
    clone = found_family.build(found_config).eval()
    loading.load_strict(clone, state, found_family.NAME)
    x = torch.rand(1, config.in_channels, height, width)
    with torch.no_grad():
        ours, theirs = RestorationModel(clone, family.NAME, found_config), RestorationModel(net, family.NAME, config)
        assert torch.equal(ours(x), theirs(x))


def assert_preset_detected(family: ModuleType, preset: str) -> None:
    """A preset's full-size key layout (built on the meta device: no memory) is detected as ``family`` with
    exactly the preset's config, and no other family claims it."""
    from restorekit.archs import FAMILIES

    with torch.device("meta"):
        state = family.build(family.PRESETS[preset]).state_dict()
    found_family, config = loading.detect(state)
    assert found_family is family
    assert config == family.PRESETS[preset]
    others = [name for name, module in FAMILIES.items() if module is not family and module.matches(state)]
    assert not others, f"{preset} also matches {others}"
