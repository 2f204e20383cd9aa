#!/usr/bin/env bash
# segvol-rs against PyTorch on this machine, one after the other, same threads (never in CI).
#
#   PYTHON=/path/to/venv/bin/python bash bench/compare.sh
#
# PYTHON must have torch, monai, einops, numpy and safetensors (tested: torch 2.15.0 CPU,
# MONAI 1.6.1). Environment: THREADS (default: all cores), ITERS (default 3), WORK (scratch
# folder with the synthetic CT and the base-size checkpoint, kept between runs).
# Prints a table of our time, PyTorch's and the ratio; the last line is
# `encoder ratio R, decode ratio R`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
THREADS=${THREADS:-$(nproc)}
ITERS=${ITERS:-3}
WORK=${WORK:-${TMPDIR:-/tmp}/segvol-compare}
mkdir -p "$WORK"
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS

cargo build --release -q -p segvol-cli
SEG=target/release/segvol

# End-to-end is zoom-out only on both sides (--no-zoom-in): with random weights the global
# prediction covers most of the volume, so the zoom-in would slide ~160 windows over it; each
# window costs one encoder + one decode, timed above.
# Inputs: a synthetic 300x512x512 CT with its organ's box, and a base-size checkpoint (random
# values, every official key and shape) in our fast format.
[ -s "$WORK/box.txt" ] || "$PY" bench/make_synthetic_ct.py "$WORK/ct.npy" > "$WORK/box.txt"
if [ ! -s "$WORK/base.bpk" ]; then
    "$PY" bench/make_base_checkpoint.py "$WORK/base" > /dev/null
    "$SEG" convert --from "$WORK/base/model.safetensors" --to "$WORK/base.bpk" > /dev/null
fi
BOX=$(cat "$WORK/box.txt")

echo "PyTorch ($THREADS threads) ..." >&2
"$PY" bench/segvol_torch_bench.py --threads "$THREADS" --iters "$ITERS" > "$WORK/torch.txt"
/usr/bin/time -f "%e %M" -o "$WORK/torch_e2e.time" \
    "$PY" bench/segvol_torch_bench.py --threads "$THREADS" --e2e "$WORK/ct.npy" --box "$BOX" \
    > "$WORK/torch_e2e.txt"
echo "segvol-rs ($THREADS threads) ..." >&2
"$SEG" bench --backend flex --full --iters "$ITERS" > "$WORK/ours.txt"
/usr/bin/time -f "%e %M" -o "$WORK/ours_e2e.time" \
    "$SEG" segment --weights "$WORK/base.bpk" --image "$WORK/ct.npy" --box "$BOX" \
    --no-zoom-in --out "$WORK/mask.nii.gz" > "$WORK/ours_e2e.txt" 2>&1

"$PY" - "$WORK" "$THREADS" <<'PY'
import re, sys
work, threads = sys.argv[1], sys.argv[2]
def rows(path):
    return [l.strip().strip("|").split("|") for l in open(path) if l.startswith("|")]
t = {r[0].strip(): float(r[1]) for r in rows(f"{work}/torch.txt") if re.match(r"\s*[\d.]+\s*$", r[1])}
ours = [r for r in rows(f"{work}/ours.txt") if r[0].strip() == "flex"][0]
o = {"patch embedding": float(ours[1]), "one ViT block": float(ours[2]),
     "decode": float(ours[3]), "full encoder": float(ours[4])}
t["decode"] = t.pop("decode (box prompt, incl. upsample)")
te2e_s, te2e_kb = open(f"{work}/torch_e2e.time").read().split()
oe2e_s, oe2e_kb = open(f"{work}/ours_e2e.time").read().split()
o["e2e"], t["e2e"] = float(oe2e_s) * 1e3, float(te2e_s) * 1e3
print(f"| piece ({threads} threads) | segvol-rs ms | PyTorch ms | ratio |")
print("|---|---|---|---|")
for key, name in [("patch embedding", "patch embedding"), ("one ViT block", "one ViT block"),
                  ("full encoder", "full encoder"), ("decode", "per-click decode (incl. upsample)"),
                  ("e2e", "end-to-end segment 300x512x512, zoom-out (process, wall)")]:
    print(f"| {name} | {o[key]:.1f} | {t[key]:.1f} | {o[key] / t[key]:.2f} |")
print(f"peak RSS end-to-end: segvol-rs {int(oe2e_kb) / 1e6:.2f} GB, PyTorch {int(te2e_kb) / 1e6:.2f} GB")
print(f"encoder ratio {o['full encoder'] / t['full encoder']:.2f}, decode ratio {o['decode'] / t['decode']:.2f}")
PY
