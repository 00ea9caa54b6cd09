"""Every file of the config fuzz corpus (``tests/fuzz_configs.py``) ends in its expected outcome: a
validated config holding the value written, or a one-line ConfigError naming the file (and the field);
never another exception, a hang or a large allocation. ``RESTOREKIT_FUZZ_RANDOM`` sets the number of
random recipe edits (default 60)."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest
from fuzz_common import judge_all, printed
from fuzz_configs import generate, load_case, problems

N_RANDOM = int(os.environ.get("RESTOREKIT_FUZZ_RANDOM", "60"))


@pytest.mark.slow
def test_config_corpus(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    cases = generate(tmp_path, n_random=N_RANDOM, seed=0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    counts, found = judge_all(cases, load_case, problems, after_each=lambda case: printed(case, capfd))
    assert not found, "\n".join(found)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, f"peak memory grew {grown_mb:.0f} MB while reading configs"
    assert counts["ok"] >= 40 and counts["refused"] >= 100, counts
