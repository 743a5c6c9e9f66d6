#!/usr/bin/env bash
# Installs the system packages tenant-gateway needs, only those that are missing.
#   bash scripts/deps.sh build   cmake (pingora's zlib-ng)
#   bash scripts/deps.sh test    + redis-server, redis-cli, pebble, pebble-challtestsrv,
#                                prometheus (promtool checks conf/alerts.yml and a scrape),
#                                postgresql (initdb/pg_ctl/psql for the tenant isolation tests),
#                                chromium + chromium-driver (the /ui console test), and
#                                schemathesis from PyPI in ~/.cache/tenant-gateway/schemathesis-venv
#   bash scripts/deps.sh bench   + redis-server, wrk, nghttp2-client (h2load), nginx, haproxy,
#                                caddy, openssl (benches/load.py), valgrind (benches/insn.sh),
#                                protobuf-compiler (to build pingap for the peer table)
set -euo pipefail

want=(cmake)
case "${1:-build}" in
  build) ;;
  test) want+=(redis-server pebble prometheus postgresql chromium chromium-driver) ;;
  bench) want+=(redis-server wrk nghttp2-client nginx haproxy caddy openssl valgrind protobuf-compiler) ;;
  *) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac

# Package → a binary it provides, to tell whether it is already there.
declare -A probe=(
  [cmake]=cmake [redis-server]=redis-server [pebble]=pebble-challtestsrv
  [wrk]=wrk [nghttp2-client]=h2load [nginx]=nginx [haproxy]=haproxy
  [caddy]=caddy [openssl]=openssl [prometheus]=promtool
  [chromium]=chromium [chromium-driver]=chromedriver
  [valgrind]=valgrind [protobuf-compiler]=protoc
)
# Packages whose binaries live off PATH: a glob that matches once they are installed.
declare -A probe_path=(
  [postgresql]='/usr/lib/postgresql/*/bin/initdb'
)
installed() {
  local pkg="$1" f
  if [ -n "${probe_path[$pkg]:-}" ]; then
    for f in ${probe_path[$pkg]}; do [ -x "$f" ] && command -v psql >/dev/null 2>&1 && return 0; done
    return 1
  fi
  command -v "${probe[$pkg]}" >/dev/null 2>&1 || [ -x "/usr/sbin/${probe[$pkg]}" ]
}
missing=()
for pkg in "${want[@]}"; do
  installed "$pkg" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
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
  for svc in redis-server nginx haproxy caddy prometheus postgresql; do
    if [[ " ${missing[*]} " == *" $svc "* ]]; then
      $SUDO service "$svc" stop >/dev/null 2>&1 || true
    fi
  done
fi

# schemathesis (PyPI), the OpenAPI fuzzer of tests/e2e/operator.rs, in a virtualenv of its
# own. It needs CPython >= 3.12: under 3.11 (3.11.2 and 3.11.7 seen here) hypothesis' lambda
# descriptions make ast.parse fail with "AST constructor recursion depth mismatch".
SCHEMATHESIS_VERSION=4.32.5
SCHEMATHESIS_VENV="${HOME}/.cache/tenant-gateway/schemathesis-venv"
install_schemathesis() {
  local venv="$SCHEMATHESIS_VENV"
  if [ -x "$venv/bin/st" ] && "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null \
      && "$venv/bin/st" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
    return 0
  fi
  local py=""
  for cand in python3.13 python3.12 $(ls -d "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV) /usr/bin/python3.1[2-9]; do
    if "$cand" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
      py="$cand"
      break
    fi
  done
  if [ -z "$py" ]; then
    echo "schemathesis needs CPython >= 3.12 (3.11 trips an ast bug under hypothesis); install one and rerun" >&2
    exit 1
  fi
  echo "installing: schemathesis==$SCHEMATHESIS_VERSION into $venv (with $py)" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
}
if [ "${1:-build}" = test ]; then
  install_schemathesis
fi
