"""Which inputs a process restores, on which device, with how many threads.

There is no coordinator. Every process expands the same arguments into the same sorted input list
and keeps its own share of it, so any launcher that tells a process "you are k of n" is enough:

- ``torchrun`` sets ``RANK``/``WORLD_SIZE`` (and ``LOCAL_RANK``/``LOCAL_WORLD_SIZE`` per machine);
- ``--shard K/N`` does the same for schedulers that set no torch variables (a Slurm job array passes
  ``--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``, a Kubernetes indexed job its
  ``JOB_COMPLETION_INDEX``);
- both together split each array task further between its torchrun processes.

The list is cut into units of ``unit`` consecutive inputs (the batch size) and unit ``u`` goes to
shard ``u mod n``. Dealing units round robin keeps shards balanced when the sorted list clusters
large and small files, and cutting on fixed positions of the whole list means a network batch
holds the same images whatever the number of processes, so outputs do not depend on it even for
kernels whose rounding depends on the batch size.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ..errors import RestorekitError

_SHARD_PATTERN = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise RestorekitError(f"shard {self.index}/{self.count}: need 0 <= K < N (K counts from 0)")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"K/N"`` -> ``Shard(K, N)``; anything else is an error that shows the expected form."""
    match = _SHARD_PATTERN.match(text)
    if match is None:
        raise RestorekitError(f"--shard {text!r}: expected K/N, e.g. 0/4 (K counts from 0)")
    return Shard(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True)
class Placement:
    """Where this process sits: its shard of the inputs and its slot on this machine.

    ``launcher``: ``single``, ``torchrun``, ``shard`` (``--shard`` alone) or ``torchrun+shard``.
    ``local_rank``/``local_world_size``: this process among those on the same machine (torchrun),
    used to pick a GPU and to split CPU threads.
    """

    shard: Shard = Shard()
    local_rank: int = 0
    local_world_size: int = 1
    launcher: str = "single"

    @property
    def torchrun(self) -> bool:
        """Started by torchrun together with other processes."""
        return self.launcher.startswith("torchrun")


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise RestorekitError(f"environment variable {name}={value!r} is not an integer") from None


def placement_from_env(shard: Shard | None = None, environ: Mapping[str, str] | None = None) -> Placement:
    """The placement from torchrun's variables and/or ``--shard``.

    With both, array task ``K/N`` is split between its ``W`` torchrun processes: the global shard is
    ``K * W + RANK`` of ``N * W``.
    """
    environ = os.environ if environ is None else environ
    world = _env_int(environ, "WORLD_SIZE", 1)
    rank = _env_int(environ, "RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise RestorekitError(f"RANK={rank} and WORLD_SIZE={world} do not describe a process of a group")
    local_world = _env_int(environ, "LOCAL_WORLD_SIZE", world)
    local_rank = _env_int(environ, "LOCAL_RANK", rank % max(local_world, 1))
    given = shard if shard is not None else Shard()
    if world == 1:
        launcher = "shard" if shard is not None and shard.count > 1 else "single"
        return Placement(given, 0, 1, launcher)
    launcher = "torchrun+shard" if shard is not None and shard.count > 1 else "torchrun"
    combined = Shard(given.index * world + rank, given.count * world)
    return Placement(combined, local_rank, max(local_world, 1), launcher)


def shard_units(total: int, unit: int, shard: Shard) -> list[range]:
    """Index ranges of the sorted list that ``shard`` restores: units ``shard.index``, ``+ count``, ...

    Every index in ``range(total)`` belongs to exactly one shard's units.
    """
    if unit < 1:
        raise RestorekitError(f"batch size must be >= 1, got {unit}")
    starts = range(shard.index * unit, total, shard.count * unit)
    return [range(start, min(start + unit, total)) for start in starts]


def device_for(requested: str, placement: Placement) -> str:
    """The device this process runs on: ``cuda:LOCAL_RANK`` (modulo the GPUs present) under torchrun.

    ``auto`` and ``cuda`` are spread over the machine's GPUs; an explicit ``cuda:N``, ``cpu`` or ``mps``
    is kept as asked. Without CUDA, ``auto`` stays ``auto`` (MPS or CPU).
    """
    if not placement.torchrun or requested not in ("auto", "cuda"):
        return requested
    if not torch.cuda.is_available():
        return requested
    return f"cuda:{placement.local_rank % torch.cuda.device_count()}"


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask: what a container or ``taskset`` allows)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


def thread_count(placement: Placement, requested: int | None = None,
                 environ: Mapping[str, str] | None = None) -> int | None:
    """Intra-op threads for torch: ``requested``, else ``OMP_NUM_THREADS``, else CPUs / local processes;
    None (keep torch's default) for a lone process with nothing asked.

    Each process on a machine defaults to as many threads as there are cores; N of them would
    oversubscribe the cores N times and all run slower than one, so the CPUs are shared out.
    ``OMP_NUM_THREADS`` wins when set: the user (or torchrun, which sets it to 1 for several
    processes per node unless told otherwise) chose it.
    """
    environ = os.environ if environ is None else environ
    if requested is not None:
        if requested < 1:
            raise RestorekitError(f"--threads must be >= 1, got {requested}")
        return requested
    omp = environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        return int(omp)
    if placement.local_world_size <= 1:
        return None
    return max(1, cpu_count() // placement.local_world_size)
