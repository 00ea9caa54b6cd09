"""Bootstrap trainer for restorekit-denoise (NAFNet keys per SPEC 1.5) while archs/nafnet.py and the
train engine are being written. Writes a bare-tensor safetensors that the nafnet family detects."""
from __future__ import annotations
import argparse, math, os, time, json
from pathlib import Path
import numpy as np, torch, torch.nn.functional as F
from torch import nn
from PIL import Image
from safetensors.torch import save_file
from restorekit.archs.layers import LayerNorm2d, SimpleGate, pad_to_multiple

class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm1 = LayerNorm2d(c); self.norm2 = LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, 2*c, 1); self.conv2 = nn.Conv2d(2*c, 2*c, 3, padding=1, groups=2*c)
        self.conv3 = nn.Conv2d(c, c, 1); self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c, 1))
        self.conv4 = nn.Conv2d(c, 2*c, 1); self.conv5 = nn.Conv2d(c, c, 1); self.sg = SimpleGate()
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1)); self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))
    def forward(self, inp):
        x = self.sg(self.conv2(self.conv1(self.norm1(inp))))
        x = self.conv3(x * self.sca(x))
        y = inp + x * self.beta
        x = self.conv5(self.sg(self.conv4(self.norm2(y))))
        return y + x * self.gamma

class Net(nn.Module):
    def __init__(self, width, enc, middle, dec):
        super().__init__()
        self.intro = nn.Conv2d(3, width, 3, padding=1); self.ending = nn.Conv2d(width, 3, 3, padding=1)
        self.encoders, self.downs, self.ups, self.decoders = nn.ModuleList(), nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        c = width
        for n in enc:
            self.encoders.append(nn.Sequential(*[Block(c) for _ in range(n)])); self.downs.append(nn.Conv2d(c, 2*c, 2, 2)); c *= 2
        self.middle_blks = nn.Sequential(*[Block(c) for _ in range(middle)])
        for n in dec:
            self.ups.append(nn.Sequential(nn.Conv2d(c, 2*c, 1, bias=False), nn.PixelShuffle(2))); c //= 2
            self.decoders.append(nn.Sequential(*[Block(c) for _ in range(n)]))
        self.mult = 2 ** len(enc)
    def forward(self, inp):
        h, w = inp.shape[-2:]
        x = pad_to_multiple(inp, self.mult)
        x0 = x
        x = self.intro(x); skips = []
        for e, d in zip(self.encoders, self.downs):
            x = e(x); skips.append(x); x = d(x)
        x = self.middle_blks(x)
        for dcd, up, s in zip(self.decoders, self.ups, reversed(skips)):
            x = dcd(up(x) + s)
        return (self.ending(x) + x0)[..., :h, :w]

def load_images(root):
    ims = []
    for p in sorted(Path(root, "DIV2K_val0801-0900_crop256").glob("*.png")):
        ims.append(np.asarray(Image.open(p).convert("RGB")))
    for p in sorted(Path(root, "Train400").glob("*.png")):
        ims.append(np.asarray(Image.open(p).convert("RGB")))
    return [torch.from_numpy(a.copy()).permute(2, 0, 1) for a in ims]

def batch(ims, n, patch, gen, colour_weight):
    out = []
    k = len(ims)
    for _ in range(n):
        # colour crops drawn more often: the target is colour denoising; gray images add texture variety
        i = int(torch.randint(100, (1,), generator=gen)) if torch.rand(1, generator=gen) < colour_weight else int(torch.randint(100, k, (1,), generator=gen))
        im = ims[i]; H, W = im.shape[1:]
        y = int(torch.randint(H - patch + 1, (1,), generator=gen)); x = int(torch.randint(W - patch + 1, (1,), generator=gen))
        p = im[:, y:y+patch, x:x+patch]
        r = int(torch.randint(8, (1,), generator=gen))
        if r & 4: p = p.flip(-1)
        p = torch.rot90(p, r & 3, (1, 2))
        out.append(p)
    return torch.stack(out).float() / 255

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/denoise"); ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--enc", default="1,1,1,2"); ap.add_argument("--middle", type=int, default=2); ap.add_argument("--dec", default="1,1,1,1")
    ap.add_argument("--steps", type=int, default=20000); ap.add_argument("--batch", type=int, default=8); ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3); ap.add_argument("--export-every", type=int, default=250)
    ap.add_argument("--minutes", type=float, default=1e9, help="stop (and export) after this wall time")
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(10)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    enc = [int(v) for v in a.enc.split(",")]; dec = [int(v) for v in a.dec.split(",")]
    net = Net(a.width, enc, a.middle, dec)
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, betas=(0.9, 0.9), weight_decay=0)
    step, elapsed = 0, 0.0
    ck = out / "last.pt"
    if a.resume and ck.exists():
        st = torch.load(ck, map_location="cpu", weights_only=True)
        net.load_state_dict(st["net"]); opt.load_state_dict(st["opt"]); step = int(st["step"]); elapsed = float(st["elapsed"])
    gen = torch.Generator().manual_seed(1000 + step)
    ims = load_images("/work/shared/data/train")
    (out / "args.json").write_text(json.dumps(vars(a), indent=1))
    t0 = time.time() - elapsed; log = open(out / "log.txt", "a")
    while step < a.steps:
        lr = 1e-7 + 0.5 * (a.lr - 1e-7) * (1 + math.cos(math.pi * step / a.steps))
        for g in opt.param_groups: g["lr"] = lr
        clean = batch(ims, a.batch, a.patch, gen, 0.6)
        sigma = torch.rand(a.batch, 1, 1, 1, generator=gen) * 50 / 255
        noisy = clean + sigma * torch.randn(clean.shape, generator=gen)
        pred = net(noisy)
        mse = ((pred - clean) ** 2).mean((1, 2, 3))
        loss = (10 / math.log(10)) * torch.log(mse + 1e-8).mean()  # PSNR loss (NAFNet), per image
        opt.zero_grad(set_to_none=True); loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)
        opt.step(); step += 1
        if step % 25 == 0:
            print(f"step {step} loss {loss.item():.3f} (-PSNR) lr {lr:.2e} t {time.time()-t0:.0f}s", file=log, flush=True)
        done = step >= a.steps or (time.time() - t0) / 60 > a.minutes
        if step % a.export_every == 0 or done:
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": time.time() - t0}, out / "last.pt.part")
            os.replace(out / "last.pt.part", ck)
            meta = {"format": "restorekit-1", "task": "denoise", "steps": str(step), "wall_s": f"{time.time()-t0:.0f}",
                    "recipe": json.dumps(vars(a))}
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / "model.safetensors.part"), metadata=meta)
            os.replace(out / "model.safetensors.part", out / "model.safetensors")
        if done: break

if __name__ == "__main__":
    main()
