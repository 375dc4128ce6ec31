#!/usr/bin/env bash
# Side-by-side HTTP/1.1 benchmark (reference/performance.md): Switchboard (fs namer, header
# identifier, p2c, metrics on) against nginx and HAProxy over the same three loopback
# backends, plus the backends directly. Load generator and backends on CPU 0, the proxy under
# test alone on CPU 1 with one worker. Three interleaved rounds; medians printed as a Markdown
# table. Installs what it needs (wrk, nginx-light, haproxy from Debian; oha from crates.io).
#
#   integration/bench/run.sh            # full run (about 6 minutes)
#   ROUNDS=1 DURATION=3 integration/bench/run.sh   # quick look
#
# Do not build or run anything else meanwhile: a concurrent build halves throughput.
set -euo pipefail
cd "$(dirname "$0")/../.."

need() { command -v "$1" >/dev/null 2>&1; }
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
missing=()
need wrk || missing+=(wrk)
need nginx || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
need haproxy || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
need oha || cargo install oha --locked --quiet
cargo build --release --quiet --bin switchboard --example bench_backend
exec python3 integration/bench/bench.py "$@"
