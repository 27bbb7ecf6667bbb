#!/usr/bin/env python3
"""Summarises benches/prealloc_ab.sh output: one line per durable run."""
import json,sys
side=None
rows=[]
for line in open(sys.argv[1]):
    if line.startswith('==='):
        f=line.split(); side=(f[3],f[2]); continue
    if not line.startswith('{'): continue
    r=json.loads(line)
    if r.get('variant')!='durable': continue
    rows.append((side[0],side[1],r['params']['callers'],r['throughput_per_s'],r['p50_ms'],r['p99_ms'],r['p999_ms'],r.get('commit_sync_ms'),r.get('fsync_p50_ms'),r.get('overwrite_fsync_p50_ms'),r.get('invocations_per_fsync')))
print('side round callers calls/s p50 p99 p999 commit_sync_ms fsync_p50(append) overwrite_fsync_p50 inv/fsync')
for r in sorted(rows,key=lambda r:(r[2],r[0],r[1])):
    print(' '.join(str(x) for x in r))
