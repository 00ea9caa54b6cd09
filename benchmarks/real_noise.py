"""Real camera noise: the default denoiser against the noisy input and CBM3D on real noisy/clean pairs,
plus the checks that it restores the NAFNet SIDD demo and leaves clean photos alone.

    OMP_NUM_THREADS=1 python benchmarks/real_noise.py                 # model rows only (a minute)
    OMP_NUM_THREADS=1 python benchmarks/real_noise.py --cbm3d          # + CBM3D (about 20 min on one core)
    OMP_NUM_THREADS=1 python benchmarks/real_noise.py --reuse-cbm3d benchmarks/results/real_noise.json

Rows (PSNR dB, RGB, 8-bit, no border crop: the restoration convention of ``restorekit eval --pairs``):

- ``real``: ``shared/data/real/PolyU_Canon600D`` (11 pairs, a camera body no model here trained on).
- ``cbm3d``: the ``bm3d`` package's CBM3D (colour, opponent space) with ONE sigma, chosen among ``--sigmas``
  on ``--select-pairs`` pairs of the *training* folder (spread over its names) and then applied unchanged
  to the test pairs; a benchmark-only dependency (``pip install bm3d``).
- ``demo``: the NAFNet demo ``noisy.png`` against the official NAFNet-SIDD-width64 output shipped beside it
  (``denoise_img.png``): how close the small model comes to the big one on SIDD-style phone noise.
- ``clean``: clean Kodak24 photos through the model, PSNR of the output against its own input (a denoiser
  should leave a clean photo alone).
- seconds per 512x512 crop on the calling thread (thread CPU time, see benchmarks/timing.py) for each method.

Figures go to stdout and, with ``--json``, to a file (benchmarks/results/real_noise.json is the committed run).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

import restorekit
from restorekit.conventions import RESTORATION_RGB
from restorekit.data.datasets import list_images, pair_in_folder
from restorekit.evaluate import EvalData, evaluate, read_image
from restorekit.metrics import measure

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RESTOREKIT_SHARED", REPO.parent / "shared")) / "data"


def psnr(output: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR under the restoration convention (what ``restorekit eval --pairs`` reports)."""
    return float(measure(output.clamp(0, 1)[None], reference[None], RESTORATION_RGB, scale=1)["psnr"])


def run_model(model: restorekit.RestorationModel, noisy: torch.Tensor) -> tuple[torch.Tensor, float]:
    start = time.thread_time()
    with torch.inference_mode():
        out = model.restore(noisy)
    return out.clamp(0, 1), time.thread_time() - start


def run_cbm3d(noisy: torch.Tensor, sigma: float) -> tuple[torch.Tensor, float]:
    import bm3d  # type: ignore[import-untyped]  # benchmark-only dependency

    array = noisy.permute(1, 2, 0).double().numpy()
    start = time.thread_time()
    out = bm3d.bm3d_rgb(array, sigma / 255.0)
    seconds = time.thread_time() - start
    return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1).float().clamp(0, 1), seconds


def select_sigma(train_dir: Path, sigmas: list[float], count: int) -> tuple[float, dict[str, float]]:
    """The CBM3D sigma with the best mean PSNR on ``count`` training pairs spread over the folder."""
    pairs = pair_in_folder(train_dir)
    chosen = [pairs[i * len(pairs) // count] for i in range(count)]
    scores = {}
    for sigma in sigmas:
        values = [psnr(run_cbm3d(read_image(noisy), sigma)[0], read_image(clean)) for noisy, clean in chosen]
        scores[f"{sigma:g}"] = float(np.mean(values))
        print(f"  cbm3d sigma {sigma:g} on {count} training pairs: {scores[f'{sigma:g}']:.2f} dB", flush=True)
    best = max(sigmas, key=lambda s: scores[f"{s:g}"])
    return best, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="restorekit-denoise")
    parser.add_argument("--test", type=Path, default=SHARED / "real" / "PolyU_Canon600D")
    parser.add_argument("--train", type=Path, default=SHARED / "train" / "PolyU_Canon5D2_80D")
    parser.add_argument("--cbm3d", action="store_true", help="also run CBM3D (slow: ~30 s per 512x512 pair)")
    parser.add_argument("--sigmas", default="3,6,10,15", help="CBM3D sigmas tried on the training pairs")
    parser.add_argument("--select-pairs", type=int, default=6, help="training pairs used to pick the CBM3D sigma")
    parser.add_argument("--reuse-cbm3d", type=Path, metavar="JSON",
                        help="take the CBM3D figures from an earlier --json file (they do not depend on the model)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    model = restorekit.load(args.model)
    report: dict[str, object] = {"model": args.model, "test": str(args.test), "torch": torch.__version__}

    pairs = pair_in_folder(args.test)
    inputs = evaluate("input", EvalData(args.test, paired=True)).mean["psnr"]
    outputs, seconds = [], []
    for noisy_path, clean_path in pairs:
        out, spent = run_model(model, read_image(noisy_path))
        outputs.append(psnr(out, read_image(clean_path)))
        seconds.append(spent)
    report["real"] = {"pairs": len(pairs), "input_psnr": inputs, "model_psnr": float(np.mean(outputs)),
                      "model_seconds_per_pair": float(np.median(seconds))}
    print(f"real pairs ({len(pairs)}): input {inputs:.2f} dB, {args.model} {np.mean(outputs):.2f} dB, "
          f"{np.median(seconds):.2f} s per pair (1 thread)", flush=True)

    demo = SHARED / "demo" / "nafnet"
    noisy, reference = read_image(demo / "noisy.png"), read_image(demo / "denoise_img.png")
    out, _ = run_model(model, noisy)
    report["demo"] = {"input_psnr": psnr(noisy, reference), "model_psnr": psnr(out, reference)}
    print(f"NAFNet demo vs official NAFNet-SIDD-w64 output: input {psnr(noisy, reference):.2f} dB, "
          f"{args.model} {psnr(out, reference):.2f} dB", flush=True)

    clean_scores = [psnr(run_model(model, image)[0], image)
                    for image in (read_image(p) for p in list_images(SHARED / "denoise" / "Kodak24"))]
    report["clean"] = {"set": "Kodak24", "mean_psnr": float(np.mean(clean_scores)), "min_psnr": float(np.min(clean_scores))}
    print(f"clean Kodak24 through {args.model}: mean {np.mean(clean_scores):.2f} dB, "
          f"min {np.min(clean_scores):.2f} dB from the input", flush=True)

    if args.reuse_cbm3d is not None:
        earlier = json.loads(args.reuse_cbm3d.read_text(encoding="utf-8"))["cbm3d"]
        earlier["slower_than_model"] = float(earlier["seconds_per_pair"] / np.median(seconds))
        report["cbm3d"] = {**earlier, "reused_from": str(args.reuse_cbm3d)}
        print(f"CBM3D sigma {earlier['sigma']:g} (from {args.reuse_cbm3d}): {earlier['psnr']:.2f} dB, "
              f"{earlier['slower_than_model']:.0f}x the model's time", flush=True)
    elif args.cbm3d:
        sigmas = [float(s) for s in args.sigmas.split(",")]
        sigma, selection = select_sigma(args.train, sigmas, args.select_pairs)
        scores, times = [], []
        for noisy_path, clean_path in pairs:
            out, spent = run_cbm3d(read_image(noisy_path), sigma)
            scores.append(psnr(out, read_image(clean_path)))
            times.append(spent)
        ratio = float(np.median(times) / np.median(seconds))
        report["cbm3d"] = {"sigma": sigma, "selection": selection, "psnr": float(np.mean(scores)),
                           "seconds_per_pair": float(np.median(times)), "slower_than_model": ratio}
        print(f"CBM3D sigma {sigma:g} (chosen on training pairs): {np.mean(scores):.2f} dB, "
              f"{np.median(times):.1f} s per pair, {ratio:.0f}x the model's time", flush=True)

    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
