#!/usr/bin/env python3
"""End-to-end load benchmark: tenant-gateway against nginx, HAProxy and Caddy doing the same job.

    python3 benches/load.py                     # full: 3 interleaved rounds, 8 s per run (~16 min)
    python3 benches/load.py --quick             # 1 round, 3 s per run (a smoke test, ~3 min)
    python3 benches/load.py --cases a,c --rounds 5 --targets gateway,nginx

Python 3 standard library only. What it does, in order:

1. `bash scripts/deps.sh bench` (installs wrk, h2load, nginx, haproxy, caddy, redis-server and
   openssl from Debian when missing; skip with --no-deps), then `cargo build --release` (skip with
   --no-build, or point --gateway-bin at another binary).
2. Writes every config into one temp dir (removed at exit), generates a self-signed ECDSA P-256
   certificate for `localhost`, `*.localhost`, 127.0.0.1, and starts the shared upstream.
3. Runs the cases interleaved: for each round, for each case, every target once (the order of the
   targets rotates by round). Each measured run starts its proxy fresh (so peak RSS is that case's),
   warms up, then measures; the proxy is stopped after the run.
4. Prints one markdown table and writes it to benches/results/<date>-<time>.md.

The job, identical for every proxy (all on 127.0.0.1, free ports, no access logs, one worker):

* upstream: ONE nginx (worker_processes 1) answering every request with `200 ok\\n` (3 bytes of
  body), keep-alive unlimited, a plain listener and a TLS (h1+h2) listener. It is the same for every
  proxy; target `direct` measures it without a proxy (the ceiling of the load generator + upstream).
* tenant-gateway: `threads = 1`, `access_log = false`, one tenant `t1` routed by Host
  `t1.localhost` (base domain `localhost`), shared upstream pool, the certificate as
  `certs/_default/fullchain.pem` + `key.pem` (0600). It does its whole normal job: resolve the
  tenant, strip client X-Tenant-*, inject X-Tenant-Id, X-Organization-Id, X-Tenant-Plan,
  X-Tenant-Features, X-Request-Id (generated), X-Forwarded-For/Proto/Host, and X-Request-Id back.
* nginx 1 worker: `server_name t1.localhost` (default server answers 404), `proxy_pass` to an
  `upstream` block with `keepalive 64`, `proxy_set_header X-Tenant-Id t1` (one header, as the
  issue and PERF-NOTES define the job; `--job full` makes nginx/HAProxy/Caddy inject the same
  header set as the gateway instead).
* HAProxy `nbthread 1`: `acl t1 hdr(host) -i t1.localhost`, 404 otherwise, `http-request
  set-header X-Tenant-Id t1`, `http-reuse always`.
* Caddy `GOMAXPROCS=1`: JSON config, `host` matcher, `reverse_proxy` with a request header set
  (Caddy also adds its default X-Forwarded-For/Proto/Host), 64 idle upstream connections, admin
  API off, automatic HTTPS off.
* bare pingora (the floor): `target/release/examples/bare_pingora`, 1 thread, pingora 0.9.1
  defaults + one inserted header (`x-proxy`), no tenants (every Host is forwarded), plain
  HTTP/1.1 to the upstream's plain listener like the gateway; a plain listener and pingora's
  rustls TLS listener (`--tls`, ALPN h2 + http/1.1) with the same certificate as the gateway.
  Measured in cases a-d (no tenants to spread over nor a 404 for unknown hosts: not in e; f
  has its own target list).
* pingap 0.13.1 (`--pingap-bin`): `threads = 1`, one location matched by `host = "t1.localhost"`
  with `proxy_set_headers`, one upstream; a plain listener only, so measured in case a only.
* `keepalive_requests` is unlimited everywhere nginx has it (its default 1000 would make wrk
  reconnect), TLS 1.2 + 1.3 everywhere (nginx 1.22 defaults to TLS 1.2 at most).

Cases (wrk -t1 -c50 and h2load -t1 -c50, one client thread; the client shares the 2 cores):

* a  HTTP/1.1 keep-alive, plain: `wrk -t1 -c50 -d8s --latency -H 'Host: t1.localhost'`.
* b  HTTPS HTTP/1.1 keep-alive: the same wrk against the TLS listener (TLS 1.3, no ALPN).
* c  HTTP/2 over TLS: `h2load -t1 -c50 -m10 -D 8` (500 concurrent streams), `:authority` set.
* d  a new TLS connection (full handshake) for every request: `h2load --h1 -c N -n N -r R`:
     N clients, each ONE connection with ONE request, created at a fixed offered rate R/s
     (--new-tls-rate, default 1000/s; the achieved rate is what is reported). Why h2load and not
     `wrk -H 'Connection: close'`: wrk and h2load both reuse the TLS session on reconnect
     (measured: 99.9 % `$ssl_session_reused` with wrk), so their reconnects are abbreviated
     handshakes; every h2load client, though, starts with a fresh SSL object, so one client per
     request gives a full TLS 1.3 handshake (ECDHE X25519 + ECDSA P-256 signature) per request.
     N = rate × duration. Latency columns here are the request after the handshake; the note gives mean
     connect and time-to-first-byte. This case is usually bound by the client (h2load spends more
     CPU per handshake than the servers): compare CPU s/100k there.
* e  10,000 tenants configured, requests spread over all of them: wrk with a Lua script that
     rotates `Host: t<i>.localhost`, i = 1..10000 (requests prebuilt in init). The gateway has
     10,000 tenant files; nginx a `map $host $tenant { hostnames; … }` (hash) + 404 when empty;
     HAProxy a `map_str` map file (tree) + 404 when not found; Caddy a `host` matcher with the
     10,000 names (sorted, binary search above 100 names) and the tenant taken from
     `{http.request.host.labels.1}`. Each injects the tenant id of the host.
* f  quotas: tenant-gateway without quota, with `[quota] backend = "local"` and with
     `backend = "redis"` (a `redis-server --save ""` on a free port), the plan having
     `quotas.requests = { limit = 1000000000, period = "hour" }` (nothing is rejected), each
     with case a's load; nginx and direct as references.

Measured per run: requests/s and p50/p99 (wrk --latency; h2load --log-file per-request times),
CPU seconds per 100k requests (utime+stime from /proc/<pid>/stat of the proxy and all its
descendants, e.g. nginx master + worker, read before and after the measured run; warm-up is not
counted), peak RSS (VmHWM from /proc/<pid>/status summed over the same processes). Each cell of
the table is the median over the rounds; `spread` is (max-min)/median of req/s.

On a shared box, note the load average the report prints (other builds skew everything);
`nice -n -10 python3 benches/load.py` (as root) gives the benchmark's processes priority, all alike.
Reference results: benches/results/.

Never sends traffic anywhere but 127.0.0.1. Every process it starts is killed at exit (also on
Ctrl-C or SIGTERM). tenant-gateway stops on SIGINT (SIGTERM would wait for its grace period).
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_common

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
N_TENANTS = 10_000

CASES = {
    "a": "HTTP/1.1 keep-alive (plain)",
    "b": "HTTPS HTTP/1.1 keep-alive",
    "c": "HTTP/2 over TLS (h2load -m10)",
    "d": "new TLS connection per request",
    "e": "10,000 tenants, Host rotated",
    "f": "quotas (local / redis)",
}
PEERS = ["nginx", "haproxy", "caddy", "pingap"]
ALL_TARGETS = ["direct", "bare", "gateway", "nginx", "haproxy", "caddy", "pingap"]
# Targets with a plain listener only (no TLS config, no 10,000-tenant variant): measured in case a.
PLAIN_ONLY = {"pingap"}
# Targets without tenants (every Host forwarded, no 404 for an unknown one): not in case e.
NO_TENANTS = {"bare"}
QUOTA_TARGETS = ["gateway-local-quota", "gateway-redis-quota"]
LABELS = {
    "direct": "upstream directly",
    "gateway": "tenant-gateway",
    "nginx": "nginx",
    "haproxy": "HAProxy",
    "caddy": "Caddy",
    "pingap": "pingap",
    "bare": "bare pingora (floor)",
    "gateway-local-quota": "tenant-gateway quota=local",
    "gateway-redis-quota": "tenant-gateway quota=redis",
}


def log(msg: str) -> None:
    print(f"[load {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes and cleanup

class Proc:
    """A process we started, in its own process group so the whole group can be killed."""

    LIVE: list["Proc"] = []

    def __init__(self, name, argv, *, cwd=None, env=None, stop_signal=signal.SIGTERM, logfile=None):
        self.name = name
        self.stop_signal = stop_signal
        self.logfile = logfile
        out = open(logfile, "ab") if logfile else subprocess.DEVNULL
        try:
            self.popen = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            if logfile:
                out.close()
        self.pid = self.popen.pid
        Proc.LIVE.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        if self in Proc.LIVE:
            Proc.LIVE.remove(self)
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, self.stop_signal)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the group (workers of a master that died first, …).
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(2)
        except subprocess.TimeoutExpired:
            pass

    def tail(self, n: int = 15) -> str:
        if not self.logfile or not os.path.exists(self.logfile):
            return ""
        with open(self.logfile, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        return "\n".join(lines[-n:])


def cleanup() -> None:
    for p in list(reversed(Proc.LIVE)):
        p.stop(timeout=3)


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run_client(argv, timeout: float, cwd=None) -> str:
    """Runs a load generator (tracked, so Ctrl-C kills it too) and returns its stdout+stderr."""
    out_path = Path(tempfile.mkstemp(prefix="client-", suffix=".out", dir=WORK)[1])
    p = Proc(argv[0], argv, cwd=cwd, stop_signal=signal.SIGINT, logfile=str(out_path))
    try:
        p.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        log(f"{argv[0]} did not finish in {timeout:.0f}s; stopped")
    p.stop(timeout=2)
    text = out_path.read_text(errors="replace")
    out_path.unlink()
    return text


# ---------------------------------------------------------------- /proc accounting

def _stat_fields(pid: int):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    return s[s.rindex(")") + 2:].split()  # fields from 3 (state) on


def process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(d))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pids) -> float:
    total = 0
    for pid in pids:
        try:
            f = _stat_fields(pid)
            total += int(f[11]) + int(f[12])  # utime, stime (fields 14, 15)
        except (OSError, ValueError, IndexError):
            pass
    return total / CLK_TCK


def peak_rss_mib(pids) -> float:
    kib = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        kib += int(line.split()[1])
        except OSError:
            pass
    return kib / 1024


# ---------------------------------------------------------------- helpers

_USED_PORTS: set[int] = set()


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        if port not in _USED_PORTS:
            _USED_PORTS.add(port)
            return port


def wait_tcp(port: int, proc: Proc, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited (rc {proc.popen.returncode}):\n{proc.tail()}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{proc.name}: port {port} not open after {timeout}s:\n{proc.tail()}")


def wait_http_200(port: int, path: str, proc: Proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited (rc {proc.popen.returncode}):\n{proc.tail()}")
        try:
            c = http.client.HTTPConnection(LOOPBACK, port, timeout=1)
            c.request("GET", path)
            if c.getresponse().status == 200:
                c.close()
                return
            c.close()
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name}: {path} not 200 after {timeout}s:\n{proc.tail()}")


def probe(port: int, host: str, tls: bool = False):
    """One GET with the given Host; returns (status, headers dict)."""
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = http.client.HTTPSConnection(LOOPBACK, port, timeout=5, context=ctx)
    else:
        c = http.client.HTTPConnection(LOOPBACK, port, timeout=5)
    try:
        c.request("GET", "/", headers={"Host": host})
        r = c.getresponse()
        r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}
    finally:
        c.close()


def redis_dbsize(port: int) -> int:
    with socket.create_connection((LOOPBACK, port), timeout=2) as s:
        s.sendall(b"*1\r\n$6\r\nDBSIZE\r\n")
        data = s.recv(64)
    m = re.match(rb":(\d+)", data)
    return int(m.group(1)) if m else -1


def cmd_output(argv) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"


def find_bin(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if not path:
        raise SystemExit(f"{name} not found; run `bash scripts/deps.sh bench`")
    return path


# ---------------------------------------------------------------- config generation

def tenant_ids(many: bool):
    return [f"t{i}" for i in range(1, (N_TENANTS if many else 1) + 1)]


# Headers injected upstream by the gateway for tenant t1 (besides the request id and X-Forwarded-*).
def full_headers_static(tid: str):
    return [("X-Tenant-Id", tid), ("X-Organization-Id", f"org_{tid}"),
            ("X-Tenant-Plan", "bench"), ("X-Tenant-Features", "chat")]


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(WORK)
        self.cert = self.work / "cert.pem"
        self.key = self.work / "key.pem"
        self.combined = self.work / "combined.pem"
        self.up_port = free_port()
        self.up_tls_port = free_port()
        self.redis_port = None
        self.redis = None
        self.upstream = None
        self.configs: dict[str, dict] = {}  # variant key → ports, paths
        self.bins = {n: find_bin(n) for n in ("nginx", "haproxy", "caddy", "wrk", "h2load", "openssl")}
        self.gateway_bin = args.gateway_bin or str(ROOT / "target/release/tenant-gateway")
        self.bare_bin = str(ROOT / "target/release/examples/bare_pingora")
        self.pingap_bin = args.pingap_bin or shutil.which("pingap") or ""

    # ---------- shared pieces

    def make_cert(self):
        subprocess.run(
            [self.bins["openssl"], "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(self.key), "-out",
             str(self.cert), "-days", "30", "-subj", "/CN=localhost", "-addext",
             "subjectAltName=DNS:localhost,DNS:*.localhost,IP:127.0.0.1"],
            check=True, capture_output=True)
        os.chmod(self.key, 0o600)
        self.combined.write_bytes(self.cert.read_bytes() + self.key.read_bytes())
        os.chmod(self.combined, 0o600)

    def nginx_common(self, d: Path) -> str:
        return f"""worker_processes 1;
worker_rlimit_nofile 65535;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 20000; }}
"""

    def start_upstream(self):
        d = self.work / "upstream"
        d.mkdir()
        (d / "nginx.conf").write_text(self.nginx_common(d) + f"""http {{
  access_log off;
  keepalive_requests 1000000000;
  keepalive_timeout 300s;
  server {{
    listen {LOOPBACK}:{self.up_port} default_server backlog=4096;
    listen {LOOPBACK}:{self.up_tls_port} ssl http2 default_server backlog=4096;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate {self.cert};
    ssl_certificate_key {self.key};
    location / {{ default_type text/plain; return 200 "ok\\n"; }}
  }}
}}
""")
        self.upstream = Proc("upstream-nginx", [self.bins["nginx"], "-p", str(d), "-e", "stderr", "-c",
                                                str(d / "nginx.conf"), "-g", "daemon off;"],
                             logfile=str(d / "out.log"))
        wait_tcp(self.up_port, self.upstream)
        wait_tcp(self.up_tls_port, self.upstream)

    def start_redis(self):
        if self.redis:
            return
        self.redis_port = free_port()
        d = self.work / "redis"
        d.mkdir()
        self.redis = Proc("redis", [find_bin("redis-server"), "--port", str(self.redis_port), "--bind",
                                    LOOPBACK, "--save", "", "--appendonly", "no", "--dir", str(d)],
                          logfile=str(d / "out.log"))
        wait_tcp(self.redis_port, self.redis)

    # ---------- per-target variants: "one" (1 tenant), "many" (10k), "quota-local", "quota-redis"

    def variant(self, target: str, case: str) -> tuple[str, str]:
        if target == "gateway-local-quota":
            return "gateway", "quota-local"
        if target == "gateway-redis-quota":
            return "gateway", "quota-redis"
        return target, ("many" if case == "e" else "one")

    def prepare(self, kind: str, var: str) -> dict:
        key = f"{kind}-{var}"
        if key in self.configs:
            return self.configs[key]
        d = self.work / key
        d.mkdir()
        c = {"dir": d, "http": free_port(), "https": free_port()}
        getattr(self, f"prepare_{kind}")(c, var)
        self.configs[key] = c
        return c

    def prepare_gateway(self, c, var):
        d = c["dir"]
        c["admin"] = free_port()
        quota = ""
        plan_quota = ""
        if var.startswith("quota-"):
            backend = var.split("-", 1)[1]
            self.start_redis() if backend == "redis" else None
            quota = f'backend = "{backend}"\n'
            if backend == "redis":
                quota += f'redis_url = "redis://{LOOPBACK}:{self.redis_port}"\n'
            plan_quota = 'quotas.requests = { limit = 1000000000, period = "hour" }\n'
        (d / "gateway.toml").write_text(
            bench_common.gateway_config(f"{LOOPBACK}:{c['admin']}", f"{LOOPBACK}:{self.up_port}",
                                        http=f"{LOOPBACK}:{c['http']}", https=f"{LOOPBACK}:{c['https']}")
            + plan_quota + f"""
[quota]
{quota or 'backend = "local"'}
""")
        tdir = d / "tenants"
        tdir.mkdir()
        for tid in tenant_ids(var == "many"):
            (tdir / f"{tid}.toml").write_text(bench_common.tenant_toml(tid))
        cdir = d / "certs" / "_default"
        cdir.mkdir(parents=True)
        shutil.copy(self.cert, cdir / "fullchain.pem")
        shutil.copy(self.key, cdir / "key.pem")
        os.chmod(cdir / "key.pem", 0o600)

    def prepare_nginx(self, c, var):
        d = c["dir"]
        full = self.args.job == "full"
        many = var == "many"
        if many:
            lines = "\n".join(f"    {t}.localhost {t};" for t in tenant_ids(True))
            tmap = f"""  map_hash_max_size 65536;
  map_hash_bucket_size 128;
  map $host $tenant {{
    hostnames;
    default "";
{lines}
  }}
"""
            tid = "$tenant"
            server_name = "server_name _;"
            guard = 'if ($tenant = "") { return 404; }'
        else:
            tmap, tid, server_name, guard = "", "t1", "server_name t1.localhost;", ""
        if full:
            hdrs = [(k, v.replace("t1", tid) if k != "X-Tenant-Plan" else v)
                    for k, v in full_headers_static("t1")]
            hdrs += [("X-Request-Id", "$request_id"), ("X-Forwarded-For", "$remote_addr"),
                     ("X-Forwarded-Proto", "$scheme"), ("X-Forwarded-Host", "$host")]
            extra = "      add_header X-Request-Id $request_id;\n"
        else:
            hdrs, extra = [("X-Tenant-Id", tid)], ""
        sets = "".join(f'      proxy_set_header {k} "{v}";\n' for k, v in hdrs)
        # backlog may be given once per address: on the default server's listen only.
        listen = (f"    listen {LOOPBACK}:{c['http']}{{ds}};\n"
                  f"    listen {LOOPBACK}:{c['https']} ssl http2{{ds}};\n")
        ds = " default_server backlog=4096"
        default_server = "" if many else f"""  server {{
{listen.format(ds=ds)}    server_name _;
    return 404;
  }}
"""
        (d / "nginx.conf").write_text(self.nginx_common(d) + f"""http {{
  access_log off;
  keepalive_requests 1000000000;
  keepalive_timeout 300s;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_certificate {self.cert};
  ssl_certificate_key {self.key};
{tmap}  upstream up {{
    server {LOOPBACK}:{self.up_port};
    keepalive 64;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
  }}
{default_server}  server {{
{listen.format(ds=ds if many else '')}    {server_name}
    {guard}
    location / {{
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
{sets}{extra}    }}
  }}
}}
""")

    def prepare_haproxy(self, c, var):
        d = c["dir"]
        many = var == "many"
        full = self.args.job == "full"
        if many:
            (d / "hosts.map").write_text("".join(f"{t}.localhost {t}\n" for t in tenant_ids(True)))
            route = (f"  http-request set-var(txn.tenant) req.hdr(host),lower,map_str({d}/hosts.map)\n"
                     "  http-request return status 404 unless { var(txn.tenant) -m found }\n")
            tid = "%[var(txn.tenant)]"
        else:
            route = ("  acl t1 hdr(host) -i t1.localhost\n"
                     "  http-request return status 404 unless t1\n")
            tid = "t1"
        if full:
            hdrs = [(k, tid if k == "X-Tenant-Id" else (f"org_{tid}" if k == "X-Organization-Id" else v))
                    for k, v in full_headers_static("t1")]
            hdrs += [("X-Request-Id", "%[uuid]"), ("X-Forwarded-For", "%[src]"),
                     ("X-Forwarded-Proto", "%[ssl_fc,iif(https,http)]"), ("X-Forwarded-Host", "%[req.hdr(host)]")]
            extra = ("  http-request set-var(txn.rid) req.hdr(x-request-id)\n"
                     "  http-response set-header X-Request-Id %[var(txn.rid)]\n")
        else:
            hdrs, extra = [("X-Tenant-Id", tid)], ""
        sets = "".join(f"  http-request set-header {k} {v}\n" for k, v in hdrs)
        (d / "haproxy.cfg").write_text(f"""global
  nbthread 1
  maxconn 8000
  ssl-default-bind-options ssl-min-ver TLSv1.2
  tune.ssl.default-dh-param 2048

defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 300s
  http-reuse always

frontend fe
  bind {LOOPBACK}:{c['http']}
  bind {LOOPBACK}:{c['https']} ssl crt {self.combined} alpn h2,http/1.1
{route}{sets}{extra}  default_backend up

backend up
  server s1 {LOOPBACK}:{self.up_port}
""")

    def prepare_caddy(self, c, var):
        d = c["dir"]
        many = var == "many"
        full = self.args.job == "full"
        hosts = [f"{t}.localhost" for t in tenant_ids(many)]
        tid = "{http.request.host.labels.1}" if many else "t1"
        hdrs = {"X-Tenant-Id": [tid]}
        if full:
            hdrs.update({"X-Organization-Id": [f"org_{tid}"], "X-Tenant-Plan": ["bench"],
                         "X-Tenant-Features": ["chat"], "X-Request-Id": ["{http.request.uuid}"]})
        proxy = {
            "handler": "reverse_proxy",
            "upstreams": [{"dial": f"{LOOPBACK}:{self.up_port}"}],
            "headers": {"request": {"set": hdrs}},
            "transport": {"protocol": "http", "keep_alive": {"max_idle_conns_per_host": 64}},
        }
        handle = [proxy]
        if full:
            handle = [{"handler": "headers", "response": {"set": {"X-Request-Id": ["{http.request.uuid}"]}}}, proxy]
        routes = [
            {"match": [{"host": hosts}], "handle": handle, "terminal": True},
            {"handle": [{"handler": "static_response", "status_code": 404}]},
        ]
        conf = {
            "admin": {"disabled": True},
            "logging": {"logs": {"default": {"level": "ERROR"}}},
            "apps": {
                "http": {"servers": {
                    "plain": {"listen": [f"{LOOPBACK}:{c['http']}"], "routes": routes,
                              "automatic_https": {"disable": True}},
                    "tls": {"listen": [f"{LOOPBACK}:{c['https']}"], "routes": routes,
                            "automatic_https": {"disable": True},
                            "tls_connection_policies": [{"certificate_selection": {"any_tag": ["bench"]},
                                                         "default_sni": "localhost"}]},
                }},
                "tls": {"certificates": {"load_files": [
                    {"certificate": str(self.cert), "key": str(self.key), "tags": ["bench"]}]}},
            },
        }
        (d / "caddy.json").write_text(json.dumps(conf))

    def prepare_pingap(self, c, var):
        d = c["dir"]
        hdrs = [("X-Tenant-Id", "t1")]
        if self.args.job == "full":
            hdrs = full_headers_static("t1")
        sets = ", ".join(f'"{k}:{v}"' for k, v in hdrs)
        # One server, one location matched by Host, one upstream; no access log (the default).
        (d / "pingap.toml").write_text(f"""[basic]
threads = 1
work_stealing = false
pid_file = "{d}/pingap.pid"
upgrade_sock = "{d}/pingap.sock"
grace_period = "1s"
graceful_shutdown_timeout = "1s"
log_level = "warn"

[upstreams.up]
addrs = ["{LOOPBACK}:{self.up_port}"]

[locations.t1]
upstream = "up"
host = "t1.localhost"
proxy_set_headers = [{sets}]

[servers.plain]
addr = "{LOOPBACK}:{c['http']}"
locations = ["t1"]
""")

    def prepare_bare(self, c, var):
        pass

    # ---------- start/stop one target

    def start(self, target: str, case: str):
        """Returns (proc or None, http port, https port, info)."""
        if target == "direct":
            return None, self.up_port, self.up_tls_port
        kind, var = self.variant(target, case)
        c = self.prepare(kind, var)
        d = c["dir"]
        logf = str(d / "out.log")
        if kind == "gateway":
            env = dict(os.environ, TMPDIR=str(d), RUST_LOG="warn")
            p = Proc(target, [self.gateway_bin, "run", "--config", str(d / "gateway.toml")],
                     env=env, stop_signal=signal.SIGINT, logfile=logf)
            wait_http_200(c["admin"], "/readyz", p, timeout=120)
        elif kind == "nginx":
            p = Proc(target, [self.bins["nginx"], "-p", str(d), "-e", "stderr", "-c", str(d / "nginx.conf"),
                              "-g", "daemon off;"], logfile=logf)
        elif kind == "haproxy":
            p = Proc(target, [self.bins["haproxy"], "-db", "-f", str(d / "haproxy.cfg")], logfile=logf)
        elif kind == "pingap":
            if not self.pingap_bin:
                raise RuntimeError("pingap not found: cargo install pingap --version 0.13.1 --locked "
                                   "--root DIR (needs protobuf-compiler), then --pingap-bin DIR/bin/pingap")
            p = Proc(target, [self.pingap_bin, "-c", str(d / "pingap.toml")], cwd=str(d),
                     stop_signal=signal.SIGINT, logfile=logf)
            wait_tcp(c["http"], p)
            return p, c["http"], None
        elif kind == "bare":
            p = Proc(target, [self.bare_bin, f"{LOOPBACK}:{c['http']}", f"{LOOPBACK}:{self.up_port}", "1",
                              "--tls", f"{LOOPBACK}:{c['https']}", str(self.cert), str(self.key)],
                     stop_signal=signal.SIGINT, logfile=logf)
        elif kind == "caddy":
            env = dict(os.environ, GOMAXPROCS="1", HOME=str(d), XDG_DATA_HOME=str(d / "data"),
                       XDG_CONFIG_HOME=str(d / "config"))
            p = Proc(target, [self.bins["caddy"], "run", "--config", str(d / "caddy.json")],
                     env=env, stop_signal=signal.SIGINT, logfile=logf)
        else:
            raise ValueError(target)
        wait_tcp(c["http"], p)
        wait_tcp(c["https"], p)
        return p, c["http"], c["https"]

    # ---------- load generators

    def wrk(self, port, tls, duration, lua=None):
        argv = [self.bins["wrk"], "-t1", f"-c{self.args.connections}", f"-d{duration}s", "--latency",
                "--timeout", "5s"]
        if lua:
            argv += ["-s", str(lua)]
        else:
            argv += ["-H", "Host: t1.localhost"]
        argv.append(f"{'https' if tls else 'http'}://{LOOPBACK}:{port}/")
        return argv

    def lua_script(self) -> Path:
        p = self.work / "rotate_hosts.lua"
        return p if p.exists() else bench_common.rotate_hosts_lua(p, N_TENANTS)

    def h2load(self, port, duration, logfile=None):
        argv = [self.bins["h2load"], "-t1", f"-c{self.args.connections}", "-m10", "-D", str(duration),
                "-H", ":authority: t1.localhost"]
        if logfile:
            argv += ["--log-file", str(logfile)]
        return argv + [f"https://{LOOPBACK}:{port}/"]

    def h2load_newconn(self, port, n, logfile=None):
        rate = self.args.new_tls_rate
        per_period = max(1, rate // 100)  # every 10 ms
        argv = [self.bins["h2load"], "--h1", "-t1", f"-c{n}", f"-n{n}", "-r", str(per_period),
                "--rate-period", "10ms", "-H", ":authority: t1.localhost"]
        if logfile:
            argv += ["--log-file", str(logfile)]
        return argv + [f"https://{LOOPBACK}:{port}/"]

    # ---------- one measured run

    def run_one(self, case: str, target: str) -> dict:
        a = self.args
        res = {"case": case, "target": target}
        proc = None
        try:
            proc, hport, sport = self.start(target, case)
            measured = self.upstream if proc is None else proc
            self.sanity(case, target, hport, sport)
            tls = case in ("b", "c", "d")
            port = sport if tls else hport
            lua = self.lua_script() if case == "e" else None
            reqlog = self.work / "h2load-requests.log"
            # warm-up (not measured)
            if case in ("a", "b", "e", "f"):
                run_client(self.wrk(port, tls, a.warmup, lua), a.warmup + 30)
            elif case == "c":
                run_client(self.h2load(port, a.warmup), a.warmup + 30)
            else:
                run_client(self.h2load_newconn(port, max(200, a.new_tls_rate * a.warmup // 4)), a.warmup * 4 + 30)
            pids = process_tree(measured.pid)
            cpu0 = cpu_seconds(pids)
            # Redis does part of the quota work: its CPU is reported beside the gateway's.
            aux = process_tree(self.redis.pid) if target == "gateway-redis-quota" and self.redis else []
            aux0 = cpu_seconds(aux)
            t0 = time.monotonic()
            if case in ("a", "b", "e", "f"):
                out = run_client(self.wrk(port, tls, a.duration, lua), a.duration + 30)
                res.update(parse_wrk(out))
            elif case == "c":
                out = run_client(self.h2load(port, a.duration, reqlog), a.duration + 30)
                res.update(parse_h2load(out, reqlog))
            else:
                n = a.new_tls_rate * a.duration
                out = run_client(self.h2load_newconn(port, n, reqlog), a.duration * 6 + 30)
                res.update(parse_h2load(out, reqlog))
            res["wall"] = time.monotonic() - t0
            pids = process_tree(measured.pid)
            res["cpu"] = cpu_seconds(pids) - cpu0
            res["rss"] = peak_rss_mib(pids)
            if res.get("requests"):
                res["cpu_per_100k"] = res["cpu"] / res["requests"] * 100_000
                if aux:
                    res["aux_cpu_per_100k"] = (cpu_seconds(aux) - aux0) / res["requests"] * 100_000
            if proc is not None and not proc.alive():
                res["error"] = (f"{target} exited during the run (rc {proc.popen.returncode}); "
                                f"log tail: {proc.tail(3)}")
        except Exception as e:  # keep going: one broken target must not lose the whole run
            res["error"] = str(e).strip().splitlines()[0][:200] if str(e).strip() else repr(e)
            log(f"  {target} case {case}: ERROR {res['error']}")
        finally:
            if proc is not None:
                proc.stop()
        return res

    def sanity(self, case, target, hport, sport):
        if target == "direct":
            return
        status, headers = probe(sport if case in ("b", "c", "d") else hport, "t1.localhost",
                                tls=case in ("b", "c", "d"))
        if status != 200:
            raise RuntimeError(f"probe: status {status} for Host t1.localhost")
        if case == "e":
            s2, _ = probe(hport, f"t{N_TENANTS}.localhost")
            s3, _ = probe(hport, "nobody.localhost")
            if s2 != 200 or s3 != 404:
                raise RuntimeError(f"probe: t{N_TENANTS} → {s2}, unknown → {s3} (want 200, 404)")
        if target.endswith("-quota") and "ratelimit-policy" not in headers:
            raise RuntimeError("probe: no RateLimit-Policy header; quota not active?")


# ---------------------------------------------------------------- output parsing

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(value: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)$", value.strip())
    if not m:
        raise ValueError(value)
    return float(m.group(1)) * _UNIT_MS[m.group(2)]


def parse_wrk(out: str) -> dict:
    r = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"wrk: no result: {out.strip()[-300:]}")
    r["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", out)
    r["requests"] = int(m.group(1)) if m else 0
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if m:
            r[key] = _ms(m.group(1))
    errs = []
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errs.append(f"{m.group(1)} non-2xx")
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m and any(int(x) for x in m.groups()):
        errs.append("socket errors c/r/w/t " + "/".join(m.groups()))
    if errs:
        r["errors"] = ", ".join(errs)
    return r


def percentile(sorted_vals, q: float) -> float:
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, int(round(q * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


def parse_h2load(out: str, reqlog: Path) -> dict:
    r = {}
    m = re.search(r"finished in ([\d.]+)(ms|s), ([\d.]+) req/s", out)
    if not m:
        raise RuntimeError(f"h2load: no result: {out.strip()[-300:]}")
    r["rps"] = float(m.group(3))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", out)
    if m:
        total, _, done, ok, failed, errored, tout = map(int, m.groups())
        r["requests"] = done
        if failed or errored or tout:
            r["errors"] = f"{failed} failed, {errored} errored, {tout} timeout of {total}"
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if m and (int(m.group(3)) or int(m.group(4))):
        r["errors"] = (r.get("errors", "") + f" {m.group(3)} 4xx {m.group(4)} 5xx").strip()
    for what, key in (("time for connect", "connect_mean"), ("time to 1st byte", "ttfb_mean")):
        m = re.search(rf"{what}:\s+(\S+)\s+(\S+)\s+(\S+)", out)
        if m:
            try:
                r[key] = _ms(m.group(3))
            except ValueError:
                pass
    if reqlog.exists():
        vals = []
        with open(reqlog) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3:
                    try:
                        vals.append(int(parts[2]) / 1000.0)
                    except ValueError:
                        pass
        reqlog.unlink()
        vals.sort()
        if vals:
            r["p50"] = percentile(vals, 0.50)
            r["p99"] = percentile(vals, 0.99)
    return r


# ---------------------------------------------------------------- report

def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, digits=1, suffix=""):
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}{suffix}"


def summarize(results, cases, targets_of):
    rows = {}
    for case in cases:
        for target in targets_of(case):
            runs = [r for r in results if r["case"] == case and r["target"] == target]
            ok = [r for r in runs if "rps" in r and "error" not in r]
            rps = [r["rps"] for r in ok]
            row = {
                "runs": len(runs), "ok": len(ok),
                "rps": med(rps),
                "spread": ((max(rps) - min(rps)) / med(rps) * 100) if len(rps) > 1 and med(rps) else None,
                "p50": med([r.get("p50") for r in ok]),
                "p99": med([r.get("p99") for r in ok]),
                "cpu": med([r.get("cpu_per_100k") for r in ok]),
                "rss": med([r.get("rss") for r in ok]),
                "ttfb": med([r.get("ttfb_mean") for r in ok]),
                "connect": med([r.get("connect_mean") for r in ok]),
                "aux_cpu": med([r.get("aux_cpu_per_100k") for r in ok]),
                "errors": "; ".join(sorted({r.get("error") or r.get("errors") for r in runs
                                            if r.get("error") or r.get("errors")})),
            }
            rows[(case, target)] = row
    return rows


def render(rows, cases, targets_of, meta, args) -> str:
    out = []
    out.append(f"# tenant-gateway load benchmark — {meta['date']}\n")
    out.append(f"Command: `{meta['command']}`  ")
    out.append(f"Machine: {meta['nproc']} CPUs, {meta['cpu']}, kernel {meta['kernel']}; "
               f"load average at start {meta['load_start']}, at end {meta['load_end']}  ")
    out.append(f"tenant-gateway: {meta['gateway']}  ")
    out.append(f"Versions: {meta['versions']}  ")
    out.append(f"Rounds: {args.rounds} (interleaved), {args.duration}s per run after {args.warmup}s warm-up, "
               f"{args.connections} connections, one client thread; job: `{args.job}` "
               f"({'peers inject the same header set as the gateway' if args.job == 'full' else 'peers inject one header, the gateway its full set'}).\n")
    head = ("| case | target | req/s (median) | spread | p50 ms | p99 ms | CPU s/100k req | peak RSS MiB "
            "| vs direct | × bare req/s, CPU | vs nginx | vs HAProxy | vs Caddy | vs pingap | notes |")
    out.append(head)
    out.append("|" + "---|" * 2 + "---:|" * 12 + "---|")

    def ratio(case, target, ref):
        a, b = rows.get((case, target)), rows.get((case, ref))
        if not a or not b or a["rps"] is None or b["rps"] is None or target == ref:
            return "—" if target == ref else "n/a"
        return f"{a['rps'] / b['rps']:.2f}"

    def floor(case, target):
        a, b = rows.get((case, target)), rows.get((case, "bare"))
        if target == "bare":
            return "—"
        if not a or not b or a["rps"] is None or not b["rps"]:
            return "n/a"
        cpu = f"{a['cpu'] / b['cpu']:.2f}" if a["cpu"] is not None and b["cpu"] else "n/a"
        return f"{a['rps'] / b['rps']:.2f}, {cpu}"

    for case in cases:
        for target in targets_of(case):
            r = rows[(case, target)]
            notes = []
            if r["errors"]:
                notes.append("⚠ " + r["errors"][:160])
            if r["ok"] < r["runs"]:
                notes.append(f"{r['ok']}/{r['runs']} runs ok")
            if case == "d" and r["ttfb"] is not None:
                notes.append(f"mean connect {fmt(r['connect'], 2)} ms, ttfb {fmt(r['ttfb'], 2)} ms")
            if case == "f" and target.endswith("-quota"):
                base = rows.get(("f", "gateway"))
                if base and base["rps"] and r["rps"]:
                    notes.append(f"{r['rps'] / base['rps']:.2f}× gateway without quota")
            if r.get("aux_cpu") is not None:
                notes.append(f"+ redis-server {fmt(r['aux_cpu'], 2)} CPU s/100k (not in the CPU column)")
            out.append(
                f"| {case} {CASES[case]} | {LABELS[target]} | {fmt(r['rps'], 0)} | "
                f"{fmt(r['spread'], 0, '%')} | {fmt(r['p50'], 2)} | {fmt(r['p99'], 2)} | "
                f"{fmt(r['cpu'], 2)} | {fmt(r['rss'], 1)} | {ratio(case, target, 'direct')} | "
                f"{floor(case, target)} | {ratio(case, target, 'nginx')} | {ratio(case, target, 'haproxy')} | "
                f"{ratio(case, target, 'caddy')} | {ratio(case, target, 'pingap')} | {'; '.join(notes)} |")
    out.append("")
    out.append("Ratios are req/s over the reference's req/s in the same case (>1 = faster). "
               "`× bare` is the target over bare pingora (the floor) in the same case: req/s, then "
               "CPU s/100k req (>1 = more CPU per request than the floor). "
               "`direct` = the nginx upstream without a proxy: the ceiling of client + upstream on this box; "
               "its CPU and RSS are the upstream's own. CPU s/100k req counts every process of the target "
               "(nginx master + worker; all gateway threads), not the client or the upstream.")
    if meta.get("notes"):
        out.append("")
        out.extend(f"- {n}" for n in meta["notes"])
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- main

def versions(bench: Bench) -> str:
    def first(s):
        return s.splitlines()[0] if s else "?"
    v = {
        "nginx": first(cmd_output([bench.bins["nginx"], "-v"])).replace("nginx version: ", ""),
        "haproxy": re.sub(r" - https.*", "", first(cmd_output([bench.bins["haproxy"], "-v"]))).replace("HAProxy version ", ""),
        "caddy": first(cmd_output([bench.bins["caddy"], "version"])),
        "wrk": first(cmd_output([bench.bins["wrk"], "-v"])).split(" Copyright")[0],
        "h2load": first(cmd_output([bench.bins["h2load"], "--version"])),
        "openssl": first(cmd_output([bench.bins["openssl"], "version"])),
        "redis": first(cmd_output([find_bin("redis-server"), "--version"])).split(" sha=")[0],
        "rustc": first(cmd_output(["rustc", "--version"])),
    }
    if bench.pingap_bin:
        v["pingap"] = first(cmd_output([bench.pingap_bin, "--version"]))
    return ", ".join(f"{k} {val}" for k, val in v.items())


def machine_cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 round, 3 s runs, 1 s warm-up")
    ap.add_argument("--cases", default="a,b,c,d,e,f", help="comma list of a..f (default all)")
    ap.add_argument("--targets", default="", help="comma list of direct,bare,gateway,nginx,haproxy,caddy,pingap "
                    "(default all; case f always adds the quota variants of the gateway)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 3, --quick 1)")
    ap.add_argument("--duration", type=int, help="seconds per measured run (default 8, --quick 3)")
    ap.add_argument("--warmup", type=int, help="seconds of warm-up before each run (default 2, --quick 1)")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--new-tls-rate", type=int, default=1000,
                    help="case d: offered new TLS connections per second (default 1000)")
    ap.add_argument("--job", choices=["one-header", "full"], default="one-header",
                    help="what nginx/HAProxy/Caddy inject: one header (default) or the gateway's full set")
    ap.add_argument("--no-deps", action="store_true", help="skip scripts/deps.sh bench")
    ap.add_argument("--no-build", action="store_true", help="skip cargo build --release")
    ap.add_argument("--gateway-bin", help="tenant-gateway binary (default target/release/tenant-gateway)")
    ap.add_argument("--pingap-bin", help="pingap 0.13.1 binary (default: pingap on PATH)")
    ap.add_argument("--out", help="markdown output file (default benches/results/<date>-<time>.md)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    args = ap.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (3 if args.quick else 8)
    args.warmup = args.warmup or (1 if args.quick else 2)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in cases:
        if c not in CASES:
            ap.error(f"unknown case {c!r}")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()] or ALL_TARGETS
    for t in targets:
        if t not in ALL_TARGETS:
            ap.error(f"unknown target {t!r}")

    def targets_of(case):
        if case == "f":
            return [t for t in ("direct", "nginx", "gateway") if t in targets] + QUOTA_TARGETS
        if case == "e":
            return [t for t in targets if t not in PLAIN_ONLY | NO_TENANTS]
        if case != "a":
            return [t for t in targets if t not in PLAIN_ONLY]
        return targets

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by proxies and clients
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    atexit.register(cleanup)

    if not args.no_deps:
        log("bash scripts/deps.sh bench")
        subprocess.run(["bash", str(ROOT / "scripts/deps.sh"), "bench"], check=True)
    if not args.no_build and not args.gateway_bin:
        log("cargo build --release")
        subprocess.run(["cargo", "build", "--release", "--bin", "tenant-gateway", "--example", "bare_pingora"],
                       cwd=ROOT, check=True)

    global WORK
    WORK = tempfile.mkdtemp(prefix="tg-load-")
    if not args.keep:
        atexit.register(lambda: shutil.rmtree(WORK, ignore_errors=True))
    else:
        log(f"temp dir kept: {WORK}")
    # atexit runs LIFO: processes are stopped (cleanup registered first… so register again last)
    atexit.register(cleanup)

    bench = Bench(args)
    if not os.path.exists(bench.gateway_bin):
        raise SystemExit(f"{bench.gateway_bin} missing (build it or pass --gateway-bin)")
    bench.make_cert()
    bench.start_upstream()
    meta = {
        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "command": "python3 benches/load.py " + " ".join(sys.argv[1:]),
        "nproc": os.cpu_count(), "cpu": machine_cpu(), "kernel": os.uname().release,
        "load_start": loadavg(), "versions": versions(bench), "notes": [],
    }
    rev = cmd_output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = cmd_output(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", "src", "Cargo.toml"])
    meta["gateway"] = (f"{bench.gateway_bin} (commit {rev}{', src modified' if dirty and 'fatal' not in dirty else ''})"
                       if "fatal" not in rev else f"{bench.gateway_bin} (not a git checkout)")
    log(f"work dir {WORK}; load average {meta['load_start']}")

    results = []
    total = sum(len(targets_of(c)) for c in cases) * args.rounds
    n = 0
    started = time.monotonic()
    for rnd in range(args.rounds):
        for case in cases:
            ts = targets_of(case)
            k = rnd % len(ts)
            for target in ts[k:] + ts[:k]:
                n += 1
                log(f"round {rnd + 1}/{args.rounds} case {case} {target} ({n}/{total}, "
                    f"{time.monotonic() - started:.0f}s, load {loadavg()})")
                r = bench.run_one(case, target)
                r["round"] = rnd
                results.append(r)
                if "rps" in r:
                    log(f"  {r['rps']:,.0f} req/s p50 {fmt(r.get('p50'), 2)} p99 {fmt(r.get('p99'), 2)} ms "
                        f"cpu/100k {fmt(r.get('cpu_per_100k'), 2)} s rss {fmt(r.get('rss'), 1)} MiB"
                        + (f" [{r['errors']}]" if r.get("errors") else ""))
    meta["load_end"] = loadavg()
    if bench.redis_port:
        meta["notes"].append(f"redis keys after case f: {redis_dbsize(bench.redis_port)} "
                             "(the redis variant really counted in Redis)")
    rows = summarize(results, cases, targets_of)
    text = render(rows, cases, targets_of, meta, args)
    print(text)
    out = Path(args.out) if args.out else ROOT / "benches/results" / (dt.datetime.now().strftime("%Y-%m-%d-%H%M") + ".md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    (out.with_suffix(".json")).write_text(json.dumps({"meta": meta, "runs": results}, indent=1, default=str))
    log(f"wrote {out} (+ .json with every run)")
    return 0


WORK = tempfile.gettempdir()

if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); stopping everything")
        cleanup()
        sys.exit(130)
