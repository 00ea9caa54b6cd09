"""Exceptions with messages meant for users (they name the file and the problem)."""

from __future__ import annotations


class RestorekitError(Exception):
    """Base class for errors that the CLI prints as one readable line, without a traceback."""


class DetectionError(RestorekitError):
    """A state dict matched no family, or contradicted the architecture the user named."""


class WeightsError(RestorekitError):
    """A weights file could not be read, downloaded or verified."""


class ImageError(RestorekitError):
    """An image could not be read or written."""


class ConfigError(RestorekitError):
    """A configuration file or override is invalid."""


class UnknownNameError(RestorekitError, KeyError):
    """A preset or family name that does not exist (also a KeyError, as a failed lookup is)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DeviceError(RestorekitError):
    """The requested device is not available in this PyTorch build or machine."""


class DiskFullError(RestorekitError):
    """A write failed because the file system is full (ENOSPC) or over quota (EDQUOT)."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it wraps) is a full disk: an ``OSError`` with ENOSPC/EDQUOT, or a
    library error that only kept the OS message (safetensors: "No space left on device (os error 28)")."""
    import errno

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(current) or "Disk quota exceeded" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False
