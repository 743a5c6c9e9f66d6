#!/usr/bin/env python3
"""Many tenants: 10,000 configured, 1,000 of them receiving traffic.

    python3 benches/many_tenants.py                 # build release, run, print a markdown table
    python3 benches/many_tenants.py --no-build --tenants 10000 --active 1000 --duration 10

What it measures, on the release binary (1 worker thread, access log off, one nginx upstream):

1. RSS (VmRSS) after start with N tenants and no traffic.
2. Traffic to the first `--active` tenants (wrk -t1 -c20, a Lua script rotating
   `Host: t<i>.localhost`); then RSS again, the size of `/metrics` (bytes, lines, series of
   `gateway_request_duration_seconds`) and its scrape time (median of 5 GETs).
3. The same traffic once more, to show that the per-tenant series do not grow past the active
   tenants (RSS and /metrics size after a second round).
4. A reload of all N tenants under load: while wrk runs, one tenant file changes and
   `POST /admin/v1/reload` runs (its response time is the reload's duration: read, validate,
   compile, swap); wrk must see 0 socket errors and 0 non-2xx responses. Done `--reloads` times.

Reuses benches/load.py's process handling. Only ever talks to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common  # noqa: E402  (the gateway config, tenant files and wrk script the benches share)
import load  # noqa: E402  (benches/load.py: Proc, free_port, wait_tcp, wait_http_200, ...)

ROOT = load.ROOT
LOOPBACK = load.LOOPBACK
TOKEN = "many-tenants-bench"


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def get(port: int, path: str, method: str = "GET", token: str | None = None) -> tuple[int, bytes, float]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=120)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    t0 = time.monotonic()
    conn.request(method, path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    elapsed = time.monotonic() - t0
    conn.close()
    return resp.status, body, elapsed


def write_config(d: Path, n: int, http_port: int, admin_port: int, up_port: int, latency: str) -> None:
    (d / "gateway.toml").write_text(
        bench_common.gateway_config(f"{LOOPBACK}:{admin_port}", f"{LOOPBACK}:{up_port}",
                                    http=f"{LOOPBACK}:{http_port}")
        + f'\n[metrics]\nlatency_histogram = "{latency}"\n')
    tdir = d / "tenants"
    tdir.mkdir()
    (d / "certs").mkdir()
    bench_common.write_tenants(tdir, n)


def lua(d: Path, active: int) -> Path:
    return bench_common.rotate_hosts_lua(d / "rotate.lua", active)


def wrk(port: int, script: Path, duration: int) -> dict:
    out = load.run_client([load.find_bin("wrk"), "-t1", "-c20", f"-d{duration}s", "--timeout", "10s",
                           "-s", str(script), f"http://{LOOPBACK}:{port}/"], duration + 60)
    res = load.parse_wrk(out)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = int(m.group(1)) if m else 0
    return res


def metrics_facts(admin: int) -> dict:
    times, body = [], b""
    for _ in range(5):
        status, body, elapsed = get(admin, "/metrics")
        assert status == 200, status
        times.append(elapsed * 1000)
    text = body.decode()
    return {
        "bytes": len(body),
        "lines": text.count("\n"),
        "duration_series": len(re.findall(r'^gateway_(plan_)?request_duration_seconds_count\{', text, re.M)),
        "scrape_ms": statistics.median(times),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tenants", type=int, default=10_000)
    ap.add_argument("--active", type=int, default=1_000)
    ap.add_argument("--duration", type=int, default=10, help="seconds of traffic per round")
    ap.add_argument("--reloads", type=int, default=3)
    ap.add_argument("--latency-histogram", choices=["tenant", "plan", "off"], default="tenant",
                    help="[metrics] latency_histogram of the gateway")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--gateway-bin", default=str(ROOT / "target/release/tenant-gateway"))
    args = ap.parse_args()

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bin", "tenant-gateway"], cwd=ROOT, check=True)
    load.atexit.register(load.cleanup)
    work = Path(tempfile.mkdtemp(prefix="tg-many-"))
    load.WORK = str(work)

    # Upstream: one nginx answering `ok\n` (as in load.py).
    up_port = load.free_port()
    ud = work / "upstream"
    ud.mkdir()
    (ud / "nginx.conf").write_text(f"""worker_processes 1;
pid {ud}/nginx.pid;
error_log {ud}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000000;
  server {{
    listen {LOOPBACK}:{up_port} default_server;
    location / {{ default_type text/plain; return 200 "ok\\n"; }}
  }}
}}
""")
    upstream = load.Proc("upstream", [load.find_bin("nginx"), "-p", str(ud), "-e", "stderr", "-c",
                                      str(ud / "nginx.conf"), "-g", "daemon off;"], logfile=str(ud / "out.log"))
    load.wait_tcp(up_port, upstream)

    gd = work / "gateway"
    gd.mkdir()
    http_port, admin = load.free_port(), load.free_port()
    t0 = time.monotonic()
    write_config(gd, args.tenants, http_port, admin, up_port, args.latency_histogram)
    load.log(f"wrote {args.tenants} tenant files in {time.monotonic() - t0:.1f}s")
    env = dict(os.environ, TMPDIR=str(gd), RUST_LOG="warn", GATEWAY_ADMIN_TOKEN=TOKEN)
    t0 = time.monotonic()
    gw = load.Proc("gateway", [args.gateway_bin, "run", "--config", str(gd / "gateway.toml")], env=env,
                   stop_signal=load.signal.SIGINT, logfile=str(gd / "out.log"))
    load.wait_http_200(admin, "/readyz", gw, timeout=300)
    start_s = time.monotonic() - t0
    rows = [("start until /readyz (s)", f"{start_s:.2f}"), ("RSS idle (MiB)", f"{rss_mib(gw.popen.pid):.1f}")]
    script = lua(work, args.active)

    for rnd in (1, 2):
        r = wrk(http_port, script, args.duration)
        m = metrics_facts(admin)
        rows += [
            (f"round {rnd}: req/s over {args.active} tenants", f"{r['rps']:.0f} (non-2xx {r['non2xx']}, "
                                                               f"socket errors {r['socket_errors']})"),
            (f"round {rnd}: RSS (MiB)", f"{rss_mib(gw.popen.pid):.1f}"),
            (f"round {rnd}: /metrics size", f"{m['bytes'] / 1024:.0f} KiB, {m['lines']} lines, "
                                            f"{m['duration_series']} latency histograms"),
            (f"round {rnd}: /metrics scrape (median of 5, ms)", f"{m['scrape_ms']:.1f}"),
        ]

    # Reloads of all tenants under load.
    durations, results = [], []
    box: dict = {}
    traffic = threading.Thread(target=lambda: box.update(wrk(http_port, script, args.duration + 2 * args.reloads)))
    traffic.start()
    time.sleep(1.5)
    for k in range(args.reloads):
        # A real change (the plan of one tenant's organisation id), so the reload compiles and swaps.
        (gd / "tenants" / "t1.toml").write_text(
            f'id = "t1"\norganization_id = "org_t1_v{k + 2}"\nplan = "bench"\nupstream = "shared"\n')
        status, body, elapsed = get(admin, "/admin/v1/reload", "POST", TOKEN)
        results.append(f"{status} {body.decode()[:80]}")
        if status == 200 and b"swapped" in body:
            durations.append(elapsed * 1000)
        time.sleep(1.5)
    traffic.join()
    r = box
    ok = r.get("non2xx") == 0 and r.get("socket_errors") == 0 and len(durations) == args.reloads
    rows += [
        (f"reload of {args.tenants} tenants under load (ms, each)",
         ", ".join(f"{d:.0f}" for d in durations) or "none swapped: " + "; ".join(results)),
        ("requests during the reloads", f"{r.get('requests', 0)} at {r.get('rps', 0):.0f}/s: "
                                        f"non-2xx {r.get('non2xx')}, socket errors {r.get('socket_errors')}"),
        ("RSS after the reloads (MiB)", f"{rss_mib(gw.popen.pid):.1f}"),
    ]
    gw.stop()
    upstream.stop()

    print(f"\n{args.tenants} tenants, {args.active} with traffic "
          f"(`python3 benches/many_tenants.py --tenants {args.tenants} --active {args.active} "
          f"--duration {args.duration} --reloads {args.reloads} --latency-histogram {args.latency_histogram}`)\n")
    print("| measure | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    if not ok:
        print("\nFAILED: requests failed during a reload, or a reload did not swap", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
