#!/usr/bin/env python3
"""Where one request's instructions go: two callgrind runs of the same target, differenced.

    python3 benches/insn_diff.py RUN_N1/callgrind.out RUN_N2/callgrind.out REQUESTS [--top 40]
    python3 benches/insn_diff.py ... --against BARE_N1 BARE_N2 BARE_REQUESTS

REQUESTS is N2 - N1. Start-up and shutdown cancel out, so what is left, divided by REQUESTS, is
the per-request cost of each function: self (its own instructions) and inclusive (with callees),
plus self cost summed per crate (from the source path). With --against, a second pair (e.g. the
bare pingora floor) is differenced the same way and subtracted, which shows what the gateway adds
over the floor, per function and per crate. Uses `callgrind_annotate` (valgrind).
"""

from __future__ import annotations

import argparse
import re
import subprocess
from collections import defaultdict

LINE = re.compile(r"^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(\S.*?)\s*$")
CRATE = re.compile(r"/(?:registry/src/[^/]+|git/checkouts/[^/]+/[^/]+)/([A-Za-z0-9_\-]+?)-\d+\.\d+[^/]*/")


def annotate(path: str, inclusive: bool) -> dict[str, int]:
    out = subprocess.run(
        ["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}", "--threshold=100",
         "--auto=no", path],
        check=True, capture_output=True, text=True).stdout
    costs: dict[str, int] = {}
    started = False
    for line in out.splitlines():
        if not started:
            started = "file:function" in line
            continue
        m = LINE.match(line)
        if m:
            # Without the object file, so the same function in two binaries is one key.
            key = re.sub(r"\s*\[[^\]]*\]$", "", m.group(2))
            costs[key] = costs.get(key, 0) + int(m.group(1).replace(",", ""))
    return costs


def per_request(n1: str, n2: str, requests: int, inclusive: bool) -> dict[str, float]:
    a, b = annotate(n1, inclusive), annotate(n2, inclusive)
    return {k: (b.get(k, 0) - a.get(k, 0)) / requests for k in set(a) | set(b)}


def crate_of(function: str) -> str:
    m = CRATE.search(function)
    if m:
        return m.group(1)
    if function.startswith("./"):
        return "libc"
    if "/rustc/" in function or "library/" in function:
        return "std"
    if function.startswith("???"):
        obj = function.rsplit("[", 1)[-1].rstrip("]")
        return obj.rsplit("/", 1)[-1] or "???"
    if function.startswith("src/") or "/src/" in function:
        return "tenant-gateway"
    return function.split(":", 1)[0]


def short(function: str, width: int = 110) -> str:
    f = re.sub(r"\s*\[[^\]]*\]$", "", function)
    return f if len(f) <= width else "…" + f[-width:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n1")
    ap.add_argument("n2")
    ap.add_argument("requests", type=int)
    ap.add_argument("--against", nargs=3, metavar=("BASE_N1", "BASE_N2", "BASE_REQUESTS"))
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()

    for inclusive in (False, True):
        cost = per_request(args.n1, args.n2, args.requests, inclusive)
        if args.against:
            base = per_request(args.against[0], args.against[1], int(args.against[2]), inclusive)
            cost = {k: cost.get(k, 0) - base.get(k, 0) for k in set(cost) | set(base)}
        kind = "inclusive" if inclusive else "self"
        what = "more than the base" if args.against else "per request"
        print(f"\n## {kind}: instructions {what} (top {args.top} by |difference|)\n")
        for k, v in sorted(cost.items(), key=lambda kv: -abs(kv[1]))[:args.top]:
            print(f"{v:10.0f}  {short(k)}")
        if not inclusive:
            crates: dict[str, float] = defaultdict(float)
            for k, v in cost.items():
                crates[crate_of(k)] += v
            total = sum(cost.values())
            print(f"\n## self cost by crate (total {total:.0f})\n")
            for c, v in sorted(crates.items(), key=lambda kv: -abs(kv[1]))[:25]:
                print(f"{v:10.0f}  {c}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
