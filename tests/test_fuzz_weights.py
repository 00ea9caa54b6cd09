"""Every file of the weights fuzz corpus (``tests/fuzz_weights.py``) ends in its expected outcome:
a correct model, or a one-line RestorekitError naming the file; never a traceback, a warning, a hang
or an allocation larger than the corpus. ``RESTOREKIT_FUZZ_RANDOM`` sets the number of random
mutations (default 60, which keeps the test to a few seconds)."""

from __future__ import annotations

import os
import re
import resource
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from fuzz_weights import Case, generate, reference_models

import restorekit
from restorekit.errors import RestorekitError

N_RANDOM = int(os.environ.get("RESTOREKIT_FUZZ_RANDOM", "60"))
SECONDS_PER_CASE = 20  # a hang fails the test instead of stalling CI


def _alarm(signum: int, frame: Any) -> None:
    raise TimeoutError("loading took longer than the per-case limit (a hang)")


def _outcome(case: Case, capfd: pytest.CaptureFixture[str]) -> tuple[str, Any]:
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(SECONDS_PER_CASE)
    try:
        return "ok", restorekit.load(case.path)
    except RestorekitError as exc:
        return "refused", exc
    finally:
        signal.alarm(0)


@pytest.mark.slow
def test_weights_corpus(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    cases = generate(tmp_path, n_random=N_RANDOM, seed=0)
    models = reference_models(seed=0)
    probe = torch.rand(1, 3, 12, 12)
    expected = {family: model(probe if model.in_channels == 3 else probe[:, :1]) for family, model in models.items()}
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    counts = {"ok": 0, "refused": 0}
    for case in cases:
        with torch.inference_mode():
            got, value = _outcome(case, capfd)
            out, err = capfd.readouterr()
            assert not out and not err, f"{case.name}: printed {(out + err)[:300]!r}"  # no torch warning noise
            assert case.expect in (got, "either"), f"{case.name}: expected {case.expect}, got {got}: {value}"
            counts[got] += 1
            if got == "refused":
                message = str(value)
                assert "\n" not in message and len(message) < 600, f"{case.name}: {message!r}"
                assert str(case.path) in message, f"{case.name}: message does not name the file: {message}"
                assert "weights_only=False" not in message
                if case.match:
                    assert re.search(case.match, message), f"{case.name}: {message!r} does not match {case.match!r}"
            elif case.expect == "ok":
                model = value
                reference = models[case.family]
                assert model.family == case.family and model.config == reference.config, case.name
                x = probe if model.in_channels == 3 else probe[:, :1]
                tolerance = 1e-2 if "fp16" in case.name else 1e-6
                torch.testing.assert_close(model(x), expected[case.family], atol=tolerance, rtol=tolerance)
            else:  # random damage that still loads: a network of the right family, and the right size
                assert value.family == case.family, case.name
    # ru_maxrss is in KiB on Linux: loading the corpus (a few MB of files) may not cost hundreds of MB
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mb < 400, f"peak memory grew {grown_mb:.0f} MB while loading the corpus"
    assert counts["ok"] >= 30 and counts["refused"] >= 80, counts
    assert not list(tmp_path.glob("*.part")), "loading must not write anything"
