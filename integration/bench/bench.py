"""Runs the side-by-side benchmark; see run.sh. Prints a Markdown table of medians."""
import json, os, re, shutil, signal, statistics, subprocess, sys, tempfile, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
DUR = int(os.environ.get("DURATION", "8"))
BACKENDS = [19001, 19002, 19003]
SBIN = os.path.join(ROOT, "target/release/switchboard")
# Another build to compare in the same interleaved rounds (e.g. the previous commit's).
SBIN_BEFORE = os.environ.get("SWITCHBOARD_BEFORE_BIN")
BACKEND_BIN = os.path.join(ROOT, "target/release/examples/bench_backend")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
work = tempfile.mkdtemp(prefix="sb-bench-")
# Client connections the reference proxies accept (idle_conns.py raises it).
MAXCONN = int(os.environ.get("MAXCONN", "4096"))

def pinned(cpu, args, **kw):
    return subprocess.Popen(["taskset", "-c", str(cpu)] + args, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, **kw)

def wait_port(port, timeout=10):
    import socket
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")

def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime

def hwm_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0

def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path

def start_switchboard(binary=SBIN):
    disco = os.path.join(work, "disco"); os.makedirs(disco, exist_ok=True)
    write(os.path.join(disco, "web"), "".join(f"127.0.0.1 {p}\n" for p in BACKENDS))
    cfg = write(os.path.join(work, "sb.yaml"), f"""
admin: {{ip: 127.0.0.1, port: 19990}}
namers:
- kind: io.l5d.fs
  rootDir: {disco}
routers:
- protocol: http
  label: bench
  identifier: {{kind: io.l5d.header.token, header: Host}}
  dtab: /svc => /#/io.l5d.fs;
  client:
    loadBalancer: {{kind: p2c}}
  servers: [{{ip: 127.0.0.1, port: 14140}}]
telemetry:
- kind: io.l5d.prometheus
""")
    p = pinned(1, [binary, "run", cfg, "--workers", "1"])
    wait_port(14140)
    return p, 14140, p.pid

def start_nginx():
    ups = "".join(f"server 127.0.0.1:{p};" for p in BACKENDS)
    cfg = write(os.path.join(work, "nginx.conf"), f"""
worker_processes 1; daemon off; pid {work}/nginx.pid; error_log {work}/nginx.err;
worker_rlimit_nofile {MAXCONN * 2 + 100};
events {{ worker_connections {MAXCONN * 2 + 100}; }}
http {{ access_log off;
  upstream be {{ {ups} keepalive 128; }}
  server {{ listen 127.0.0.1:18080;
    location / {{ proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}
""")
    p = pinned(1, [NGINX, "-c", cfg])
    wait_port(18080)
    time.sleep(0.3)
    worker = subprocess.check_output(["pgrep", "-P", str(p.pid)]).split()[0].decode()
    return p, 18080, int(worker)

def start_haproxy():
    srv = "".join(f"  server s{i} 127.0.0.1:{p}\n" for i, p in enumerate(BACKENDS))
    cfg = write(os.path.join(work, "haproxy.cfg"), f"""
global
  nbthread 1
  maxconn {MAXCONN + 100}
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:18081
  default_backend be
backend be
  balance roundrobin
{srv}""")
    p = pinned(1, [HAPROXY, "-f", cfg])
    wait_port(18081)
    return p, 18081, p.pid

def wrk(port, extra=(), conns=64):
    out = subprocess.run(["taskset", "-c", "0", "wrk", "-t1", f"-c{conns}", f"-d{DUR}s",
                          "-H", "Host: web", *extra, f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else 0.0

def oha(port):
    out = subprocess.run(["taskset", "-c", "0", "oha", "-q", "10000", "-c", "16", "-z", f"{DUR}s",
                          "--latency-correction", "--no-tui", "--output-format", "json",
                          "-H", "Host: web", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True).stdout
    try:
        j = json.loads(out)
        p = j["latencyPercentiles"]
        return p["p50"] * 1e6, p["p99"] * 1e6
    except Exception:
        return float("nan"), float("nan")

def measure(start):
    proc, port, pid = start() if start else (None, BACKENDS[0], None)
    try:
        t0 = cpu_ticks(pid) if pid else 0
        rps = wrk(port)
        t1 = cpu_ticks(pid) if pid else 0
        cpu_us = ((t1 - t0) / os.sysconf("SC_CLK_TCK")) * 1e6 / (rps * DUR) if pid and rps else float("nan")
        close = wrk(port, ["-H", "Connection: close"], conns=16)
        p50, p99 = oha(port)
        rss = hwm_kb(pid) / 1024 if pid else float("nan")
        return dict(rps=rps, close=close, p50=p50, p99=p99, cpu=cpu_us, rss=rss)
    finally:
        if proc:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            time.sleep(0.5)

def main():
    backend = pinned(0, [BACKEND_BIN] + [str(p) for p in BACKENDS])
    for p in BACKENDS:
        wait_port(p)
    targets = [("direct (no proxy)", None), ("nginx", start_nginx), ("HAProxy", start_haproxy),
               ("Switchboard", start_switchboard)]
    if SBIN_BEFORE:
        targets.append(("Switchboard (before)", lambda: start_switchboard(SBIN_BEFORE)))
    results = {name: [] for name, _ in targets}
    try:
        for r in range(ROUNDS):
            for name, start in targets:
                res = measure(start)
                results[name].append(res)
                print(f"round {r + 1} {name}: {res}", file=sys.stderr)
    finally:
        backend.kill()
        shutil.rmtree(work, ignore_errors=True)
    med = lambda xs: statistics.median(xs)
    print("| target | h1 max rps/core | conn:close rps | p50 / p99 µs @10k | CPU µs/req | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for name, _ in targets:
        rs = results[name]
        f = lambda k: med([x[k] for x in rs])
        fmt = lambda v, spec: "-" if v != v else format(v, spec)
        print(f"| {name} | {f('rps'):,.0f} | {f('close'):,.0f} | {fmt(f('p50'), '.0f')} / {fmt(f('p99'), '.0f')} | {fmt(f('cpu'), '.1f')} | {fmt(f('rss'), '.1f')} |")

if __name__ == "__main__":
    main()
