"""Names a package exports but imports only on first use (PEP 562), so ``import restorekit`` and every
``restorekit VERB --help`` answer without importing PyTorch."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, sources: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``sources[name]`` (a submodule, relative to
    the package) when ``name`` is first looked up, then keeps the value so later look-ups are plain."""

    def __getattr__(name: str) -> Any:
        if name not in sources:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{sources[name]}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
