"""Load spandrel 0.4.2's NAFNet arch module (a copy of the official megvii-research code).

spandrel's package ``__init__`` imports torchvision, which we do not install (it would pull a
second torch build), so we load the two arch files directly, with a stub for the one thing they
import from spandrel itself (``store_hyperparameters``, a decorator that only records init args).
Install: ``pip install --no-deps spandrel==0.4.2 einops``.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

from torch import nn

_PACKAGE = "_spandrel_nafnet_reference"


def _arch_dir() -> Path:
    spec = importlib.util.find_spec("spandrel")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("spandrel is not installed: pip install --no-deps spandrel==0.4.2 einops")
    return Path(next(iter(spec.submodule_search_locations))) / "architectures" / "NAFNet" / "__arch"


def _load() -> types.ModuleType:
    if f"{_PACKAGE}.NAFNet_arch" in sys.modules:
        return sys.modules[f"{_PACKAGE}.NAFNet_arch"]
    arch_dir = _arch_dir()  # before the stub below shadows the real package
    if "spandrel.util" not in sys.modules:
        util = types.ModuleType("spandrel.util")
        util.store_hyperparameters = lambda: (lambda cls: cls)  # type: ignore[attr-defined]
        sys.modules.setdefault("spandrel", types.ModuleType("spandrel"))
        sys.modules["spandrel.util"] = util
    package = types.ModuleType(_PACKAGE)
    package.__path__ = [str(arch_dir)]  # type: ignore[attr-defined]
    sys.modules[_PACKAGE] = package
    for name in ("arch_util", "NAFNet_arch"):
        spec = importlib.util.spec_from_file_location(f"{_PACKAGE}.{name}", arch_dir / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules[f"{_PACKAGE}.NAFNet_arch"]


def build_nafnet(width: int, enc_blk_nums: Any, middle_blk_num: int, dec_blk_nums: Any, in_channels: int = 3) -> nn.Module:
    """spandrel's NAFNet with the given hyper-parameters (keys identical to the official ones)."""
    return _load().NAFNet(
        img_channel=in_channels,
        width=width,
        middle_blk_num=middle_blk_num,
        enc_blk_nums=list(enc_blk_nums),
        dec_blk_nums=list(dec_blk_nums),
    )
