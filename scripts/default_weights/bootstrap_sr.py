"""Bootstrap for the restorekit-sr-x3 weights: the three Bicubic++ stages (wide 34+bias -> prune to 32 ->
drop bias) with a compact loop, used while the train engine is being written. Same recipe as the paper's
released trainer (Adam 5e-4 default betas, MSE, linear decay to 5e-6, 8-way dihedral aug), shorter."""
from __future__ import annotations
import argparse, json, math, os, time
from pathlib import Path
import numpy as np, torch
from PIL import Image
from safetensors.torch import save_file
from restorekit.archs import bicubic_pp
from restorekit.compress import prune as P
from restorekit.data.degrade import imresize, jpeg

def rgb2y(x):  # MATLAB BT.601 luma of [0,1] RGB, in [0,1]
    return (16 + 65.481 * x[..., 0, :, :] + 128.553 * x[..., 1, :, :] + 24.966 * x[..., 2, :, :]) / 255

def psnr_y(sr, hr, border=3):
    sr = (sr.clamp(0, 1) * 255).round() / 255
    a, b = rgb2y(sr)[..., border:-border, border:-border], rgb2y(hr)[..., border:-border, border:-border]
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))

def load(p):
    a = np.asarray(Image.open(p).convert("RGB"))
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255

def evaluate(net, name):
    root = Path("/work/shared/data/sr", name)
    vals = []
    for hp in sorted((root / "HR").glob("*.png")):
        hr = load(hp); lr = load(root / "LR_bicubic/X3" / f"{hp.stem}x3.png")
        hr = hr[:, : lr.shape[1] * 3, : lr.shape[2] * 3]
        with torch.no_grad():
            vals.append(psnr_y(net(lr[None])[0], hr))
    return sum(vals) / len(vals)

def make_pairs(q):
    pairs = []
    files = sorted(Path("/work/shared/data/train/DIV2K_val0801-0900_crop256").glob("*.png")) + sorted(Path("/work/shared/data/train/Train400").glob("*.png"))
    for p in files:
        hr = load(p); H, W = hr.shape[1] // 6 * 6, hr.shape[2] // 6 * 6  # mod 6: LR even, aligned to stride 2
        hr = hr[:, :H, :W]
        lr = (imresize(hr, scale=1 / 3).clamp(0, 1) * 255).round() / 255  # stored as 8-bit like the test LR
        if q: lr = jpeg(lr, q)
        pairs.append((hr, lr))
    return pairs

def batch(pairs, n, lp, gen):
    hs, ls = [], []
    for _ in range(n):
        i = int(torch.randint(len(pairs), (1,), generator=gen)) if torch.rand(1, generator=gen) < 0.5 else int(torch.randint(100, (1,), generator=gen))
        hr, lr = pairs[i]
        y = int(torch.randint((lr.shape[1] - lp) // 2 + 1, (1,), generator=gen)) * 2
        x = int(torch.randint((lr.shape[2] - lp) // 2 + 1, (1,), generator=gen)) * 2
        l = lr[:, y:y+lp, x:x+lp]; h = hr[:, 3*y:3*(y+lp), 3*x:3*(x+lp)]
        r = int(torch.randint(8, (1,), generator=gen))
        if r & 4: l, h = l.flip(-1), h.flip(-1)
        ls.append(torch.rot90(l, r & 3, (1, 2))); hs.append(torch.rot90(h, r & 3, (1, 2)))
    return torch.stack(ls), torch.stack(hs)

def train(net, pairs, steps, lr0, gen, log, tag, bias_decay=0.0, minutes=1e9):
    opt = torch.optim.Adam(net.parameters(), lr=lr0)
    t0 = time.time()
    for s in range(steps):
        lr = max(lr0 * (1 - s / steps), 5e-6)  # the released knee schedule with warmup 0, explore 0
        for g in opt.param_groups: g["lr"] = lr
        l, h = batch(pairs, 16, 48, gen)
        loss = ((net(l) - h) ** 2).mean()
        if bias_decay: loss = loss + bias_decay * P.bias_norm(net)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        if (s + 1) % 50 == 0:
            print(f"{tag} step {s+1}/{steps} mse {loss.item():.2e} lr {lr:.1e} t {time.time()-t0:.0f}s", file=log, flush=True)
        if (time.time() - t0) / 60 > minutes:
            print(f"{tag} stopped at step {s+1} (time cap)", file=log, flush=True); return s + 1, time.time() - t0
    return steps, time.time() - t0

def save(net, path, meta):
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata={k: str(v) for k, v in meta.items()})

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/sr"); ap.add_argument("--jpeg", type=int, default=0)
    ap.add_argument("--steps", default="3000,1000,1000"); ap.add_argument("--lr", default="5e-4,2e-4,2e-4")
    ap.add_argument("--minutes", default="40,12,12"); ap.add_argument("--bias-decay", type=float, default=1e-3)
    ap.add_argument("--init", default=None, help="start stage 3 directly from this bias-free model (finetune only)")
    a = ap.parse_args()
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    log = open(out / "log.txt", "a"); torch.manual_seed(0); gen = torch.Generator().manual_seed(0)
    steps = [int(v) for v in a.steps.split(",")]; lrs = [float(v) for v in a.lr.split(",")]; mins = [float(v) for v in a.minutes.split(",")]
    pairs = make_pairs(a.jpeg)
    report = {"args": vars(a), "stages": []}
    def stage(name, net, n, lr, m, **kw):
        done, wall = train(net, pairs, n, lr, gen, log, name, minutes=m, **kw) if n else (0, 0.0)
        net.eval(); r = {"stage": name, "channels": net.config.channels, "bias": net.config.bias, "steps": done, "wall_s": round(wall),
             "params": sum(p.numel() for p in net.parameters()), "Set5": round(evaluate(net, "Set5"), 3), "Set14": round(evaluate(net, "Set14"), 3)}
        net.train(); report["stages"].append(r); print(json.dumps(r), file=log, flush=True)
        save(net, out / f"{name}.safetensors", {"format": "restorekit-1", "family": "bicubic_pp", "steps": done, "stage": name})
        (out / "report.json").write_text(json.dumps(report, indent=1))
    if a.init:
        from restorekit.model import load as rk_load
        net = rk_load(a.init).net.train()
        stage("bias_free", net, steps[2], lrs[2], mins[2])
        return
    net = bicubic_pp.BicubicPlusPlus(bicubic_pp.PRESETS["bicubic_pp_x3_wide"])
    stage("wide", net, steps[0], lrs[0], mins[0])
    net = P.prune(net, 32); stage("pruned_before_finetune", net, 0, 0, 0)
    stage("pruned", net, steps[1], lrs[1], mins[1], bias_decay=a.bias_decay)
    net, largest = P.remove_bias(net); print(f"largest dropped bias {largest:.4f}", file=log, flush=True)
    stage("bias_free_before_finetune", net, 0, 0, 0)
    stage("bias_free", net, steps[2], lrs[2], mins[2])

if __name__ == "__main__":
    main()
