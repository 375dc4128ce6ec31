#!/usr/bin/env bash
# User-space instructions per proxied request (reference/performance.md, "Instructions per
# request"): Switchboard on the bench config under callgrind, a warm-up, counters zeroed, N
# keep-alive requests with oha, a dump; prints instructions per request. Repeatable to ~0.1%.
#
#   integration/bench/instructions.sh [BINARY]     # default target/release/switchboard
#   N=20000 integration/bench/instructions.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="${1:-target/release/switchboard}"
n="${N:-20000}"
command -v valgrind >/dev/null || { apt-get install -y -qq valgrind >/dev/null; }
command -v oha >/dev/null || cargo install oha --locked --quiet
[ -x target/release/examples/bench_backend ] || cargo build --release --quiet --example bench_backend
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/disco"
printf '127.0.0.1 19101\n127.0.0.1 19102\n127.0.0.1 19103\n' > "$work/disco/web"
cat > "$work/sb.yaml" <<YAML
admin: {ip: 127.0.0.1, port: 19992}
namers:
- kind: io.l5d.fs
  rootDir: $work/disco
routers:
- protocol: http
  label: bench
  identifier: {kind: io.l5d.header.token, header: Host}
  dtab: /svc => /#/io.l5d.fs;
  client:
    loadBalancer: {kind: p2c}
  servers: [{ip: 127.0.0.1, port: 14142}]
telemetry:
- kind: io.l5d.prometheus
YAML
target/release/examples/bench_backend 19101 19102 19103 >/dev/null 2>&1 &
valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$bin" run "$work/sb.yaml" --workers 1 >/dev/null 2>"$work/vg.log" &
vg=$!
for _ in $(seq 1 200); do
  curl -s -o /dev/null -H 'Host: web' http://127.0.0.1:14142/ && break
  sleep 0.1
done
oha -n 2000 -c 8 --no-tui -H 'Host: web' http://127.0.0.1:14142/ >/dev/null
callgrind_control -z "$vg" >/dev/null
oha -n "$n" -c 8 --no-tui -H 'Host: web' http://127.0.0.1:14142/ >/dev/null
callgrind_control -d "$vg" >/dev/null
sleep 1
total=$(grep -h '^summary:' "$work"/cg.out* | awk '{s+=$2} END {print s}')
echo "$bin: $((total / n)) instructions per request (N=$n)"
if [ -n "${CG_OUT:-}" ]; then cp "$(ls -S "$work"/cg.out* | head -1)" "$CG_OUT"; fi
