#!/usr/bin/env python3
"""A deliberately simple external predictor, for checking our evaluator against the official one.

Run in a workspace with `inputs/` and `outputs/` (the official evaluator's container layout):
for every npz in inputs/, class i+1 gets its box (z_min..z_max, and the z_mid rectangle, all
inclusive) dilated in-plane by one voxel, then a 5x5x5 cube around every fg click is added and
one around every bg click removed; `segs` (uint8) goes to outputs/ under the same name. Cases
without boxes start from the clicks alone. Deterministic; needs only numpy.
"""
import os
import sys

import numpy as np

inp, out = (sys.argv[1], sys.argv[2]) if len(sys.argv) > 2 else ("inputs", "outputs")
for name in sorted(os.listdir(inp)):
    if not name.endswith(".npz"):
        continue
    with np.load(os.path.join(inp, name), allow_pickle=True) as f:
        d = dict(f)
    segs = np.zeros(d["imgs"].shape, np.uint8)
    boxes = d.get("boxes")
    clicks = d.get("clicks")
    n = len(boxes) if boxes is not None else len(clicks)
    for i in range(n):
        c = i + 1
        if boxes is not None:
            b = boxes[i]
            segs[
                b["z_min"] : b["z_max"] + 1,
                max(b["z_mid_y_min"] - 1, 0) : b["z_mid_y_max"] + 2,
                max(b["z_mid_x_min"] - 1, 0) : b["z_mid_x_max"] + 2,
            ] = c
        if clicks is not None:
            cube = lambda p: tuple(slice(max(int(v) - 2, 0), int(v) + 3) for v in p)
            for p in clicks[i]["fg"]:
                segs[cube(p)] = c
            for p in clicks[i]["bg"]:
                r = segs[cube(p)]
                r[r == c] = 0
    np.savez_compressed(os.path.join(out, name), segs=segs)
