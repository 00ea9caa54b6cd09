"""The machine-readable report of a restore run: one JSON file per shard, merged into one.

A shard file lists every input of its shard with its outcome (``done``, ``skipped`` because the
output exists, or ``failed`` with the reason), its size, the seconds spent on it, and totals. Shard
files are named ``<report stem>.rank<K>.json`` beside the requested path; the merge checks that the
shards come from the same input list and cut, that each shard is there once and that together they
cover every input exactly once, then writes the requested path. A run of one process writes the
requested path directly. All writes are atomic.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import write_bytes_atomic
from ..errors import RestorekitError

FORMAT = "restorekit-restore-report"
VERSION = 1
STATUSES = ("done", "skipped", "failed")


@dataclass(frozen=True)
class Outcome:
    """What happened to one input.

    ``index``: position in the sorted input list of the whole run (None for an argument that matched
    no file). ``bytes``: size of the input file. ``width``/``height``: decoded size (None when it was
    not decoded). ``seconds``: decode + this image's share of its network batch + encode and write.
    """

    input: str
    output: str | None
    status: str
    reason: str | None = None
    index: int | None = None
    bytes: int | None = None
    width: int | None = None
    height: int | None = None
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown outcome status {self.status!r}")


@dataclass
class ShardReport:
    """One shard's outcomes plus what identifies the run it belongs to.

    ``fingerprint``: hash of the run's whole sorted input list and output folder, equal in every
    shard of a run. ``inputs``: length of that list. ``unit``: the batch size the list was cut by.
    ``complete``: False when the process was interrupted before the end of its shard.
    """

    shard: int
    shards: int
    inputs: int
    unit: int
    fingerprint: str
    launcher: str = "single"
    device: str = "cpu"
    model: str = ""
    seconds: float = 0.0
    complete: bool = True
    outcomes: list[Outcome] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    def to_json(self) -> dict[str, Any]:
        items = sorted(self.outcomes, key=_order)
        return {
            "format": FORMAT,
            "version": VERSION,
            "shard": self.shard,
            "shards": self.shards,
            "inputs": self.inputs,
            "unit": self.unit,
            "fingerprint": self.fingerprint,
            "launcher": self.launcher,
            "device": self.device,
            "model": self.model,
            "complete": self.complete,
            "seconds": round(self.seconds, 3),
            "totals": totals(items, self.seconds),
            "items": [_item_json(o) for o in items],
        }


def _order(outcome: Outcome) -> tuple[int, str]:
    return (-1 if outcome.index is None else outcome.index, outcome.input)


def _item_json(outcome: Outcome) -> dict[str, Any]:
    item = asdict(outcome)
    item["seconds"] = round(outcome.seconds, 4)
    return item


def totals(outcomes: Sequence[Outcome], seconds: float) -> dict[str, Any]:
    """Counts per status, input bytes and pixels restored, and the restore rate over ``seconds``."""
    counts = {status: sum(o.status == status for o in outcomes) for status in STATUSES}
    done = [o for o in outcomes if o.status == "done"]
    return {
        **counts,
        "reported": len(outcomes),
        "input_bytes": sum(o.bytes or 0 for o in done),
        "megapixels": round(sum((o.width or 0) * (o.height or 0) for o in done) / 1e6, 3),
        "images_per_second": round(len(done) / seconds, 3) if seconds > 0 else None,
        # a rerun finds the outputs of the run before it: it did only what was left
        "resumed": counts["skipped"] > 0,
    }


def fingerprint(inputs: Iterable[str | Path], output_dir: str | Path, unit: int) -> str:
    """A short hash naming a run's input list, output folder and batch cut (same in every shard)."""
    digest = hashlib.sha256(f"{Path(output_dir)}\n{unit}\n".encode())
    for name in inputs:
        digest.update(f"{name}\n".encode())
    return digest.hexdigest()[:16]


def shard_path(report: str | Path, shard: int) -> Path:
    """``out/run.json`` -> ``out/run.rank3.json``: where shard 3 writes its part."""
    report = Path(report)
    return report.with_name(f"{report.stem}.rank{shard}{report.suffix or '.json'}")


def write_json(data: dict[str, Any], path: str | Path) -> Path:
    """Write ``data`` as indented JSON, atomically (readers never see half a report)."""
    return write_bytes_atomic((json.dumps(data, indent=1) + "\n").encode(), path)


def read_shard(path: str | Path) -> dict[str, Any]:
    """Load and check one shard file; errors name the file and what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RestorekitError(f"{path}: no such shard report") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RestorekitError(f"{path}: not a readable JSON report ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RestorekitError(f"{path}: not a restorekit restore report (no \"format\": \"{FORMAT}\")")
    if data.get("version") != VERSION:
        raise RestorekitError(f"{path}: report version {data.get('version')!r}, this restorekit reads {VERSION}")
    for key, kind in (("shard", int), ("shards", int), ("inputs", int), ("unit", int), ("fingerprint", str),
                      ("items", list)):
        if not isinstance(data.get(key), kind):
            raise RestorekitError(f"{path}: field {key!r} is missing or not {kind.__name__}")
    return data


def merge(shards: Sequence[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """One report from every shard's: checks they belong together and cover each input once.

    The merged ``seconds`` is the slowest shard's (they run side by side), so ``images_per_second``
    is the rate of the whole run.
    """
    if not shards:
        raise RestorekitError("report merge: no shard reports given")
    first_path, first = shards[0]
    for path, data in shards[1:]:
        for key in ("shards", "inputs", "unit", "fingerprint"):
            if data[key] != first[key]:
                raise RestorekitError(
                    f"{path}: {key} {data[key]!r} differs from {first_path}'s {first[key]!r}; "
                    "the files come from different runs"
                )
    count = first["shards"]
    seen: dict[int, Path] = {}
    for path, data in shards:
        if data["shard"] in seen:
            raise RestorekitError(f"{path}: shard {data['shard']} is also in {seen[data['shard']]}")
        seen[data["shard"]] = path
    absent = sorted(set(range(count)) - set(seen))
    if absent:
        raise RestorekitError(f"report merge: shard(s) {', '.join(map(str, absent))} of {count} missing")
    outcomes: list[Outcome] = []
    owner: dict[int, Path] = {}
    for path, data in shards:
        for raw in data["items"]:
            try:
                outcome = Outcome(**raw)
            except (TypeError, ValueError) as exc:
                raise RestorekitError(f"{path}: bad item {raw!r} ({exc})") from None
            if outcome.index is not None:
                if outcome.index in owner:
                    raise RestorekitError(f"{path}: input #{outcome.index} ({outcome.input}) is also in {owner[outcome.index]}")
                owner[outcome.index] = path
            outcomes.append(outcome)
    outcomes.sort(key=_order)
    unreported = first["inputs"] - len(owner)
    seconds = max(float(data.get("seconds", 0.0)) for _, data in shards)
    complete = all(bool(data.get("complete", True)) for _, data in shards) and unreported == 0
    merged_totals = totals(outcomes, seconds)
    merged_totals["unreported"] = unreported
    return {
        "format": FORMAT,
        "version": VERSION,
        "shards": count,
        "inputs": first["inputs"],
        "unit": first["unit"],
        "fingerprint": first["fingerprint"],
        "complete": complete,
        "seconds": round(seconds, 3),
        "shard_files": [str(path) for path, _ in sorted(shards, key=lambda s: s[1]["shard"])],
        "per_shard": [
            {"shard": d["shard"], "launcher": d.get("launcher"), "device": d.get("device"), "seconds": d.get("seconds"),
             "complete": d.get("complete", True), **{k: d.get("totals", {}).get(k) for k in STATUSES}}
            for _, d in sorted(shards, key=lambda s: s[1]["shard"])
        ],
        "totals": merged_totals,
        "items": [_item_json(o) for o in outcomes],
    }


def merge_files(destination: str | Path, paths: Sequence[str | Path]) -> dict[str, Any]:
    """Read shard files, merge them and write ``destination``; returns the merged report."""
    shards = [(Path(p), read_shard(p)) for p in paths]
    merged = merge(shards)
    write_json(merged, destination)
    return merged


def merge_if_complete(report: str | Path, shards: int) -> dict[str, Any] | None:
    """Merge ``report``'s shard files into ``report`` when all ``shards`` are there; None otherwise."""
    paths = [shard_path(report, k) for k in range(shards)]
    if not all(p.is_file() for p in paths):
        return None
    return merge_files(report, paths)
