#!/usr/bin/env python3
"""VictoriaMetrics' CPU per imported row, JSON lines against the Prometheus
text format, on the rows ward writes (nine per device and period: six RTT
statistics, loss, sent, up; four device labels).

Starts its own `victoria-metrics` (Debian package) on a free loopback port
in a temporary directory, imports DEVICES devices' rows in POSTs of 10,000
gzip rows as ward's writer does (bodies made before the clock starts), and
reads VictoriaMetrics' own CPU time (utime + stime from /proc) around each
format: round 0 creates the series, rounds 1-5 add to existing ones
(the formats alternate which goes first). The
two formats use distinct series. Figures go to docs/BENCHMARKS.md.

    python3 benches/scripts/vm_import_formats.py [DEVICES]
"""
import gzip
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

DEVICES = int(sys.argv[1]) if len(sys.argv) > 1 else 50000
ROWS_PER_POST = 10000
port = free_port()
data = tempfile.mkdtemp(prefix="vmfmt-")
vm = subprocess.Popen(["victoria-metrics", f"-storageDataPath={data}", f"-httpListenAddr=127.0.0.1:{port}", "-loggerLevel=ERROR"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
base = f"http://127.0.0.1:{port}"
for _ in range(100):
    try:
        urllib.request.urlopen(base + "/health").read(); break
    except Exception: time.sleep(0.1)

def cpu():
    f = open(f"/proc/{vm.pid}/stat").read().split(")")[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

STATS = ["min", "avg", "max", "jitter", "p50", "p90"]
def rows(prefix, at_ms):
    for d in range(DEVICES):
        labels = {"device": f"{prefix}-{d}", "address": f"2001:2::{d:x}", "site": f"site-{d//200}", "agent": f"agent-{d//200}"}
        for s in STATS:
            yield "ward_probe_rtt_seconds", dict(labels, stat=s), 0.0012 + d * 1e-9, at_ms
        yield "ward_probe_loss_ratio", labels, 0.0, at_ms
        yield "ward_probe_sent_total", labels, 10.0 * (at_ms // 10000), at_ms
        yield "ward_device_up", labels, 1.0, at_ms

def json_line(name, labels, value, at):
    m = dict(labels); m["__name__"] = name
    return json.dumps({"metric": m, "values": [value], "timestamps": [at]}, separators=(",", ":"))

def prom_line(name, labels, value, at):
    l = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{l}}} {value} {at}"

def bodies(fmt, prefix, at_ms):
    enc = json_line if fmt == "json" else prom_line
    chunk = []
    for r in rows(prefix, at_ms):
        chunk.append(enc(*r))
        if len(chunk) == ROWS_PER_POST:
            yield gzip.compress(("\n".join(chunk) + "\n").encode(), 1); chunk = []
    if chunk: yield gzip.compress(("\n".join(chunk) + "\n").encode(), 1)

URL = {"json": "/api/v1/import", "prom": "/api/v1/import/prometheus"}
ROUNDS = 6
now = int(time.time() * 1000) - 3600_000
per_row = {"json": [], "prom": []}
try:
    for rnd in range(ROUNDS):
        # Alternate which format goes first, so neither always follows the other.
        for fmt in (["json", "prom"] if rnd % 2 == 0 else ["prom", "json"]):
            posts = list(bodies(fmt, f"{fmt}-dev", now + rnd * 10_000))
            size = sum(map(len, posts))
            before = cpu(); t = time.time()
            for b in posts:
                req = urllib.request.Request(base + URL[fmt], data=b, headers={"Content-Encoding": "gzip"})
                urllib.request.urlopen(req).read()
            took = cpu() - before; wall = time.time() - t
            n = DEVICES * 9
            if rnd > 0:
                per_row[fmt].append(took / n * 1e6)
            print(f"round {rnd} ({'new series' if rnd == 0 else 'existing'}) {fmt}: {n} rows, {size/1e6:.1f} MB gzip, VM CPU {took:.2f} s = {took/n*1e6:.2f} us/row, wall {wall:.2f} s", flush=True)
    for fmt, values in per_row.items():
        values.sort()
        print(f"{fmt}: existing series, median {values[len(values) // 2]:.2f} us/row (range {values[0]:.2f}-{values[-1]:.2f})")
    # VictoriaMetrics answers 204 even when it drops a row: count what each
    # format left (one series per device of ward_device_up), at the last
    # round's time.
    urllib.request.urlopen(base + "/internal/force_flush").read()
    for fmt in ["json", "prom"]:
        query = urllib.parse.urlencode({"query": f'count(ward_device_up{{device=~"{fmt}-dev-.*"}})',
                                        "time": str((now + (ROUNDS - 1) * 10_000) // 1000)})
        answer = json.load(urllib.request.urlopen(base + "/api/v1/query?" + query))
        series = int(answer["data"]["result"][0]["value"][1]) if answer["data"]["result"] else 0
        print(f"{fmt}: {series} devices read back (expected {DEVICES})")
finally:
    vm.terminate()
    vm.wait()
    subprocess.run(["rm", "-rf", data])
