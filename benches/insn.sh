#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: the authoritative figure
# for the gateway's hot path (repeatable whatever else the machine is doing).
#
#   bash benches/insn.sh                     # build release, measure every target
#   bash benches/insn.sh --no-build          # reuse target/release
#   N1=1000 N2=3000 TARGETS="bare gateway" bash benches/insn.sh
#   KEEP=1 bash benches/insn.sh              # keep the callgrind out files (printed at the end)
#   GATEWAY_BIN=/tmp/old/tenant-gateway TARGETS=gateway bash benches/insn.sh --no-build
#
# Method (../shared/PERF-NOTES.md): each target runs under `valgrind --tool=callgrind` twice, once
# for N1 and once for N2 keep-alive requests (`h2load --h1 -n N -c 10 -m 1`, `:authority:
# acme.localhost`: h2load's `-H 'Host: …'` would send two Host headers); start-up and shutdown
# are the same in both runs, so (total(N2) − total(N1)) / (N2 − N1) is the cost of one request.
# Every response must be 2xx, or the run fails.
#
# Targets (1 worker thread each, one nginx upstream answering `ok\n`, not under valgrind):
#   nginx       nginx proxy_pass to an upstream block with keepalive 64, one proxy_set_header
#   bare        examples/bare_pingora.rs: pingora 0.9.1 + one insert_header (the floor)
#   gateway     tenant-gateway, one tenant, access log off
#   gateway-log tenant-gateway, access log on (to a file)
#   gateway-redis  tenant-gateway, access log off, plan with a Redis `requests` quota
# Output: one markdown table, instructions/request and the ratio to `bare`.
#
# Where the instructions go: KEEP=1, then `python3 benches/insn_diff.py OUT1 OUT2 N2-N1`
# differences the two callgrind files per function (inclusive and self).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N1="${N1:-1000}"
N2="${N2:-3000}"
TARGETS="${TARGETS:-nginx bare gateway gateway-log gateway-redis}"
BUILD=1
for arg in "$@"; do
  case "$arg" in
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

need() {
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || {
    echo "missing $1: install with 'bash scripts/deps.sh bench'" >&2
    exit 1
  }
}
for b in valgrind h2load nginx redis-server python3; do need "$b"; done
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

if [ "$BUILD" = 1 ]; then
  (cd "$ROOT" && cargo build --release --bin tenant-gateway --example bare_pingora >&2)
fi
# GATEWAY_BIN / BARE_BIN measure other builds (e.g. a baseline copied aside).
GATEWAY="${GATEWAY_BIN:-$ROOT/target/release/tenant-gateway}"
BARE="${BARE_BIN:-$ROOT/target/release/examples/bare_pingora}"
for t in $TARGETS; do
  case "$t" in
    bare) bin="$BARE" ;;
    gateway*) bin="$GATEWAY" ;;
    *) continue ;;
  esac
  [ -x "$bin" ] || { echo "$bin missing (drop --no-build)" >&2; exit 1; }
done

WORK="$(mktemp -d /tmp/insn.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port pid: until the port accepts, or the process died
  local i
  for i in $(seq 1 1200); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; then
      return 0
    fi
    kill -0 "$2" 2>/dev/null || { echo "process $2 exited before listening on $1" >&2; return 1; }
    sleep 0.1
  done
  echo "port $1 never opened" >&2
  return 1
}

nginx_head() { # dir
  cat <<EOF
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
EOF
}

# ---- the upstream (not measured)
UP_PORT="$(free_port)"
mkdir -p "$WORK/upstream"
{ nginx_head "$WORK/upstream"; cat <<EOF
http {
  access_log off;
  keepalive_requests 1000000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$UP_PORT default_server;
    location / { default_type text/plain; return 200 "ok\n"; }
  }
}
EOF
} >"$WORK/upstream/nginx.conf"
"$NGINX" -p "$WORK/upstream" -e stderr -c "$WORK/upstream/nginx.conf" -g 'daemon off;' \
  >"$WORK/upstream/out.log" 2>&1 &
PIDS+=($!)
wait_port "$UP_PORT" "${PIDS[-1]}"

REDIS_PORT=""
start_redis() {
  [ -n "$REDIS_PORT" ] && return 0
  REDIS_PORT="$(free_port)"
  mkdir -p "$WORK/redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$WORK/redis" >"$WORK/redis/out.log" 2>&1 &
  PIDS+=($!)
  wait_port "$REDIS_PORT" "${PIDS[-1]}"
}

# ---- per-target config: writes $dir and prints the command line (one arg per line)
prepare_nginx() { # dir port
  { nginx_head "$1"; cat <<EOF
http {
  access_log off;
  keepalive_requests 1000000000;
  keepalive_timeout 300s;
  upstream up {
    server 127.0.0.1:$UP_PORT;
    keepalive 64;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:$2 default_server;
    server_name acme.localhost;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Tenant-Id acme;
    }
  }
}
EOF
  } >"$1/nginx.conf"
  # master_process off: the one process valgrind runs is the worker.
  printf '%s\n' "$NGINX" -p "$1" -e stderr -c "$1/nginx.conf" -g 'daemon off; master_process off;'
}

prepare_gateway() { # dir port access_log(true|false) quota(none|redis)
  local dir="$1" quota_table='backend = "local"' plan_quota=""
  if [ "$4" = redis ]; then
    # Under valgrind a Redis round trip takes far longer than the 25 ms default.
    quota_table="backend = \"redis\"
redis_url = \"redis://127.0.0.1:$REDIS_PORT\"
timeout = \"10s\""
    plan_quota='quotas.requests = { limit = 1000000000, period = "hour" }'
  fi
  mkdir -p "$dir/tenants" "$dir/certs"
  local log_flag=""
  [ "$3" = true ] && log_flag=--access-log
  # Diagnostics at warn; the access target at info (older builds log access lines through tracing).
  {
    python3 "$ROOT/benches/bench_common.py" gateway-config --http "127.0.0.1:$2" \
      --admin "127.0.0.1:$(free_port)" --upstream "127.0.0.1:$UP_PORT" $log_flag --level "warn,access=info"
    printf '%s\n\n[quota]\n%s\n' "$plan_quota" "$quota_table"
  } >"$dir/gateway.toml"
  cat >"$dir/tenants/acme.toml" <<EOF
id = "acme"
organization_id = "org_acme"
plan = "bench"
upstream = "shared"
EOF
  printf '%s\n' "$GATEWAY" run --config "$dir/gateway.toml"
}

prepare() { # target dir port
  case "$1" in
    nginx) prepare_nginx "$2" "$3" ;;
    bare) printf '%s\n' "$BARE" "127.0.0.1:$3" "127.0.0.1:$UP_PORT" 1 ;;
    gateway) prepare_gateway "$2" "$3" false none ;;
    gateway-log) prepare_gateway "$2" "$3" true none ;;
    gateway-redis) prepare_gateway "$2" "$3" false redis ;;
    *) echo "unknown target $1" >&2; return 1 ;;
  esac
}

# One callgrind run of `target` serving n requests; prints the total instruction count.
measure() { # target n
  local target="$1" n="$2" dir="$WORK/$1-$2" port
  mkdir -p "$dir"
  port="$(free_port)"
  local -a cmd
  mapfile -t cmd < <(prepare "$target" "$dir" "$port")
  valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
    --log-file="$dir/valgrind.log" "${cmd[@]}" >"$dir/stdout.log" 2>"$dir/stderr.log" &
  local pid=$!
  PIDS+=($pid)
  wait_port "$port" "$pid"
  # The gateway's readiness probe sends one request of its own at start (the same in both runs).
  sleep 1
  h2load --h1 -n "$n" -c 10 -m 1 -H ':authority: acme.localhost' "http://127.0.0.1:$port/" \
    >"$dir/h2load.txt" 2>&1 || { cat "$dir/h2load.txt" >&2; return 1; }
  local ok
  ok="$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$dir/h2load.txt")"
  if [ "$ok" != "$n" ]; then
    echo "$target: $ok of $n responses were 2xx" >&2
    grep '^status codes' "$dir/h2load.txt" >&2
    return 1
  fi
  # pingora stops at once on SIGINT; nginx (no master) exits on SIGQUIT after the connections.
  if [ "$target" = nginx ]; then kill -QUIT "$pid"; else kill -INT "$pid"; fi
  wait "$pid" || true
  if [ "$target" = gateway-log ]; then
    local lines
    lines="$(grep -c '"target":"access"' "$dir/stdout.log" || true)"
    # h2load's requests plus the readiness probe's.
    if [ "$lines" -lt "$n" ]; then
      echo "$target: $lines access-log lines for $n requests" >&2
      return 1
    fi
  fi
  local total
  total="$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$dir/callgrind.out" | head -1)"
  [ -n "$total" ] || { echo "$target: no callgrind summary (see $dir/valgrind.log)" >&2; return 1; }
  echo "$total"
}

# Started here, not inside `prepare` (which runs in a subshell).
[[ " $TARGETS " == *" gateway-redis "* ]] && start_redis

declare -A PER_REQ
for t in $TARGETS; do
  echo "measuring $t (N1=$N1, N2=$N2) ..." >&2
  a="$(measure "$t" "$N1")"
  b="$(measure "$t" "$N2")"
  PER_REQ[$t]=$(( (b - a) / (N2 - N1) ))
  echo "  $t: $a → $b instructions, $(( PER_REQ[$t] )) / request" >&2
done

floor="${PER_REQ[bare]:-}"
echo
echo "| target | instructions / request | × bare pingora |"
echo "|---|---:|---:|"
for t in $TARGETS; do
  v="${PER_REQ[$t]}"
  if [ -n "$floor" ] && [ "$floor" -gt 0 ]; then
    ratio="$(python3 -c "print(f'{$v/$floor:.2f}×')")"
  else
    ratio="–"
  fi
  printf '| %s | %s | %s |\n' "$t" "$(python3 -c "print(f'{$v/1000:.1f}k')")" "$ratio"
done
echo
echo "valgrind --tool=callgrind, h2load --h1 -c 10 -m 1, N1=$N1 N2=$N2, 1 worker thread, release build ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
if [ "${KEEP:-0}" = 1 ]; then
  for t in $TARGETS; do
    echo "  $t: $WORK/$t-$N1/callgrind.out $WORK/$t-$N2/callgrind.out"
  done
fi
