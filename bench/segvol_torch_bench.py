#!/usr/bin/env python3
"""The PyTorch side of issue 5's CPU benchmark: SegVol-base's forward on a 1x1x32x256x256
input with random weights, timed the way `segvol bench --full` times ours, so the ratio can be
reported. Never run in CI.

Encoder: MONAI's own ViT (the class SegVol uses; MONAI >= 1.3 names the options proj_type /
pos_embed_type), 768/12/12/3072, patch 4x16x16, perceptron patch embedding, learned positions.
Decoder: SAM's mask decoder lifted to 3-D as shared/docs/SEGVOL.md section 6 describes (two-way
transformer depth 2, attention downsample 2, ConvTranspose3d upscaling with the full-tensor
LayerNorm, hypernetwork MLPs, final trilinear upsample), written here in plain torch because
SegVol's code is not a pip package. The prompt encoder is a few hundred FLOPs and is included
as its output shapes (a box = 2 sparse tokens, dense = a broadcast embedding).

    python3 bench/segvol_torch_bench.py [--threads N] [--iters 3]

Tested with torch 2.15.0 (CPU wheel from PyPI), MONAI 1.6.1, Python 3.11.
"""
import argparse
import math
import platform
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.nets import ViT


class Attention(nn.Module):
    def __init__(self, dim, heads, down=1):
        super().__init__()
        inner = dim // down
        self.h = heads
        self.q, self.k, self.v = nn.Linear(dim, inner), nn.Linear(dim, inner), nn.Linear(dim, inner)
        self.o = nn.Linear(inner, dim)

    def forward(self, q, k, v):
        b = q.shape[0]
        split = lambda x: x.view(b, x.shape[1], self.h, -1).transpose(1, 2)
        q, k, v = split(self.q(q)), split(self.k(k)), split(self.v(v))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1)
        return self.o((a @ v).transpose(1, 2).reshape(b, -1, self.h * q.shape[-1]))


class TwoWayBlock(nn.Module):
    def __init__(self, dim=768, heads=8, mlp=2048, skip_pe=False):
        super().__init__()
        self.self_attn = Attention(dim, heads)
        self.t2i, self.i2t = Attention(dim, heads, 2), Attention(dim, heads, 2)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.ReLU(), nn.Linear(mlp, dim))
        self.n = nn.ModuleList(nn.LayerNorm(dim) for _ in range(4))
        self.skip_pe = skip_pe

    def forward(self, q, k, qpe, kpe):
        if self.skip_pe:
            q = self.self_attn(q, q, q)
        else:
            qq = q + qpe
            q = q + self.self_attn(qq, qq, q)
        q = self.n[0](q)
        q = self.n[1](q + self.t2i(q + qpe, k + kpe, k))
        q = self.n[2](q + self.mlp(q))
        k = self.n[3](k + self.i2t(k + kpe, q + qpe, q))
        return q, k


class Decoder(nn.Module):
    def __init__(self, dim=768, grid=(8, 16, 16)):
        super().__init__()
        self.grid = grid
        self.tokens = nn.Parameter(torch.randn(5, dim))
        self.blocks = nn.ModuleList([TwoWayBlock(skip_pe=True), TwoWayBlock()])
        self.final = Attention(dim, 8, 2)
        self.nf = nn.LayerNorm(dim)
        self.up1 = nn.ConvTranspose3d(dim, dim // 4, 2, 2)
        self.ln = nn.LayerNorm((dim // 4, 16, 32, 32))
        self.up2 = nn.ConvTranspose3d(dim // 4, dim // 8, 2, 2)
        self.hyper = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim // 8))
            for _ in range(4))
        self.iou = nn.Sequential(nn.Linear(dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 4))

    def forward(self, emb, pe, sparse, dense):
        b, c = emb.shape[:2]
        q0 = torch.cat([self.tokens.expand(b, -1, -1), sparse], 1)
        k = (emb + dense).flatten(2).transpose(1, 2)
        kpe = pe.flatten(2).transpose(1, 2)
        q = q0
        for blk in self.blocks:
            q, k = blk(q, k, q0, kpe)
        q = self.nf(q + self.final(q + q0, k + kpe, k))
        x = k.transpose(1, 2).reshape(b, c, *self.grid)
        e = F.gelu(self.up2(F.gelu(self.ln(self.up1(x)))))
        h = torch.stack([m(q[:, 1 + i]) for i, m in enumerate(self.hyper)], 1)
        self.iou(q[:, 0])
        masks = (h @ e.flatten(2)).view(b, 4, *e.shape[2:])
        return F.interpolate(masks[:, :1], size=(32, 256, 256), mode="trilinear", align_corners=False)


def timed(fn, iters):
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t) / iters


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--ops", action="store_true", help="time one ViT block's operations alone")
    ap.add_argument("--e2e", metavar="NPY", help="time an end-to-end segmentation of this volume")
    ap.add_argument("--box", help="z0,y0,x0,z1,y1,x1 for --e2e")
    ap.add_argument("--zoom-in", action="store_true", help="--e2e: also the zoom-in windows over the box")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.ops:
        return ops(a)
    if a.e2e:
        return e2e(a)
    vit = ViT(in_channels=1, img_size=(32, 256, 256), patch_size=(4, 16, 16), hidden_size=768,
              mlp_dim=3072, num_layers=12, num_heads=12, proj_type="perceptron",
              pos_embed_type="learnable", classification=False, dropout_rate=0.0).eval()
    dec = Decoder().eval()
    x = torch.randn(1, 1, 32, 256, 256)
    with torch.inference_mode():
        patch = timed(lambda: vit.patch_embedding(x), a.iters)
        tok = vit.patch_embedding(x)
        block = timed(lambda: vit.blocks[0](tok), a.iters)
        enc = timed(lambda: vit(x), a.iters)
        out, _ = vit(x)
        emb = out.transpose(1, 2).reshape(1, 768, 8, 16, 16)
        pe = torch.randn(1, 768, 8, 16, 16)
        sparse = torch.randn(1, 2, 768)
        dense = torch.randn(1, 768, 1, 1, 1).expand(1, 768, 8, 16, 16)
        decode = timed(lambda: dec(emb, pe, sparse, dense), a.iters)
        logits = dec(emb, pe, sparse, dense)
    assert logits.shape == (1, 1, 32, 256, 256)
    print(f"torch {torch.__version__}, {a.threads} threads, {platform.processor() or platform.machine()}")
    print("| piece | ms |\n|---|---|")
    for name, t in [("patch embedding", patch), ("one ViT block", block), ("full encoder", enc),
                    ("decode (box prompt, incl. upsample)", decode), ("encoder + decode", enc + decode)]:
        print(f"| {name} | {t * 1e3:.1f} |")


def e2e(a):
    """SegVol's inference path on a whole volume, the work `segvol segment` does: read the
    `.npy`, normalise (foreground percentiles 0.5/99.5, z-score), zoom-out (trilinear resize to
    32x256x256, encode, decode the box, logits back to the volume's size), with --zoom-in (the box's
    region at native resolution in 32x256x256 sliding windows, each encoded and decoded, the
    mean written back), threshold, write the mask. Random weights; the timing is the point."""
    vit = ViT(in_channels=1, img_size=(32, 256, 256), patch_size=(4, 16, 16), hidden_size=768,
              mlp_dim=3072, num_layers=12, num_heads=12, proj_type="perceptron",
              pos_embed_type="learnable", classification=False, dropout_rate=0.0).eval()
    dec = Decoder().eval()
    pe = torch.randn(1, 768, 8, 16, 16)
    sparse = torch.randn(1, 2, 768)
    dense = torch.randn(1, 768, 1, 1, 1).expand(1, 768, 8, 16, 16)
    box = [int(v) for v in a.box.split(",")]
    t0 = time.perf_counter()
    import numpy as np
    with torch.inference_mode():
        img = torch.from_numpy(np.load(a.e2e).astype(np.float32))
        fg = img[img > img.mean()]
        lo, hi = torch.quantile(fg[:: max(1, fg.numel() // 1_000_000)], torch.tensor([0.005, 0.995]))
        img = img.clamp(lo, hi)
        img = (img - fg.mean()) / fg.std()
        d, h, w = img.shape

        def segment(vol):
            x = F.interpolate(vol[None, None], size=(32, 256, 256), mode="trilinear", align_corners=False)
            out, _ = vit(x)
            emb = out.transpose(1, 2).reshape(1, 768, 8, 16, 16)
            return F.interpolate(dec(emb, pe, sparse, dense), size=vol.shape, mode="trilinear",
                                 align_corners=False)[0, 0]

        logits = segment(img)
        if not a.zoom_in:
            mask = (logits > 0).to(torch.uint8).numpy()
            np.save("/tmp/segvol_torch_e2e_mask.npy", mask)
            print(f"torch {torch.__version__}, {a.threads} threads")
            print(f"| end-to-end segment {d}x{h}x{w} | {(time.perf_counter() - t0) * 1e3:.1f} |")
            return
        # Zoom-in as segvol-rs does it (segvol-core/src/zoom.rs): the ROI around the box grown
        # to the window (32x256x256) at native resolution, sliding windows with overlap 0.5,
        # each encoded and decoded, the mean written over the global logits.
        win = (32, 256, 256)

        def roi_axis(lo, hi, w, size):
            pad = max(0, w - (hi - lo + 1))
            return max(lo - pad // 2, 0), min(min(hi + pad // 2, size) + 1, size)

        def starts(size, w):
            if size <= w:
                return [0]
            step = max(w // 2, 1)
            n = -(-(size - w) // step) + 1
            return [min(i * step, size - w) for i in range(n)]

        z0, y0, x0, z1, y1, x1 = box
        roi = [roi_axis(a, b, w, n) for a, b, w, n in zip((z0, y0, x0), (z1, y1, x1), win, (d, h, w))]
        crop = img[roi[0][0]:roi[0][1], roi[1][0]:roi[1][1], roi[2][0]:roi[2][1]]
        pads = [max(0, wi - s) for wi, s in zip(win, crop.shape)]
        crop = F.pad(crop, (0, pads[2], 0, pads[1], 0, pads[0]))
        acc = torch.zeros_like(crop)
        cnt = torch.zeros_like(crop)
        for sz in starts(crop.shape[0], win[0]):
            for sy in starts(crop.shape[1], win[1]):
                for sx in starts(crop.shape[2], win[2]):
                    sl = (slice(sz, sz + win[0]), slice(sy, sy + win[1]), slice(sx, sx + win[2]))
                    out, _ = vit(crop[sl][None, None])
                    emb = out.transpose(1, 2).reshape(1, 768, 8, 16, 16)
                    acc[sl] += dec(emb, pe, sparse, dense)[0, 0]
                    cnt[sl] += 1
        zoom = acc / cnt
        r = [b - a for a, b in roi]
        logits[roi[0][0]:roi[0][1], roi[1][0]:roi[1][1], roi[2][0]:roi[2][1]] = zoom[:r[0], :r[1], :r[2]]
        mask = (logits > 0).to(torch.uint8).numpy()
        np.save("/tmp/segvol_torch_e2e_mask.npy", mask)
    t = time.perf_counter() - t0
    print(f"torch {torch.__version__}, {a.threads} threads")
    print(f"| end-to-end segment {d}x{h}x{w} | {t * 1e3:.1f} |")


def ops(a):
    """The same table as `segvol bench --ops`: one ViT-B block's operations, each alone."""
    n, ch, m, heads = 2048, 768, 3072, 12
    hd = ch // heads
    r = lambda *s: torch.randn(*s)
    x, w_qkv, w_out, w1, w2 = r(1, n, ch), r(ch, 3 * ch), r(ch, ch), r(ch, m), r(m, ch)
    q, kt, scores, v, hmid = r(heads, n, hd), r(heads, hd, n), r(heads, n, n), r(heads, n, hd), r(1, n, m)
    norm = nn.LayerNorm(ch)
    rows = [
        ("layer norm (x2 per block)", lambda: norm(x)),
        ("qkv matmul", lambda: x @ w_qkv),
        ("scores q.k^T (all heads)", lambda: q @ kt),
        ("softmax over keys", lambda: torch.softmax(scores, 2)),
        ("attention . v", lambda: scores @ v),
        ("out projection", lambda: x @ w_out),
        ("mlp linear1", lambda: x @ w1),
        ("gelu (erf)", lambda: F.gelu(hmid)),
        ("mlp linear2", lambda: hmid @ w2),
    ]
    print(f"torch {torch.__version__}, {a.threads} threads\n| operation | ms |\n|---|---|")
    total = 0.0
    with torch.inference_mode():
        for name, f in rows:
            t = timed(f, a.iters)
            total += t * (2 if name.startswith("layer norm") else 1)
            print(f"| {name} | {t * 1e3:.1f} |")
    print(f"| sum (block estimate) | {total * 1e3:.1f} |")


if __name__ == "__main__":
    main()
