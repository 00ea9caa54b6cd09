"""Draw docs/images/camera-noise-grid.png: one clean crop and the `camera` degradation at several ISO levels.

    OMP_NUM_THREADS=1 python scripts/camera_noise_grid.py [--out docs/images/camera-noise-grid.png]

Top row: the plain pipeline (no sharpening, noise reduction or JPEG). Bottom row: the same ISO levels
with sharpening and JPEG quality 75, as many phone and camera JPEGs look. The crop is from scikit-image's
``astronaut`` (a NASA photo in the public domain), so the figure carries no data set's license.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from restorekit.data.camera import CameraNoise, apply_camera_noise, draw_params

ISOS = (200, 800, 3200, 12800)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/camera-noise-grid.png"))
    args = parser.parse_args()
    from skimage import data  # test extra; ships the image, no download

    crop = data.astronaut()[50:178, 165:293]
    clean = torch.from_numpy(crop.copy()).permute(2, 0, 1).float() / 255
    rows = []
    for effects in (False, True):
        tiles = [clean]
        for iso in ISOS:
            noise = CameraNoise(iso_low=iso, iso_high=iso)
            params = draw_params(noise, torch.Generator().manual_seed(1))
            params = replace(params, sharpen=0.8 if effects else 0.0, smooth_sigma=0.0,
                             jpeg_quality=75 if effects else None)
            tiles.append(apply_camera_noise(clean, params, torch.Generator().manual_seed(2)))
        rows.append(torch.cat(tiles, dim=2))
    grid = (torch.cat(rows, dim=1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    image = Image.fromarray(grid)
    draw = ImageDraw.Draw(image)
    size = clean.shape[-1]
    for i, label in enumerate(["clean", *(f"ISO {iso}" for iso in ISOS)]):
        draw.text((i * size + 4, 4), label, fill=(255, 255, 0))
    draw.text((4, size + 4), "+ sharpen, JPEG 75", fill=(255, 255, 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
