#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600), one after the other, on one core;
# copies new crash inputs to fuzz/regressions/<target>/. Nightly + cargo-fuzz needed.
set -u
cd "$(dirname "$0")/.."
secs=${1:-600}
for t in nifti npz npy pickle prompt dicom; do
  mkdir -p fuzz/corpus/$t
  cargo +nightly fuzz run -O $t fuzz/corpus/$t fuzz/seeds/$t -- -max_total_time=$secs -rss_limit_mb=4096 -max_len=200000 > fuzz/log-$t.txt 2>&1
  echo "$t exit $?: $(grep -E '^#[0-9]+.*DONE|Done [0-9]+ runs' fuzz/log-$t.txt | tail -1)"
done
