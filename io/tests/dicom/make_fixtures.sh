#!/usr/bin/env bash
# Regenerates io/tests/dicom/fixtures/ (small series for `cargo test`) from the shared tiny
# CT patch, with make_series.py (pydicom 3.0.2, nibabel 5.4.2, numpy; see .ci/run's venv).
#   PYTHON=/path/to/venv/bin/python bash io/tests/dicom/make_fixtures.sh ../shared
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
shared="${1:-$here/../../../../shared}"
py="${PYTHON:-python3}"
src="$shared/data/tiny/ct_patch_img.nii.gz"
out="$here/fixtures"
rm -rf "$out"
mkdir -p "$out"
"$py" "$here/make_series.py" --nifti "$src" --out "$out/oblique" --oblique --shuffle --rescale \
    --write-affine "$out/oblique.affine.txt"
"$py" "$here/make_series.py" --nifti "$src" --out "$out/enhanced" --multiframe --oblique
"$py" "$here/make_series.py" --nifti "$src" --out "$out/rle" --compress rle \
    --write-affine "$out/axial.affine.txt"
"$py" "$here/make_series.py" --nifti "$src" --out "$out/tilt" --tilt
