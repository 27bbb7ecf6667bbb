#!/usr/bin/env bash
# Instructions and allocator calls per HTTP request, load-independent: one
# server under callgrind, N requests over one keep-alive connection (C=1).
#
#   benches/http_callgrind.sh bank|noop [BINARY] [N_SHORT] [N_LONG]
#
# Runs the server twice (N_SHORT, default 300, and N_LONG, default 1500,
# `POST /v1/Account/a{i}/deposit` for the bank, `POST /noop` for the floor),
# each with a fresh data dir, and prints per request = (long - short) /
# (N_LONG - N_SHORT): all instructions, the same without the clock functions
# (quanta's calibration, clock_gettime: wall-clock work that valgrind's
# slowness turns into instructions), and the calls of malloc and free.
# Out files stay in $OUT_DIR (default /tmp/http-callgrind) for
# `callgrind_annotate`.
#
# CONC=128 sends the requests over 128 keep-alive connections at once
# (asyncio, each connection closed-loop, N split evenly), as the C=128
# benchmark does: commits are then shared by many requests, and the HTTP
# path is most of each request's cost. N_SHORT and N_LONG should be
# multiples of CONC (e.g. 1280 and 5120). The accounts are a{i % 1000}, as
# `statefn-bench http` uses 1,000 keys (at C=1 every request has its own).
# Under valgrind the threads take turns, so a commit holds fewer requests
# than on the machine (~4.5 instead of ~30): the commit's share per request
# is overstated, the HTTP path's is not. The floor does not read the body,
# so use CONC only with `bank`.
set -euo pipefail
cd "$(dirname "$0")/.."
KIND=${1:?bank or noop}
TARGET=${CARGO_TARGET_DIR:-target}
case $KIND in
  bank) BIN=${2:-$TARGET/release/bank} ;;
  noop) BIN=${2:-$TARGET/release/statefn-bench} ;;
  *) echo "bank or noop" >&2; exit 2 ;;
esac
SHORT=${3:-300}
LONG=${4:-1500}
OUT_DIR=${OUT_DIR:-/tmp/http-callgrind}
CONC=${CONC:-1}
mkdir -p "$OUT_DIR"

run() { # $1 = requests; prints the callgrind out file
  local n=$1
  local out="$OUT_DIR/$KIND-c$CONC-$n.out" data="$OUT_DIR/data-$KIND-$n" log="$OUT_DIR/$KIND-c$CONC-$n.log"
  rm -rf "$data" "$out"
  local args
  if [ "$KIND" = bank ]; then
    args=(--data-dir "$data" --listen 127.0.0.1:0)
  else
    args=(serve-noop --listen 127.0.0.1:0)
  fi
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" "${args[@]}" >"$log" 2>"$log.err" &
  local pid=$!
  local addr=""
  for _ in $(seq 600); do
    addr=$(sed -n 's#^listening on http://##p' "$log" | head -1)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { kill "$pid"; echo "no announcement" >&2; exit 1; }
  if [ "$CONC" -gt 1 ]; then
    python3 - "$addr" "$n" "$CONC" <<'PY'
import asyncio, sys
host, port = sys.argv[1].rsplit(":", 1)
n, conc = int(sys.argv[2]), int(sys.argv[3])
body = b'{"amount": 1}'

async def connection(c):
    reader, writer = await asyncio.open_connection(host, int(port))
    for i in range(c, n, conc):
        writer.write((f"POST /v1/Account/a{i % 1000}/deposit HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                      ).encode() + body)
        status = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        reply = await reader.readexactly(length)
        if b" 200 " not in status:
            sys.exit(f"a{i}: {status!r} {reply!r}")
    writer.close()

async def main():
    await asyncio.gather(*(connection(c) for c in range(conc)))

asyncio.run(main())
PY
  else
  python3 - "$addr" "$n" "$KIND" <<'PY'
import http.client, sys
host, port = sys.argv[1].rsplit(":", 1)
n, kind = int(sys.argv[2]), sys.argv[3]
c = http.client.HTTPConnection(host, int(port))
headers = {"Content-Type": "application/json", "Host": "127.0.0.1"}
reconnects = 0
for i in range(n):
    path = f"/v1/Account/a{i}/deposit" if kind == "bank" else "/noop"
    for attempt in range(3):
        try:
            c.request("POST", path, body=b'{"amount": 1}', headers=headers)
            r = c.getresponse()
            body = r.read()
            break
        except (ConnectionError, http.client.RemoteDisconnected):
            # The floor does not read the body: hyper then sometimes closes
            # the connection after answering. Reconnect and send again.
            reconnects += 1
            c.close()
    if r.status != 200:
        sys.exit(f"{path}: {r.status} {body!r}")
c.close()
if reconnects:
    print(f"{reconnects} reconnections in {n} requests", file=sys.stderr)
PY
  fi
  kill -TERM "$pid"
  wait "$pid" || true
  rm -rf "$data"
  echo "$out"
}

# Exclusive instructions summed over all functions, and with the clock
# functions left out; calls of malloc and free (any allocator's names).
summary() {
  callgrind_annotate --inclusive=no --auto=no --threshold=100 "$1" 2>/dev/null | python3 -c '
import re, sys
total = clock = 0
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+) \([^)]*\)\s+(\S.*)$", line)
    if not m or "PROGRAM TOTALS" in line: continue
    ir = int(m.group(1).replace(",", ""))
    total += ir
    if re.search(r"quanta|clock_gettime|Timespec|vdso", m.group(2)): clock += ir
print(total, total - clock)'
}
calls() { # calls of functions named exactly $2 in $1
  python3 - "$1" "$2" <<'PY'
import re, sys
path, names = sys.argv[1], sys.argv[2].split(",")
ids, count, target = {}, 0, False
for line in open(path, errors="replace"):
    m = re.match(r"(c?)fn=\((\d+)\)(?: (.*))?", line)
    if m:
        if m.group(3): ids[m.group(2)] = m.group(3).strip()
        target = m.group(1) == "c" and ids.get(m.group(2)) in names
        continue
    m = re.match(r"calls=(\d+)", line)
    if m and target:
        count += int(m.group(1))
print(count)
PY
}

s=$(run "$SHORT"); l=$(run "$LONG")
read -r st sn < <(summary "$s"); read -r lt ln < <(summary "$l")
d=$((LONG - SHORT))
ms=$(calls "$s" __rustc::__rust_alloc,__rustc::__rust_alloc_zeroed); ml=$(calls "$l" __rustc::__rust_alloc,__rustc::__rust_alloc_zeroed)
fs=$(calls "$s" __rustc::__rust_dealloc); fl=$(calls "$l" __rustc::__rust_dealloc)
rs=$(calls "$s" __rustc::__rust_realloc); rl=$(calls "$l" __rustc::__rust_realloc)
echo "$KIND $BIN: per request over $d requests, $CONC connection(s)"
echo "  instructions:           $(( (lt - st) / d ))  (totals $st, $lt)"
echo "  without clock functions: $(( (ln - sn) / d ))"
echo "  Rust allocations: $(( (ml - ms) / d ))  deallocations: $(( (fl - fs) / d ))  reallocations: $(( (rl - rs) / d ))"
