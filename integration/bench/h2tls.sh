#!/usr/bin/env bash
# h2 streams per second and TLS handshakes / CPU per request, side by side with nginx and
# HAProxy (see h2tls.py). Installs h2load (nghttp2-client), wrk, nginx and HAProxy from Debian.
#
#   integration/bench/h2tls.sh                       # 3 rounds of 8 s per measurement
#   ROUNDS=1 DURATION=3 integration/bench/h2tls.sh   # quick look
#
# Do not build or run anything else meanwhile.
set -euo pipefail
cd "$(dirname "$0")/../.."
need() { command -v "$1" >/dev/null 2>&1; }
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
missing=()
need h2load || missing+=(nghttp2-client)
need wrk || missing+=(wrk)
need openssl || missing+=(openssl)
need nginx || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
need haproxy || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --quiet --bin switchboard --example bench_backend
exec python3 integration/bench/h2tls.py "$@"
