"""Training checkpoints: everything needed to continue a run bit for bit, written atomically.

A checkpoint holds the network, the EMA copy, the optimizer, the AMP grad scaler, the RNG states
(python, numpy, torch, every CUDA device), the step, the data position (epoch, batches done in it),
the best validation score and the metric history. It contains only tensors and plain containers, so
it is read back with ``torch.load(weights_only=True)``: loading a checkpoint never runs code.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import WeightsError


def capture_rng() -> dict[str, Any]:
    """RNG states as tensors and plain values (numpy's is unpacked: ndarrays are not weights_only-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` to a temp file in the same folder, then ``os.replace``: a crash (even SIGKILL)
    mid-write leaves the previous checkpoint intact, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
    os.close(handle)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint not found (nothing to resume)")
    try:
        state = torch.load(str(path), map_location=map_location, weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: cannot read training checkpoint ({exc})") from exc
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise WeightsError(f"{path}: not a restorekit training checkpoint (no 'model'/'step' entries)")
    return state
