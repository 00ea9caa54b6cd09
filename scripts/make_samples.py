"""Make the sample images that ship with restorekit (``src/restorekit/samples/``).

Source: ``skimage.data.astronaut()``, the NASA portrait of astronaut Eileen Collins (public domain,
NASA image; see scikit-image's data README). We crop 256x256 around the face and add
- white Gaussian noise of sigma 25 (on the 0-255 scale), the usual synthetic denoising protocol
  (``astronaut_noisy25.png``);
- camera noise at ISO 3200 through restorekit's camera pipeline model (shot + read noise on a Bayer
  mosaic, demosaicing, colour matrix, tone curve, sharpening, JPEG quality 85; docs/camera-noise.md),
  what a real indoor photo looks like (``astronaut_camera3200.png``).

    python scripts/make_samples.py          # rewrites both files

Needs scikit-image (the ``test`` extra). The output is deterministic (seed 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "restorekit" / "samples"
SIGMA = 25.0
CROP = (slice(20, 276), slice(120, 376))  # rows, columns: the face and helmet


def make_noisy_astronaut() -> np.ndarray:
    clean = data.astronaut()[CROP].astype(np.float64)
    rng = np.random.default_rng(0)
    noisy = clean + rng.normal(0.0, SIGMA, clean.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def make_camera_astronaut() -> np.ndarray:
    from dataclasses import replace

    import torch

    from restorekit.data.camera import CameraNoise, apply_camera_noise, draw_params

    clean = torch.from_numpy(data.astronaut()[CROP].copy()).permute(2, 0, 1).float() / 255
    params = draw_params(CameraNoise(iso_low=3200, iso_high=3200), torch.Generator().manual_seed(0))
    params = replace(params, sharpen=0.6, smooth_sigma=0.0, jpeg_quality=85)
    noisy = apply_camera_noise(clean, params, torch.Generator().manual_seed(1))
    return (noisy.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def main() -> None:
    SAMPLES.mkdir(parents=True, exist_ok=True)
    for name, image in (("astronaut_noisy25.png", make_noisy_astronaut()),
                        ("astronaut_camera3200.png", make_camera_astronaut())):
        path = SAMPLES / name
        Image.fromarray(image).save(path, optimize=True)
        print(f"{path}: {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
