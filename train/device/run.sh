#!/usr/bin/env bash
# One training run on the device machine (one GPU, 16 cores; docs/model-card.md "How it was
# trained"), from the repository root, with a release `segvol` built with `--features cuda`
# (CUDARC_CUDA_VERSION set to the machine's CUDA) and the training set beside it:
#   .dev/segvol.xz   the binary, xz-compressed
#   .dev/train.tar.xz  shared/data/train (manifest.json + npz/), each npz unzipped into a folder
#                      of its .npy members (xz packs the raw arrays a quarter smaller than the
#                      npz files are: the working tree that travels is limited to 64 MiB)
# It times `bench --train` on Autodiff<Cuda> and on Autodiff<Flex> over every core (batch 16,
# one lane per sample), trains train/configs/v4.toml on the faster one with the steps sized to
# the time left (BUDGET_S seconds from the start for the whole script), and leaves the f16
# weights, the log and the benchmark tables in $OUT.
#
# Made here (the binary's CUDA bindings follow CUDARC_CUDA_VERSION, since no nvcc is here):
#   CUDARC_CUDA_VERSION=13000 cargo build --release -p segvol-cli --features cuda
#   strip -o /tmp/segvol target/release/segvol && xz -9e -c /tmp/segvol > .dev/segvol.xz
#   (each shared/data/train/npz/X.npz unzipped into a folder X/, manifest.json beside npz/)
#   tar -cf - train | xz -9 > .dev/train.tar.xz
# and sent with `carry: [".dev"]` (`echo /.dev/ >> .git/info/exclude` first).
set -u
BUDGET_S=${BUDGET_S:-540}
T0=$(date +%s)
el() { echo $(($(date +%s) - T0)); }
W=/tmp/segvol-device
OUT=${OUT:-$W/out}
mkdir -p "$W" "$OUT"
bash train/device/unpack_data.sh "$W" || exit 1
xz -dc .dev/segvol.xz > "$W/segvol" && chmod +x "$W/segvol" || exit 1
S=$W/segvol
D=$W/train
. train/device/cuda_env.sh
echo "[$(el)s] LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
nvidia-smi -L
echo "cores: $(nproc)"
# glibc's per-thread arenas: one arena (the default of train, d345c3a) was measured with two
# lanes; sixteen lanes on one arena's lock is untried, so this run keeps glibc's own setting.
export SEGVOL_MALLOC=${SEGVOL_MALLOC:-system}

rate() { # the samples/s (overall) of the 16-thread row of a bench table, or 0
    awk -F'|' '$2 ~ /^ *16 *$/ {gsub(/ /, "", $4); print $4; found=1} END {if (!found) print 0}' "$1" | tail -1
}
echo "[$(el)s] bench cuda"
timeout 150 "$S" bench --train --backend cuda --data "$D" --batch 16 --threads 16 --steps 6 \
    --stage base-points > "$OUT/bench_cuda.txt" 2>&1
echo "exit $?" >> "$OUT/bench_cuda.txt"
cat "$OUT/bench_cuda.txt"
echo "[$(el)s] bench flex"
timeout 80 "$S" bench --train --backend flex --data "$D" --batch 16 --threads 16 --steps 4 \
    --stage base-points > "$OUT/bench_flex.txt" 2>&1
echo "exit $?" >> "$OUT/bench_flex.txt"
cat "$OUT/bench_flex.txt"
rc=$(rate "$OUT/bench_cuda.txt")
rf=$(rate "$OUT/bench_flex.txt")
read -r backend r <<< "$(python3 -c "c,f=float('$rc' or 0),float('$rf' or 0); print(*(('cuda', c) if c >= f else ('flex', f)))")"
left=$((BUDGET_S - $(el) - 75)) # the validations at the stages' ends, the convert, the copies
read -r n1 n2 m1 m2 <<< "$(python3 -c "
r=max(float('$r'),0.5)*0.85; t=max($left,60)
b=t*0.45; p=t*0.55
# the box stage decodes once per sample, the points stage up to six times: ~1.25x faster
print(max(int(1.25*r*b/16),10), max(int(r*p/16),10), round(b/60,2), round(p/60,2))")"
echo "[$(el)s] backend $backend ($r samples/s): base-box $n1 steps / $m1 min, base-points $n2 steps / $m2 min"
"$S" train --config train/configs/v4.toml --data "$D" --out "$W/run" --backend "$backend" \
    --stages base-box,base-points --steps "base-box=$n1" --steps "base-points=$n2" \
    --minutes "base-box=$m1" --minutes "base-points=$m2" --no-validate 2>&1 | tail -n 40
echo "[$(el)s] training done"
w=$W/run/base-points/final.bpk
[ -f "$w" ] || w=$(ls -t "$W"/run/*/final.bpk "$W"/run/*/*.bpk 2> /dev/null | head -1)
echo "weights: $w"
[ -n "$w" ] && "$S" convert --from "$w" --to "$OUT/segvol-small.bpk" --f16
cp "$W/run/log.jsonl" "$OUT/" 2> /dev/null
cp "$W/run/config.toml" "$OUT/" 2> /dev/null
ls -la "$OUT"
echo "[$(el)s] end"
