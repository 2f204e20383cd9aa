#!/usr/bin/env python3
"""A synthetic CT for end-to-end timing and memory: int16 HU, a body ellipse (~40 HU with noise),
an ellipsoid "organ" (~150 HU) and air around, written as `.npy` (C order, z, y, x).

    python3 bench/make_synthetic_ct.py OUT.npy [--shape 300 512 512]

Prints the organ's bounding box as `z0,y0,x0,z1,y1,x1` (the `--box` of `segvol segment`).
numpy only; deterministic (seed 0)."""
import argparse

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--shape", type=int, nargs=3, default=[300, 512, 512])
a = ap.parse_args()
d, h, w = a.shape
rng = np.random.default_rng(0)
vol = np.full((d, h, w), -1000, dtype=np.int16)
yy, xx = np.mgrid[0:h, 0:w]
body = ((yy - h / 2) / (0.42 * h)) ** 2 + ((xx - w / 2) / (0.46 * w)) ** 2 <= 1
c = np.array([d * 0.5, h * 0.45, w * 0.6])
r = np.array([d * 0.15, h * 0.08, w * 0.07])
for z in range(d):
    sl = np.where(body, 40, -1000).astype(np.int16)
    organ = ((z - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2 <= 1
    sl[organ] = 150
    sl = sl + rng.normal(0, 20, size=(h, w)).astype(np.int16)
    vol[z] = sl
np.save(a.out, vol)
lo = np.floor(c - r).astype(int)
hi = np.ceil(c + r).astype(int)
print(",".join(str(v) for v in [*lo, *hi]))
