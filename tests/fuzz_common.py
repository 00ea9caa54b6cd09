"""What the fuzz corpus generators share: reading every case and collecting problems, and their
command-line report (``python tests/fuzz_weights.py DIR --run``, ``python tests/fuzz_configs.py DIR --run``)."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

Case = TypeVar("Case")


def outcome(action: Callable[[], Any], refused: type[BaseException], seconds: int) -> tuple[str, Any]:
    """Run one case's ``action`` under a SIGALRM deadline: ("ok", its result), ("refused", the ``refused``
    error it raised) or ("crashed", any other exception, a hang past ``seconds`` included)."""

    def hang(signum: int, frame: Any) -> None:
        raise TimeoutError(f"took longer than {seconds} s (a hang)")

    signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        return "ok", action()
    except refused as exc:
        return "refused", exc
    except Exception as exc:  # noqa: BLE001 - a traceback for the user: recorded as a problem
        return "crashed", exc
    finally:
        signal.alarm(0)


def judge_all(
    cases: Sequence[Case],
    load: Callable[[Case], tuple[str, Any]],
    judge: Callable[[Case, str, Any], list[str]],
    is_random: Callable[[Case], bool] = lambda case: False,
    after_each: Callable[[Case], list[str]] = lambda case: [],
) -> tuple[dict[str, int], list[str]]:
    """Load every case: outcome counts (``ok``/``refused``/``crashed``, random cases counted apart) and the
    problems ``judge`` and ``after_each`` (e.g. "printed something") find."""
    counts = {"ok": 0, "refused": 0, "crashed": 0, "random ok": 0, "random refused": 0}
    found: list[str] = []
    for case in cases:
        got, value = load(case)
        counts[f"random {got}" if is_random(case) and got != "crashed" else got] += 1
        found += judge(case, got, value)
        found += after_each(case)
    return counts, found


def outcome_problems(case: Any, got: str, value: Any, refusal_checks: Callable[[str], list[str]]) -> list[str] | None:
    """The checks every corpus shares: no crash, the expected outcome, and a refusal that is one line
    matching ``case.match`` (plus ``refusal_checks`` of the message). None for an expected success, whose
    value the caller checks."""
    if got == "crashed":
        return [f"{case.name}: {type(value).__name__}: {value}"[:300]]
    if case.expect not in (got, "either"):
        return [f"{case.name}: expected {case.expect}, got {got}: {value}"[:300]]
    if got != "refused":
        return None
    message = str(value)
    found = [f"{case.name}: {line}" for line in refusal_checks(message)]
    if "\n" in message:
        found.append(f"{case.name}: not one line: {message[:200]!r}")
    if case.match and not re.search(case.match, message):
        found.append(f"{case.name}: {message[:200]!r} does not match {case.match!r}")
    return found


def printed(case: Any, capfd: Any) -> list[str]:
    """A problem when loading ``case`` printed anything (our errors are one line, raised, not printed)."""
    out, err = capfd.readouterr()
    return [f"{case.name}: printed {(out + err)[:200]!r}"] if out or err else []


def command_line(folder: str, cases: Sequence[Any], manifest: list[dict[str, Any]], noun: str, started: float,
                 run: Callable[[], tuple[dict[str, int], list[str]]] | None) -> None:
    """Write ``manifest.json`` beside the corpus, print its size, and with ``run`` judge it and exit 1 on problems."""
    (Path(folder) / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    print(f"{len(cases)} {noun} in {folder} ({time.perf_counter() - started:.1f} s)")
    if run is None:
        return
    started = time.perf_counter()
    counts, found = run()
    print(f"read in {time.perf_counter() - started:.1f} s: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"problems: {len(found)}")
    for line in found:
        print(f"  {line}")
    raise SystemExit(1 if found else 0)
