"""h2 and TLS side by side (reference/performance.md's method): Switchboard, nginx and HAProxy,
one worker each on CPU 1, load generators and backends on CPU 0.

- h2: h2load (prior knowledge) with 16 connections x 32 streams to each proxy's HTTP/2 port;
  each proxy speaks HTTP/2 to an h2c backend (Switchboard's h2 router, nginx `grpc_pass`,
  HAProxy `proto h2`). Streams per second and the proxy's CPU per request.
- TLS: the same ECDSA P-256 certificate on each proxy's HTTPS port, HTTP/1.1 to plain backends.
  New TLS connections per second (wrk, `Connection: close`: a full handshake per request, no
  resumption) and CPU per request over kept-alive TLS connections (wrk, 64 connections).

Run through integration/bench/h2tls.sh, which installs and builds what it needs."""
import os, re, shutil, signal, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(__file__))
import bench
from bench import (SBIN, BACKEND_BIN, NGINX, HAPROXY, pinned, wait_port, cpu_ticks, write)
shutil.rmtree(bench.work, ignore_errors=True)  # bench.py's own scratch dir, unused here

ROUNDS = int(os.environ.get("ROUNDS", "3"))
DUR = int(os.environ.get("DURATION", "8"))
H1 = [19001, 19002, 19003]
H2 = [19011, 19012, 19013]
work = tempfile.mkdtemp(prefix="sb-h2tls-")

def certs():
    key, crt = os.path.join(work, "key.pem"), os.path.join(work, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=bench.test",
                    "-addext", "subjectAltName=DNS:bench.test,IP:127.0.0.1"],
                   check=True, capture_output=True)
    combined = write(os.path.join(work, "combined.pem"), open(crt).read() + open(key).read())
    return crt, key, combined

CRT, KEY, COMBINED = certs()

def sb():
    disco = os.path.join(work, "disco"); os.makedirs(disco, exist_ok=True)
    write(os.path.join(disco, "web"), "".join(f"127.0.0.1 {p}\n" for p in H1))
    write(os.path.join(disco, "h2"), "".join(f"127.0.0.1 {p}\n" for p in H2))
    cfg = write(os.path.join(work, "sb.yaml"), f"""
admin: {{ip: 127.0.0.1, port: 19990}}
namers:
- kind: io.l5d.fs
  rootDir: {disco}
routers:
- protocol: h2
  label: h2
  dtab: /svc => /#/io.l5d.fs/h2;
  servers: [{{ip: 127.0.0.1, port: 14142}}]
- protocol: http
  label: tls
  dtab: /svc => /#/io.l5d.fs/web;
  servers:
  - ip: 127.0.0.1
    port: 14443
    tls: {{certPath: {CRT}, keyPath: {KEY}}}
telemetry:
- kind: io.l5d.prometheus
""")
    p = pinned(1, [SBIN, "run", cfg, "--workers", "1"])
    wait_port(14142); wait_port(14443)
    return p, p.pid, {"h2": 14142, "tls": 14443}

def nginx():
    h1 = "".join(f"server 127.0.0.1:{p};" for p in H1)
    h2 = "".join(f"server 127.0.0.1:{p};" for p in H2)
    cfg = write(os.path.join(work, "nginx.conf"), f"""
worker_processes 1; daemon off; pid {work}/nginx.pid; error_log {work}/nginx.err;
events {{ worker_connections 4096; }}
http {{ access_log off;
  upstream be {{ {h1} keepalive 128; }}
  upstream be2 {{ {h2} keepalive 128; }}
  keepalive_requests 100000000;
  server {{ listen 127.0.0.1:18082 http2; http2_max_concurrent_streams 1000;
    location / {{ grpc_pass grpc://be2; }} }}
  server {{ listen 127.0.0.1:18443 ssl; ssl_certificate {CRT}; ssl_certificate_key {KEY};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{ proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}
""")
    p = pinned(1, [NGINX, "-c", cfg])
    wait_port(18082); wait_port(18443)
    time.sleep(0.3)
    worker = int(subprocess.check_output(["pgrep", "-P", str(p.pid)]).split()[0])
    return p, worker, {"h2": 18082, "tls": 18443}

def haproxy():
    h1 = "".join(f"  server s{i} 127.0.0.1:{p}\n" for i, p in enumerate(H1))
    h2 = "".join(f"  server t{i} 127.0.0.1:{p} proto h2\n" for i, p in enumerate(H2))
    cfg = write(os.path.join(work, "haproxy.cfg"), f"""
global
  nbthread 1
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe2
  bind 127.0.0.1:18083 proto h2
  default_backend be2
frontend fetls
  bind 127.0.0.1:18444 ssl crt {COMBINED} alpn http/1.1
  default_backend be
backend be
  balance roundrobin
{h1}backend be2
  balance roundrobin
{h2}""")
    p = pinned(1, [HAPROXY, "-f", cfg])
    wait_port(18083); wait_port(18444)
    return p, p.pid, {"h2": 18083, "tls": 18444}

def h2load(port):
    out = subprocess.run(["taskset", "-c", "0", "h2load", "-t1", "-c16", "-m32", f"-D{DUR}",
                          "-H", ":authority: h2", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True).stdout
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    ok = re.search(r"status codes: (\d+) 2xx", out)
    return (float(m.group(1)) if m else 0.0), (int(ok.group(1)) if ok else 0)

def wrk(port, extra=(), conns=64):
    out = subprocess.run(["taskset", "-c", "0", "wrk", "-t1", f"-c{conns}", f"-d{DUR}s",
                          "-H", "Host: web", *extra, f"https://127.0.0.1:{port}/"],
                         capture_output=True, text=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else 0.0

def h2_checked(port):
    """h2load's rate, counting only 2xx answers (a proxy failing fast must not look fast)."""
    t0 = time.time()
    rate, ok = h2load(port)
    return ok / DUR if ok else 0.0

def cpu_per(pid, fn):
    t0 = cpu_ticks(pid)
    rate = fn()
    t1 = cpu_ticks(pid)
    n = rate * DUR
    return rate, (((t1 - t0) / os.sysconf("SC_CLK_TCK")) * 1e6 / n) if n else float("nan")

def measure(start):
    proc, pid, ports = start()
    try:
        h2_rps, h2_cpu = cpu_per(pid, lambda: h2_checked(ports["h2"]))
        hs, hs_cpu = cpu_per(pid, lambda: wrk(ports["tls"], ["-H", "Connection: close"], conns=16))
        tls_rps, tls_cpu = cpu_per(pid, lambda: wrk(ports["tls"]))
        return dict(h2=h2_rps, h2cpu=h2_cpu, hs=hs, hscpu=hs_cpu, tls=tls_rps, tlscpu=tls_cpu)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        time.sleep(0.5)

def main():
    backend = pinned(0, [BACKEND_BIN] + [str(p) for p in H1] + [f"h2:{p}" for p in H2])
    for p in H1 + H2:
        wait_port(p)
    targets = [("nginx", nginx), ("HAProxy", haproxy), ("Switchboard", sb)]
    results = {n: [] for n, _ in targets}
    try:
        for r in range(ROUNDS):
            for name, start in targets:
                res = measure(start)
                results[name].append(res)
                print(f"round {r + 1} {name}: {res}", file=sys.stderr)
    finally:
        backend.kill()
        shutil.rmtree(work, ignore_errors=True)
    med = statistics.median
    print("| target | h2 streams/s (16 conns x 32) | CPU µs/stream | TLS new conns/s | CPU µs/new TLS conn | TLS keep-alive rps | CPU µs/req over TLS |")
    print("|---|---|---|---|---|---|---|")
    for name, _ in targets:
        rs = results[name]
        f = lambda k: med([x[k] for x in rs])
        print(f"| {name} | {f('h2'):,.0f} | {f('h2cpu'):.1f} | {f('hs'):,.0f} | {f('hscpu'):.0f} | {f('tls'):,.0f} | {f('tlscpu'):.1f} |")

if __name__ == "__main__":
    main()
