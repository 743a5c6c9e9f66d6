#!/usr/bin/env bash
# Installs what the tests need (cmake, redis-server, pebble, postgresql) and runs every check
# and test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
