"""Peak memory of restoring one large photo on CPU (the tiling's memory promise).

Restores a synthetic ``--size`` JPEG (default 6000x4000, a 24 MP camera photo) with the
architecture of ``--preset`` (default nafnet-sidd-w32) through ``restore_file``, the same path as
``restorekit restore``, and prints the process's peak resident memory (``ru_maxrss``, which
includes the Python interpreter and PyTorch itself) and the wall time.

Weights: the preset's real weights when they are available locally, else random weights of the
same architecture (memory and time do not depend on the values).

    OMP_NUM_THREADS=2 python benchmarks/restore_memory.py            # 24 MP, NAFNet-SIDD-w32
    python benchmarks/restore_memory.py --size 2000x1500 --tile 512  # quicker
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from restorekit import hub
from restorekit.inference import RestoreOptions, available_memory
from restorekit.model import build_model, load
from restorekit.restore import restore_file
from restorekit.runtime import retain_freed_memory
from restorekit.zoo import get_preset


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux, bytes on macOS
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def synthetic_photo(width: int, height: int) -> np.ndarray:
    """Smooth gradients plus noise, built row band by row band to keep this script's own peak low."""
    rng = np.random.default_rng(0)
    image = np.empty((height, width, 3), np.uint8)
    xs = np.linspace(0, 1, width, dtype=np.float32)
    for y0 in range(0, height, 500):
        ys = np.linspace(y0 / height, min(y0 + 500, height) / height, min(500, height - y0), dtype=np.float32)
        band = 0.5 + 0.25 * np.sin(6 * xs[None, :, None] + 4 * ys[:, None, None] + np.arange(3)[None, None, :])
        band += rng.normal(0, 25 / 255, band.shape).astype(np.float32)
        image[y0 : y0 + len(ys)] = np.clip(band * 255, 0, 255).astype(np.uint8)
    return image


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="nafnet-sidd-w32")
    parser.add_argument("--size", default="6000x4000", help="WIDTHxHEIGHT")
    parser.add_argument("--tile", type=int, default=None, help="default: automatic from available memory")
    parser.add_argument("--shallow", action="store_true",
                        help="NAFNet only: one block per level (same widths, so the same tensor sizes and peak "
                             "memory per tile, ~4x less compute) for machines where the full run is too slow")
    parser.add_argument("--default-malloc", action="store_true",
                        help="do not call restorekit.runtime.retain_freed_memory() (the CLI calls it)")
    args = parser.parse_args()
    retained = False if args.default_malloc else retain_freed_memory()
    width, height = (int(v) for v in args.size.lower().split("x"))
    preset = get_preset(args.preset)
    if args.shallow:
        if preset.family != "nafnet":
            parser.error("--shallow applies to NAFNet presets")
        levels = len(preset.config.enc_blk_nums)
        config = replace(preset.config, enc_blk_nums=(1,) * levels, middle_blk_num=1, dec_blk_nums=(1,) * levels)
        model, weights = build_model(preset.family, config).eval(), "random, shallow: 1 block per level"
    elif hub.is_available(preset):
        model, weights = load(args.preset, device="cpu"), "official"
    else:
        model, weights = build_model(preset.family, preset.config, preset).eval(), "random (same architecture)"
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "photo.jpg"
        PILImage.fromarray(synthetic_photo(width, height)).save(source, quality=92)
        print(f"{args.preset} ({weights} weights), {width}x{height}, CPU, "
              f"available RAM {available_memory(model.device) / 2**30:.1f} GiB, peak before restore {peak_rss_mb():.0f} MB")
        start = time.perf_counter()
        restore_file(source, Path(folder) / "out.jpg", model, options=RestoreOptions(tile=args.tile, progress=True))
        seconds = time.perf_counter() - start
    malloc = "freed memory retained" if retained else "default malloc"
    print(f"peak RSS {peak_rss_mb():.0f} MB, restore_file {seconds:.1f} s ({malloc})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
