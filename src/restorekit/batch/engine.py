"""Restore a shard of planned jobs: decode ahead, batch same-size images, encode behind.

The loop, per unit of the shard (``batch_size`` consecutive inputs of the sorted list):
1. an existing output is skipped (unless ``overwrite``), a job planned to fail is reported;
2. the rest are decoded by the reader threads, which run ahead of the network by a bounded amount;
3. decoded images of the unit with the same size, depth and alpha go through the network together
   (``restore_batch``); the others one at a time;
4. each result goes to the writer threads (encode, atomic write) and the loop moves on.
Every input gets exactly one ``Outcome``. One bad file never ends the run: its reason is reported.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..errors import RestorekitError
from ..imageio import DEFAULT_MAX_PIXELS, Image, read_image, write_image
from ..inference import Backend, RestoreOptions
from ..inference.pipeline import batch_key, restore_batch
from .prefetch import BoundedWriter, Result, ordered_map
from .report import Outcome

OUTPUT_EXISTS = "output exists"  # the skip reason of a rerun: this output was made before


@dataclass(frozen=True)
class Job:
    """One input of the run: its position in the sorted list, where its output goes, or why it cannot run."""

    index: int
    source: Path
    destination: Path | None
    problem: str | None = None  # planned failure (e.g. two inputs would write the same output)


@dataclass(frozen=True)
class EngineOptions:
    """How the shard runs. Outputs are written in the format their extension names (the planner chose it).

    ``io_threads``: reader threads and writer threads (each); 0 decodes and encodes inline.
    ``look_ahead``: decoded images held ahead of the network; ``None`` = two units' worth.
    """

    restore: RestoreOptions = field(default_factory=RestoreOptions)
    overwrite: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    io_threads: int = 2
    look_ahead: int | None = None


@dataclass(frozen=True)
class _Decoded:
    job: Job
    image: Image
    bytes: int | None


@dataclass(frozen=True)
class _Restored:
    job: Job
    image: Image
    bytes: int | None
    width: int
    height: int
    seconds: float  # decode + this image's share of its batch


def failure_reason(exc: BaseException, path: Path) -> str:
    """A user-facing reason for ``exc`` (our errors start with the path; it is not repeated)."""
    if isinstance(exc, RestorekitError):
        return str(exc).removeprefix(f"{path}: ")
    return f"{type(exc).__name__}: {exc}"


def restore_units(
    units: Sequence[Sequence[Job]],
    backend: Backend,
    options: EngineOptions,
    record: Callable[[Outcome], None],
) -> None:
    """Restore every job of ``units`` and pass each job's ``Outcome`` to ``record`` (called from the
    writer threads too, so it must be thread-safe; ``ShardRecorder`` is)."""

    def wanted() -> Iterator[tuple[int, Job]]:
        # runs lazily in the loop's thread as the readers need more: existence is checked late
        for number, unit in enumerate(units):
            for job in unit:
                if job.problem is not None or job.destination is None:
                    record(Outcome(str(job.source), None, "failed", job.problem or "no output path", job.index))
                elif job.destination.exists() and not options.overwrite:
                    record(Outcome(str(job.source), str(job.destination), "skipped", OUTPUT_EXISTS, job.index))
                else:
                    yield number, job

    def decode(entry: tuple[int, Job]) -> _Decoded:
        job = entry[1]
        size = _file_size(job.source)
        return _Decoded(job, read_image(job.source, options.max_pixels), size)

    def written(result: Result) -> None:
        item: _Restored = result.item
        job = item.job
        if result.error is not None:
            record(Outcome(str(job.source), str(job.destination), "failed", failure_reason(result.error, job.source),
                           job.index, item.bytes, item.width, item.height, item.seconds + result.seconds))
        else:
            record(Outcome(str(job.source), str(job.destination), "done", None, job.index, item.bytes, item.width,
                           item.height, item.seconds + result.seconds))

    def write(item: _Restored) -> Path:
        assert item.job.destination is not None
        return write_image(item.image, item.job.destination)

    unit_size = max((len(u) for u in units), default=1)
    ahead = options.look_ahead or max(2 * unit_size, 2 * options.io_threads, 1)
    writer = BoundedWriter(written, options.io_threads, pending=max(unit_size, options.io_threads, 1))
    try:
        current: int | None = None
        held: list[Result] = []
        for result in ordered_map(decode, wanted(), options.io_threads, ahead):
            number = result.item[0]
            if current is not None and number != current:
                _run_unit(held, backend, options, writer, write, record)
                held = []
            current = number
            held.append(result)
        if held:
            _run_unit(held, backend, options, writer, write, record)
    finally:
        writer.close()  # also on Ctrl-C/SIGTERM: the writes already queued finish (each is atomic)


def _run_unit(held: list[Result], backend: Backend, options: EngineOptions, writer: BoundedWriter,
              write: Callable[[_Restored], Path], record: Callable[[Outcome], None]) -> None:
    """Restore one unit's decoded images, grouped by size, and queue their writes."""
    groups: dict[tuple[object, ...], list[tuple[_Decoded, float]]] = {}
    for result in held:
        job: Job = result.item[1]
        if result.error is not None:
            record(Outcome(str(job.source), str(job.destination), "failed", failure_reason(result.error, job.source),
                           job.index, _file_size(job.source), seconds=result.seconds))
            continue
        decoded: _Decoded = result.value
        for note in decoded.image.notes:  # the reader's warnings, each naming its file
            tqdm.write(f"warning: {note}", file=sys.stderr)
        groups.setdefault(batch_key(decoded.image), []).append((decoded, result.seconds))
    for members in groups.values():
        images = [decoded.image for decoded, _ in members]
        started = time.perf_counter()
        try:
            outputs = restore_batch(images, backend, options.restore)
        except Exception as exc:  # noqa: BLE001 - a batch failure falls back to one at a time for per-file reasons
            if len(members) == 1:
                decoded, read_s = members[0]
                _record_failure(record, decoded, exc, read_s + time.perf_counter() - started)
                continue
            for member in members:
                _run_alone(member, backend, options, writer, write, record)
            continue
        share = (time.perf_counter() - started) / len(members)
        for (decoded, read_s), output in zip(members, outputs):
            _queue(writer, write, decoded, output, options, read_s + share, record)


def _run_alone(member: tuple[_Decoded, float], backend: Backend, options: EngineOptions, writer: BoundedWriter,
               write: Callable[[_Restored], Path], record: Callable[[Outcome], None]) -> None:
    decoded, read_s = member
    started = time.perf_counter()
    try:
        output = restore_batch([decoded.image], backend, options.restore)[0]
    except Exception as exc:  # noqa: BLE001 - one bad file must not end the run; the reason is reported
        _record_failure(record, decoded, exc, read_s + time.perf_counter() - started)
        return
    _queue(writer, write, decoded, output, options, read_s + time.perf_counter() - started, record)


def _queue(writer: BoundedWriter, write: Callable[[_Restored], Path], decoded: _Decoded, output: Image,
           options: EngineOptions, seconds: float, record: Callable[[Outcome], None]) -> None:
    image = decoded.image
    writer.submit(write, _Restored(decoded.job, output, decoded.bytes, image.width, image.height, seconds))


def _record_failure(record: Callable[[Outcome], None], decoded: _Decoded, exc: BaseException, seconds: float) -> None:
    job, image = decoded.job, decoded.image
    record(Outcome(str(job.source), str(job.destination), "failed", failure_reason(exc, job.source), job.index,
                   decoded.bytes, image.width, image.height, seconds))


def _file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


class ShardRecorder:
    """Collects outcomes from any thread and prints each failure and skip once, above the progress bar."""

    def __init__(self, on_outcome: Callable[[Outcome], None] | None = None) -> None:
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._on_outcome = on_outcome

    def __call__(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)
            if outcome.status == "failed":
                tqdm.write(f"failed: {outcome.input}: {outcome.reason}", file=sys.stderr)
            elif outcome.status == "skipped" and outcome.reason == OUTPUT_EXISTS:
                tqdm.write(f"skipped: {outcome.output} exists (use --overwrite)", file=sys.stderr)
            elif outcome.status == "skipped":
                tqdm.write(f"skipped: {outcome.input}: {outcome.reason}", file=sys.stderr)
            if self._on_outcome is not None:
                self._on_outcome(outcome)
