#!/usr/bin/env bash
# The second device call of 2026-12-04 (after train/device/run.sh, whose CUDA attempt loaded
# the toolkit's stub libcuda): the CUDA backend's parity on the tiny PyTorch fixture, its
# training throughput, then train/configs/v4-control.toml on the faster backend for the time
# left. Needs what run.sh needs, plus .dev/fixture/ (weights.safetensors, image.npy, box.npy,
# points.npy, labels.npy, box_logits.npy, box_points_logits.npy from shared/fixtures/segvol_tiny).
set -u
BUDGET_S=${BUDGET_S:-320}
FLEX_RATE=${FLEX_RATE:-30.52} # run.sh's Autodiff<Flex> bench on 16 cores, base-points, batch 16
T0=$(date +%s)
el() { echo $(($(date +%s) - T0)); }
W=/tmp/segvol-device
OUT=${OUT:-$W/out}
mkdir -p "$W" "$OUT"
xz -dc .dev/segvol.xz > "$W/segvol" && chmod +x "$W/segvol" || exit 1
S=$W/segvol
. train/device/cuda_env.sh
export SEGVOL_MALLOC=system
echo "[$(el)s] LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

F=.dev/fixture
for b in cuda flex; do
    for c in box box_points; do
        extra=()
        [ $c = box_points ] && extra=(--points $F/points.npy --labels $F/labels.npy)
        echo "[$(el)s] forward $b $c"
        timeout 120 "$S" forward --backend $b --config tiny \
            --weights $F/weights.safetensors --image $F/image.npy --box $F/box.npy "${extra[@]}" \
            --logits "$W/${b}_$c.npy" 2>&1 | tail -n 3
    done
done
python3 - "$W" "$F" << 'EOF' | tee "$OUT/parity.txt"
import sys, numpy as np
w, f = sys.argv[1:3]
for b in ("cuda", "flex"):
    for c in ("box", "box_points"):
        try:
            a = np.load(f"{w}/{b}_{c}.npy").astype(np.float64)
        except OSError as e:
            print(f"{b} {c}: no output ({e})")
            continue
        r = np.load(f"{f}/{c}_logits.npy").astype(np.float64)
        d = np.abs(a.reshape(r.shape) - r)
        agree = np.mean((a.reshape(r.shape) > 0) == (r > 0))
        print(f"{b} {c}: max |diff| {d.max():.3e}, mean {d.mean():.3e}, max |ref| {np.abs(r).max():.3f}, sign agreement {agree:.6f}")
EOF
echo "[$(el)s] data"
bash train/device/unpack_data.sh "$W" || exit 1
D=$W/train
echo "[$(el)s] bench cuda"
timeout 120 "$S" bench --train --backend cuda --data "$D" --batch 16 --threads 16 --steps 6 \
    --stage base-points > "$OUT/bench_cuda.txt" 2>&1
echo "exit $?" >> "$OUT/bench_cuda.txt"
cat "$OUT/bench_cuda.txt"
rc=$(awk -F'|' '$2 ~ /^ *16 *$/ {gsub(/ /, "", $4); print $4}' "$OUT/bench_cuda.txt" | tail -1)
read -r backend r <<< "$(python3 -c "c,f=float('${rc:-0}' or 0),$FLEX_RATE; print(*(('cuda', c) if c >= f else ('flex', f)))")"
left=$((BUDGET_S - $(el) - 60))
if [ $left -lt 90 ]; then
    echo "[$(el)s] $left s left: no control run"
    exit 0
fi
read -r n1 n2 m1 m2 <<< "$(python3 -c "
r=max(float('$r'),0.5)*0.85; t=$left
b=t*0.45; p=t*0.55
print(max(int(1.25*r*b/16),10), max(int(r*p/16),10), round(b/60,2), round(p/60,2))")"
echo "[$(el)s] control on $backend ($r samples/s): base-box $n1 steps / $m1 min, base-points $n2 steps / $m2 min"
"$S" train --config train/configs/v4-control.toml --data "$D" --out "$W/ctl" --backend "$backend" \
    --stages base-box,base-points --steps "base-box=$n1" --steps "base-points=$n2" \
    --minutes "base-box=$m1" --minutes "base-points=$m2" --no-validate 2>&1 | tail -n 20
w=$W/ctl/base-points/final.bpk
[ -f "$w" ] && "$S" convert --from "$w" --to "$OUT/control.bpk" --f16 | tail -n 1
cp "$W/ctl/log.jsonl" "$OUT/control_log.jsonl" 2> /dev/null
ls -la "$OUT"
echo "[$(el)s] end"
