#!/usr/bin/env bash
# User-space instructions per proxied request (reference/performance.md, "Instructions per
# request"): Switchboard on the bench config under callgrind, a warm-up, counters zeroed, N
# keep-alive requests with oha, a dump; prints instructions per request. Repeatable to ~0.1%.
#
#   integration/bench/instructions.sh [BINARY]     # default target/release/switchboard
#   N=20000 integration/bench/instructions.sh
#   TARGET=nginx integration/bench/instructions.sh # nginx (one worker, no master) the same way
#   STRACE=1 integration/bench/instructions.sh     # syscalls per request (strace -c -f) instead
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
cat > "$work/nginx.conf" <<NGINX
daemon off; master_process off; worker_processes 1; pid $work/nginx.pid; error_log $work/nginx.err;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $work/body; proxy_temp_path $work/proxy;
  fastcgi_temp_path $work/fcgi; uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;
  upstream be { server 127.0.0.1:19101; server 127.0.0.1:19102; server 127.0.0.1:19103; keepalive 128; }
  server { listen 127.0.0.1:14142;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NGINX
if [ "${TARGET:-switchboard}" = nginx ]; then
  cmd=(/usr/sbin/nginx -p "$work" -c "$work/nginx.conf"); label=nginx
else
  cmd=("$bin" run "$work/sb.yaml" --workers 1); label="$bin"
fi
if [ -n "${STRACE:-}" ]; then
  command -v strace >/dev/null || apt-get install -y -qq strace >/dev/null
  "${cmd[@]}" >/dev/null 2>&1 &
  pid=$!
else
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "${cmd[@]}" >/dev/null 2>"$work/vg.log" &
  pid=$!
fi
for _ in $(seq 1 200); do
  curl -s -o /dev/null -H 'Host: web' http://127.0.0.1:14142/ && break
  sleep 0.1
done
oha -n 2000 -c 8 --no-tui -H 'Host: web' http://127.0.0.1:14142/ >/dev/null
if [ -n "${STRACE:-}" ]; then
  strace -c -f -p "$pid" -o "$work/strace.txt" &
  st=$!
  sleep 1
  oha -n "$n" -c 8 --no-tui -H 'Host: web' http://127.0.0.1:14142/ >/dev/null
  kill -INT "$st"; wait "$st" 2>/dev/null || true
  calls=$(awk '!/total/ && /^[ 0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+/ {s+=$4} END {print s}' "$work/strace.txt")
  echo "$label: $(awk -v c="$calls" -v n="$n" 'BEGIN {printf "%.1f", c / n}') syscalls per request (N=$n)"
  grep -E '^ +[0-9]' "$work/strace.txt" | sort -k4 -rn | head -8
  exit 0
fi
callgrind_control -z "$pid" >/dev/null
oha -n "$n" -c 8 --no-tui -H 'Host: web' http://127.0.0.1:14142/ >/dev/null
callgrind_control -d "$pid" >/dev/null
sleep 1
total=$(grep -h '^summary:' "$work"/cg.out* | awk '{s+=$2} END {print s}')
echo "$label: $((total / n)) instructions per request (N=$n)"
if [ -n "${CG_OUT:-}" ]; then cp "$(ls -S "$work"/cg.out* | head -1)" "$CG_OUT"; fi
