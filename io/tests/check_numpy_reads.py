#!/usr/bin/env python3
"""Checks that numpy reads the .npz files segvol-io writes into the same Python structures as
the originals (run where numpy is installed; not in CI):

    mkdir -p /tmp/segvol-npz && SEGVOL_IO_OUT=/tmp/segvol-npz \
        cargo test -p segvol-io --test shared_data npz_round_trip
    python3 io/tests/check_numpy_reads.py /tmp/segvol-npz ../shared

Compares keys (and their order), dtypes, shapes, values, and for object arrays the Python
types of every leaf (dict / list / str / None / numpy.int64).
"""
import sys
from pathlib import Path

import numpy as np


def same(a, b, where):
    assert type(a) is type(b), f"{where}: {type(a)} vs {type(b)}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} vs {list(b)}"
        for k in a:
            same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths"
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        if a.dtype == object:
            for i, (x, y) in enumerate(zip(a.ravel(), b.ravel())):
                same(x, y, f"{where}.flat[{i}]")
        else:
            assert np.array_equal(a, b), f"{where}: values differ"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def main(out_dir, shared):
    originals = {p.name: p for p in list(Path(shared, "data/npz").glob("*.npz")) + list(Path(shared, "data/tiny").glob("*.npz"))}
    files = sorted(Path(out_dir).glob("*.npz"))
    assert files, f"no .npz files in {out_dir}"
    for ours in files:
        a = np.load(originals[ours.name], allow_pickle=True)
        b = np.load(ours, allow_pickle=True)
        assert a.files == b.files, f"{ours.name}: keys {a.files} vs {b.files}"
        for k in a.files:
            same(a[k], b[k], f"{ours.name}:{k}")
        print(f"ok  {ours.name}: {', '.join(f'{k} {b[k].dtype}{b[k].shape}' for k in b.files)}")
    print(f"numpy {np.__version__} reads all {len(files)} files exactly as the originals")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "../shared")
