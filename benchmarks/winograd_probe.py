"""Would Winograd convolution, written with PyTorch ops, beat oneDNN's direct 3x3 conv on this CPU?

HINet and RED30 are dense 3x3 convolutions that oneDNN already runs at 82-94% of the sgemm peak, so
the only way to a 0.67x eager latency is fewer multiplies. Winograd F(m x m, 3 x 3) (Lavin & Gray,
2016) needs (m+2)^2 instead of 9 m^2 multiplies per output tile: 2.25x fewer for m = 2, 4x for m = 4.
This probe computes it the way eager PyTorch can: gather overlapping tiles, transform them with one
GEMM against kron(B^T, B^T), run (m+2)^2 batched GEMMs over channels, transform back, and scatter the
tiles (plus bias) into an NHWC output. It prints time against F.conv2d (channels_last, the layout
our models use) and the largest deviation from it, per layer shape; then the whole of HINet-SIDD-1x
(256x256, random weights) with its wide 3x3 convs (>= --min-channels in and out) swapped for F(4x4).

    OMP_NUM_THREADS=1 python benchmarks/winograd_probe.py
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
import torch.nn.functional as F
from timing import median_thread_seconds  # benchmarks/ is on sys.path when run as a script

from restorekit.runtime import retain_freed_memory

# Lavin & Gray's transform matrices (points 0, +-1, +-2 for m = 4; 0, +-1 for m = 2).
TRANSFORMS = {
    2: (
        [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]],
    ),
    4: (
        [
            [4, 0, -5, 0, 1, 0],
            [0, -4, -4, 1, 1, 0],
            [0, 4, -4, -1, 1, 0],
            [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0],
            [0, 4, 0, -5, 0, 1],
        ],
        [
            [1 / 4, 0, 0],
            [-1 / 6, -1 / 6, -1 / 6],
            [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6],
            [0, 0, 1],
        ],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    ),
}


class WinogradConv3x3:
    """Stride-1, padding-1 3x3 convolution by Winograd F(m x m, 3 x 3) on channels_last input."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, m: int) -> None:
        bt, g, at = (torch.tensor(t, dtype=torch.float64) for t in TRANSFORMS[m])
        self.m, self.tile = m, m + 2
        self.input_transform = torch.kron(bt, bt).float()  # (t^2, t^2)
        self.output_transform = torch.kron(at, at).float()  # (m^2, t^2)
        u = torch.einsum("ap,kcpq,bq->abck", g, weight.double(), g)  # G w G^T in float64
        self.weight = u.reshape(self.tile**2, weight.shape[1], weight.shape[0]).float().contiguous()
        self.bias = bias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        m, t, k = self.m, self.tile, self.weight.shape[2]
        th, tw = -(-h // m), -(-w // m)
        padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, m * tw + 1 - w, 1, m * th + 1 - h))
        s_n, s_h, s_w, _ = padded.stride()
        tiles = padded.as_strided((t, t, n, th, tw, c), (s_h, s_w, s_n, m * s_h, m * s_w, 1))
        v = torch.mm(self.input_transform, tiles.reshape(t * t, -1)).view(t * t, n * th * tw, c)
        products = torch.bmm(v, self.weight)  # (t^2, tiles, k): the only O(C^2) work
        y = torch.mm(self.output_transform, products.view(t * t, -1)).view(m, m, n, th, tw, k)
        out = torch.empty(n, th, m, tw, m, k)
        torch.add(y.permute(2, 3, 0, 4, 1, 5), self.bias, out=out)
        return out.view(n, th * m, tw * m, k)[:, :h, :w].permute(0, 3, 1, 2)


def hinet_with_winograd(min_channels: int, runs: int) -> None:
    from restorekit.archs import hinet

    model = hinet.build(hinet.PRESETS["hinet_sidd_1x"]).eval()
    x = torch.rand(1, 3, 256, 256)
    with torch.inference_mode():
        reference = model(x)
        plain = median_thread_seconds(lambda: model(x), runs)
        swapped = 0
        for module in model.modules():
            if (
                isinstance(module, torch.nn.Conv2d)
                and module.kernel_size == (3, 3)
                and module.stride == (1, 1)
                and module.padding == (1, 1)
                and module.groups == 1
                and module.bias is not None
                and min(module.in_channels, module.out_channels) >= min_channels
            ):
                conv = WinogradConv3x3(module.weight, module.bias, 4)
                module.forward = lambda inp, conv=conv: conv(inp.contiguous(memory_format=torch.channels_last))
                swapped += 1
        out = model(x)
        fast = median_thread_seconds(lambda: model(x), runs)
    print(
        f"\nHINet-SIDD-1x 256x256, {swapped} convs with >= {min_channels} channels by F(4x4): "
        f"{plain * 1e3:.0f} -> {fast * 1e3:.0f} ms ({fast / plain:.2f}x), max diff {(out - reference).abs().max().item():.1e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--min-channels", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    retain_freed_memory()
    torch.manual_seed(0)
    # (channels, side): RED30's layers; HINet-1x's levels; Bicubic++'s 32-channel convs at 720p/2.
    shapes = [(128, 256), (64, 256), (128, 128), (256, 64), (512, 32), (32, 240)]
    print(
        "| channels | size | direct ms (GMAC/s) | F(2x2) ms | ratio | F(4x4) ms | ratio | max diff F(2x2) / F(4x4) | output max |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for channels, side in shapes:
        x = torch.randn(1, channels, side, side).contiguous(memory_format=torch.channels_last)
        weight = torch.randn(channels, channels, 3, 3) * (1 / (9 * channels)) ** 0.5  # unit-variance outputs
        bias = torch.randn(channels) * 0.1
        weight_cl = weight.contiguous(memory_format=torch.channels_last)
        reference = F.conv2d(x, weight_cl, bias, padding=1)
        direct = median_thread_seconds(partial(F.conv2d, x, weight_cl, bias, padding=1), args.runs)
        cells = []
        diffs = []
        for m in (2, 4):
            conv = WinogradConv3x3(weight, bias, m)
            diffs.append((conv(x) - reference).abs().max().item())
            seconds = median_thread_seconds(partial(conv, x), args.runs)
            cells += [f"{seconds * 1e3:.1f}", f"{seconds / direct:.2f}"]
        gmacs = side * side * channels * channels * 9 / direct / 1e9
        print(
            f"| {channels} | {side}x{side} | {direct * 1e3:.1f} ({gmacs:.1f}) | "
            + " | ".join(cells)
            + f" | {diffs[0]:.1e} / {diffs[1]:.1e} | {reference.abs().max().item():.1f} |"
        )
    hinet_with_winograd(args.min_channels, max(3, args.runs // 2))


if __name__ == "__main__":
    main()
