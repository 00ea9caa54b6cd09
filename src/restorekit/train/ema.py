"""Exponential moving average of a model's weights (BasicSR ``model_ema``: VapSR uses decay 0.999)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``ema = decay * ema + (1 - decay) * param`` after every optimizer step; buffers are copied.

    The average lives in a full copy of the network so validation and export can use it directly.
    """

    def __init__(self, net: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.net = copy.deepcopy(net).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        ema_params = dict(self.net.named_parameters())
        for name, param in net.named_parameters():
            ema_params[name].lerp_(param.detach(), 1.0 - self.decay)
        ema_buffers = dict(self.net.named_buffers())
        for name, buffer in net.named_buffers():
            ema_buffers[name].copy_(buffer)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.net.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.net.load_state_dict(state, strict=True)
