#!/usr/bin/env python3
"""Runs the official CVPR 2025 evaluator (`CVPR25_iter_eval.py`, JunMa11/CVPR-MedSegFMCompetition
at commit 748e862, not vendored: pass its checkout) on a folder of cases with an external
predictor command instead of a Docker container, so its metrics.csv can be compared with
`segvol eval --data DIR --predict-cmd CMD`.

    python run_official.py --evaluator CHECKOUT --cases DIR [--gts GT_DIR] --cmd "python box_dilate.py" --out OUT

Only two things are replaced, nothing in the evaluation: `torch` (imported for
`torch.cuda.is_available()` only) by a stub that says no GPU, and `os.system` so that the
`docker container run … sh predict.sh` line runs CMD in the working directory (which holds the
evaluator's `inputs/` and `outputs/`, the folders a container mounts), and `docker image load`
/ `docker rmi` do nothing. Needs the evaluator's requirements (numpy 1.26.3, scipy 1.12.0,
pandas 2.2.1, connected-components-3d 3.12.4, tqdm, scikit-image); no GPU (its CPU EDT path).
"""
import argparse
import os
import runpy
import sys
import tempfile
import types

ap = argparse.ArgumentParser()
ap.add_argument("--evaluator", required=True, help="checkout with CVPR25_iter_eval.py and SurfaceDice.py")
ap.add_argument("--cases", required=True)
ap.add_argument("--gts", default="no-separate-gt-folder")
ap.add_argument("--cmd", required=True, help="the predictor, run in the folder holding inputs/ and outputs/")
ap.add_argument("--out", required=True)
a = ap.parse_args()

torch = types.ModuleType("torch")
torch.cuda = types.SimpleNamespace(is_available=lambda: False, empty_cache=lambda: None)
sys.modules["torch"] = torch

real_system = os.system


def system(cmd):
    if cmd.startswith("docker container run"):
        return real_system(a.cmd)
    if cmd.startswith("docker"):
        return 0
    return real_system(cmd)


os.system = system
work = tempfile.mkdtemp(prefix="official-eval-")
teams = os.path.join(work, "team_docker")
os.makedirs(teams)
open(os.path.join(teams, "external.tar.gz"), "w").close()
cases = os.path.abspath(a.cases)
gts = os.path.abspath(a.gts) if a.gts != "no-separate-gt-folder" else a.gts
out = os.path.abspath(a.out)
os.chdir(work)
sys.path.insert(0, os.path.abspath(a.evaluator))
sys.argv = ["CVPR25_iter_eval.py", "-i", cases, "-o", out, "-d", teams, "-val_gts", gts]
runpy.run_path(os.path.join(a.evaluator, "CVPR25_iter_eval.py"), run_name="__main__")
print("official metrics:", os.path.join(out, "external", "external_metrics.csv"))
