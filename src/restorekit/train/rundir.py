"""The run folder (``out_dir/name``): one trainer at a time, and no temp files of ours left behind.

- :class:`RunLock` holds an exclusive ``flock`` on ``out_dir/name/.lock`` while a trainer runs. Two
  trainers in one folder used to both "succeed" while overwriting each other's checkpoints. The kernel
  drops the lock when its process dies (even by SIGKILL), so a lock file left by a dead trainer is
  stale by construction and is simply taken over; the file records the holder's pid and host for the
  error message. POSIX only (``fcntl``); elsewhere the lock is a no-op.
- :func:`clean_stale_temps` removes the ``*.part`` files an interrupted checkpoint or export write left
  (``save_checkpoint`` and ``loading.save_safetensors`` write ``<name>.<random>.part`` and rename it); it runs
  only while the lock is held, so no live writer of ours can own them.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from types import TracebackType
from typing import Self

from ..errors import ConfigError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"
# Files a run writes through a temp file: checkpoints (and the kept previous one) and exports.
_OUTPUTS = ("last.pt", "last.prev.pt", "best.pt", "final.safetensors", "best.safetensors")
_TEMP = re.compile(r"^(?P<target>.+)\.[A-Za-z0-9_]{8}\.part$")  # tempfile.mkstemp(prefix=target + ".", suffix=".part")


class RunLock:
    """``with RunLock(run_dir):`` -- exclusive use of a run folder, or a one-line ConfigError naming the holder."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> Self:
        if fcntl is None:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise ConfigError(
                f"{self.run_dir}: another trainer is using this run folder ({holder}); "
                "wait for it to finish or pick another name"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._fd is not None:
            # The file stays: deleting it would let a waiting opener lock an unlinked inode while a
            # third process locks a new file of the same name.
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def clean_stale_temps(run_dir: str | Path) -> list[Path]:
    """Remove temp files of our outputs left by an interrupted write; returns what was removed."""
    run_dir = Path(run_dir)
    removed = []
    if not run_dir.is_dir():
        return removed
    for entry in run_dir.iterdir():
        match = _TEMP.match(entry.name)
        if match and match["target"] in _OUTPUTS and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
