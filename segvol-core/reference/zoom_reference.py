#!/usr/bin/env python3
"""Window starts of MONAI 0.9.0's sliding window (the version SegVol forks), recorded for
segvol-core's `window_starts` test: writes segvol-core/tests/zoom_reference.json.

    pip install --no-deps --target /tmp/monai09 monai==0.9.0   # plus torch and numpy
    python3 segvol-core/reference/zoom_reference.py /tmp/monai09
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else "/tmp/monai09")
import monai  # noqa: E402
from monai.data.utils import dense_patch_slices  # noqa: E402
from monai.inferers.utils import _get_scan_interval  # noqa: E402

cases = []
roi = (32, 256, 256)
sizes = [(32, 256, 256), (33, 300, 257), (40, 384, 512), (64, 511, 260), (97, 256, 700), (32, 257, 1000)]
tiny = (32, 64, 64)
sizes_tiny = [(32, 64, 64), (70, 64, 65), (82, 101, 122), (33, 96, 200)]
for r, ss in [(roi, sizes), (tiny, sizes_tiny)]:
    for s in ss:
        interval = _get_scan_interval(s, r, 3, 0.5)
        slices = dense_patch_slices(s, r, interval)
        starts = [sorted({int(sl[a].start) for sl in slices}) for a in range(3)]
        order = [[int(sl[a].start) for a in range(3)] for sl in slices]
        cases.append({"size": list(s), "roi": list(r), "starts": starts, "order": order})
out = Path(__file__).resolve().parents[1] / "tests" / "zoom_reference.json"
out.write_text(json.dumps({"monai": monai.__version__, "overlap": 0.5, "cases": cases}, indent=1))
print("wrote", out, "monai", monai.__version__, len(cases), "cases")
