"""How far tiled restoration drifts from the whole-image result for a model with global statistics,
and the receptive radius of its TLC form (the figures in docs/restore.md).

    OMP_NUM_THREADS=1 python benchmarks/tiling_error.py [--model restorekit-denoise] [--image PATH]

Tiled (``tile``/``tile_overlap``) against ``tile=0`` on the float image in [0, 1], fp32; then the radius
that ``restorekit.inference.tiling.receptive_radius`` (what restore uses) finds for the model converted to TLC.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import restorekit
from restorekit.inference.runner import TorchBackend
from restorekit.inference.tiling import receptive_radius

SAMPLE = Path(restorekit.__file__).parent / "samples" / "astronaut_noisy25.png"
TILINGS = ((128, 32), (160, 64), (192, 64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="restorekit-denoise")
    parser.add_argument("--image", type=Path, default=SAMPLE)
    args = parser.parse_args()
    torch.set_num_threads(1)
    image = np.asarray(Image.open(args.image).convert("RGB"), dtype=np.float32) / 255.0
    model = restorekit.load(args.model)
    whole = model.restore(image, tile=0)
    print(f"{args.model} on {args.image.name} ({image.shape[1]}x{image.shape[0]}), fp32, output in [0, 1]\n")
    print("| tile / overlap | max abs difference | mean abs difference |")
    print("|---|---|---|")
    for tile, overlap in TILINGS:
        diff = np.abs(model.restore(image, tile=tile, tile_overlap=overlap) - whole)
        print(f"| {tile} / {overlap} | {diff.max():.3f} ({diff.max() * 255:.1f} 8-bit levels) | {diff.mean():.4f} |")
    radius = receptive_radius(TorchBackend(restorekit.load(args.model, tlc=True)))
    print(f"\nTLC form: receptive radius {radius} px")


if __name__ == "__main__":
    main()
