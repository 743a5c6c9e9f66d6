#!/usr/bin/env python3
"""What the benches share: the gateway config they start from (benches/gateway.toml.in), the
tenant file, and wrk's Host-rotating Lua script.

    python3 benches/bench_common.py gateway-config --http 127.0.0.1:8080 --admin 127.0.0.1:9090 \\
        --upstream 127.0.0.1:8081 [--https ADDR] [--access-log] [--level warn]

prints the config (for the shell benches); load.py and many_tenants.py import the functions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

TEMPLATE = Path(__file__).with_name("gateway.toml.in")


def gateway_config(admin: str, upstream: str, http: str | None = None, https: str | None = None,
                   access_log: bool = False, level: str = "warn") -> str:
    """benches/gateway.toml.in filled in; a bench appends [plans.bench] keys and more tables."""
    listen = []
    if http:
        listen.append(f'http_listen = ["{http}"]')
    if https:
        listen.append(f'https_listen = ["{https}"]')
    return TEMPLATE.read_text().format(listen="\n".join(listen), admin=admin, upstream=upstream,
                                       access_log="true" if access_log else "false", level=level)


def tenant_toml(tenant: str, plan: str = "bench") -> str:
    return f'id = "{tenant}"\norganization_id = "org_{tenant}"\nplan = "{plan}"\nupstream = "shared"\n'


def write_tenants(tenants_dir: Path, n: int) -> None:
    """Tenants t1 .. t<n> on plan `bench`, upstream `shared`."""
    for i in range(1, n + 1):
        (tenants_dir / f"t{i}.toml").write_text(tenant_toml(f"t{i}"))


def rotate_hosts_lua(path: Path, n: int) -> Path:
    """A wrk script that rotates Host over t1.localhost .. t<n>.localhost (requests built once)."""
    path.write_text(f"""-- rotates Host over t1.localhost .. t{n}.localhost; requests built once
local n = {n}
local reqs = {{}}
local i = 0
init = function(args)
  for k = 1, n do
    reqs[k] = wrk.format("GET", "/", {{ ["Host"] = "t" .. k .. ".localhost" }})
  end
end
request = function()
  i = i % n + 1
  return reqs[i]
end
""")
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gateway-config", help="print the bench gateway config")
    g.add_argument("--http")
    g.add_argument("--https")
    g.add_argument("--admin", required=True)
    g.add_argument("--upstream", required=True)
    g.add_argument("--access-log", action="store_true")
    g.add_argument("--level", default="warn")
    a = p.parse_args()
    print(gateway_config(a.admin, a.upstream, a.http, a.https, a.access_log, a.level), end="")


if __name__ == "__main__":
    main()
