#!/usr/bin/env bash
# The project's test command (README): installs and starts the real discovery backends on
# loopback (etcd, ZooKeeper, dnsmasq, and the Consul API stand-in), then runs formatting,
# lints and every test in the workspace against them, and stops the backends again.
set -euo pipefail
cd "$(dirname "$0")/.."

./integration/backends.sh install
./integration/backends.sh start
trap './integration/backends.sh stop >/dev/null 2>&1 || true' EXIT
eval "$(./integration/backends.sh env)"
# The namers' integration tests fail (instead of skipping) when a backend is missing.
export SWITCHBOARD_REQUIRE_BACKENDS=1

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
