"""Training losses, picked by name from the config. Each maps (pred, target) NCHW to a scalar."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ..errors import ConfigError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_PSNR_FACTOR = 10.0 / math.log(10.0)


def psnr_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """NAFNet/HINet ``PSNRLoss``: 10/ln10 * mean over the batch of log(per-image MSE + 1e-8).

    This is -PSNR (for [0, 1] images) averaged per image, so every image in the batch pulls equally
    hard however easy it is; the 1e-8 keeps log finite for a perfect prediction.
    """
    mse = (pred - target).pow(2).flatten(1).mean(dim=1)
    return _PSNR_FACTOR * torch.log(mse + 1e-8).mean()


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).abs().mean()


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).pow(2).mean()


LOSSES: dict[str, LossFn] = {"psnr": psnr_loss, "l1": l1_loss, "mse": mse_loss}


def get_loss(name: str) -> LossFn:
    try:
        return LOSSES[name]
    except KeyError:
        raise ConfigError(f"loss.name: unknown loss {name!r}; valid: {', '.join(LOSSES)}") from None


def staged_loss(
    loss: LossFn, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor,
    stage_weights: Sequence[float] | None,
) -> torch.Tensor:
    """Apply ``loss`` to a single output, or to every stage of a multi-stage net (HINet) with weights."""
    if isinstance(outputs, torch.Tensor):
        if stage_weights is not None and len(stage_weights) != 1:
            raise ConfigError(f"loss.stage_weights has {len(stage_weights)} entries but the model returns one output")
        weight = 1.0 if stage_weights is None else float(stage_weights[0])
        return weight * loss(outputs, target)
    if stage_weights is None or len(stage_weights) != len(outputs):
        raise ConfigError(
            f"the model returns {len(outputs)} stage outputs; set loss.stage_weights to {len(outputs)} "
            "weights (HINet recipes use 0.5 each)"
        )
    return sum(float(w) * loss(out, target) for w, out in zip(stage_weights, outputs))  # type: ignore[return-value]
