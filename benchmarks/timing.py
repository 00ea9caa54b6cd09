"""Timing shared by the benchmark scripts: median thread CPU time after one warm-up call.

Thread CPU time (not wall clock) because this machine is shared: other processes' load barely
changes it when the measured code runs on the calling thread (one thread, see BENCHMARKS.md).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_thread_seconds(fn: Callable[[], object], runs: int) -> float:
    """Median over ``runs`` calls of ``fn`` of the calling thread's CPU seconds, after one warm-up call."""
    fn()
    samples = []
    for _ in range(runs):
        start = time.thread_time()
        fn()
        samples.append(time.thread_time() - start)
    return statistics.median(samples)
