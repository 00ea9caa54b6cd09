"""One process's part of a restore run, from planned jobs to its report and exit code.

``run_shard`` takes this process's units of the sorted job list, runs the engine under a progress bar,
and writes the shard's report (also when interrupted: ``complete: false``). ``finish`` then merges
the shard reports: under torchrun the processes meet at a gloo barrier and rank 0 merges (so no
process exits, and makes torchrun stop the others, before all are done); shards started separately
(``--shard K/N``) each merge when they find every other shard's file, so the last one to end does.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import FrameType

import torch
from tqdm import tqdm

from ..errors import RestorekitError
from ..inference import Backend
from . import report as reports
from .engine import OUTPUT_EXISTS, EngineOptions, Job, ShardRecorder, restore_units
from .shard import Placement, shard_units

# Processes of one torchrun launch wait for each other at the end; shards are dealt round robin so
# they end close together, but a slower machine may lag for hours on a big archive.
BARRIER_TIMEOUT = timedelta(days=2)


@dataclass(frozen=True)
class ShardPlan:
    """What this process restores: the whole run's sorted jobs and its place among the processes.

    ``extra``: outcomes that belong to no job (an argument that matched nothing); shard 0 reports them.
    """

    jobs: Sequence[Job]
    placement: Placement
    batch_size: int
    output_dir: Path
    extra: Sequence[reports.Outcome] = ()

    def units(self) -> list[list[Job]]:
        return [[self.jobs[i] for i in span] for span in shard_units(len(self.jobs), self.batch_size,
                                                                         self.placement.shard)]


def run_shard(plan: ShardPlan, backend: Backend, options: EngineOptions, report_path: Path | None = None,
              model_name: str = "", quiet: bool = False) -> reports.ShardReport:
    """Restore this process's units; write its report to ``report_path`` (its ``.rank<K>`` file when sharded)."""
    shard = plan.placement.shard
    units = plan.units()
    extra = plan.extra if shard.index == 0 else ()
    report = reports.ShardReport(
        shard=shard.index, shards=shard.count, inputs=len(plan.jobs), unit=plan.batch_size,
        fingerprint=reports.fingerprint((str(job.source) for job in plan.jobs), plan.output_dir, plan.batch_size),
        launcher=plan.placement.launcher, device=str(backend.device), model=model_name,
    )
    own_file = _own_report_file(report_path, shard.index, shard.count)
    if own_file is not None and shard.count > 1:
        own_file.unlink(missing_ok=True)  # a stale file from an earlier run must not be merged meanwhile
    total = sum(len(unit) for unit in units) + len(extra)
    label = f"shard {shard}" if shard.count > 1 else "images"
    bar = tqdm(total=total, desc=label, unit="img", disable=quiet or total < 2)
    recorder = ShardRecorder(on_outcome=lambda _outcome: bar.update(1))
    started = time.perf_counter()
    try:
        for outcome in extra:
            recorder(outcome)
        with _sigterm_interrupts():
            restore_units(units, backend, options, recorder)
    except BaseException:
        report.complete = False
        raise
    finally:
        bar.close()
        report.seconds = time.perf_counter() - started
        report.outcomes = list(recorder.outcomes)
        if own_file is not None:
            reports.write_json(report.to_json(), own_file)
    return report


def _own_report_file(report_path: Path | None, index: int, count: int) -> Path | None:
    if report_path is None:
        return None
    return reports.shard_path(report_path, index) if count > 1 else report_path


def summary(report: reports.ShardReport) -> str:
    """One line: counts, time, rate; says when the run resumed an earlier one."""
    totals = reports.totals(report.outcomes, report.seconds)
    rate = f", {totals['images_per_second']:.2f} img/s" if totals["images_per_second"] else ""
    prefix = f"shard {report.shard}/{report.shards}: " if report.shards > 1 else ""
    line = (f"{prefix}done {totals['done']}, failed {totals['failed']}, skipped {totals['skipped']} "
            f"in {report.seconds:.1f} s{rate}")
    existing = sum(o.status == "skipped" and o.reason == OUTPUT_EXISTS for o in report.outcomes)
    if existing:
        line += f" (resumed: {existing} outputs were already there)"
    return line


def finish(report: reports.ShardReport, placement: Placement, report_path: Path | None, grouped: bool) -> int:
    """Wait for the other torchrun processes (``grouped``), merge the report if this process should,
    and return the exit code: 1 when this shard had failures (each shard answers for its own inputs,
    so a scheduler marks the array task or rank that failed)."""
    code = 1 if any(o.status == "failed" for o in report.outcomes) else 0
    if grouped and not _barrier():
        print(f"shard {placement.shard}: the other processes did not finish; merge later with "
              "`restorekit report merge`", file=sys.stderr)
        return code
    if report_path is None or placement.shard.count == 1:
        return code
    if grouped and int(os.environ.get("RANK", "0")) != 0:
        return code
    try:
        merged = reports.merge_if_complete(report_path, placement.shard.count)
    except RestorekitError as exc:
        print(f"report not merged: {exc}", file=sys.stderr)
        return code
    if merged is None:
        print(f"{reports.shard_path(report_path, placement.shard.index)} written; merge when every shard is done: "
              f"restorekit report merge {report_path} {_shard_glob(report_path)}", file=sys.stderr)
        return code
    totals = merged["totals"]
    print(f"report {report_path}: {merged['shards']} shards, done {totals['done']}, failed {totals['failed']}, "
          f"skipped {totals['skipped']}" + ("" if merged["complete"] else ", incomplete"))
    return code


def _shard_glob(report_path: Path) -> str:
    return str(report_path.with_name(f"{report_path.stem}.rank*{report_path.suffix or '.json'}"))


def join_group(placement: Placement) -> bool:
    """Join torchrun's processes in a CPU (gloo) group, used only for the final barrier; False when
    not under torchrun or when the launcher gave no rendezvous address."""
    if not placement.torchrun or "MASTER_ADDR" not in os.environ or not torch.distributed.is_available():
        return False
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    return True


def _barrier() -> bool:
    import torch.distributed as dist

    try:
        dist.barrier()
        return True
    except RuntimeError:  # a timeout, or a process that died (torchrun then stops this one anyway)
        return False
    finally:
        try:
            dist.destroy_process_group()
        except RuntimeError:
            pass  # the group is already broken; the process is about to exit


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (torchrun stopping its workers, a scheduler's time limit) ends the run like Ctrl-C, so the
    queued writes finish and the shard report is written as incomplete."""
    try:
        previous = signal.getsignal(signal.SIGTERM)

        def interrupt(_signum: int, _frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
