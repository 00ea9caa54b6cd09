"""Shared fixtures: seeding, the device under test, and the path to ../shared/data.

- ``RESTOREKIT_TEST_DEVICE`` picks the device (default cpu); GPU-only tests skip without CUDA.
- ``RESTOREKIT_SHARED`` overrides where shared data lives (default: ``../shared`` beside the repo).
  Under CI (``CI=true``) a test that needs it fails when it is missing; elsewhere it skips.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_root() -> Path:
    return Path(os.environ.get("RESTOREKIT_SHARED", REPO.parent / "shared"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def device() -> torch.device:
    name = os.environ.get("RESTOREKIT_TEST_DEVICE", "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("RESTOREKIT_TEST_DEVICE=cuda but CUDA is not available")
    return torch.device(name)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    data = shared_root() / "data"
    if not (data / "MANIFEST.md").is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"shared data missing at {data} (required under CI)")
        pytest.skip(f"shared data not found at {data}; set RESTOREKIT_SHARED")
    return data


@pytest.fixture
def shared_weights(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point RESTOREKIT_WEIGHTS at ../shared/data/weights (no network in tests)."""
    weights = shared_data / "weights"
    monkeypatch.setenv("RESTOREKIT_WEIGHTS", str(weights))
    monkeypatch.setenv("RESTOREKIT_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) / "restorekit-test-cache-empty"))
    return weights
