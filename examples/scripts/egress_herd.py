"""Caught-up egress long-pollers against a busy log: the cost of a wake-up.

Starts the bank binary given as argv[1] on a free port, fills the `transfers`
egress log with 150 records, parks argv[2] long-pollers on the empty log `a`
(which sorts before `transfers`), then times argv[3] transfers and the bank's
CPU time meanwhile. Every transfer appends to `transfers`, which wakes every
poller. Prints one JSON line. Run it on two builds of the bank, alternating,
and compare the ratios (BENCHMARKS.md, "egress long-poll wake-ups").

    python3 examples/scripts/egress_herd.py target/debug/bank 200 300
"""
import http.client, json, os, subprocess, sys, tempfile, threading, time
binary, pollers, transfers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
d = tempfile.mkdtemp()
p = subprocess.Popen([binary, "--data-dir", d, "--listen", "127.0.0.1:0", "--max-connections", "1000"],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "error"})
addr = p.stdout.readline().decode().strip().split("http://")[1]
host, port = addr.split(":")
def post(c, path, body):
    c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse(); r.read(); assert r.status == 200, r.status
c = http.client.HTTPConnection(host, int(port))
post(c, "/v1/Account/x/deposit", {"amount": 10**9})
for _ in range(150):  # rows after log "a" in key order
    post(c, "/v1/Account/x/transfer", {"to": "y", "amount": 1})
stop = False
def poll():
    pc = http.client.HTTPConnection(host, int(port))
    while not stop:
        pc.request("GET", "/v1/egress/a?from=0&limit=100&wait=60s")
        r = pc.getresponse(); r.read()
ts = [threading.Thread(target=poll, daemon=True) for _ in range(pollers)]
for t in ts: t.start()
time.sleep(2)
def cpu():
    f = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
c0, t0 = cpu(), time.time()
for _ in range(transfers):
    post(c, "/v1/Account/x/transfer", {"to": "y", "amount": 1})
t1, c1 = time.time(), cpu()
print(json.dumps({"binary": os.path.basename(binary), "pollers": pollers, "transfers": transfers,
                  "wall_s": round(t1 - t0, 2), "bank_cpu_s": round(c1 - c0, 2)}))
stop = True
p.terminate(); p.wait(timeout=90)
