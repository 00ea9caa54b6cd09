"""Images per second of ``restorekit restore`` on a folder of many photos: processes, batch, I/O threads.

Builds ``--count`` photos of ``--size`` (default 500 at 768x512, Kodak's size) by cropping, tiling
and flipping the Kodak24 images (``$RESTOREKIT_SHARED/data/denoise/Kodak24`` or ``../shared``;
skimage's sample photos when absent), with Gaussian noise of ``--noise`` levels so PNG decoding
costs what a real noisy input costs. They go to a temp folder, never into the repository. Then it
runs each row's command in a fresh process on the same folder, into a fresh output folder, and
prints a Markdown table: the wall time of the whole command (start-up and model load included),
images/s from it, images/s of the restore loop alone (from the run's ``--report``), and whether
the outputs are byte-identical to the first row with the same batch size.

Rows: 1 process vs 2 (torchrun, 1 thread each), batch 1 vs 8, reader/writer threads on (2) or off
(0: each file read, restored and written in turn by one thread, as the loop before ``--batch-size``
and ``--io-threads`` did). The default model is the denoise task's default.

    python benchmarks/restore_throughput.py                              # 500 x 768x512, all rows
    python benchmarks/restore_throughput.py --count 500 --size 256x256   # many small images
    python benchmarks/restore_throughput.py --count 10 --size 96x64      # a check in seconds
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Row:
    processes: int
    batch: int
    io_threads: int

    @property
    def label(self) -> str:
        pool = "pool" if self.io_threads else "no pool"
        return f"{self.processes} x 1 thread, batch {self.batch}, {pool}"


ROWS = {
    "1-b1-nopool": Row(1, 1, 0),
    "1-b1-pool": Row(1, 1, 2),
    "1-b8-nopool": Row(1, 8, 0),
    "1-b8-pool": Row(1, 8, 2),
    "2-b1-nopool": Row(2, 1, 0),
    "2-b1-pool": Row(2, 1, 2),
    "2-b8-pool": Row(2, 8, 2),
}


def kodak_folder() -> Path | None:
    shared = Path(os.environ.get("RESTOREKIT_SHARED", REPO.parent / "shared"))
    folder = shared / "data" / "denoise" / "Kodak24"
    return folder if folder.is_dir() else None


def source_photos() -> list[np.ndarray]:
    folder = kodak_folder()
    if folder is not None:
        photos = []
        for path in sorted(folder.glob("*.png")):
            with PILImage.open(path) as im:
                photos.append(np.asarray(im.convert("RGB")))
        if photos:
            return photos
    from skimage import data  # test extra; only needed without the shared Kodak24 folder

    return [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]


def make_photos(folder: Path, count: int, width: int, height: int, noise: float) -> None:
    """``count`` distinct ``width x height`` crops: photo ``i % n``, tiled by mirroring so any size fits,
    cut at an offset and flipped depending on ``i``."""
    rng = np.random.default_rng(0)
    photos = source_photos()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        photo = photos[i % len(photos)]
        if photo.shape[0] > photo.shape[1] and height < width:
            photo = np.rot90(photo)
        reps = (-(-2 * height // photo.shape[0]), -(-2 * width // photo.shape[1]))
        tiled = np.pad(photo, ((0, (reps[0] - 1) * photo.shape[0]), (0, (reps[1] - 1) * photo.shape[1]), (0, 0)),
                       mode="symmetric")
        y = (i * 37) % (tiled.shape[0] - height + 1)
        x = (i * 53) % (tiled.shape[1] - width + 1)
        crop = tiled[y : y + height, x : x + width].astype(np.float32)
        if (i // len(photos)) % 2:
            crop = crop[:, ::-1]
        crop += rng.normal(0.0, noise, crop.shape).astype(np.float32)
        PILImage.fromarray(np.clip(np.rint(crop), 0, 255).astype(np.uint8)).save(folder / f"photo{i:05d}.png")


def command(row: Row, inputs: Path, output: Path, report: Path, extra: list[str]) -> list[str]:
    restore = ["restore", str(inputs), "-o", str(output), "--batch-size", str(row.batch), "--io-threads",
               str(row.io_threads), "--threads", "1", "--quiet", "--report", str(report), *extra]
    if row.processes == 1:
        return [sys.executable, "-m", "restorekit", *restore]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(row.processes),
            "-m", "restorekit", *restore]


def shown(cmd: list[str]) -> str:
    """The command as a user would type it (``restorekit``/``torchrun`` for the interpreter calls)."""
    text = shlex.join(cmd)
    text = text.replace(f"{shlex.quote(sys.executable)} -m torch.distributed.run", "torchrun")
    text = text.replace(f"{shlex.quote(sys.executable)} -m restorekit", "restorekit")
    return f"OMP_NUM_THREADS=1 {text}"


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.png"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--size", default="768x512", help="WIDTHxHEIGHT of each photo")
    parser.add_argument("--noise", type=float, default=10.0, help="Gaussian noise sigma added (0-255 levels)")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--workdir", type=Path, help="keep photos and outputs here (default: a temp folder)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument("extra", nargs="*", help="after --: more restorekit restore options (e.g. --model ...)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="restorekit-throughput-") as temp:
        work = args.workdir or Path(temp)
        inputs = work / "in"
        started = time.perf_counter()
        make_photos(inputs, args.count, width, height, args.noise)
        print(f"{args.count} photos {width}x{height} in {inputs} ({time.perf_counter() - started:.1f} s); "
              f"source: {kodak_folder() or 'skimage.data'}", file=sys.stderr)
        env = dict(os.environ, OMP_NUM_THREADS="1")
        results = []
        reference: dict[int, dict[str, str]] = {}
        for name in args.rows:
            row = ROWS[name]
            output, report = work / f"out-{name}", work / f"report-{name}.json"
            cmd = command(row, inputs, output, report, args.extra)
            print(f"running {name}: {shown(cmd)}", file=sys.stderr)
            started = time.perf_counter()
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            wall = time.perf_counter() - started
            if done.returncode != 0:
                print(done.stdout + done.stderr, file=sys.stderr)
                raise SystemExit(f"{name} failed with exit code {done.returncode}")
            data = json.loads(report.read_text())
            produced = digests(output)
            if len(produced) != args.count:
                raise SystemExit(f"{name}: {len(produced)} outputs for {args.count} inputs")
            same = reference.setdefault(row.batch, produced) == produced
            loop_rate = data["totals"]["images_per_second"]
            results.append({"row": name, "label": row.label, "command": shown(cmd), "wall_s": round(wall, 2),
                            "images_per_s": round(args.count / wall, 3), "loop_images_per_s": loop_rate,
                            "identical_to_first_same_batch": same})
        print(f"\n{args.count} photos {width}x{height}, model: {data.get('model') or 'default'}\n")
        print("| run | wall s | images/s | loop images/s | outputs identical | command |")
        print("|---|---:|---:|---:|---|---|")
        base = results[0]["images_per_s"]
        for r in results:
            speedup = r["images_per_s"] / base
            print(f"| {r['label']} | {r['wall_s']:.1f} | {r['images_per_s']:.2f} ({speedup:.2f}x) | "
                  f"{r['loop_images_per_s']} | {'yes' if r['identical_to_first_same_batch'] else 'NO'} | "
                  f"`{r['command']}` |")
        if args.json:
            args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
