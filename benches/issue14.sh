#!/usr/bin/env bash
# Every target of issue 14 in one unattended run, then its table.
#
#   benches/issue14.sh [OUT]      # OUT defaults to benches/results/issue14-<UTC time>.txt
#
# Environment (all optional):
#   DATA_DIR      where durable runs write: a directory on the disk under test,
#                 never a tmpfs (default /work/bench-issue14; wiped per run)
#   DURATION      measured seconds per run (default 5), WARMUP (default 1)
#   LOADGEN       the shared closed-loop load generator (default
#                 /work/shared/tools/loadgen/target/release/loadgen, built
#                 here if its sources are there; its rows are skipped without it)
#   SKIP_BUILD=1  use the binaries already built
#   BIN_DIR       where statefn-bench and bank are (default $CARGO_TARGET_DIR/release);
#                 with it nothing is built. A before/after table of two commits:
#                   BIN_DIR=/tmp/old benches/issue14.sh before.txt   # old binaries copied there
#                   benches/issue14.sh after.txt
#                   python3 benches/issue14_table.py --before before.txt after.txt
#   CARGO_TARGET_DIR  as cargo uses it (default ./target)
#
# What it runs, each scenario once, one after the other (about 5 minutes of
# measuring with the defaults, plus the release build if needed):
#   1. embedded: 1,000 keys, 1/8/64/256 callers, in-memory then durable, a raw
#      fdatasync floor measured right before each durable run, --diagnose
#      (invocations per fsync, fsyncs per second, cores busy per thread);
#   2. actors: statefn in-memory vs kameo at 64 callers (kept target);
#   3. http: the bank at C=1 and C=128 against the no-op axum floor, with our
#      client and the shared loadgen;
#   4. recovery: reopen after SIGKILL with 1M log records (kept target), and
#      healthy-shard latency while another log group replays 1M records;
#   5. the table (stdout and OUT) and the plots in benches/plots/issue14/ (latency_vs_callers.svg:
#      call p50/p99 against callers with the fsync floor).
# Every line of output, JSON lines included, goes to OUT; the table is
# computed from OUT's JSON lines by benches/issue14_table.py.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-benches/results/issue14-$(date -u +%Y-%m-%dT%H%M).txt}
DATA_DIR=${DATA_DIR:-/work/bench-issue14}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
LOADGEN_SRC=/work/shared/tools/loadgen
LOADGEN=${LOADGEN:-$LOADGEN_SRC/target/release/loadgen}
TARGET=${CARGO_TARGET_DIR:-target}
BIN_DIR=${BIN_DIR:-}
B=${BIN_DIR:-$TARGET/release}/statefn-bench

if [ "${SKIP_BUILD:-0}" != 1 ] && [ -z "$BIN_DIR" ]; then
  cargo build --release -p statefn-benches --bin statefn-bench
  cargo build --release -p statefn-examples --bin bank
  if [ ! -x "$LOADGEN" ] && [ -f "$LOADGEN_SRC/Cargo.toml" ]; then
    (cd "$LOADGEN_SRC" && cargo build --release) || echo "loadgen did not build: its rows are skipped"
  fi
fi
mkdir -p "$DATA_DIR" "$(dirname "$OUT")"
: > "$OUT"
W=(--duration "$DURATION" --warmup "$WARMUP" --data-dir "$DATA_DIR")
step() {
  echo "# $(date -u +%H:%M:%S) $*" | tee -a "$OUT"
  echo "# uptime: $(uptime)" | tee -a "$OUT"
  "$@" 2>&1 | tee -a "$OUT"
}
started=$(date +%s)
{
  echo "# issue 14 run, $(date -u), git $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty'), binaries ${BIN_DIR:-of this tree}"
  echo "# $(nproc) cores; $(uname -r); data dir $DATA_DIR ($(df -T "$DATA_DIR" | awk 'NR==2 {print $1, $2}'))"
} | tee -a "$OUT"

step "$B" embedded "${W[@]}" --keys 1000 --callers 1,8,64,256 --diagnose
step "$B" actors --duration "$DURATION" --warmup "$WARMUP" --callers 64
if [ -x "$LOADGEN" ]; then
  step "$B" http "${W[@]}" --callers 1,128 --loadgen "$LOADGEN"
else
  step "$B" http "${W[@]}" --callers 1,128
fi
step "$B" recovery "${W[@]}" --records 1000000 --victim-records 1000000

echo "# measured in $(( $(date +%s) - started )) s; uptime: $(uptime)" | tee -a "$OUT"
"$B" plot --input "$OUT" --out benches/plots/issue14 | tee -a "$OUT"
python3 benches/issue14_table.py "$OUT" | tee -a "$OUT"
echo "results: $OUT"
