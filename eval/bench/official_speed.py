#!/usr/bin/env python3
"""Times the official CVPR25 evaluator's click simulation and NSD on a synthetic
300x512x512 (z,y,x) case, to compare with `cargo bench -p segvol-eval` on the same case.

The case (mirrored in eval/benches/eval.rs): ground truth = ellipsoid centred in the volume
with semi-axes (100, 150, 150) voxels; prediction = the same ellipsoid shifted by (2, 3, -2)
voxels; spacing (1.0, 0.8, 0.8) mm.

    pip install numpy==1.26.3 scipy==1.12.0 connected-components-3d==3.12.4 surface-distance==0.1
    python3 eval/bench/official_speed.py
"""
import sys
import time
from pathlib import Path

import numpy as np
import surface_distance as sd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
from make_reference import official_click  # noqa: E402  (the evaluator's rule, cc3d + scipy)

D, H, W = 300, 512, 512


def ellipsoid(shift):
    z = np.arange(D)[:, None, None] - (D // 2 + shift[0])
    y = np.arange(H)[None, :, None] - (H // 2 + shift[1])
    x = np.arange(W)[None, None, :] - (W // 2 + shift[2])
    return (z * z) * (150 * 150) * (150 * 150) + (y * y) * (100 * 100) * (150 * 150) + (x * x) * (100 * 100) * (150 * 150) <= (100 * 150 * 150) ** 2


def main():
    gt = ellipsoid((0, 0, 0))
    pred = ellipsoid((2, 3, -2))
    print(f"case {gt.shape}, gt {gt.sum()} voxels, pred {pred.sum()} voxels")
    t = time.perf_counter()
    click = official_click(pred, gt)
    t_click = time.perf_counter() - t
    t = time.perf_counter()
    s = sd.compute_surface_distances(gt, pred, (1.0, 0.8, 0.8))
    nsd = sd.compute_surface_dice_at_tolerance(s, 2.0)
    t_nsd = time.perf_counter() - t
    print(f"official click {click}: {t_click:.2f} s")
    print(f"surface-distance NSD@2mm {nsd:.6f}: {t_nsd:.2f} s")
    print(f"total {t_click + t_nsd:.2f} s")


if __name__ == "__main__":
    main()
