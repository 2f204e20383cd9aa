#!/usr/bin/env python3
"""Reference values for segvol-eval, computed with the libraries the challenge uses.

    pip install numpy==1.26.3 scipy==1.12.0 connected-components-3d==3.12.4 medpy==0.5.2 surface-distance==0.1
    python3 eval/reference/make_reference.py ../shared

Writes, next to this script:
  preds.npz     perturbed predictions of dev cases (dilated, eroded, shifted, with holes),
                one uint8 mask per key `<case>__<perturbation>`
  metrics.json  per key: DSC, NSD@2mm (DeepMind surface-distance), HD95 three ways (MONAI's
                max of directed q95 via medpy's surface distances, medpy's pooled hd95,
                DeepMind's robust HD), ASD three ways, HD (medpy)
  clicks.json   for each key, the click the official evaluator's rule gives (CHALLENGE.md §5,
                written here with cc3d + scipy exactly as CVPR25_iter_eval.py does), and
                numpy's legacy `np.random.seed(42); np.random.choice(n)` for many n.
Never run in CI; the Rust tests read the committed outputs.
"""
import json
import sys
from pathlib import Path

import cc3d
import medpy
import numpy as np
import surface_distance as sd
from medpy.metric import binary as mb
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


def reference_metrics(pred, gt, spacing):
    out = {"dsc": float(2 * (pred & gt).sum() / (pred.sum() + gt.sum()))}
    s = sd.compute_surface_distances(gt, pred, spacing)
    out["nsd"] = float(sd.compute_surface_dice_at_tolerance(s, 2.0))
    if not pred.any():
        return out  # medpy raises on an empty mask; DeepMind's distances are inf
    out["hd95_deepmind"] = float(sd.compute_robust_hausdorff(s, 95))
    out["asd_deepmind"] = float(np.mean(sd.compute_average_surface_distance(s)))
    d_pg = mb.__surface_distances(pred, gt, spacing, 1)
    d_gp = mb.__surface_distances(gt, pred, spacing, 1)
    out["hd95_monai"] = float(max(np.percentile(d_pg, 95), np.percentile(d_gp, 95)))
    out["hd95_medpy"] = float(mb.hd95(pred, gt, spacing))
    out["asd_union"] = float(mb.assd(pred, gt, spacing))
    out["asd_mean_of_means"] = float((mb.asd(pred, gt, spacing) + mb.asd(gt, pred, spacing)) / 2)
    out["hd"] = float(mb.hd(pred, gt, spacing))
    return out


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
    preds, clicks, metrics = {}, {}, {}
    for case in cases:
        z = np.load(Path(shared) / f"data/npz/{case}.npz", allow_pickle=True)
        gt = z["gts"] == 1
        for name, pred in perturbations(gt).items():
            key = f"{case}__{name}"
            preds[key] = pred.astype(np.uint8)
            c = official_click(pred, gt)
            clicks[key] = None if c is None else {"zyx": c[0], "label": c[1]}
            metrics[key] = reference_metrics(pred, gt, tuple(z["spacing"]))
            print(key, clicks[key], metrics[key])
    # The real multi-class case: prev_pred against gts, per class.
    z = np.load(Path(shared) / "data/npz/ct_pelvis_multi6_clicks.npz", allow_pickle=True)
    for c in range(1, 7):
        metrics[f"ct_pelvis_multi6_clicks__class{c}"] = reference_metrics(z["prev_pred"] == c, z["gts"] == c, tuple(z["spacing"]))
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
    versions = {"numpy": np.__version__, "scipy": scipy.__version__, "medpy": medpy.__version__ if hasattr(medpy, "__version__") else "0.5.2",
                "surface-distance": "0.1"}
    (HERE / "metrics.json").write_text(json.dumps({"versions": versions, "metrics": metrics}, indent=0))
    print("wrote", HERE / "preds.npz", HERE / "clicks.json")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(HERE.parents[2] / "shared"))
