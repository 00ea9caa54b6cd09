"""Every file of the config fuzz corpus (``tests/fuzz_configs.py``) ends in its expected outcome: a
validated config holding the value written, or a one-line ConfigError naming the file (and the field);
never another exception, a hang or a large allocation. ``RESTOREKIT_FUZZ_RANDOM`` sets the number of
random recipe edits (default 60)."""

from __future__ import annotations

import os
import re
import resource
import signal
from pathlib import Path
from typing import Any

import pytest
from fuzz_configs import Case, _get, generate

from restorekit.errors import ConfigError
from restorekit.train.config import RunConfig, load_config

N_RANDOM = int(os.environ.get("RESTOREKIT_FUZZ_RANDOM", "60"))


def _alarm(signum: int, frame: Any) -> None:
    raise TimeoutError("reading the config took longer than 10 s (a hang)")


def _outcome(case: Case) -> tuple[str, Any]:
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(10)
    try:
        return "ok", load_config(case.path)
    except ConfigError as exc:
        return "refused", exc
    finally:
        signal.alarm(0)


@pytest.mark.slow
def test_config_corpus(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    cases = generate(tmp_path, n_random=N_RANDOM, seed=0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    counts = {"ok": 0, "refused": 0}
    for case in cases:
        got, value = _outcome(case)
        out, err = capfd.readouterr()
        assert not out and not err, f"{case.name}: printed {(out + err)[:200]!r}"
        assert case.expect in (got, "either"), f"{case.name}: expected {case.expect}, got {got}: {value}"
        counts[got] += 1
        if got == "refused":
            message = str(value)
            assert "\n" not in message, f"{case.name}: {message!r}"
            assert message.startswith(f"{case.path}: "), f"{case.name}: does not name the file: {message}"
            if case.match:
                assert re.search(case.match, message), f"{case.name}: {message!r} does not match {case.match!r}"
        else:
            assert isinstance(value, RunConfig)
            value.arch_config()  # the family's own Config validated too
            if case.field:
                assert _get(value, case.field) == case.value, case.name
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, f"peak memory grew {grown_mb:.0f} MB while reading configs"
    assert counts["ok"] >= 40 and counts["refused"] >= 100, counts
