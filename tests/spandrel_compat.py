"""Test-only access to spandrel's architecture code without importing spandrel's package root.

spandrel is our independent reference implementation for parity tests. Install it with
``pip install --no-deps spandrel==0.4.2 einops`` (its declared dependencies include torchvision,
which would pull a second multi-GB torch build). Without torchvision, ``import spandrel`` fails:
``spandrel/__init__.py`` imports the main registry, which imports every architecture, and two of
them (LaMa, RestoreFormer) import torchvision at module level.

Workaround used here: for the duration of one import, ``sys.modules`` gets empty placeholder
packages for ``spandrel``, ``spandrel.architectures`` and ``spandrel.architectures.<Arch>`` whose
``__path__`` points at the installed folders. Python then finds submodules such as
``spandrel.architectures.NAFNet.__arch.NAFNet_arch`` (and ``spandrel.util``, which it imports)
without running the package ``__init__`` files that reach torchvision. No torchvision stub is
involved, and everything spandrel put into ``sys.modules`` is removed again afterwards, so the rest
of the test session sees a clean interpreter.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import pytest

SPANDREL_VERSION = "0.4.2"


def _placeholder(name: str, path: Path) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = [str(path)]
    return module


def import_spandrel_module(arch: str, submodule: str) -> types.ModuleType:
    """Import ``spandrel.architectures.<arch>.<submodule>`` without spandrel's package root.

    Skips the calling test when spandrel is missing and fails it when the installed version is not
    the one our tolerances were checked against.
    """
    spec = importlib.util.find_spec("spandrel")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"spandrel not installed (pip install --no-deps spandrel=={SPANDREL_VERSION} einops)")
    version = importlib.metadata.version("spandrel")
    if version != SPANDREL_VERSION:
        pytest.fail(f"parity tests are written against spandrel {SPANDREL_VERSION}, found {version}")
    root = Path(next(iter(spec.submodule_search_locations)))
    before = set(sys.modules)
    try:
        sys.modules["spandrel"] = _placeholder("spandrel", root)
        sys.modules["spandrel.architectures"] = _placeholder("spandrel.architectures", root / "architectures")
        sys.modules[f"spandrel.architectures.{arch}"] = _placeholder(
            f"spandrel.architectures.{arch}", root / "architectures" / arch
        )
        return importlib.import_module(f"spandrel.architectures.{arch}.{submodule}")
    finally:
        for name in set(sys.modules) - before:
            if name == "spandrel" or name.startswith("spandrel."):
                del sys.modules[name]


def spandrel_nafnet(**hyperparameters: Any) -> Any:
    """An instance of spandrel 0.4.2's NAFNet (a transcription of the official ``NAFNet_arch.py``)."""
    module = import_spandrel_module("NAFNet", "__arch.NAFNet_arch")
    return module.NAFNet(**hyperparameters)
