#!/usr/bin/env python3
"""Compares two metrics.csv files (ours, the official evaluator's) case by case: the largest
absolute difference of every metric column; running times are listed, not compared.

    python compare.py OURS.csv OFFICIAL.csv
"""
import csv
import sys


def load(p):
    with open(p) as f:
        return {r["CaseName"]: r for r in csv.DictReader(f)}


ours, ref = load(sys.argv[1]), load(sys.argv[2])
assert sorted(ours) == sorted(ref), (sorted(ours), sorted(ref))
cols = [c for c in next(iter(ref.values())) if c != "CaseName" and "RunningTime" not in c]
worst = 0.0
print(f"{len(ref)} cases")
for c in cols:
    d = max(abs(float(ours[k][c]) - float(ref[k][c])) for k in ref)
    worst = max(worst, d)
    print(f"{c:>20}: max |ours - official| = {d:.3g}")
for k in sorted(ref):
    print(f"{k:>32}: DSC_AUC ours {float(ours[k]['DSC_AUC']):.6f} official {float(ref[k]['DSC_AUC']):.6f}"
          f"  time/case ours {float(ours[k]['TotalRunningTime']):.2f} s official {float(ref[k]['TotalRunningTime']):.2f} s")
print(f"largest difference over all metric columns: {worst:.3g}")
