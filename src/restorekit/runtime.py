"""Process-wide settings that make CPU inference faster; the CLI applies them, library users opt in.

:func:`retain_freed_memory`: by default glibc's malloc serves large blocks (above a dynamic threshold
of at most 32 MiB) with fresh ``mmap`` pages and returns them to the kernel on ``free``, so every
large activation tensor is page-faulted in again, one 4 KiB page at a time, on every forward pass.
For a 720p -> 4K Bicubic++ pass that fault work was 40% of the CPU time on our test machine
(BENCHMARKS.md). Raising the mmap and trim thresholds makes malloc keep freed memory and reuse it,
which also keeps the process's resident size at its peak until it exits: the right trade for a
command that restores images, not for a long-lived process that must give memory back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

RETAIN_ENV = "RESTOREKIT_RETAIN_MEMORY"  # set to 0 to leave malloc alone


def retain_freed_memory(limit_bytes: int = 1 << 30) -> bool:
    """Let glibc malloc keep and reuse freed blocks below ``limit_bytes`` instead of unmapping them.

    Returns True when the setting took effect; False (and changes nothing) on non-glibc systems
    (macOS, Windows, musl), or when the environment variable ``RESTOREKIT_RETAIN_MEMORY`` is ``0``.
    """
    if os.environ.get(RETAIN_ENV, "1").strip() == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it; musl's mallopt is a no-op)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    limit = max(0, min(int(limit_bytes), 2**31 - 1))
    return bool(mallopt(_M_MMAP_THRESHOLD, limit)) and bool(mallopt(_M_TRIM_THRESHOLD, limit))
