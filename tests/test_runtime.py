"""restorekit.runtime: the malloc setting the CLI applies (glibc only)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

glibc_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="mallopt tuning exists on glibc only",
)

# Allocate and free a 256 MiB tensor, then report (retain_freed_memory's result, RSS growth in MiB).
PROBE = textwrap.dedent(
    """
    import os, torch
    from restorekit.runtime import retain_freed_memory
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    took = retain_freed_memory()
    before = rss()
    x = torch.ones(64, 1024, 1024)
    del x
    print(took, round(rss() - before))
    """
)


def _probe(env_value: str | None) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if k != "RESTOREKIT_RETAIN_MEMORY"}
    if env_value is not None:
        env["RESTOREKIT_RETAIN_MEMORY"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    took, growth = out.stdout.split()
    return took == "True", int(growth)


@pytest.mark.slow
@glibc_only
def test_retained_memory_stays_mapped_for_reuse() -> None:
    took, growth = _probe(None)
    assert took
    assert growth > 200  # the freed 256 MiB block stayed in the process for the next tensor


@pytest.mark.slow
@glibc_only
def test_opt_out_leaves_malloc_alone() -> None:
    took, growth = _probe("0")
    assert not took
    assert growth < 50  # glibc's default: the block went back to the kernel on free
