"""Memory per idle keep-alive client connection (the HTTP/1 fast-path issue's row), side by
side: each proxy (bench.py's configs: Switchboard on the fs namer with p2c and metrics, nginx,
HAProxy, one worker each) gets N client connections that each send one request, read the
answer, and then stay open and idle. Prints the proxy's RSS before and with them, the
difference per connection, and (Switchboard) the server's `connections` gauge. Usage:
   cargo build --release --bin switchboard --example bench_backend
   N=10000 python3 integration/bench/idle_conns.py
"""
import os, resource, socket, subprocess, sys, time, json, urllib.request

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("MAXCONN", str(int(os.environ.get("N", "10000")) + 100))
import bench  # noqa: E402

N = int(os.environ.get("N", "10000"))
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if os.geteuid() == 0 and hard < 4 * N + 1000:
    # HAProxy asks for two descriptors per allowed connection; root may raise the limit.
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (4 * N + 1000, 4 * N + 1000))
        hard = 4 * N + 1000
    except (ValueError, OSError):
        pass  # a container may not allow it: HAProxy then needs N below hard / 2
# This process holds N client sockets; each proxy (inheriting the limit) N more plus a few.
want = min(hard, 4 * N + 1000)
resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
if want < N + 500:
    sys.exit(f"need {N + 500} file descriptors, the hard limit is {hard}")

def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

REQ = b"GET / HTTP/1.1\r\nHost: web\r\n\r\n"

def one_request(s):
    s.sendall(REQ)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("closed before an answer")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(rest) < length:
        rest += s.recv(4096)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head[:60])

def measure(name, start):
    p, port, pid = start()
    try:
        warm = socket.create_connection(("127.0.0.1", port))
        for _ in range(100):
            one_request(warm)
        warm.close()
        time.sleep(0.5)
        before = rss_kb(pid)
        conns = []
        for i in range(N):
            s = socket.create_connection(("127.0.0.1", port))
            one_request(s)
            conns.append(s)
        time.sleep(1.0)
        after = rss_kb(pid)
        gauge = ""
        if name == "Switchboard":
            m = json.load(urllib.request.urlopen("http://127.0.0.1:19990/admin/metrics.json"))
            gauge = m.get("rt/bench/server/127.0.0.1/14140/connections", "?")
        per = (after - before) / N
        print(f"| {name} | {N} | {before / 1024:.1f} | {after / 1024:.1f} | {per:.2f} | {gauge} |",
              flush=True)
        for s in conns:
            s.close()
    finally:
        p.terminate()
        p.wait()
        time.sleep(0.5)

backends = [bench.pinned(0, [bench.BACKEND_BIN] + [str(b) for b in bench.BACKENDS])]
for b in bench.BACKENDS:
    bench.wait_port(b)
print("| proxy | idle connections | RSS before MB | RSS with them MB | KB per connection | connections gauge |")
print("|---|---|---|---|---|---|")
try:
    for name, start in [("Switchboard", bench.start_switchboard), ("nginx", bench.start_nginx),
                        ("HAProxy", bench.start_haproxy)]:
        measure(name, start)
finally:
    for b in backends:
        b.terminate()
