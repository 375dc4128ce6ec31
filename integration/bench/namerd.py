"""namerd's figures (BENCHMARKS.md), on the test etcd (integration/backends.sh start etcd):

1. Time from a dtab PUT to a linker routing by it: a release namerd on etcd and a release
   linker on io.l5d.namerd.http; 100 PUTs alternating the namespace's dtab between two
   backends; after each, requests through the linker (one keep-alive connection, back to back)
   until one reaches the new backend. Prints p50, p99 and max, and the PUT's own latency.
2. Scale: 1,000 namespaces, 100 simulated linkers each watching 10 namespaces' dtabs and
   binding one name (1,100 watch streams); namerd's RSS before and with them, etcd calls
   namerd makes while idle and over 100 changes (from etcd's own /metrics), and the time from
   a PUT to the watching linker's stream showing it.

Usage:
   cargo build --release
   eval "$(integration/backends.sh env)"; python3 integration/bench/namerd.py
   MESH=1 python3 integration/bench/namerd.py   # part 1 with the io.l5d.mesh interpreter
   LINKERS=1 python3 integration/bench/namerd.py  # part 3 only (needs no etcd)
3. Real linkers: for each interpreter, a fresh namerd (memory storage) and 10 release linkers
   each routing 100 distinct names (1,000 bind streams and 10 addr streams); namerd's RSS
   before and with them, per stream.
Bounded: 100 changes each, 1,100 streams, 2 x 10 linkers; about two minutes.
"""
import asyncio, http.client, json, os, random, re, socket, statistics, subprocess, sys
import tempfile, threading, time, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target", "release", "switchboard")
ETCD = os.environ.get("SWITCHBOARD_ETCD", "127.0.0.1:23790")
CHANGES = 100


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def backend(name):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # One write per answer (an unbuffered handler writes the head and the body apart, and
        # Nagle's algorithm then holds the body for the peer's delayed ACK: 40 ms).
        wbufsize = 64 * 1024

        def setup(self):
            super().setup()
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self):
            b = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(b)))
            self.end_headers()
            self.wfile.write(b)
            self.wfile.flush()

        def log_message(self, *a):
            pass
    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]


def wait_port(port, what):
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not start")


def api(port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h = {"Content-Type": "application/dtab"} if body is not None else {}
    h.update(headers or {})
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r.getheader("ETag"), data


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def ms(x):
    return f"{x * 1000:.1f} ms"


def rss_kb(pid, key="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def etcd_calls():
    """grpc_server_handled_total by method, from etcd's /metrics."""
    out = {}
    with urllib.request.urlopen(f"http://{ETCD}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            m = re.match(r'grpc_server_(started|handled)_total\{.*grpc_method="(\w+)".*\} (\S+)', line)
            if m and m.group(1) == "started":
                out[m.group(2)] = out.get(m.group(2), 0) + float(m.group(3))
    return out


def start(args, cfg_text):
    f = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    f.write(cfg_text)
    f.close()
    return subprocess.Popen([BIN] + args + [f.name], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def start_namerd(nadmin, napi, nmesh, storage):
    """A release namerd with both interfaces on `storage` (YAML of the `storage:` value)."""
    return start(["namerd"], f"""admin: {{ip: 127.0.0.1, port: {nadmin}}}
storage: {storage}
interfaces:
- {{kind: io.l5d.httpController, ip: 127.0.0.1, port: {napi}}}
- {{kind: io.l5d.mesh, ip: 127.0.0.1, port: {nmesh}}}
""")


def real_linkers():
    """Part 3: namerd's memory per stream with real linkers, by interpreter."""
    a = backend("a")
    for kind in ("io.l5d.namerd.http", "io.l5d.mesh"):
        napi, nmesh, nadmin = free_port(), free_port(), free_port()
        namerd = start_namerd(
            nadmin, napi, nmesh,
            f"{{kind: io.l5d.inMemory, namespaces: {{default: '/svc=>/$/inet/127.0.0.1/{a}'}}}}")
        procs = [namerd]
        try:
            wait_port(napi, "namerd")
            wait_port(nmesh, "namerd mesh")
            time.sleep(0.5)
            rss0 = rss_kb(namerd.pid)
            interp = (f"kind: io.l5d.mesh\n    dst: /$/inet/127.0.0.1/{nmesh}\n    root: /default"
                      if kind == "io.l5d.mesh"
                      else f"kind: io.l5d.namerd.http\n    dst: /$/inet/127.0.0.1/{napi}\n    namespace: default")
            ports = []
            for _ in range(10):
                lport, ladmin = free_port(), free_port()
                procs.append(start([], f"""admin: {{ip: 127.0.0.1, port: {ladmin}}}
routers:
- protocol: http
  interpreter:
    {interp}
  servers: [{{ip: 127.0.0.1, port: {lport}}}]
"""))
                ports.append(lport)
            for lport in ports:
                wait_port(lport, "linker")
                conn = http.client.HTTPConnection("127.0.0.1", lport, timeout=10)
                for i in range(100):
                    conn.request("GET", "/", headers={"Host": f"n{i}"})
                    r = conn.getresponse()
                    assert r.read() == b"a", f"{kind}: n{i} not routed"
                conn.close()
            time.sleep(2)
            rss1 = rss_kb(namerd.pid)
            streams = 10 * 100 + 10
            print(f"{kind}: namerd RSS {rss0 / 1024:.1f} MB alone, {rss1 / 1024:.1f} MB with 10 linkers "
                  f"routing 100 names each ({streams} streams): {(rss1 - rss0) / streams:.1f} KB per stream")
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait()


def main():
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release")
    if os.environ.get("LINKERS") == "1":
        return real_linkers()
    host, port = ETCD.split(":")
    prefix = f"/namerd-bench/{random.randrange(1 << 30)}"
    napi, nadmin, lport, ladmin = free_port(), free_port(), free_port(), free_port()
    nmesh = free_port()
    mesh = os.environ.get("MESH") == "1"
    namerd = start_namerd(
        nadmin, napi, nmesh,
        f"{{kind: io.l5d.etcd, host: {host}, port: {port}, pathPrefix: {prefix}}}")
    procs = [namerd]
    try:
        wait_port(napi, "namerd")
        a, b = backend("a"), backend("b")
        st, _, body = api(napi, "POST", "/api/1/dtabs/default", f"/svc=>/$/inet/127.0.0.1/{a}")
        assert st == 204, body
        interp = (f"kind: io.l5d.mesh\n    dst: /$/inet/127.0.0.1/{nmesh}\n    root: /default" if mesh
                  else f"kind: io.l5d.namerd.http\n    dst: /$/inet/127.0.0.1/{napi}\n    namespace: default")
        linker = start([], f"""admin: {{ip: 127.0.0.1, port: {ladmin}}}
routers:
- protocol: http
  interpreter:
    {interp}
    retry: {{baseSeconds: 1, maxSeconds: 5}}
  servers: [{{ip: 127.0.0.1, port: {lport}}}]
""")
        procs.append(linker)
        wait_port(lport, "linker")
        conn = http.client.HTTPConnection("127.0.0.1", lport, timeout=10)

        def through():
            conn.request("GET", "/", headers={"Host": "web"})
            r = conn.getresponse()
            return r.read().decode()
        deadline = time.time() + 20
        while through() != "a":
            assert time.time() < deadline, "the linker never routed"
        steady = []
        for _ in range(200):
            t = time.perf_counter()
            through()
            steady.append(time.perf_counter() - t)
        print(f"a request through the linker, steady state: p50 {ms(pct(steady, 50))}")
        # 1. PUT -> routing.
        lat, puts, polls = [], [], []
        for i in range(CHANGES):
            target, port_ = ("b", b) if i % 2 == 0 else ("a", a)
            t0 = time.perf_counter()
            st, _, body = api(napi, "PUT", "/api/1/dtabs/default", f"/svc=>/$/inet/127.0.0.1/{port_}")
            t1 = time.perf_counter()
            assert st == 204, body
            n = 0
            while through() != target:
                n += 1
                assert time.perf_counter() - t0 < 10, "no re-route in 10 s"
            lat.append(time.perf_counter() - t0)
            puts.append(t1 - t0)
            polls.append(n)
        print(f"interpreter: {'io.l5d.mesh' if mesh else 'io.l5d.namerd.http'}")
        print(f"PUT -> routing over {CHANGES} changes: p50 {ms(pct(lat, 50))}, p99 {ms(pct(lat, 99))}, "
              f"max {ms(max(lat))}; the PUT itself p50 {ms(pct(puts, 50))}, p99 {ms(pct(puts, 99))}; "
              f"requests still on the old route after the PUT answered: mean {statistics.mean(polls):.1f}")
        linker.terminate()
        procs.remove(linker)
        if mesh:
            return

        # 2. Scale.
        rss0 = rss_kb(namerd.pid)
        for i in range(1000):
            st, _, body = api(napi, "POST", f"/api/1/dtabs/ns{i}", f"/svc=>/$/inet/127.0.0.1/{a}")
            assert st == 204, body
        rss_ns = rss_kb(namerd.pid)
        asyncio.run(scale(napi, namerd.pid, rss0, rss_ns, a, b))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


async def watch(port, path, client, seen):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(f"GET {path} HTTP/1.1\r\nHost: namerd\r\nl5d-namerd-client: {client}\r\n\r\n".encode())
    await w.drain()
    head = await r.readuntil(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], head
    while True:
        size = await r.readline()
        n = int(size.strip() or b"0", 16)
        if n == 0:
            return
        data = await r.readexactly(n + 2)
        for line in data[:-2].decode().splitlines():
            if line.strip():
                seen[path] = (time.perf_counter(), line)


async def scale(napi, pid, rss0, rss_ns, a, b):
    seen = {}
    tasks = []
    for li in range(100):
        for k in range(10):
            tasks.append(asyncio.create_task(
                watch(napi, f"/api/1/dtabs/ns{li * 10 + k}?watch=true", f"linker-{li}", seen)))
        tasks.append(asyncio.create_task(
            watch(napi, f"/api/1/bind/ns{li * 10}?path=/svc/web&watch=true", f"linker-{li}", seen)))
    deadline = time.time() + 30
    while len(seen) < len(tasks):
        assert time.time() < deadline, f"only {len(seen)} of {len(tasks)} streams answered"
        await asyncio.sleep(0.05)
    await asyncio.sleep(1)
    rss_w = rss_kb(pid)
    c0 = etcd_calls()
    await asyncio.sleep(10)
    c1 = etcd_calls()
    idle = {k: c1[k] - c0.get(k, 0) for k in c1 if c1[k] - c0.get(k, 0)}
    fan = []
    for i in range(CHANGES):
        ns = random.randrange(1000)
        path = f"/api/1/dtabs/ns{ns}?watch=true"
        before = seen[path]
        t0 = time.perf_counter()
        st, _, body = await asyncio.to_thread(
            api, napi, "PUT", f"/api/1/dtabs/ns{ns}", f"/svc=>/$/inet/127.0.0.1/{a};/x=>/y{i}")
        assert st == 204, body
        while seen[path] == before:
            assert time.perf_counter() - t0 < 10
            await asyncio.sleep(0.0005)
        fan.append(seen[path][0] - t0)
    c2 = etcd_calls()
    changes = {k: c2[k] - c1.get(k, 0) for k in c2 if c2[k] - c1.get(k, 0)}
    print(f"namerd RSS: {rss0 / 1024:.1f} MB at start, {rss_ns / 1024:.1f} MB with 1,000 namespaces, "
          f"{rss_w / 1024:.1f} MB with 100 linkers ({len(tasks)} watch streams); peak "
          f"{rss_kb(pid, 'VmHWM') / 1024:.1f} MB")
    print(f"etcd calls by namerd in 10 s idle with every stream open: {idle or 'none'}")
    print(f"etcd calls over {CHANGES} PUTs: {changes}")
    print(f"PUT -> the watching linker's stream: p50 {ms(pct(fan, 50))}, p99 {ms(pct(fan, 99))}")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{napi}/api/1/dtabs", timeout=5):
            pass
    except OSError:
        pass
    for t in tasks:
        t.cancel()


if __name__ == "__main__":
    main()
