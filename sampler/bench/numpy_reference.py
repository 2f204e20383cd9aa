#!/usr/bin/env python3
"""numpy implementation of segvol-sampler's rule (GRU_CORRECTION.md D2-D5), used two ways:

  fixture  writes sampler/tests/data/ct_kidney_right_expected.json, the reference the Rust
           test `numpy_parity` compares against (a probability map derived from a shared dev
           case by integer arithmetic both sides reproduce exactly);
  bench    times this implementation on 32x256x256 and 128x512x512 maps so the ratio to
           `cargo bench -p segvol-sampler` can be reproduced, and checks both agree.

Needs numpy only (tested with numpy 1.26.3). Never run in CI.
    python3 sampler/bench/numpy_reference.py fixture
    python3 sampler/bench/numpy_reference.py bench [path/to/segvol]   # with parity check
"""
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"


def sample(probs, clicks, k=200, tau=0.1, radius=8.0, spacing=None):
    """probs: float32 (D,H,W); clicks: list of ((z,y,x), fg_bool). Returns dict of both sets."""
    d, h, w = probs.shape
    flat = probs.ravel()
    lo, hi = np.float32(tau), np.float32(1.0) - np.float32(tau)
    cand = np.flatnonzero((flat > lo) & (flat < hi))
    key = np.abs(flat[cand] - np.float32(0.5))
    order = np.lexsort((cand, key))[:k]  # by key, then raster index
    u_idx, u_key = cand[order], key[order]

    s = np.ones(3) if spacing is None else np.asarray(spacing, dtype=np.float64)
    best = {}
    for n, ((cz, cy, cx), fg) in enumerate(clicks):
        reach = np.floor(radius / s).astype(int)
        zs = np.arange(max(cz - reach[0], 0), min(cz + reach[0], d - 1) + 1)
        ys = np.arange(max(cy - reach[1], 0), min(cy + reach[1], h - 1) + 1)
        xs = np.arange(max(cx - reach[2], 0), min(cx + reach[2], w - 1) + 1)
        Z, Y, X = np.meshgrid(zs, ys, xs, indexing="ij")
        dist = np.sqrt(((Z - cz) * s[0]) ** 2 + ((Y - cy) * s[1]) ** 2 + ((X - cx) * s[2]) ** 2)
        pred = probs[Z, Y, X] > np.float32(0.5)
        hit = (dist <= radius) & (pred != bool(fg))
        idx = ((Z * h + Y) * w + X)[hit]
        for i, dd in zip(idx.tolist(), dist[hit].tolist()):
            if i not in best or dd < best[i][0]:
                best[i] = (dd, n)
    e = sorted((dd, i, 1.0 if clicks[n][1] else 0.0) for i, (dd, n) in best.items())[:k]
    unravel = lambda i: [int(i // (h * w)), int((i // w) % h), int(i % w)]
    return {
        "uncertainty": {"coords": [unravel(i) for i in u_idx], "values": [float(v) for v in u_key],
                        "n_candidates": int(len(cand))},
        "error": {"coords": [unravel(i) for i in e_i] if (e_i := [x[1] for x in e]) else [],
                  "values": [x[2] for x in e], "keys": [x[0] for x in e], "n_candidates": len(best)},
    }


def fixture_map(gts):
    """Integer-only recipe (mirrored in sampler/tests/numpy_parity.rs): quantised to 1/64 so
    many voxels tie and the raster tie-break matters."""
    n = gts.size
    i = np.arange(n, dtype=np.uint64)
    noise = ((i * np.uint64(2654435761)) % np.uint64(2**32)) >> np.uint64(27)  # 0..31
    q = np.where(gts.ravel() > 0, 40, 8).astype(np.int64) + noise.astype(np.int64) - 16
    q = np.clip(q, 0, 64)
    return (q.astype(np.float32) / np.float32(64.0)).reshape(gts.shape)


FIXTURE_CLICKS = [((12, 20, 18), True), ((5, 30, 10), False), ((20, 8, 30), True)]


def write_fixture():
    z = np.load(SHARED / "data/npz/ct_kidney_right.npz", allow_pickle=True)
    probs = fixture_map(z["gts"])
    out = sample(probs, FIXTURE_CLICKS, k=200, tau=0.1, radius=8.0)
    out["source"] = "shared/data/npz/ct_kidney_right.npz gts -> fixture_map(); numpy " + np.__version__
    out["clicks"] = [[list(c), fg] for c, fg in FIXTURE_CLICKS]
    # A second run with anisotropic spacing (mm radius).
    out["aniso"] = sample(probs, FIXTURE_CLICKS, k=50, tau=0.25, radius=7.0, spacing=(3.0, 1.5, 1.5))
    path = ROOT / "sampler/tests/data/ct_kidney_right_expected.json"
    path.write_text(json.dumps(out))
    print("wrote", path)


def sphere_map(shape):
    """Same map as sampler/benches/sampler.rs: soft sphere + hashed +-0.02 noise, float32."""
    lin = [np.float32(-1) + np.float32(2) * np.arange(n, dtype=np.float32) / np.float32(n - 1) for n in shape]
    zz, yy, xx = np.meshgrid(*lin, indexing="ij")
    r = np.sqrt(zz * zz + yy * yy + xx * xx)
    i = np.arange(np.prod(shape), dtype=np.uint64).reshape(shape)
    noise = ((i * np.uint64(2654435761)) % np.uint64(2**32)).astype(np.float32) / np.float32(4294967296.0)
    p = np.float32(1) / (np.float32(1) + np.exp((r - np.float32(0.5)) * np.float32(40))) + (noise * np.float32(0.04) - np.float32(0.02))
    return np.clip(p, 0, 1).astype(np.float32)


def bench(segvol=None):
    """Times numpy; with a segvol binary, also checks that `segvol sample` gives the same sets
    on the same big maps (written as .npy)."""
    import subprocess, tempfile
    for shape in [(32, 256, 256), (128, 512, 512)]:
        probs = sphere_map(shape)
        c = tuple(s // 2 for s in shape)
        clicks = [((c[0], c[1], c[2] + shape[2] // 4), True), ((c[0], c[1] + shape[1] // 4, c[2]), False)]
        want = sample(probs, clicks)  # also the warm-up
        reps = 5 if shape[0] == 32 else 2
        t0 = time.perf_counter()
        for _ in range(reps):
            sample(probs, clicks)
        dt = (time.perf_counter() - t0) / reps
        print(f"numpy {shape}: {dt * 1e3:.1f} ms per call, {probs.nbytes / dt / 1e9:.2f} GB/s of probabilities, "
              f"{want['uncertainty']['n_candidates']} uncertain candidates, {want['error']['n_candidates']} error candidates")
        if segvol:
            with tempfile.TemporaryDirectory() as d:
                path = Path(d) / "map.npy"
                np.save(path, probs)
                arg = ";".join(f"{z},{y},{x},{'fg' if fg else 'bg'}" for (z, y, x), fg in clicks)
                got = json.loads(subprocess.run([segvol, "sample", "--prob", str(path), "--clicks", arg, "--json"],
                                                check=True, capture_output=True, text=True).stdout)
            for name in ["uncertainty", "error"]:
                n = got[name]["n_valid"]
                assert got[name]["n_candidates"] == want[name]["n_candidates"], name
                assert got[name]["coords"][:n] == want[name]["coords"], f"{shape} {name} coords differ"
                assert np.allclose(got[name]["values"][:n], want[name]["values"], rtol=0, atol=0), name
            print(f"  segvol sample gives the same {len(want['uncertainty']['coords'])} + {len(want['error']['coords'])} rows")


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else "fixture"
    if cmd == "bench":
        bench(sys.argv[2] if len(sys.argv) > 2 else None)
    else:
        write_fixture()
