"""Finding weights files: a local folder first, then the package's embedded weights, then a cache
that is filled by download (with a progress bar and a sha256 check).

Search order for a preset's ``filename`` (:func:`search_places`):
1. every folder in ``RESTOREKIT_WEIGHTS`` (``os.pathsep``-separated), searched recursively;
2. ``restorekit/weights/`` inside the installed package (the project's own embedded models);
3. the cache folder ``RESTOREKIT_CACHE`` (default ``~/.cache/restorekit``);
4. download from the preset's URL into the cache, verified against its sha256 (never when
   ``RESTOREKIT_OFFLINE=1``).

When all of that fails, :func:`missing_weights_error` writes the one message every entry point
shows (``restore``, ``eval``, ``export``, ``ui``, ``restorekit.load``): what is missing, where we
looked, the file name and sha256 to place there, where the authors publish it, and its license.

This module imports neither torch nor the network stack at import time: ``restorekit models``
uses it to say which weights are here, and must stay fast.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_path
from .errors import WeightsError
from .zoo import Preset

PACKAGE_WEIGHTS = Path(__file__).parent / "weights"
WEIGHTS_ENV = "RESTOREKIT_WEIGHTS"
CACHE_ENV = "RESTOREKIT_CACHE"
OFFLINE_ENV = "RESTOREKIT_OFFLINE"  # 1: never download (as HF_HUB_OFFLINE does for Hugging Face)


@dataclass(frozen=True)
class Place:
    """A folder weights are looked for in, and what put it on the list (for messages and ``info``)."""

    origin: str  # "RESTOREKIT_WEIGHTS", "package" or "cache"
    folder: Path
    recursive: bool = False

    def describe(self) -> str:
        missing = "" if self.folder.is_dir() else ", which does not exist"
        if self.origin == WEIGHTS_ENV:
            return f"{WEIGHTS_ENV} ({self.folder}, recursively{missing})"
        return f"the {self.origin} ({self.folder}{missing})"


class DownloadError(WeightsError):
    """A download did not complete; ``offline`` says whether the server could not be reached at all."""

    def __init__(self, message: str, offline: bool = False) -> None:
        super().__init__(message)
        self.offline = offline


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "restorekit")


def is_offline() -> bool:
    """True when ``RESTOREKIT_OFFLINE`` asks restorekit never to download."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def weights_folders() -> list[Path]:
    """The folders named by ``RESTOREKIT_WEIGHTS``, in order (empty when it is unset)."""
    return [Path(p).expanduser() for p in os.environ.get(WEIGHTS_ENV, "").split(os.pathsep) if p]


def search_places() -> list[Place]:
    """Where weights are looked for, in order (see the module docstring)."""
    places = [Place(WEIGHTS_ENV, folder, recursive=True) for folder in weights_folders()]
    return [*places, Place("package", PACKAGE_WEIGHTS), Place("cache", cache_dir())]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def locate(filename: str) -> tuple[Path, Place] | None:
    """The first local copy of ``filename`` and the place it was found in, or None."""
    for place in search_places():
        direct = place.folder / filename
        if direct.is_file():
            return direct, place
        if place.recursive and place.folder.is_dir():
            found = next((p for p in sorted(place.folder.rglob(filename)) if p.is_file()), None)
            if found is not None:
                return found, place
    return None


def find_local(filename: str) -> Path | None:
    """The first local copy of ``filename``, or None."""
    found = locate(filename)
    return found[0] if found is not None else None


def is_available(preset: Preset) -> bool:
    return preset.filename is not None and find_local(preset.filename) is not None


def missing_weights_error(preset: Preset, why: str | None = None) -> WeightsError:
    """The error for a preset whose weights are not here: the one message every entry point shows.

    ``why``: what stopped the download (``"offline: ..."``, an HTTP error, a checksum mismatch);
    None when no download was possible or tried.
    """
    license_text = preset.license + (" (non-commercial use only)" if preset.non_commercial else "")
    if preset.filename is None:
        return WeightsError(
            f"preset {preset.name!r} has no released weights ({preset.source}); "
            f"use a weights file of your own instead (license of the architecture's code: {license_text})"
        )
    places = search_places()
    if not weights_folders():
        looked = [f"{WEIGHTS_ENV} (not set)", *(p.describe() for p in places)]
    else:
        looked = [p.describe() for p in places]
    if preset.url is None:
        first = (f"the weights of {preset.name!r} are not on this machine, and they are published on Google Drive "
                 "only, which restorekit cannot download for you")
    elif why is not None:
        first = f"the weights of {preset.name!r} are not on this machine and could not be downloaded: {why}"
    else:
        first = f"the weights of {preset.name!r} are not on this machine"
    official = preset.official_url or preset.url
    if official is None:
        get_it = preset.source
    elif preset.official_url is not None and "drive.google.com" in preset.official_url:
        get_it = f"{preset.official_url} (the authors' Google Drive: open it in a browser)"
        if preset.url is not None:
            get_it += f", or the byte-identical mirror restorekit downloads from when online: {preset.url}"
    else:
        get_it = official
    sha = preset.sha256 or "not published: any copy from the official source"
    lines = [
        f"{first}.",
        f"  file:       {preset.filename}  (sha256 {sha})",
        f"  looked in:  {'; '.join(looked)}",
        f"  get it:     {get_it}",
        f"  put it in:  a folder named by {WEIGHTS_ENV} (searched recursively), or {cache_dir()}",
        f"  source:     {preset.source}; license: {license_text}",
    ]
    return WeightsError("\n".join(lines))


def resolve(preset: Preset, download: bool = True) -> Path:
    """Path to the preset's weights, downloading them into the cache if needed (and allowed)."""
    if preset.filename is None:
        raise missing_weights_error(preset)
    local = find_local(preset.filename)
    if local is not None:
        return local
    if preset.url is None:
        raise missing_weights_error(preset)
    if not download:
        raise missing_weights_error(preset, "downloads are off for this command")
    if is_offline():
        raise missing_weights_error(preset, f"offline ({OFFLINE_ENV}=1)")
    try:
        return download_file(preset.url, cache_dir() / preset.filename, preset.sha256)
    except DownloadError as exc:
        raise missing_weights_error(preset, str(exc)) from None


def download_file(url: str, destination: Path, sha256: str | None) -> Path:
    """Download ``url`` to ``destination`` atomically; verify the sha256 before it gets its final name.

    Raises :class:`DownloadError`; its ``offline`` is True when the server could not be reached.
    """
    import urllib.error
    import urllib.parse
    import urllib.request

    from tqdm import tqdm

    host = urllib.parse.urlsplit(url).hostname or url
    try:
        with atomic_path(destination, prefix=destination.name + ".") as tmp:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {destination.name}") as bar:
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        out.write(chunk)
                        bar.update(len(chunk))
            if sha256 is not None:  # checked before the file gets its final name; a mismatch discards it
                actual = sha256_of(tmp)
                if actual != sha256:
                    raise DownloadError(f"{url}: sha256 mismatch (got {actual}, expected {sha256}); file discarded")
    except urllib.error.HTTPError as exc:  # the server answered: not an offline problem
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        reason = exc.reason
        offline = isinstance(reason, (socket.gaierror, ConnectionError, TimeoutError, OSError))
        detail = getattr(reason, "strerror", None) or str(reason)
        if offline and not url.startswith("file:"):
            raise DownloadError(f"offline (cannot reach {host}: {detail})", offline=True) from exc
        raise DownloadError(f"{url}: download failed ({detail})") from exc
    except (TimeoutError, ConnectionError) as exc:  # the connection dropped or stalled mid-download
        raise DownloadError(f"offline (the connection to {host} failed: {exc})", offline=True) from exc
    except OSError as exc:
        raise DownloadError(f"{url}: download failed ({exc})") from exc
    return destination
