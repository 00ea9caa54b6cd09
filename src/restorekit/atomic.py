"""The one way restorekit writes a file: into a temp file beside the destination, flushed to disk, given
the permissions a plain ``open()`` would give (``0666 & ~umask``), then renamed over the destination.

A reader (or a resumed run) therefore sees the old file or the new one, never half of one, and a crash
leaves only a hidden temp file that the stale-temp cleaners remove (``imageio.clean_stale_temp_files``
for outputs, ``train.rundir`` for run folders). ``tempfile.mkstemp`` creates files ``0600``; without the
``chmod`` every weights file, checkpoint and report we wrote was private by accident.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_PREFIX = ".restorekit-"  # short names: a destination name near the file-system limit still fits
TEMP_SUFFIX = ".part"


def current_umask() -> int:
    """The process umask (the only portable way to read it is to set it and put it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(destination: str | Path, prefix: str | None = None) -> Iterator[Path]:
    """Yield a temp path beside ``destination`` for the caller to write; on a normal exit it is fsynced,
    given ``0666 & ~umask`` and renamed to ``destination``; on an exception it is deleted.

    ``prefix``: the temp name's start (default ``.restorekit-<pid>-``); run folders use
    ``<destination name>.`` so their cleaner can tell which file a leftover belonged to.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=destination.parent, prefix=prefix or f"{TEMP_PREFIX}{os.getpid()}-",
                                    suffix=TEMP_SUFFIX)
    os.close(handle)
    temp = Path(name)
    try:
        yield temp
        with open(temp, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(temp, 0o666 & ~current_umask())
        os.replace(temp, destination)
    finally:
        temp.unlink(missing_ok=True)


def write_bytes_atomic(data: bytes, destination: str | Path, prefix: str | None = None) -> Path:
    """Write ``data`` to ``destination`` through :func:`atomic_path`."""
    with atomic_path(destination, prefix) as temp:
        temp.write_bytes(data)
    return Path(destination)


def write_text_atomic(text: str, destination: str | Path, prefix: str | None = None) -> Path:
    """Write UTF-8 ``text`` to ``destination`` through :func:`atomic_path`."""
    return write_bytes_atomic(text.encode("utf-8"), destination, prefix)
