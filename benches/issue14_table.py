#!/usr/bin/env python3
"""The issue-14 table from one `benches/issue14.sh` output file.

    python3 benches/issue14_table.py benches/results/issue14-<time>.txt
    python3 benches/issue14_table.py --before BEFORE.txt AFTER.txt   # before/after

Reads the JSON lines `statefn-bench` printed (one per result) and prints a
Markdown table: each target of issue 14 with the value measured in that run,
the baseline it is compared with (measured in the same run), the ratio, and
whether the target is met. Nothing here is measured; it only reads the file.
"""

import json
import sys


def load(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("{"):
                rows.append(json.loads(line))
    return rows


def find(rows, scenario, variant, **params):
    for r in rows:
        if r.get("scenario") != scenario or r.get("variant") != variant:
            continue
        if all(r.get("params", {}).get(k) == v for k, v in params.items()):
            return r
    return None


def num(x, digits=3):
    if x is None:
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def verdict(ok):
    if ok is None:
        return "not measured"
    return "**met**" if ok else "**missed**"


def targets(rows):
    """Each target of the issue: (name, measured, baseline, ratio, met); `met`
    is None where the row is informational or was not measured."""
    t = []
    for callers in (64, 256):
        d = find(rows, "embedded", "durable", keys=1000, callers=callers) or {}
        r = d.get("p50_vs_fsync_p50")
        t.append((f"embedded durable {callers} callers: call p50 <= 1.5 x fsync p50",
                  f"p50 {num(d.get('p50_ms'))} ms", f"fsync p50 {num(d.get('fsync_p50_ms'))} ms",
                  r, None if r is None else r <= 1.5))
    d = find(rows, "embedded", "durable", keys=1000, callers=64) or {}
    r = d.get("p99_vs_fsync_p50")
    t.append(("embedded durable 64 callers: p99 <= 4 x fsync p50", f"p99 {num(d.get('p99_ms'))} ms",
              f"fsync p50 {num(d.get('fsync_p50_ms'))} ms", r, None if r is None else r <= 4))
    r = d.get("throughput_ratio_vs_in_memory")
    m = find(rows, "embedded", "in-memory", keys=1000, callers=64) or {}
    t.append(("durable / in-memory >= 0.30 at 64 callers", f"{num(d.get('throughput_per_s'))} /s",
              f"in-memory {num(m.get('throughput_per_s'))} /s", r, None if r is None else r >= 0.30))

    fs = find(rows, "http", "floor: append+fdatasync")
    fs_p50 = fs.get("p50_ms") if fs else None
    for client, variant in (("our client", "bank"), ("shared loadgen", "bank (shared loadgen)")):
        for c in (1, 128):
            floor = find(rows, "http", "floor: axum noop", callers=c)
            if client == "shared loadgen":
                # Like with like where the run has it: the floor under loadgen too.
                floor = find(rows, "http", "floor: axum noop (shared loadgen)", callers=c) or floor
            bank = find(rows, "http", variant, callers=c, keys=1000)
            if bank is None or floor is None:
                continue
            if c == 128:
                r = bank["throughput_per_s"] / floor["throughput_per_s"]
                t.append((f"HTTP C=128 ({client}): >= 60% of the axum floor's rps, p99 < 10 ms",
                          f"{num(bank['throughput_per_s'])} rps, p99 {num(bank['p99_ms'])} ms",
                          f"floor {num(floor['throughput_per_s'])} rps, p99 {num(floor['p99_ms'])} ms",
                          r, r >= 0.60 and bank["p99_ms"] < 10))
            else:
                budget = None if fs_p50 is None else floor["p50_ms"] + fs_p50 + 0.1
                t.append((f"HTTP C=1 ({client}): p50 <= floor p50 + fsync p50 + 0.1 ms",
                          f"p50 {num(bank['p50_ms'])} ms, {num(bank['throughput_per_s'])} rps",
                          f"floor p50 {num(floor['p50_ms'])} + fsync p50 {num(fs_p50)} + 0.1 = {num(budget)} ms",
                          None if budget is None else bank["p50_ms"] / budget,
                          None if budget is None else bank["p50_ms"] <= budget))

    normal = find(rows, "recovery", "healthy: normal")
    for phase in ("sync failing", "recovering", "after"):
        p = find(rows, "recovery", f"healthy: {phase}")
        if p is None or normal is None:
            continue
        r = p.get("p99_ratio_vs_normal")
        target = " (target <= 1.5x)" if phase == "recovering" else ""
        t.append((f"healthy p99 while another group is {phase}{target}",
                  f"p99 {num(p['p99_ms'])} ms, {num(p['throughput_per_s'])} calls/s, "
                  f"{p.get('samples')} calls in {num(p.get('phase_s'))} s",
                  f"normal p99 {num(normal['p99_ms'])} ms", r,
                  r <= 1.5 if phase == "recovering" and r is not None else None))
    v = find(rows, "recovery", "victim group recovery")
    if v:
        t.append((f"victim group: heal -> first answered call ({v['params'].get('victim_records')} records)",
                  f"{num(v.get('recovery_after_heal_s'))} s", "", None, None))
    reopen = find(rows, "recovery", "reopen after SIGKILL", records=1000000)
    if reopen:
        t.append(("kept: 1M-record recovery under 2 s", f"open {num(reopen.get('open_s'))} s", "",
                  None, reopen["open_s"] < 2))
    k = next((x for x in rows if x.get("scenario") == "actors" and x.get("params", {}).get("callers") == 64
              and "kameo" in x.get("variant", "")), None)
    s = next((x for x in rows if x.get("scenario") == "actors" and x.get("params", {}).get("callers") == 64
              and "statefn" in x.get("variant", "")), None)
    if k and s:
        r = k["throughput_per_s"] / s["throughput_per_s"]
        t.append(("kept: in-memory within 1.5x of kameo's per-message cost (64 callers)",
                  f"statefn {num(s['throughput_per_s'])} /s", f"kameo {num(k['throughput_per_s'])} /s",
                  r, r <= 1.5))
    return t


def main(path):
    rows = load(path)
    out = []
    out.append("## issue 14: one run (" + path + ")")
    out.append("")
    out.append("### Embedded durable, 1,000 keys (floor = raw append+fdatasync 256 B measured right before each run)")
    out.append("")
    out.append("| callers | durable calls/s | p50 ms | p99 ms | fsync p50 ms | p50 / fsync p50 | p99 / fsync p50 | invocations per fsync | fsyncs/s | in-memory calls/s | durable / in-memory |")
    out.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for callers in (1, 8, 64, 256):
        d = find(rows, "embedded", "durable", keys=1000, callers=callers)
        m = find(rows, "embedded", "in-memory", keys=1000, callers=callers)
        if d is None:
            continue
        out.append(
            f"| {callers} | {num(d.get('throughput_per_s'))} | {num(d.get('p50_ms'))} | {num(d.get('p99_ms'))} "
            f"| {num(d.get('fsync_p50_ms'))} | {num(d.get('p50_vs_fsync_p50'))} | {num(d.get('p99_vs_fsync_p50'))} "
            f"| {num(d.get('invocations_per_fsync'))} | {num(d.get('fsyncs_per_s'))} "
            f"| {num(m.get('throughput_per_s') if m else None)} | {num(d.get('throughput_ratio_vs_in_memory'))} |"
        )
    out.append("")
    out.append("### Against the targets")
    out.append("")
    out.append("| target | measured | baseline (same run) | ratio | |")
    out.append("| --- | --- | --- | ---: | --- |")
    for name, measured, baseline, r, ok in targets(rows):
        out.append(f"| {name} | {measured} | {baseline} | {num(r)} | {verdict(ok) if ok is not None else ''} |")
    out.append("")
    out.append("Plot: benches/plots/issue14/latency_vs_callers.svg")
    print("\n".join(out))


def compare(before_path, after_path):
    """Before/after of every target, from two runs of `benches/issue14.sh`
    taken back to back (e.g. `BIN_DIR=` a build of the old commit, then the new)."""
    before = {name: (measured, r, ok) for name, measured, _, r, ok in targets(load(before_path))}
    out = [f"## issue 14: before ({before_path}) / after ({after_path})", "",
           "| target | before | after | ratio before | ratio after | after |",
           "| --- | --- | --- | ---: | ---: | --- |"]
    for name, measured, _, r, ok in targets(load(after_path)):
        b_measured, b_r, _ = before.get(name, ("n/a", None, None))
        out.append(f"| {name} | {b_measured} | {measured} | {num(b_r)} | {num(r)} "
                   f"| {verdict(ok) if ok is not None else ''} |")
    print("\n".join(out))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--before":
        compare(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1])
