#!/usr/bin/env python3
"""The issue-14 table from one `benches/issue14.sh` output file.

    python3 benches/issue14_table.py benches/results/issue14-<time>.txt

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

    for callers in (64, 256):
        d = find(rows, "embedded", "durable", keys=1000, callers=callers)
        r = d.get("p50_vs_fsync_p50") if d else None
        out.append(
            f"| embedded durable {callers} callers: call p50 <= 1.5 x fsync p50 "
            f"| p50 {num(d.get('p50_ms') if d else None)} ms "
            f"| fsync p50 {num(d.get('fsync_p50_ms') if d else None)} ms | {num(r)} | {verdict(None if r is None else r <= 1.5)} |"
        )
    d = find(rows, "embedded", "durable", keys=1000, callers=64)
    r = d.get("p99_vs_fsync_p50") if d else None
    out.append(
        f"| embedded durable 64 callers: p99 <= 4 x fsync p50 | p99 {num(d.get('p99_ms') if d else None)} ms "
        f"| fsync p50 {num(d.get('fsync_p50_ms') if d else None)} ms | {num(r)} | {verdict(None if r is None else r <= 4)} |"
    )
    r = d.get("throughput_ratio_vs_in_memory") if d else None
    m = find(rows, "embedded", "in-memory", keys=1000, callers=64)
    out.append(
        f"| durable / in-memory >= 0.30 at 64 callers | {num(d.get('throughput_per_s') if d else None)} /s "
        f"| in-memory {num(m.get('throughput_per_s') if m else None)} /s | {num(r)} | {verdict(None if r is None else r >= 0.30)} |"
    )

    fs = find(rows, "http", "floor: append+fdatasync")
    fs_p50 = fs.get("p50_ms") if fs else None
    for client, variant in (("our client", "bank"), ("shared loadgen", None)):
        for c in (1, 128):
            floor = find(rows, "http", "floor: axum noop", callers=c)
            if variant:
                bank = find(rows, "http", variant, callers=c, keys=1000)
            else:
                bank = next((x for x in rows if x.get("scenario") == "http"
                             and "loadgen" in x.get("variant", "")
                             and x.get("params", {}).get("callers") == c), None)
            if bank is None or floor is None:
                continue
            if c == 128:
                r = bank["throughput_per_s"] / floor["throughput_per_s"]
                ok = r >= 0.60 and bank["p99_ms"] < 10
                out.append(
                    f"| HTTP C=128 ({client}): >= 60% of the axum floor's rps, p99 < 10 ms "
                    f"| {num(bank['throughput_per_s'])} rps, p99 {num(bank['p99_ms'])} ms "
                    f"| floor {num(floor['throughput_per_s'])} rps, p99 {num(floor['p99_ms'])} ms | {num(r)} | {verdict(ok)} |"
                )
            else:
                budget = None if fs_p50 is None else floor["p50_ms"] + fs_p50 + 0.1
                ok = None if budget is None else bank["p50_ms"] <= budget
                out.append(
                    f"| HTTP C=1 ({client}): p50 <= floor p50 + fsync p50 + 0.1 ms "
                    f"| p50 {num(bank['p50_ms'])} ms, {num(bank['throughput_per_s'])} rps "
                    f"| floor p50 {num(floor['p50_ms'])} + fsync p50 {num(fs_p50)} + 0.1 = {num(budget)} ms "
                    f"| {num(None if budget is None else bank['p50_ms'] / budget)} | {verdict(ok)} |"
                )

    normal = find(rows, "recovery", "healthy: normal")
    for phase in ("sync failing", "recovering", "after"):
        p = find(rows, "recovery", f"healthy: {phase}")
        if p is None or normal is None:
            continue
        r = p.get("p99_ratio_vs_normal")
        target = " (target <= 1.5x)" if phase == "recovering" else ""
        out.append(
            f"| healthy p99 while another group is {phase}{target} | p99 {num(p['p99_ms'])} ms, "
            f"{num(p['throughput_per_s'])} calls/s, {p.get('samples')} calls in {num(p.get('phase_s'))} s "
            f"| normal p99 {num(normal['p99_ms'])} ms | {num(r)} "
            f"| {verdict(r <= 1.5) if phase == 'recovering' and r is not None else ''} |"
        )
    v = find(rows, "recovery", "victim group recovery")
    if v:
        out.append(
            f"| victim group: heal -> first answered call ({v['params'].get('victim_records')} records) "
            f"| {num(v.get('recovery_after_heal_s'))} s | | | |"
        )
    reopen = find(rows, "recovery", "reopen after SIGKILL", records=1000000)
    if reopen:
        out.append(
            f"| kept: 1M-record recovery under 2 s | open {num(reopen.get('open_s'))} s | | | {verdict(reopen['open_s'] < 2)} |"
        )
    k = next((x for x in rows if x.get("scenario") == "actors" and x.get("params", {}).get("callers") == 64
              and "kameo" in x.get("variant", "")), None)
    s = next((x for x in rows if x.get("scenario") == "actors" and x.get("params", {}).get("callers") == 64
              and "statefn" in x.get("variant", "")), None)
    if k and s:
        r = k["throughput_per_s"] / s["throughput_per_s"]
        out.append(
            f"| kept: in-memory within 1.5x of kameo's per-message cost (64 callers) | statefn {num(s['throughput_per_s'])} /s "
            f"| kameo {num(k['throughput_per_s'])} /s | {num(r)} | {verdict(r <= 1.5)} |"
        )
    out.append("")
    out.append("Plot: benches/plots/issue14/latency_vs_callers.svg")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
