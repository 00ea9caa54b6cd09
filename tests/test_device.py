"""The one device chooser (``restorekit.inference.runner.pick_device``): restore, eval, bench, UI, training
and compression all pick their device through it, so every caller gets the same rules and error type."""

from __future__ import annotations

import pytest
import torch

from restorekit.errors import DeviceError
from restorekit.inference.runner import pick_device
from restorekit.train import distributed
from restorekit.train.loop import train_device

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the errors on a machine without CUDA")


def test_auto_and_cpu() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")  # a device object passes through
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert pick_device("auto").type == expected


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "tpu", ""])
def test_unknown_names_are_device_errors_listing_the_choices(name: str) -> None:
    with pytest.raises(DeviceError, match="choose one of auto, cpu, cuda, mps"):
        pick_device(name)


@no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_unavailable_cuda_is_a_device_error(name: str) -> None:
    with pytest.raises(DeviceError, match="CUDA is not available"):
        pick_device(name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bare_cuda_is_this_process_local_rank() -> None:
    assert pick_device("cuda", local_rank=0) == torch.device("cuda", 0)
    assert pick_device("cuda:0", local_rank=5) == torch.device("cuda", 0)  # an explicit index wins


def test_training_names_the_config_key() -> None:
    info = distributed.DistInfo(rank=0, world_size=1, local_rank=0)
    assert train_device("cpu", info) == torch.device("cpu")
    with pytest.raises(DeviceError, match=r"^train\.device: unknown device 'gpu'"):
        train_device("gpu", info)
