#!/usr/bin/env bash
# Quick start: builds tenant-gateway and runs it on conf/ with the echo upstream it points at.
#   curl -H 'Host: acme.localhost' http://127.0.0.1:8080/
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh build
cargo build --release
bin=target/release/tenant-gateway
"$bin" check --config conf/gateway.toml
"$bin" echo --listen 127.0.0.1:3000 &
echo_pid=$!
trap 'kill $echo_pid 2>/dev/null || true' EXIT
export GATEWAY_ADMIN_TOKEN="${GATEWAY_ADMIN_TOKEN:-demo-admin-token}"
echo "gateway on http://127.0.0.1:8080 (admin http://127.0.0.1:9090, token \$GATEWAY_ADMIN_TOKEN=$GATEWAY_ADMIN_TOKEN)" >&2
echo "try: curl -H 'Host: acme.localhost' http://127.0.0.1:8080/" >&2
"$bin" run --config conf/gateway.toml
