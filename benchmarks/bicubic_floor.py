"""The floor for x3 super-resolution of 1280x720 (the defaults; see --help): plain bicubic upscaling, one thread.

    OMP_NUM_THREADS=1 python benchmarks/bicubic_floor.py

OpenCV's ``cv2.resize(..., INTER_CUBIC)`` (opencv-python-headless) on uint8 and float32 HWC
images, and ``torch.nn.functional.interpolate(mode="bicubic")`` on a float32 NCHW tensor; median
thread CPU time over 10 calls after one warm-up, as in speed.py.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from timing import median_thread_seconds  # benchmarks/ is on sys.path when run as a script


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults are the measured case (x3 of 1280x720, 10 runs)."""
    parser = argparse.ArgumentParser(
        description="The floor for super-resolution: plain bicubic upscaling (OpenCV, torch), one thread, "
                    "median thread CPU ms over RUNS calls after one warm-up."
    )
    parser.add_argument("--size", default="1280x720", help="input W x H (default 1280x720)")
    parser.add_argument("--scale", type=int, default=3, help="upscaling factor (default 3)")
    parser.add_argument("--runs", type=int, default=10, help="timed calls per row (default 10)")
    args = parser.parse_args(argv)
    try:
        args.width, args.height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size must look like 1280x720, got {args.size!r}")
    if args.width < 1 or args.height < 1 or args.scale < 1 or args.runs < 1:
        parser.error("--size, --scale and --runs must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    width, height, scale, runs = args.width, args.height, args.scale, args.runs
    rng = np.random.default_rng(0)
    img_u8 = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    img_f32 = img_u8.astype(np.float32) / 255
    tensor = torch.from_numpy(img_f32).permute(2, 0, 1)[None].contiguous()
    rows = []
    try:
        import cv2

        cv2.setNumThreads(1)
        size = (width * scale, height * scale)
        rows.append(("OpenCV INTER_CUBIC uint8", 1e3 * median_thread_seconds(lambda: cv2.resize(img_u8, size, interpolation=cv2.INTER_CUBIC), runs)))
        rows.append(("OpenCV INTER_CUBIC float32", 1e3 * median_thread_seconds(lambda: cv2.resize(img_f32, size, interpolation=cv2.INTER_CUBIC), runs)))
    except ImportError:
        print("opencv-python-headless not installed: torch only")
    with torch.inference_mode():
        rows.append(("torch bicubic float32", 1e3 * median_thread_seconds(lambda: F.interpolate(tensor, scale_factor=scale, mode="bicubic"), runs)))
    print(f"x{scale} bicubic of {width}x{height} (one thread, median CPU ms over {runs} calls)")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} |")


if __name__ == "__main__":
    main()
