"""x8 geometric self-ensemble (test-time augmentation).

The input is seen in the 8 orientations of the square's symmetry group (4 rotations, each with and
without a left-right flip); every output is turned back and the 8 are averaged, as in RED-Net's
``netforward.m`` and EDSR's "+" models. Costs 8 forward passes; usually worth ~0.1-0.2 dB.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

TRANSFORMS: tuple[tuple[int, bool], ...] = tuple((k, flip) for flip in (False, True) for k in range(4))


def dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """Flip left-right (if ``flip``) then rotate by ``k`` quarter turns, on the last two dims."""
    if flip:
        x = x.flip(-1)
    return torch.rot90(x, k, dims=(-2, -1))


def inverse_dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """Undo ``dihedral(x, k, flip)``."""
    x = torch.rot90(x, -k, dims=(-2, -1))
    return x.flip(-1) if flip else x


def ensemble_x8(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Mean of ``inverse(fn(transform(x)))`` over the 8 transforms (accumulated in place)."""
    total: torch.Tensor | None = None
    for k, flip in TRANSFORMS:
        y = inverse_dihedral(fn(dihedral(x, k, flip)), k, flip)
        total = y.clone() if total is None else total.add_(y)
    assert total is not None
    return total.div_(len(TRANSFORMS))
