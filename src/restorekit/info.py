"""``restorekit info``: what a bug report needs — versions, devices, which weights are here and
where, the cache folder, the settings that change behaviour, and which optional extras are installed.

Versions come from the installed packages' metadata, so a broken or missing package is reported
rather than raised. PyTorch is imported (devices can only be asked through it), but only when the
command runs; a failed import is reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
from importlib import metadata
from typing import Any

from . import __version__, hub
from .zoo import PRESETS

# package shown -> distribution name on PyPI
PACKAGES = {
    "torch": "torch",
    "numpy": "numpy",
    "pillow": "pillow",
    "safetensors": "safetensors",
    "onnxruntime": "onnxruntime",
    "onnx": "onnx",
    "opencv": "opencv-python-headless",
    "tqdm": "tqdm",
    "pyyaml": "PyYAML",
}
# environment variables that change what restorekit does
SETTINGS = (hub.WEIGHTS_ENV, hub.CACHE_ENV, hub.OFFLINE_ENV, "RESTOREKIT_RETAIN_MEMORY", "OMP_NUM_THREADS",
            "CUDA_VISIBLE_DEVICES")


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """Python, restorekit and its dependencies (None: not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version(), "restorekit": __version__}
    found.update({name: _version(dist) for name, dist in PACKAGES.items()})
    return found


def extras() -> dict[str, dict[str, Any]]:
    """Each optional extra of the installed restorekit: its requirements and whether all are installed.

    Read from the package metadata (what ``pyproject.toml`` declares), so the list cannot drift.
    """
    try:
        meta = metadata.metadata("restorekit")
        requires = metadata.requires("restorekit") or []
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return {}
    result: dict[str, dict[str, Any]] = {}
    for extra in meta.get_all("Provides-Extra") or []:
        names = []
        for requirement in requires:
            if re.search(rf"""extra\s*==\s*["']{re.escape(extra)}["']""", requirement):
                match = re.match(r"[A-Za-z0-9._-]+", requirement)
                if match is not None:
                    names.append(match.group(0))
        missing = [name for name in names if _version(name) is None]
        result[extra] = {"requires": names, "installed": not missing, "missing": missing}
    return result


def devices() -> dict[str, Any]:
    """CPU threads and the accelerators PyTorch sees."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    found: dict[str, Any] = {"cpu": {"cores": os.cpu_count(), "usable": usable, "machine": platform.machine()}}
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 (a broken install is exactly what this report is for)
        found["torch_error"] = f"{type(exc).__name__}: {exc}"
        return found
    found["torch_version"] = torch.__version__
    found["cpu"]["torch_threads"] = torch.get_num_threads()
    cuda: dict[str, Any] = {"available": torch.cuda.is_available(), "built_for": torch.version.cuda}
    if cuda["available"]:
        cuda["devices"] = [
            {"name": torch.cuda.get_device_name(i),
             "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)}
            for i in range(torch.cuda.device_count())
        ]
    found["cuda"] = cuda
    mps = getattr(torch.backends, "mps", None)
    found["mps"] = {"available": bool(mps is not None and mps.is_available())}
    if _version("onnxruntime") is not None:
        try:
            import onnxruntime

            found["onnxruntime_providers"] = onnxruntime.get_available_providers()
        except Exception as exc:  # noqa: BLE001
            found["onnxruntime_providers"] = f"{type(exc).__name__}: {exc}"
    return found


def weights() -> dict[str, Any]:
    """Where weights are looked for, and where each preset's file was found (None: not here)."""
    places = [{"origin": p.origin, "folder": str(p.folder), "exists": p.folder.is_dir()} for p in hub.search_places()]
    found: dict[str, Any] = {}
    for name, preset in sorted(PRESETS.items()):
        if preset.filename is None:
            continue
        hit = hub.locate(preset.filename)
        found[name] = None if hit is None else {"path": str(hit[0]), "origin": hit[1].origin}
    return {"search_order": places, "cache": str(hub.cache_dir()), "offline": hub.is_offline(), "presets": found}


def collect() -> dict[str, Any]:
    """Everything ``restorekit info`` reports, as JSON-ready data."""
    return {
        "versions": versions(),
        "platform": platform.platform(),
        "python_executable": sys.executable,
        "devices": devices(),
        "weights": weights(),
        "extras": extras(),
        "settings": {name: os.environ.get(name) for name in SETTINGS},
    }


def format_report(report: dict[str, Any]) -> str:
    """The plain-text form: one fact a line, easy to paste into an issue."""
    v, d, w = report["versions"], report["devices"], report["weights"]
    lines = [f"restorekit {v['restorekit']} (Python {v['python']}, {report['platform']})", "", "versions:"]
    torch_version = d.get("torch_version") or v["torch"]
    lines += [f"  {name:12} {torch_version if name == 'torch' else value or 'not installed'}"
              for name, value in v.items() if name not in ("python", "restorekit")]
    cpu = d["cpu"]
    lines += ["", "devices:",
              f"  cpu          {cpu['usable']} usable of {cpu['cores']} cores ({cpu['machine']})"
              + (f"; torch threads: {cpu['torch_threads']}" if "torch_threads" in cpu else "")]
    if "torch_error" in d:
        lines.append(f"  torch        cannot be imported: {d['torch_error']}")
    else:
        cuda = d["cuda"]
        if cuda["available"]:
            lines += [f"  cuda:{i}       {gpu['name']} ({gpu['memory_gib']} GiB)"
                      for i, gpu in enumerate(cuda["devices"])]
        else:
            built = f"built for CUDA {cuda['built_for']}" if cuda["built_for"] else "a CPU-only build of torch"
            lines.append(f"  cuda         not available ({built})")
        lines.append(f"  mps          {'available' if d['mps']['available'] else 'not available'}")
    if "onnxruntime_providers" in d:
        providers = d["onnxruntime_providers"]
        lines.append(f"  onnxruntime  {', '.join(providers) if isinstance(providers, list) else providers}")
    lines += ["", "weights (searched in this order):"]
    lines += [f"  {p['origin']:18} {p['folder']}{'' if p['exists'] else '  (does not exist)'}"
              for p in w["search_order"]]
    if not any(p["origin"] == hub.WEIGHTS_ENV for p in w["search_order"]):
        lines.append(f"  ({hub.WEIGHTS_ENV} is not set)")
    here = {name: hit for name, hit in w["presets"].items() if hit is not None}
    missing = sorted(set(w["presets"]) - set(here))
    lines += [f"  found        {name}: {hit['path']} ({hit['origin']})" for name, hit in here.items()]
    lines.append(f"  not here     {', '.join(missing) if missing else '-'}")
    lines.append(f"  downloads    {'off (' + hub.OFFLINE_ENV + '=1)' if w['offline'] else 'into ' + w['cache']}")
    lines += ["", "optional extras (pip install 'restorekit[NAME]'):"]
    if not report["extras"]:
        lines.append("  unknown: restorekit is not installed as a package (no metadata)")
    for extra, state in report["extras"].items():
        status = "installed" if state["installed"] else f"missing {', '.join(state['missing'])}"
        if not state["requires"]:
            status = "nothing extra to install"
        lines.append(f"  {extra:12} {status}")
    set_settings = {k: val for k, val in report["settings"].items() if val is not None}
    lines += ["", "settings:"]
    lines += [f"  {k}={val}" for k, val in set_settings.items()] or ["  (no restorekit-related variables set)"]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args: argparse.Namespace) -> int:
    report = collect()
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
