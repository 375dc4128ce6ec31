"""Peak RSS of a release Switchboard under hostile traffic (the hostile-clients issue's
BENCHMARKS rows): the bench config (fs namer, header identifier, p2c, metrics), then
1. 10,000 requests, each with a distinct made-up Host name of 1 KB (each a Neg name: 502);
2. 10,000 requests carrying random `l5d-dtab`s built from the dtab language's pieces
   (unions, alternatives, wildcards, `/`, system namers), as the fuzz target makes them;
printing VmHWM after each, and the admin metrics page's size. Usage:
   cargo build --release && python3 integration/bench/hostile_rss.py
"""
import os, random, signal, socket, subprocess, sys, tempfile, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SBIN = os.environ.get("SWITCHBOARD_BIN", os.path.join(ROOT, "target/release/switchboard"))
N = int(os.environ.get("N", "10000"))
work = tempfile.mkdtemp(prefix="sb-hostile-")

def hwm_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0

def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")

class Conn:
    """A keep-alive HTTP/1.1 connection that reads each answer by its Content-Length."""
    def __init__(self, port):
        self.port = port
        self.s = None
    def request(self, host, headers=()):
        for _ in range(2):
            try:
                if self.s is None:
                    self.s = socket.create_connection(("127.0.0.1", self.port))
                h = "".join(f"{k}: {v}\r\n" for k, v in headers)
                self.s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n{h}\r\n".encode())
                return self.read()
            except OSError:
                self.s = None
        return 0
    def read(self):
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise OSError("closed")
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ")[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(rest) < length:
            rest += self.s.recv(65536)
        return status

def random_dtab(rng):
    atoms = ["/x0", "/x1", "/x2", "/svc/web", "/", "/*", "~", "!", "$",
             "/$/inet/127.0.0.1/1", "/#/io.l5d.fs/web"]
    d = []
    for _ in range(rng.randint(1, 12)):
        prefix = rng.choice(["/x0", "/x1", "/x2", "/svc", "/", "/*"])
        dst = rng.choice(atoms)
        for _ in range(rng.randint(0, 3)):
            dst = f"({dst}) {rng.choice(['&', '|'])} {rng.choice(atoms)}"
        d.append(f"{prefix}=>{dst}")
    return ";".join(d)

def main():
    disco = os.path.join(work, "disco"); os.makedirs(disco)
    open(os.path.join(disco, "web"), "w").write("127.0.0.1 19001\n")
    cfg = os.path.join(work, "sb.yaml")
    open(cfg, "w").write(f"""
admin: {{ip: 127.0.0.1, port: 19991}}
namers:
- kind: io.l5d.fs
  rootDir: {disco}
routers:
- protocol: http
  label: bench
  dtab: /svc => /#/io.l5d.fs;
  servers: [{{ip: 127.0.0.1, port: 14141}}]
telemetry:
- kind: io.l5d.prometheus
""")
    backend = subprocess.Popen([os.path.join(ROOT, "target/release/examples/bench_backend"), "19001"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    p = subprocess.Popen([SBIN, "run", cfg, "--workers", "1"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        wait_port(14141); wait_port(19001)
        c = Conn(14141)
        for _ in range(1000):
            assert c.request("web") == 200
        print(f"after 1,000 good requests: VmHWM {hwm_mb(p.pid):.1f} MB")
        rng = random.Random(7)
        t0 = time.time()
        statuses = {}
        for i in range(N):
            host = f"{i}-" + "".join(rng.choice("abcdefghij") for _ in range(1024))
            s = c.request(host)
            statuses[s] = statuses.get(s, 0) + 1
        print(f"after {N:,} distinct 1 KB Host names ({statuses}, {time.time() - t0:.1f} s): "
              f"VmHWM {hwm_mb(p.pid):.1f} MB")
        m = socket.create_connection(("127.0.0.1", 19991))
        m.sendall(b"GET /admin/metrics.json HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        size = 0
        while True:
            b = m.recv(65536)
            if not b:
                break
            size += len(b)
        print(f"  /admin/metrics.json: {size / 1024:.0f} KB")
        t0 = time.time()
        statuses = {}
        for i in range(N):
            s = c.request("web", [("l5d-dtab", random_dtab(rng))])
            statuses[s] = statuses.get(s, 0) + 1
        print(f"after {N:,} random l5d-dtabs ({statuses}, {time.time() - t0:.1f} s): "
              f"VmHWM {hwm_mb(p.pid):.1f} MB")
        for _ in range(1000):
            assert c.request("web") == 200
        print("good requests still 200")
    finally:
        p.send_signal(signal.SIGTERM); p.wait(10)
        backend.kill()

if __name__ == "__main__":
    main()
