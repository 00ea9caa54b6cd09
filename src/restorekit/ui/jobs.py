"""What the web UI does, without any HTTP: the model catalogue shown in the page, and restore jobs
run one at a time on a worker thread with a stage and progress the page polls.

The restore itself is one call, :func:`restore_to_file`, which goes through the same function as
``restorekit restore`` so the file the page offers for download is the file the CLI writes for the
same input and options.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
import threading
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

from .. import catalog, hub, imageio
from ..errors import RestorekitError
from ..inference import RestoreOptions
from ..inference.runner import PRECISIONS
from ..model import RestorationModel, load
from ..restore import DEFAULT_PRESETS, restore_file
from ..zoo import PRESETS, TASKS, Preset

log = logging.getLogger("restorekit.ui")

PREVIEW_MAX_PIXELS = 40_000_000
KEEP_JOBS = 8  # finished jobs whose files stay on disk (the page only ever needs the latest)
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"
SAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


@dataclass(frozen=True)
class Options:
    """The restore options the page offers, with the meaning of the ``restorekit restore`` flags.

    ``restore``: ``--tile`` (None sizes tiles from free memory, 0 runs the whole image at once),
    ``--tile-overlap`` (None picks the exact overlap from the model's receptive field) and ``--tta``
    (average the eight flips/rotations). ``precision``: a name from ``inference.runner.PRECISIONS``.
    """

    restore: RestoreOptions = field(default_factory=RestoreOptions)
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise RestorekitError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")


@dataclass(frozen=True)
class ModelEntry:
    """One choice in the page's model list: a preset with local weights, or a weights file."""

    key: str  # what the page sends back: the preset name, or the file path
    label: str
    task: str
    card: dict[str, Any]


def _preset_card(preset: Preset) -> dict[str, Any]:
    return {
        "params": catalog.describe(preset, with_macs=False)["params"],  # counted on the meta device
        "name": preset.name,
        "description": preset.description,
        "family": preset.family,
        "task": preset.task,
        "scale": preset.scale,
        "license": preset.license,
        "non_commercial": preset.non_commercial,
        "source": preset.source,
        "convention": preset.convention.describe(preset.scale),
        "scores": {name: {"psnr": r.psnr, "ssim": r.ssim} for name, r in preset.paper.items()},
    }


def _file_card(path: Path, model: RestorationModel) -> dict[str, Any]:
    card = _preset_card(model.preset) if model.preset is not None else {
        "name": path.name,
        "description": f"{model.family} weights from {path}",
        "family": model.family,
        "task": model.task,
        "scale": model.scale,
        "license": "unknown (local file)",
        "non_commercial": False,
        "source": str(path),
        "convention": "",
        "scores": {},
    }
    card["params"] = sum(p.numel() for p in model.parameters())
    return card


class Catalogue:
    """The models the page can offer, all of which load without the network.

    Presets appear only when their weights are on this machine (RESTOREKIT_WEIGHTS, the package's
    embedded weights, or the download cache): the UI never starts a download. ``extra`` adds
    preset names or weights files given on the command line; a weights file is loaded once here so a
    broken file is reported at start-up, not in the middle of a user's run.
    """

    def __init__(self, extra: list[str] | None = None, device: str = "cpu") -> None:
        self.device = device
        self.entries: dict[str, ModelEntry] = {}
        self._models: OrderedDict[str, RestorationModel] = OrderedDict()
        self._lock = threading.Lock()
        for preset in sorted(PRESETS.values(), key=lambda p: (p.task, p.name)):
            if hub.is_available(preset):
                self._add_preset(preset)
        for ref in extra or []:
            if ref in PRESETS and not Path(ref).exists():
                preset = PRESETS[ref]
                if not hub.is_available(preset):
                    raise RestorekitError(
                        f"--model {ref}: its weights ({preset.filename}) are not on this machine; the UI works "
                        "offline, so put the file in a folder named by RESTOREKIT_WEIGHTS first"
                    )
                self._add_preset(preset)
                continue
            path = Path(ref).expanduser().resolve()
            if not path.is_file():
                raise RestorekitError(f"--model {ref}: neither a preset name nor an existing weights file")
            model = load(path, device=device)
            key = str(path)
            card = _file_card(path, model)
            # A weights file without a preset knows only "sr" or the generic "restore" task.
            self.entries[key] = ModelEntry(key, f"{path.name} ({model.family})", card["task"], card)
            self._models[key] = model

    def _add_preset(self, preset: Preset) -> None:
        label = preset.name + (" (non-commercial)" if preset.non_commercial else "")
        self.entries[preset.name] = ModelEntry(preset.name, label, preset.task, _preset_card(preset))

    def defaults(self) -> dict[str, str]:
        """Per task, the model the page selects first: the CLI's default for the task (the embedded
        restorekit-* models for denoise and x3 SR) when its weights are here, else the first listed."""
        chosen: dict[str, str] = {}
        for entry in self.entries.values():
            chosen.setdefault(entry.task, entry.key)
        for task, name in DEFAULT_PRESETS.items():
            if name in self.entries:
                chosen[task] = name
        return chosen

    def describe(self) -> dict[str, Any]:
        """The JSON the page builds its task and model menus from."""
        return {
            "tasks": [t for t in (*TASKS, "restore") if any(e.task == t for e in self.entries.values())],
            "models": [{"key": e.key, "label": e.label, "task": e.task, "card": e.card} for e in self.entries.values()],
            "defaults": self.defaults(),
            "precisions": list(PRECISIONS),
        }

    def model(self, key: str) -> RestorationModel:
        """The loaded model for ``key`` (the two most recently used stay in memory)."""
        if key not in self.entries:
            raise RestorekitError(f"unknown model {key!r}; pick one from the list")
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            model = load(key, device=self.device)
            self._models[key] = model
            while len(self._models) > 2:
                self._models.popitem(last=False)
            return model


def list_samples(folder: Path | None = None) -> list[str]:
    """File names of the sample images bundled with the package (may be empty)."""
    folder = SAMPLES_DIR if folder is None else folder
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SAMPLE_SUFFIXES)


def sample_file(name: str, folder: Path | None = None) -> Path | None:
    """The bundled sample called ``name``; only names from the listing match, so no path escapes."""
    folder = SAMPLES_DIR if folder is None else folder
    return folder / name if name in list_samples(folder) else None


def preview_png(path: Path, max_pixels: int | None) -> tuple[bytes, dict[str, Any]]:
    """An 8-bit PNG of an image file for display (browsers cannot show 16-bit TIFF or float), and
    what the page says about the original: size, channels, bit depth."""
    image = imageio.read_image(path, max_pixels=max_pixels)
    pixels = imageio.to_uint8(image.pixels)
    planes = pixels if image.alpha is None else np.concatenate([pixels, imageio.to_uint8(image.alpha)[..., None]], 2)
    array = planes[..., 0] if planes.shape[2] == 1 else planes  # uint8: Pillow infers L, LA, RGB, RGBA
    preview = PILImage.fromarray(np.ascontiguousarray(array))
    # A browser slows to a crawl on huge images; past PREVIEW_MAX_PIXELS the preview (only) is shrunk.
    shrink = min(1.0, (PREVIEW_MAX_PIXELS / (image.width * image.height)) ** 0.5)
    if shrink < 1.0:
        size = (max(1, round(image.width * shrink)), max(1, round(image.height * shrink)))
        preview = preview.resize(size, PILImage.Resampling.BOX)
    buffer = io.BytesIO()
    preview.save(buffer, format="PNG", compress_level=1)
    depth = {np.dtype(np.uint8): "8-bit", np.dtype(np.uint16): "16-bit"}.get(image.pixels.dtype, "float")
    info = {"width": image.width, "height": image.height, "channels": image.channels, "depth": depth,
            "alpha": image.alpha is not None, "format": image.format, "preview_scale": round(shrink, 4)}
    return buffer.getvalue(), info


def restore_to_file(model: RestorationModel, source: Path, destination: Path, options: Options,
                    max_pixels: int | None) -> Path:
    """Restore ``source`` into ``destination`` through ``restorekit.restore_file``, the function behind
    ``restorekit restore``: same reading, tiling, precision and writing (format, bit depth, alpha,
    ICC/EXIF), so the download is the file the CLI writes for the same options."""
    return restore_file(source, destination, model, options=options.restore, precision=options.precision,
                        max_pixels=max_pixels)


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    oom = getattr(__import__("torch"), "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def readable_error(exc: BaseException, device: str, options: Options) -> str:
    """One line for the page: what went wrong and what to do, never a traceback."""
    if isinstance(exc, RestorekitError):
        return str(exc)
    if _is_out_of_memory(exc):
        hint = "use a smaller tile" if options.restore.tile else "turn on tiling (e.g. tile 256)"
        return f"the model does not fit in memory on {device} for this image: {hint}, or pick a smaller model"
    return f"unexpected error ({type(exc).__name__}: {exc}); the server log has the details"


@dataclass
class Job:
    """One run: its files live in ``folder``; the page polls ``state()`` until done or error."""

    id: str
    folder: Path
    source: Path
    model_key: str
    options: Options
    download_name: str
    upload_name: str = ""  # the file name the user uploaded, shown in messages instead of our temp path
    status: str = "queued"  # queued, running, done, error
    stage: str = "waiting for the previous run"
    progress: float | None = None
    message: str = ""
    before: bytes = b""
    after: bytes = b""
    result: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def state(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "stage": self.stage, "progress": self.progress,
                "message": self.message, "info": self.info, "download_name": self.download_name}


class JobRunner:
    """Runs jobs one at a time (a second model run would only fight the first for the same cores or
    GPU), keeps the last few, and turns every failure into a message on the job."""

    def __init__(self, catalogue: Catalogue, max_pixels: int | None) -> None:
        self.catalogue = catalogue
        self.max_pixels = max_pixels
        self.root = Path(tempfile.mkdtemp(prefix="restorekit-ui-"))
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="restorekit-ui-job")

    def submit(self, data: bytes, filename: str, model_key: str, options: Options) -> Job:
        """Store the upload and queue the run; raises RestorekitError for a bad request."""
        if model_key not in self.catalogue.entries:
            raise RestorekitError(f"unknown model {model_key!r}; pick one from the list")
        if not data:
            raise RestorekitError("the uploaded file is empty")
        name = Path(filename or "image.png").name
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).stem)[:80] or "image"
        suffix = Path(name).suffix.lower()
        suffix = suffix if suffix in SAMPLE_SUFFIXES else ".png"
        job_id = uuid.uuid4().hex
        folder = self.root / job_id
        folder.mkdir()
        source = folder / f"{stem}{suffix}"
        source.write_bytes(data)
        # The CLI keeps the input's format; the page's download does the same under a new name.
        job = Job(job_id, folder, source, model_key, options, f"{stem}_restored{suffix}", name)
        with self._lock:
            self.jobs[job_id] = job
            while len(self.jobs) > KEEP_JOBS:
                _, old = self.jobs.popitem(last=False)
                shutil.rmtree(old.folder, ignore_errors=True)
        self._pool.submit(self._run, job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self.jobs.get(job_id)

    def _run(self, job: Job) -> None:
        job.status = "running"
        try:
            job.stage = "reading the image"
            job.before, job.info["input"] = preview_png(job.source, self.max_pixels)
            job.stage = "loading the model"
            model = self.catalogue.model(job.model_key)
            job.info["scale"] = model.scale
            # restore_file reports tiles only to a terminal bar, so the page shows the stage with an
            # indeterminate bar until the result is written.
            job.stage = "restoring"
            destination = job.folder / job.download_name
            job.result = restore_to_file(model, job.source, destination, job.options, self.max_pixels)
            job.stage = "preparing the preview"
            job.progress = 1.0
            job.after, job.info["output"] = preview_png(job.result, None)
            job.stage = "done"
            job.status = "done"
        except Exception as exc:  # the page gets one readable line; the server log gets the rest
            if not isinstance(exc, RestorekitError):
                log.exception("job %s failed", job.id)
            message = readable_error(exc, self.catalogue.device, job.options)
            # Name the user's file, not where the server keeps its copy.
            job.message = message.replace(str(job.source), job.upload_name).replace(f"{job.folder}{os.sep}", "")
            job.status = "error"
            job.stage = "failed"

    def close(self) -> None:
        """Stop the worker and delete every job's files."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.root, ignore_errors=True)
