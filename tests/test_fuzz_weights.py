"""Every file of the weights fuzz corpus (``tests/fuzz_weights.py``) ends in its expected outcome:
a correct model, or a one-line RestorekitError naming the file; never a traceback, a warning, a hang
or an allocation larger than the corpus. ``RESTOREKIT_FUZZ_RANDOM`` sets the number of random
mutations (default 60, which keeps the test to a few seconds)."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest
from fuzz_common import judge_all, printed
from fuzz_weights import generate, load_case, problems, reference_models

N_RANDOM = int(os.environ.get("RESTOREKIT_FUZZ_RANDOM", "60"))


@pytest.mark.slow
def test_weights_corpus(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    cases = generate(tmp_path, n_random=N_RANDOM, seed=0)
    models = reference_models(seed=0)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # torch warnings above our one line were part of the problem, so anything printed is one
    counts, found = judge_all(cases, load_case, lambda case, got, value: problems(case, got, value, models),
                              after_each=lambda case: printed(case, capfd))
    assert not found, "\n".join(found)
    # ru_maxrss is in KiB on Linux: loading the corpus (a few MB of files) may not cost hundreds of MB
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mb < 400, f"peak memory grew {grown_mb:.0f} MB while loading the corpus"
    assert counts["ok"] >= 30 and counts["refused"] >= 120, counts
    assert not list(tmp_path.glob("*.part")), "loading must not write anything"
