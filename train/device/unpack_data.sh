#!/usr/bin/env bash
# Unpacks .dev/train.tar.xz (shared/data/train with each npz unzipped into a folder of its .npy
# members: xz packs the raw arrays a quarter smaller than the npz files are, and the working
# tree that travels to the device machine is limited to 64 MiB) into "$1"/train, each folder
# zipped back into an npz (stored, uncompressed). Used by run.sh and check.sh.
set -eu
xz -dc .dev/train.tar.xz | tar -x -C "$1"
python3 - "$1/train/npz" << 'PY'
import os, shutil, sys, zipfile
root = sys.argv[1]
for d in sorted(os.listdir(root)):
    p = os.path.join(root, d)
    if os.path.isdir(p):
        with zipfile.ZipFile(p + ".npz", "w", zipfile.ZIP_STORED) as z:
            for f in sorted(os.listdir(p)):
                z.write(os.path.join(p, f), f)
        shutil.rmtree(p)
PY
