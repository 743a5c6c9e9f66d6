#!/usr/bin/env bash
# Installs the system packages tenant-gateway needs, only those that are missing.
#   bash scripts/deps.sh build   cmake (pingora's zlib-ng)
#   bash scripts/deps.sh test    + redis-server, redis-cli, pebble, pebble-challtestsrv,
#                                prometheus (promtool checks conf/alerts.yml)
#   bash scripts/deps.sh bench   + redis-server, wrk, nghttp2-client (h2load), nginx, haproxy,
#                                caddy, openssl (benches/load.py), valgrind (benches/insn.sh),
#                                protobuf-compiler (to build pingap for the peer table)
set -euo pipefail

want=(cmake)
case "${1:-build}" in
  build) ;;
  test) want+=(redis-server pebble prometheus) ;;
  bench) want+=(redis-server wrk nghttp2-client nginx haproxy caddy openssl valgrind protobuf-compiler) ;;
  *) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac

# Package → a binary it provides, to tell whether it is already there.
declare -A probe=(
  [cmake]=cmake [redis-server]=redis-server [pebble]=pebble-challtestsrv
  [wrk]=wrk [nghttp2-client]=h2load [nginx]=nginx [haproxy]=haproxy
  [caddy]=caddy [openssl]=openssl [prometheus]=promtool
  [valgrind]=valgrind [protobuf-compiler]=protoc
)
missing=()
for pkg in "${want[@]}"; do
  command -v "${probe[$pkg]}" >/dev/null 2>&1 || [ -x "/usr/sbin/${probe[$pkg]}" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to apt-get install ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts these as services on install; the tests and benchmarks start their own.
for svc in redis-server nginx haproxy caddy prometheus; do
  if [[ " ${missing[*]} " == *" $svc "* ]]; then
    $SUDO service "$svc" stop >/dev/null 2>&1 || true
  fi
done
