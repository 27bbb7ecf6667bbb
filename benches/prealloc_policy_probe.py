#!/usr/bin/env python3
# Issue 14 sixth pass: per-commit fdatasync latency of append, inline preallocation
# (the WAL policy: chunks from 64 KiB doubling to MAX) and an ideal pre-zeroed file.
# Usage: prealloc_policy_probe.py {append|prealloc|ideal} COMMITS BYTES [MAX]
import os, time, sys
N=int(sys.argv[2]); W=int(sys.argv[3]); mode=sys.argv[1]; MAX=int(sys.argv[4]) if len(sys.argv)>4 else 4<<20
p='/work/bench-prealloc/probe-'+mode
fd=os.open(p, os.O_RDWR|os.O_CREAT|os.O_TRUNC)
rec=b'\xa5'*W; used=0; alloc=0; ts=[]; ext=[]
if mode=='ideal':
    os.pwrite(fd,b'\0'*(N*W+W),0); os.fsync(fd); alloc=N*W+W
for i in range(N):
    t=time.perf_counter()
    os.pwrite(fd,rec,used); used+=W
    crossed=False
    if mode=='prealloc' and used>alloc:
        chunk=max(64<<10,min(MAX,alloc)); tgt=used+chunk
        os.pwrite(fd,b'\0'*(tgt-used),used); alloc=tgt; crossed=True
    os.fdatasync(fd)
    d=(time.perf_counter()-t)*1e3; ts.append(d)
    if crossed: ext.append(d)
os.close(fd); os.unlink(p)
ts.sort(); n=len(ts)
q=lambda x: ts[min(n-1,int(n*x))]
print('%-8s W=%d N=%d p50=%.3f p90=%.3f p99=%.3f p999=%.3f max=%.3f mean=%.3f  extensions=%d ext_mean=%.3f ext_max=%.3f'%(mode,W,N,q(.5),q(.9),q(.99),q(.999),ts[-1],sum(ts)/n,len(ext),(sum(ext)/len(ext) if ext else 0),(max(ext) if ext else 0)))
