#!/usr/bin/env bash
# A/B of durable embedded latency between two statefn-bench binaries,
# alternating, 3 rounds (issue 14, sixth pass: pre-zeroed WAL segments).
#   MAIN=/path/to/baseline/statefn-bench NEW=target/release/statefn-bench \
#   DATA_DIR=/work/bench-prealloc EXTRA=--diagnose OUT=ab.txt benches/prealloc_ab.sh
# Summarise with benches/prealloc_summary.py OUT.
set -u
MAIN=${MAIN:?the baseline statefn-bench binary}
NEW=${NEW:-target/release/statefn-bench}
DATA_DIR=${DATA_DIR:-/work/bench-prealloc}
OUT=${OUT:-prealloc-ab.txt}
EXTRA=${EXTRA:---diagnose}
for round in 1 2 3; do
  for side in main new; do
    bin=$MAIN; [ "$side" = new ] && bin=$NEW
    echo "=== round $round $side $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)" >> "$OUT"
    # shellcheck disable=SC2086
    "$bin" embedded --keys 1000 --callers 1,64 --mode durable --duration 4 --warmup 1 \
      --data-dir "$DATA_DIR" $EXTRA >> "$OUT" 2>/dev/null
  done
done
