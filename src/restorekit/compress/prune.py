"""Structured channel pruning and bias removal for Bicubic++ (stages 2 and 3 of the paper's pipeline).

The Bicubic++ paper trains a 34-channel model with biases, prunes it globally to 32 channels, then
removes the biases and finetunes; the authors never released that code (it is on the to-do list of the
official aselsan-research-imaging-team/bicubic-plusplus README, and its issue #3 asks for it), so this is
our own design, explained here.

Channel groups. Bicubic++ has two kinds of hidden channel, and a channel is pruned as a whole (every
weight that writes it and every weight that reads it):

- group ``skip`` (index ``j``): conv0's output ``j`` and conv2's output ``j`` are *summed* by the skip
  ``act(conv2(.)) + x0``, so they are one channel of the tensor that conv_out reads. conv1 also reads
  ``x0``. Pruning ``j`` removes ``conv0[j]``, ``conv2[j]`` (rows and biases), and the input columns
  ``conv1[:, j]`` and ``conv_out[:, j]``. Pruning conv0 and conv2 independently would misalign the sum,
  so they are pruned jointly.
- group ``mid`` (index ``k``): conv1's output ``k``, read only by ``conv2[:, k]``.

Criterion (``weight_importance``). The importance of a channel is ``||in|| * ||out||``: the L2 norm of
every weight and bias that writes it times the L2 norm of every weight that reads it. Why the product:
LeakyReLU is positively homogeneous (``act(a*x) = a*act(x)`` for ``a > 0``), so scaling a channel's
incoming weights by ``a`` and its outgoing weights by ``1/a`` leaves the network's function unchanged.
A sum of norms, or the norm of one side only, changes under that rescaling and would rank the same
function differently; the product does not. A channel whose incoming or outgoing weights are all
zero contributes nothing and scores exactly 0, so it is pruned first. We prefer it over activation
statistics because it needs no calibration data, is deterministic, and stage 2 finetunes anyway.

"Global" pruning. The released layout (and ``bicubic_pp.Config``) has one width for every layer, so
the number of channels removed per group is fixed (34 -> 32 in each); the ranking decides *which*
channels go. Scores are compared within a group, which is the same as a global ranking that must
leave ``channels`` survivors in every group.

Bias removal (``remove_bias``). No exact fold exists: a bias before a LeakyReLU changes which inputs
fall on which side of the kink, so it cannot be moved into the next layer; conv_out's bias has no
later linear layer to absorb it; and zero padding makes a "constant channel" trick inexact at the
borders. We therefore drop the biases and rely on the stage-3 finetune to recover; ``remove_bias``
reports how large the dropped biases were.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..archs import bicubic_pp
from ..errors import RestorekitError

GROUPS = ("skip", "mid")


def _check(net: nn.Module) -> bicubic_pp.Config:
    config = getattr(net, "config", None)
    if not isinstance(net, bicubic_pp.BicubicPlusPlus) or not isinstance(config, bicubic_pp.Config):
        raise RestorekitError(f"pruning supports Bicubic++ networks only, got {type(net).__name__}")
    return config


def _norm_rows(*tensors: torch.Tensor | None) -> torch.Tensor:
    """L2 norm per output channel (dim 0) over several tensors that write the same channels."""
    total = None
    for t in tensors:
        if t is None:
            continue
        sq = t.detach().float().pow(2).reshape(t.shape[0], -1).sum(1)
        total = sq if total is None else total + sq
    assert total is not None
    return total.sqrt()


def _norm_cols(*weights: torch.Tensor) -> torch.Tensor:
    """L2 norm per input channel (dim 1) over several conv weights that read the same channels."""
    total = None
    for w in weights:
        sq = w.detach().float().pow(2).transpose(0, 1).reshape(w.shape[1], -1).sum(1)
        total = sq if total is None else total + sq
    assert total is not None
    return total.sqrt()


def weight_importance(net: nn.Module) -> dict[str, torch.Tensor]:
    """Importance of every hidden channel, per group: ``||incoming|| * ||outgoing||`` (see module doc)."""
    _check(net)
    skip_in = _norm_rows(net.conv0.weight, net.conv0.bias, net.conv2.weight, net.conv2.bias)
    skip_out = _norm_cols(net.conv1.weight, net.conv_out.weight)
    mid_in = _norm_rows(net.conv1.weight, net.conv1.bias)
    mid_out = _norm_cols(net.conv2.weight)
    return {"skip": skip_in * skip_out, "mid": mid_in * mid_out}


def select_channels(net: nn.Module, channels: int) -> dict[str, torch.Tensor]:
    """Indices (sorted ascending) of the ``channels`` most important channels of each group."""
    config = _check(net)
    if not 1 <= channels <= config.channels:
        raise RestorekitError(f"cannot prune a {config.channels}-channel Bicubic++ to {channels} channels")
    keep = {}
    for group, score in weight_importance(net).items():
        # stable sort on the negated score: ties keep the lower index, so the result is deterministic
        order = torch.sort(-score, stable=True).indices
        keep[group] = order[:channels].sort().values
    return keep


def prune(net: nn.Module, channels: int, keep: dict[str, torch.Tensor] | None = None) -> bicubic_pp.BicubicPlusPlus:
    """A new Bicubic++ with ``channels`` hidden channels holding the surviving weights of ``net``.

    ``keep``: channel indices per group (from ``select_channels``); chosen by ``weight_importance``
    when omitted. The input network is not modified. Biases are kept if ``net`` has them.
    """
    config = _check(net)
    keep = select_channels(net, channels) if keep is None else keep
    skip, mid = keep["skip"].to(torch.long).cpu(), keep["mid"].to(torch.long).cpu()
    if len(skip) != channels or len(mid) != channels:
        raise RestorekitError(f"keep lists must have {channels} entries, got {len(skip)} and {len(mid)}")
    new = bicubic_pp.BicubicPlusPlus(dataclasses.replace(config, channels=channels))
    old = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    state = {
        "conv0.weight": old["conv0.weight"][skip],
        "conv1.weight": old["conv1.weight"][mid][:, skip],
        "conv2.weight": old["conv2.weight"][skip][:, mid],
        "conv_out.weight": old["conv_out.weight"][:, skip],
    }
    if config.bias:
        state["conv0.bias"] = old["conv0.bias"][skip]
        state["conv1.bias"] = old["conv1.bias"][mid]
        state["conv2.bias"] = old["conv2.bias"][skip]
        state["conv_out.bias"] = old["conv_out.bias"]
    new.load_state_dict({k: v.clone() for k, v in state.items()}, strict=True)
    return new.to(next(net.parameters()).device)


def zero_channels(net: nn.Module, keep: dict[str, torch.Tensor]) -> None:
    """Zero, in place, every weight and bias of the channels *not* in ``keep`` (for checking ``prune``:
    the wide net with those channels zeroed computes exactly what the pruned net computes)."""
    config = _check(net)
    with torch.no_grad():
        for group in GROUPS:
            drop = torch.ones(config.channels, dtype=torch.bool)
            drop[keep[group].cpu()] = False
            drop = drop.to(net.conv0.weight.device)
            if group == "skip":
                for conv in (net.conv0, net.conv2):
                    conv.weight[drop] = 0
                    if conv.bias is not None:
                        conv.bias[drop] = 0
                net.conv1.weight[:, drop] = 0
                net.conv_out.weight[:, drop] = 0
            else:
                net.conv1.weight[drop] = 0
                if net.conv1.bias is not None:
                    net.conv1.bias[drop] = 0
                net.conv2.weight[:, drop] = 0


def remove_bias(net: nn.Module) -> tuple[bicubic_pp.BicubicPlusPlus, float]:
    """A bias-free copy of ``net`` (the official released layout) and the largest |bias| dropped.

    The biases are dropped, not folded (no exact fold exists; see the module docstring); the caller
    finetunes afterwards.
    """
    config = _check(net)
    new = bicubic_pp.BicubicPlusPlus(dataclasses.replace(config, bias=False))
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items() if k.endswith(".weight")}
    new.load_state_dict(state, strict=True)
    dropped = [v.detach().abs().max().item() for k, v in net.state_dict().items() if k.endswith(".bias")]
    return new.to(next(net.parameters()).device), max(dropped, default=0.0)
