#!/bin/sh
# CVPR 2025 interactive 3-D segmentation: one step for every case in inputs/ (docs/challenge.md).
exec /usr/local/bin/segvol predict --input-dir ./inputs --output-dir ./outputs "$@"
