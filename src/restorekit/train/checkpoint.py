"""Training checkpoints: everything needed to continue a run bit for bit, written atomically, checksummed.

A checkpoint holds the network, the EMA copy, the optimizer, the AMP grad scaler, the RNG states
(python, numpy, torch, every CUDA device), the step, the data position (epoch, batches done in it),
the best validation score and the metric history. It contains only tensors and plain containers, so
it is read back with ``torch.load(weights_only=True)``: loading a checkpoint never runs code.

Integrity: ``torch.save`` writes a zip archive; after it, :func:`save_checkpoint` appends one more
member, ``<top>/restorekit.sha256``, the SHA-256 of every other member's bytes. :func:`verify_checkpoint`
recomputes it (zipfile also checks each member's CRC-32 on the way), so a truncated, zero-byte or
bit-flipped file is detected before its numbers are used. Saving ``last.pt`` keeps the file it
replaces as ``last.prev.pt``, and :func:`load_latest` falls back to it when the newest is damaged.
Checkpoints written before the digest existed are checked by their CRC-32s alone.
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_path
from ..errors import DiskFullError, WeightsError, is_disk_full

DIGEST_MEMBER = "restorekit.sha256"
_CHUNK = 1 << 20


class CheckpointError(WeightsError):
    """A checkpoint file is missing, damaged (truncated, corrupted) or not a training checkpoint."""


def capture_rng() -> dict[str, Any]:
    """RNG states as tensors and plain values (numpy's is unpacked: ndarrays are not weights_only-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def previous_path(path: str | Path) -> Path:
    """Where the checkpoint replaced by the latest save of ``path`` is kept (``last.pt`` -> ``last.prev.pt``)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(state: dict[str, Any], path: str | Path, keep_previous: bool = False) -> Path:
    """``torch.save`` to a temp file in the same folder, append the digest, fsync, then ``os.replace``:
    a crash (even SIGKILL) mid-write leaves the previous checkpoint intact, never a truncated one.

    ``keep_previous``: the file being replaced stays as :func:`previous_path` (a hard link, so ``path``
    never disappears), the fallback when the newest one turns out damaged. A full disk raises
    :class:`~restorekit.errors.DiskFullError` in one line; the previous checkpoint is untouched.
    """
    path = Path(path)
    try:
        # named after the destination, so the run folder's stale-temp cleaner (rundir.py) recognises it
        with atomic_path(path, prefix=path.name + ".") as tmp:
            # A file object, not a path: torch's own writer turns ENOSPC into an errno-less RuntimeError.
            with open(tmp, "wb") as f:
                torch.save(state, f)
            with zipfile.ZipFile(tmp, "a") as archive:
                # torch reads only members inside the archive's one top folder (``<stem>/data.pkl``)
                top = archive.namelist()[0].split("/")[0]
                archive.writestr(f"{top}/{DIGEST_MEMBER}", _digest(archive))
            if keep_previous and path.is_file():
                _keep(path, previous_path(path))
    except Exception as exc:
        if is_disk_full(exc):
            raise DiskFullError(f"{path}: disk full (ENOSPC) while writing the checkpoint; the previous one is kept") from None
        raise
    return path


def _keep(path: Path, previous: Path) -> None:
    """Make ``previous`` a copy of ``path`` without ``path`` ever being absent (hard link, then rename)."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=previous.name + ".", suffix=".part")
    os.close(handle)
    os.unlink(tmp)
    try:
        os.link(path, tmp)
        os.replace(tmp, previous)
    except OSError:  # no hard links here (some network/FAT file systems): move it; load_latest copes
        os.replace(path, previous)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _digest(archive: zipfile.ZipFile) -> str:
    """SHA-256 over every member's name and bytes except the digest's own, in archive order.

    Reading each member through zipfile also verifies its CRC-32 (BadZipFile on a mismatch).
    """
    sha = hashlib.sha256()
    for info in archive.infolist():
        if info.filename.rsplit("/", 1)[-1] == DIGEST_MEMBER:
            continue
        sha.update(info.filename.encode() + b"\0")
        with archive.open(info) as member:
            while chunk := member.read(_CHUNK):
                sha.update(chunk)
    return sha.hexdigest()


def verify_checkpoint(path: str | Path) -> None:
    """Raise :class:`CheckpointError` (one line: what is wrong) unless ``path`` is an intact checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes)")
    try:
        with zipfile.ZipFile(path) as archive:
            digests = [n for n in archive.namelist() if n.rsplit("/", 1)[-1] == DIGEST_MEMBER]
            recorded = archive.read(digests[0]).decode("ascii", "replace") if digests else None
            actual = _digest(archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: damaged (truncated or corrupted: {' '.join(str(exc).split())[:120]})") from None
    if recorded is not None and recorded != actual:
        raise CheckpointError(f"{path}: damaged (SHA-256 mismatch: the file changed after it was written)")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Verify and read one checkpoint; every failure is a one-line :class:`CheckpointError`."""
    path = Path(path)
    verify_checkpoint(path)
    try:
        state = torch.load(str(path), map_location=map_location, weights_only=True)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:120]
        if "weights_only" in reason:  # torch's advice to load unsafely is never passed on
            reason = "it holds objects other than tensors and plain containers"
        raise CheckpointError(f"{path}: cannot read training checkpoint ({type(exc).__name__}: {reason})") from exc
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise CheckpointError(f"{path}: not a restorekit training checkpoint (no 'model'/'step' entries)")
    return state


def load_latest(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], Path, str | None]:
    """(state, file used, note) from ``path``, or from :func:`previous_path` when ``path`` is missing or
    damaged; the note (one line) says why the fallback was taken. Raises when neither is usable."""
    path = Path(path)
    try:
        return load_checkpoint(path, map_location), path, None
    except CheckpointError as newest:
        previous = previous_path(path)
        if not previous.is_file():
            raise
        try:
            state = load_checkpoint(previous, map_location)
        except CheckpointError as older:
            raise CheckpointError(f"{newest}; and the fallback {older}") from None
        note = f"{newest}; resuming from {previous.name} (step {state['step']}) instead"
        return state, previous, note
