"""Make the sample image that ships with restorekit (``src/restorekit/samples/``).

Source: ``skimage.data.astronaut()``, the NASA portrait of astronaut Eileen Collins (public domain,
NASA image; see scikit-image's data README). We crop 256x256 around the face and add white Gaussian
noise of sigma 25 (on the 0-255 scale) with a fixed seed, the usual synthetic denoising protocol.

    python scripts/make_samples.py          # rewrites src/restorekit/samples/astronaut_noisy25.png

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


def main() -> None:
    SAMPLES.mkdir(parents=True, exist_ok=True)
    path = SAMPLES / "astronaut_noisy25.png"
    Image.fromarray(make_noisy_astronaut()).save(path, optimize=True)
    print(f"{path}: {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
