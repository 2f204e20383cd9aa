#!/usr/bin/env python3
"""Reference values for segvol-eval, computed with the libraries the challenge uses.

    pip install numpy==1.26.3 scipy==1.12.0 connected-components-3d==3.12.4
    python3 eval/reference/make_reference.py ../shared

Writes, next to this script:
  preds.npz     perturbed predictions of dev cases (dilated, eroded, shifted, with holes),
                one uint8 mask per key `<case>__<perturbation>`
  clicks.json   for each key, the click the official evaluator's rule gives (CHALLENGE.md §5,
                written here with cc3d + scipy exactly as CVPR25_iter_eval.py does), and
                numpy's legacy `np.random.seed(42); np.random.choice(n)` for many n.
Never run in CI; the Rust tests read the committed outputs.
"""
import json
import sys
from pathlib import Path

import cc3d
import numpy as np
import scipy
from scipy import ndimage

HERE = Path(__file__).resolve().parent


def official_click(pred, gt):
    """The evaluator's rule for one class (binary masks). Returns ((z, y, x), 'fg'|'bg') or None."""
    err = pred != gt
    if not err.any():
        return None
    labels = cc3d.connected_components(err, connectivity=26)
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    comp = labels == np.argmax(counts)
    idx = np.argwhere(comp)
    lo, hi = idx.min(0), idx.max(0) + 1
    crop = hi - lo
    pad = np.maximum((0.25 * crop).astype(int), 1)
    roi = np.zeros(crop + 2 * pad, dtype=bool)
    roi[tuple(slice(p, p + c) for p, c in zip(pad, crop))] = comp[tuple(slice(l, h) for l, h in zip(lo, hi))]
    assert roi.size <= 60_000_000, "large-ROI path not exercised here"
    edt = ndimage.distance_transform_edt(roi)
    edt = edt[tuple(slice(p, p + c) for p, c in zip(pad, crop))]
    full = np.zeros(comp.shape, dtype=np.float64)
    full[tuple(slice(l, h) for l, h in zip(lo, hi))] = edt
    full = full * comp
    if full.sum() == 0:
        full = comp.astype(np.float64)
    cand = np.argwhere(full == full.max())
    np.random.seed(42)
    z, y, x = cand[np.random.choice(len(cand))]
    return [int(z), int(y), int(x)], ("fg" if gt[z, y, x] else "bg")


def perturbations(gt):
    ball = ndimage.generate_binary_structure(3, 1)
    out = {
        "dilated": ndimage.binary_dilation(gt, ball, iterations=2),
        "eroded": ndimage.binary_erosion(gt, ball, iterations=1),
        "shifted": np.roll(gt, (1, 3, -2), axis=(0, 1, 2)),
        "empty": np.zeros_like(gt),
    }
    holes = gt.copy()
    z, y, x = np.argwhere(gt)[len(np.argwhere(gt)) // 2]
    holes[max(z - 2, 0):z + 3, max(y - 3, 0):y + 4, max(x - 3, 0):x + 4] = False
    out["holes"] = holes
    return out


def main(shared):
    cases = ["ct_kidney_right", "ct_vertebra_L3", "ct_gluteus_maximus_left", "mni_caudate", "ct_heart_thick"]
    preds, clicks = {}, {}
    for case in cases:
        gts = np.load(Path(shared) / f"data/npz/{case}.npz", allow_pickle=True)["gts"]
        gt = gts == 1
        for name, pred in perturbations(gt).items():
            key = f"{case}__{name}"
            preds[key] = pred.astype(np.uint8)
            c = official_click(pred, gt)
            clicks[key] = None if c is None else {"zyx": c[0], "label": c[1]}
            print(key, clicks[key])
    rng = np.random.default_rng(7)
    ns = [1, 2, 3, 4, 5, 7, 10, 17, 100, 1000, 12345] + sorted(set(int(n) for n in rng.integers(1, 5_000_000, 400)))
    choice = []
    for n in ns:
        np.random.seed(42)
        choice.append([n, int(np.random.choice(n))])
    np.savez_compressed(HERE / "preds.npz", **preds)
    meta = {"numpy": np.__version__, "scipy": scipy.__version__, "cc3d": getattr(cc3d, "__version__", "?"),
            "clicks": clicks, "choice_seed42": choice}
    (HERE / "clicks.json").write_text(json.dumps(meta, indent=0))
    print("wrote", HERE / "preds.npz", HERE / "clicks.json")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(HERE.parents[2] / "shared"))
