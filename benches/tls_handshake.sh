#!/usr/bin/env bash
# New-connection TLS handshakes per second (full handshake, one HTTP/1.1 request each) against
# tenant-gateway and against nginx serving the same certificate, same worker count (1), same
# echo upstream, in one run: interleaved rounds (gateway, nginx, gateway, nginx, …), medians and
# the ratio gateway/nginx.
#
#   bash benches/tls_handshake.sh
#   ROUNDS=5 REQUESTS=20000 CLIENTS=10 KEY=rsa bash benches/tls_handshake.sh
#
# The client is benches/tls_handshake_load.rs (rustls, one thread): every request opens a new
# TCP connection and does a full handshake (it never offers a session), then sends one request
# with `Connection: close`. h2load cannot be used for this: it keeps its OpenSSL session across
# reconnects and offers it, and the gateway's rustls acceptor (pingora defaults) resumes it, so it
# would measure abbreviated handshakes on one side only. The number of handshakes is checked on
# the servers (gateway_tls_handshakes_total, nginx stub_status accepts), and each server's CPU
# time is read from /proc, so handshakes per server CPU second compare even when the client is
# the bottleneck. Everything listens on 127.0.0.1; every process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
REQUESTS=${REQUESTS:-10000}
CLIENTS=${CLIENTS:-10}
KEY=${KEY:-ec}  # ec (ECDSA P-256, like the gateway's generated default) or rsa (RSA 2048)
NAME=bench.localhost

bash scripts/deps.sh bench
cargo build --release --quiet
LOAD=$(cargo bench --quiet --no-run --bench tls_handshake_load --message-format=json |
  sed -n 's/.*"executable":"\([^"]*\/tls_handshake_load-[^"]*\)".*/\1/p' | tail -n 1)
[ -x "$LOAD" ] || { echo "could not build benches/tls_handshake_load.rs" >&2; exit 1; }
BIN="${CARGO_TARGET_DIR:-target}/release/tenant-gateway"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

WORK=$(mktemp -d /tmp/tg-tls-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# Listen ports come from below the ephemeral range, so the many client connections of a run
# (and their TIME_WAIT sockets) never hold one.
read -r EPHEMERAL_LOW _ </proc/sys/net/ipv4/ip_local_port_range
PORT_BASE=$((EPHEMERAL_LOW > 12000 ? 10000 : 2000))
PORT_SPAN=$((EPHEMERAL_LOW - PORT_BASE - 1))
USED_PORTS=" "
free_port() {
  local p
  while :; do
    p=$((PORT_BASE + (RANDOM * 32768 + RANDOM) % PORT_SPAN))
    [[ "$USED_PORTS" == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      USED_PORTS+="$p "
      echo "$p"
      return
    fi
  done
}

wait_port() { # port, what, pid
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    kill -0 "$3" 2>/dev/null || { echo "$2 exited at start" >&2; cat "$WORK"/*.log "$WORK"/*/*.log >&2 2>/dev/null; return 1; }
    sleep 0.05
  done
  echo "$2 did not listen on 127.0.0.1:$1" >&2
  return 1
}

ECHO_PORT=$(free_port)
GW_PORT=$(free_port)
ADMIN_PORT=$(free_port)
NGINX_PORT=$(free_port)
STATUS_PORT=$(free_port)

# --- certificate: one self-signed leaf for $NAME, served by both ---
mkdir -p "$WORK/gw/tenants" "$WORK/gw/certs/$NAME" "$WORK/run" "$WORK/nginx/tmp"
CERT="$WORK/gw/certs/$NAME/fullchain.pem"
KEYF="$WORK/gw/certs/$NAME/key.pem"
case "$KEY" in
  ec) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
  rsa) newkey=(-newkey rsa:2048) ;;
  *) echo "KEY must be ec or rsa" >&2; exit 2 ;;
esac
openssl req -x509 "${newkey[@]}" -nodes -days 30 -subj "/CN=$NAME" \
  -addext "subjectAltName=DNS:$NAME" -keyout "$KEYF" -out "$CERT" 2>/dev/null
chmod 600 "$KEYF"

# --- echo upstream, shared by both ---
"$BIN" echo --listen "127.0.0.1:$ECHO_PORT" >"$WORK/echo.log" 2>&1 &
PIDS+=($!)
wait_port "$ECHO_PORT" echo $!

# --- tenant-gateway: 1 worker thread, no access log ---
python3 benches/bench_common.py gateway-config --https "127.0.0.1:$GW_PORT" \
  --admin "127.0.0.1:$ADMIN_PORT" --upstream "127.0.0.1:$ECHO_PORT" >"$WORK/gw/gateway.toml"
cat >"$WORK/gw/tenants/bench.toml" <<EOF
id = "bench"
organization_id = "org_bench"
name = "Bench"
plan = "bench"
upstream = "shared"
EOF
TMPDIR="$WORK/run" "$BIN" run --config "$WORK/gw/gateway.toml" >"$WORK/gw/stdout.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
wait_port "$GW_PORT" tenant-gateway "$GW_PID"
wait_port "$ADMIN_PORT" "tenant-gateway admin" "$GW_PID"

# --- nginx: 1 worker, same certificate, same upstream, no access log, no resumption ---
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/tmp/body;
  proxy_temp_path $WORK/nginx/tmp/proxy;
  fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
  uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
  scgi_temp_path $WORK/nginx/tmp/scgi;
  upstream echo {
    server 127.0.0.1:$ECHO_PORT;
    keepalive 32;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT ssl;
    server_name $NAME;
    ssl_certificate $CERT;
    ssl_certificate_key $KEYF;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache off;
    ssl_session_tickets off;
    location / {
      proxy_pass http://echo;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto https;
    }
  }
  server {
    listen 127.0.0.1:$STATUS_PORT;
    location = /status { stub_status; }
  }
}
EOF
"$NGINX" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 2>"$WORK/nginx/stderr.log" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_port "$NGINX_PORT" nginx "$NGINX_PID"
# Master and its worker (the worker does the TLS work).
mapfile -t NGINX_PIDS < <(echo "$NGINX_PID"; ps -o pid= --ppid "$NGINX_PID" | tr -d ' ')

# --- server-side connection counters ---
http_get() { # port path → body
  exec 3<>"/dev/tcp/127.0.0.1/$1"
  printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
  cat <&3
  exec 3<&-
}
handshakes_gateway() {
  http_get "$ADMIN_PORT" /metrics |
    awk '/^gateway_tls_handshakes_total\{result="success"\}/ {print $2; f=1} END {if (!f) print 0}'
}
handshakes_nginx() {
  # stub_status: "server accepts handled requests" then the three numbers.
  http_get "$STATUS_PORT" /status | awk 'p {print $1; exit} /server accepts/ {p=1}'
}

cpu_ticks() { # pids… → utime+stime of them, clock ticks
  local total=0 pid
  for pid in "$@"; do
    # Fields after the ")" of the command name: state is 1, utime 12, stime 13.
    total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
  done
  echo "$total"
}
TICKS=$(getconf CLK_TCK)

# One round against a port; prints "<handshakes/s> <handshakes counted by the server> <2xx>
# <seconds> <server CPU %> <handshakes per server CPU second>".
round() { # port counter-fn pids…
  local port=$1 counter=$2 before after out cpu0 cpu1
  shift 2
  before=$($counter)
  cpu0=$(cpu_ticks "$@")
  out=$("$LOAD" --connect "127.0.0.1:$port" --name "$NAME" --requests "$REQUESTS" \
    --concurrency "$CLIENTS") || { echo "$out" >&2; return 1; }
  cpu1=$(cpu_ticks "$@")
  after=$($counter)
  # stub_status counts its own connections: one more between the two readings.
  [ "$counter" = handshakes_nginx ] && after=$((after - 1))
  [ -n "${NEGOTIATED:-}" ] || NEGOTIATED=$(echo "$out" | grep -o 'protocol=.*')
  echo "$out" | awk -v b="$before" -v a="$after" -v c="$((cpu1 - cpu0))" -v hz="$TICKS" '{
    for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    cpu = c / hz
    printf "%.0f %d %d %.3f %.0f %.0f\n", v["rate"], a - b, v["ok"], v["seconds"],
      100 * cpu / v["seconds"], (cpu > 0 ? (a - b) / cpu : 0)
  }'
}

# Warm-up (not counted): a few hundred handshakes each.
REQUESTS_SAVED=$REQUESTS
REQUESTS=300
round "$GW_PORT" handshakes_gateway "$GW_PID" >/dev/null
round "$NGINX_PORT" handshakes_nginx "${NGINX_PIDS[@]}" >/dev/null
REQUESTS=$REQUESTS_SAVED

echo "New-connection TLS handshakes/s (full handshake, one HTTP/1.1 request each, Connection: close)"
echo "client: benches/tls_handshake_load.rs, $REQUESTS connections per round, $CLIENTS at a time," \
  "1 client thread, no session resumption; servers: 1 worker each; key $KEY; $(nproc) CPUs"
printf '%-6s %-15s %13s %11s %6s %8s %8s %16s\n' \
  round server handshakes/s handshakes 2xx seconds "CPU %" "handshakes/CPU-s"
GW_RATES=()
NGINX_RATES=()
GW_EFF=()
NGINX_EFF=()
for i in $(seq 1 "$ROUNDS"); do
  for server in tenant-gateway nginx; do
    if [ "$server" = tenant-gateway ]; then
      read -r rate n ok secs cpu eff < <(round "$GW_PORT" handshakes_gateway "$GW_PID")
      GW_RATES+=("$rate")
      GW_EFF+=("$eff")
    else
      read -r rate n ok secs cpu eff < <(round "$NGINX_PORT" handshakes_nginx "${NGINX_PIDS[@]}")
      NGINX_RATES+=("$rate")
      NGINX_EFF+=("$eff")
    fi
    [ -n "${rate:-}" ] || { echo "$server round $i failed" >&2; exit 1; }
    printf '%-6s %-15s %13s %11s %6s %8s %8s %16s\n' "$i" "$server" "$rate" "$n" "$ok" "$secs" "$cpu" "$eff"
    if [ "$n" -ne "$REQUESTS" ] || [ "$ok" -ne "$REQUESTS" ]; then
      echo "warning: $server round $i: expected $REQUESTS handshakes and 2xx," \
        "got $n handshakes, $ok 2xx" >&2
    fi
  done
done

median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
GW_MED=$(median "${GW_RATES[@]}")
NGINX_MED=$(median "${NGINX_RATES[@]}")
GW_EFF_MED=$(median "${GW_EFF[@]}")
NGINX_EFF_MED=$(median "${NGINX_EFF[@]}")
echo
printf '%-15s %22s %27s\n' server "median handshakes/s" "median handshakes/CPU-s"
printf '%-15s %22s %27s\n' tenant-gateway "$GW_MED" "$GW_EFF_MED" nginx "$NGINX_MED" "$NGINX_EFF_MED"
awk -v g="$GW_MED" -v n="$NGINX_MED" -v ge="$GW_EFF_MED" -v ne="$NGINX_EFF_MED" 'BEGIN {
  printf "ratio tenant-gateway/nginx: %.2f (handshakes/s), %.2f (handshakes per server CPU second)\n", g / n, ge / ne }'
