"""Finding weights files: a local folder first, then the package's embedded weights, then a cache
that is filled by download (with a progress bar and a sha256 check).

Search order for a preset's ``filename``:
1. every folder in ``RESTOREKIT_WEIGHTS`` (``os.pathsep``-separated), searched recursively;
2. ``restorekit/weights/`` inside the installed package (the project's own embedded models);
3. the cache folder ``RESTOREKIT_CACHE`` (default ``~/.cache/restorekit``);
4. download from the preset's URL into the cache, verified against its sha256.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .errors import WeightsError
from .zoo import Preset

PACKAGE_WEIGHTS = Path(__file__).parent / "weights"


def cache_dir() -> Path:
    return Path(os.environ.get("RESTOREKIT_CACHE", Path.home() / ".cache" / "restorekit"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_local(filename: str) -> Path | None:
    """The first local copy of ``filename``, or None."""
    folders = [Path(p) for p in os.environ.get("RESTOREKIT_WEIGHTS", "").split(os.pathsep) if p]
    for folder in folders:
        direct = folder / filename
        if direct.is_file():
            return direct
        found = next((p for p in sorted(folder.rglob(filename)) if p.is_file()), None)
        if found is not None:
            return found
    for folder in (PACKAGE_WEIGHTS, cache_dir()):
        if (folder / filename).is_file():
            return folder / filename
    return None


def is_available(preset: Preset) -> bool:
    return preset.filename is not None and find_local(preset.filename) is not None


def resolve(preset: Preset, download: bool = True) -> Path:
    """Path to the preset's weights, downloading them into the cache if needed."""
    if preset.filename is None:
        raise WeightsError(f"preset {preset.name!r} has no released weights ({preset.source})")
    local = find_local(preset.filename)
    if local is not None:
        return local
    if preset.url is None or not download:
        raise WeightsError(
            f"weights for {preset.name!r} ({preset.filename}) not found locally and no download URL is known. "
            f"Source: {preset.source}. Put the file in a folder named by RESTOREKIT_WEIGHTS."
        )
    return download_file(preset.url, cache_dir() / preset.filename, preset.sha256)


def download_file(url: str, destination: Path, sha256: str | None) -> Path:
    """Download ``url`` to ``destination`` atomically; verify the sha256 before it gets its final name."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=destination.parent, prefix=destination.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {destination.name}") as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        if sha256 is not None:
            actual = sha256_of(tmp)
            if actual != sha256:
                raise WeightsError(f"{url}: sha256 mismatch (got {actual}, expected {sha256}); file discarded")
        shutil.move(str(tmp), destination)
    except OSError as exc:
        raise WeightsError(f"{url}: download failed ({exc})") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return destination
