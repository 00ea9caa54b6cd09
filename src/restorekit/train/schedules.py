"""Learning-rate schedules as pure functions of progress.

The loop sets ``lr = lr_at(schedule, base_lr, t)`` before every optimizer step, where ``t`` is the
step or the epoch (``schedule.unit``). Nothing stateful: a resumed run only needs the step and epoch
it stopped at, and the lr curve can be plotted without running anything.
"""

from __future__ import annotations

import bisect
import math

from .config import ScheduleSection


def lr_at(schedule: ScheduleSection, base_lr: float, t: int, total: int) -> float:
    """Learning rate after ``t`` completed units (steps or epochs) of a ``total``-unit schedule.

    - ``constant``: base_lr.
    - ``cosine``: BasicSR ``TrueCosineAnnealingLR`` (NAFNet/HINet): min_lr + (base-min)(1+cos(pi t/T))/2.
    - ``multistep``: base_lr * gamma ** (milestones passed) (VapSR).
    - ``knee``: Bicubic++ ``KneeLRScheduler`` with no explore phase: linear decay from base_lr at
      t=warmup towards 0 at t=total, floored at min_lr.
    - ``warmup`` > 0: linear ramp from base_lr/warmup up to the schedule over the first ``warmup`` units
      (BasicSR's ``warmup_iter``: lr * t / warmup).
    """
    if schedule.warmup > 0 and t < schedule.warmup:
        return base_lr * (t + 1) / schedule.warmup
    if schedule.name == "constant":
        return base_lr
    if schedule.name == "cosine":
        progress = min(t, total) / max(total, 1)
        return schedule.min_lr + (base_lr - schedule.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule.name == "multistep":
        return base_lr * schedule.gamma ** bisect.bisect_right(sorted(schedule.milestones), t)
    if schedule.name == "knee":
        span = max(total - schedule.warmup, 1)
        decayed = base_lr * (1.0 - (t - schedule.warmup) / span)
        return max(decayed, schedule.min_lr)
    raise ValueError(f"unknown schedule {schedule.name!r}")  # unreachable: the config validates the name
