#!/usr/bin/env python3
# Issue 14 sixth pass: 256 B overwrite+fdatasync latency while another thread extends
# the same file (same), another file (other) or nothing (none) by 1 MiB every 50 ms.
# Usage: prealloc_background_probe.py {none|same|other}
import os, time, threading, sys
mode=sys.argv[1]
F='/work/bench-prealloc-F'; G='/work/bench-prealloc-G'
fd=os.open(F, os.O_RDWR|os.O_CREAT|os.O_TRUNC)
os.pwrite(fd,b'\0'*(8<<20),0); os.fdatasync(fd)
stop=False
def bg():
    tgt = fd if mode=='same' else os.open(G, os.O_RDWR|os.O_CREAT|os.O_TRUNC)
    off = 8<<20 if mode=='same' else 0
    while not stop:
        time.sleep(0.05)
        if mode=='none': continue
        os.pwrite(tgt,b'\0'*(1<<20),off); os.fdatasync(tgt); off+=1<<20
t=threading.Thread(target=bg); t.start()
ts=[]; off=0; rec=b'x'*256; end=time.time()+6
while time.time()<end:
    a=time.perf_counter(); os.pwrite(fd,rec,off); os.fdatasync(fd); ts.append(time.perf_counter()-a); off=(off+256)%(8<<20)
stop=True; t.join()
ts.sort(); n=len(ts)
print(mode, n, ' '.join('p%s=%.3f'%(q, ts[min(n-1,int(n*q/100))]*1e3) for q in (50,99,99.9)), 'max=%.3f'%(ts[-1]*1e3))
for p in (F,G):
    try: os.unlink(p)
    except: pass
