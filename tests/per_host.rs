//! The per-host deployment (`config/per-host.yaml`) on three hosts made of network namespaces
//! this test creates: a bridge namespace (10.77.0.254, running a real etcd) and hosts a, b, c
//! (10.77.0.1-3) on veth pairs, each with its Switchboard (the shipped config, pointed at that
//! etcd and bound to the host's address) and one instance of the `web` service (a small HTTP
//! server answering its host's name). Calls go from host a's outgoing router over mutual TLS to
//! the incoming router of the instance's host. Shown: calls cross hosts over mTLS; with b's
//! instance stopped, and with b's link cut, no GET fails (none served by b, none slower than
//! 5 s); a client without a certificate is refused by an incoming router. Skipped, saying so,
//! only where network namespaces cannot be created (not root, no `ip netns`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HOSTS: [(&str, u8); 3] = [("a", 1), ("b", 2), ("c", 3)];

/// Everything the test made; removed when dropped (processes first, then namespaces).
struct Net {
    p: String,
    dir: tempfile::TempDir,
    etcd: Option<Child>,
    services: Vec<(String, Child)>,
    proxies: Vec<Child>,
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in self
            .proxies
            .iter_mut()
            .chain(self.services.iter_mut().map(|(_, c)| c))
            .chain(self.etcd.iter_mut())
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn have(bin: &str) -> bool {
    Command::new("sh")
        .args([
            "-c",
            &format!("command -v {bin} || test -x /usr/sbin/{bin}"),
        ])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

const SERVICE: &str = r#"
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
ip, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("host " + name).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer((ip, port), H).serve_forever()
"#;

impl Net {
    fn namespaces(&self) -> Vec<String> {
        let mut v = vec![format!("{}br", self.p)];
        v.extend(HOSTS.iter().map(|(h, _)| format!("{}{h}", self.p)));
        v
    }

    fn ns(&self, h: &str) -> String {
        format!("{}{h}", self.p)
    }

    fn exec(&self, h: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(h)]).args(args);
        c
    }

    fn ip(&self, h: &str, args: &str) -> Result<(), String> {
        let mut v = vec!["ip", "netns", "exec"];
        let ns = self.ns(h);
        v.push(&ns);
        v.push("ip");
        v.extend(args.split_whitespace());
        run(&v)
    }

    /// The namespaces, the bridge and the links. `Err` means namespaces cannot be made here.
    fn create() -> Result<Net, String> {
        let net = Net {
            p: format!("sb{}", std::process::id() % 100_000),
            dir: tempfile::tempdir().map_err(|e| e.to_string())?,
            etcd: None,
            services: Vec::new(),
            proxies: Vec::new(),
        };
        for ns in net.namespaces() {
            run(&["ip", "netns", "add", &ns])?;
        }
        net.ip("br", "link set lo up")?;
        net.ip("br", "link add br0 type bridge")?;
        net.ip("br", "addr add 10.77.0.254/24 dev br0")?;
        net.ip("br", "link set br0 up")?;
        for (h, n) in HOSTS {
            let peer_ns = net.ns(h);
            net.ip(
                "br",
                &format!("link add b{h} type veth peer name eth0 netns {peer_ns}"),
            )?;
            net.ip("br", &format!("link set b{h} master br0 up"))?;
            net.ip(h, "link set lo up")?;
            net.ip(h, &format!("addr add 10.77.0.{n}/24 dev eth0"))?;
            net.ip(h, "link set eth0 up")?;
        }
        Ok(net)
    }

    fn start_etcd(&mut self) {
        let data = self.dir.path().join("etcd");
        let child = self
            .exec(
                "br",
                &[
                    "etcd",
                    "--name",
                    "mesh",
                    "--data-dir",
                    data.to_str().unwrap(),
                    "--listen-client-urls",
                    "http://10.77.0.254:2379",
                    "--advertise-client-urls",
                    "http://10.77.0.254:2379",
                    "--listen-peer-urls",
                    "http://127.0.0.1:2380",
                    "--initial-advertise-peer-urls",
                    "http://127.0.0.1:2380",
                    "--initial-cluster",
                    "mesh=http://127.0.0.1:2380",
                    "--listen-metrics-urls",
                    "http://127.0.0.1:2381",
                ],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        self.etcd = Some(child);
        until("etcd to accept writes", Duration::from_secs(20), || {
            self.etcdctl(&["put", "/ready", "1"]).is_ok()
        });
    }

    fn etcdctl(&self, args: &[&str]) -> Result<(), String> {
        let out = self
            .exec(
                "br",
                &[&["etcdctl", "--endpoints=http://10.77.0.254:2379"], args].concat(),
            )
            .env("ETCDCTL_API", "3")
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn start_service(&mut self, h: &str, n: u8) {
        let child = self
            .exec(
                h,
                &["python3", "-c", SERVICE, &format!("10.77.0.{n}"), "8080", h],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a service instance");
        self.services.push((h.to_string(), child));
    }

    /// An HTTP/2 (h2c) instance of `grpc` on port 8081 (the benchmark backend, built with the
    /// tests), answering `ok`.
    fn start_h2_service(&mut self, h: &str, n: u8) {
        let bin = Path::new(env!("CARGO_BIN_EXE_switchboard"))
            .parent()
            .unwrap()
            .join("examples/bench_backend");
        let child = self
            .exec(h, &[bin.to_str().unwrap(), &format!("h2:10.77.0.{n}:8081")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the h2 instance");
        self.services.push((format!("{h}-h2"), child));
    }

    fn stop_service(&mut self, h: &str) {
        if let Some(i) = self.services.iter().position(|(x, _)| x == h) {
            let (_, mut c) = self.services.remove(i);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// config/per-host.yaml as shipped, pointed at this etcd and this host's address, with
    /// the repository's example certificates.
    fn start_switchboard(&mut self, h: &str, n: u8) {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(repo.join("config/per-host.yaml"))
            .unwrap()
            .replace(
                "endpoints: [127.0.0.1:23790]",
                "endpoints: [10.77.0.254:2379]",
            )
            .replace(
                "  - ip: 127.0.0.1\n    port: 4141",
                &format!("  - ip: 10.77.0.{n}\n    port: 4141"),
            )
            .replace(
                "  - ip: 127.0.0.1\n    port: 4143",
                &format!("  - ip: 10.77.0.{n}\n    port: 4143"),
            )
            .replace(
                "config/tls/",
                &format!("{}/", repo.join("config/tls").display()),
            );
        assert!(
            text.contains(&format!("ip: 10.77.0.{n}")),
            "config shape changed"
        );
        let cfg: PathBuf = self.dir.path().join(format!("{h}.yaml"));
        std::fs::write(&cfg, text).unwrap();
        let child = self
            .exec(
                h,
                &[
                    env!("CARGO_BIN_EXE_switchboard"),
                    "run",
                    cfg.to_str().unwrap(),
                ],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start switchboard");
        self.proxies.push(child);
    }

    /// A GET through host `h`'s outgoing router: (HTTP status, body, time taken).
    fn get(&self, h: &str) -> (u16, String, Duration) {
        let started = Instant::now();
        let out = self
            .exec(
                h,
                &[
                    "curl",
                    "-s",
                    "-m",
                    "20",
                    "-H",
                    "Host: web",
                    "-w",
                    "\n%{http_code}",
                    "http://127.0.0.1:4140/",
                ],
            )
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (
            code.trim().parse().unwrap_or(0),
            body.to_string(),
            started.elapsed(),
        )
    }

    fn metrics(&self, h: &str) -> serde_json::Value {
        let out = self
            .exec(
                h,
                &[
                    "curl",
                    "-s",
                    "-m",
                    "5",
                    "http://127.0.0.1:9990/admin/metrics.json",
                ],
            )
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }
}

fn until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `n` GETs from host a: every one must succeed within 5 s; returns who served them.
fn burst(net: &Net, n: usize, what: &str) -> std::collections::BTreeMap<String, usize> {
    let mut served = std::collections::BTreeMap::new();
    for i in 0..n {
        let (status, body, took) = net.get("a");
        assert_eq!(status, 200, "{what}: GET {i} failed: {body}");
        assert!(
            took < Duration::from_secs(5),
            "{what}: GET {i} took {took:?}"
        );
        *served.entry(body).or_insert(0) += 1;
    }
    served
}

#[test]
fn three_hosts_over_mutual_tls() {
    let net = match Net::create() {
        Ok(n) => n,
        Err(e) => {
            eprintln!(
                "SKIPPED: network namespaces cannot be created here ({e}); the per-host test \
                 needs root and `ip netns`"
            );
            return;
        }
    };
    let mut net = net;
    for bin in ["etcd", "etcdctl", "python3", "curl"] {
        if !have(bin) {
            assert!(
                std::env::var("SWITCHBOARD_REQUIRE_BACKENDS").is_err(),
                "{bin} missing; run integration/backends.sh install"
            );
            eprintln!("SKIPPED: {bin} is not installed (integration/backends.sh install)");
            return;
        }
    }
    net.start_etcd();
    // The h2 instances are the benchmark backend, which `cargo test` builds with the tests.
    let h2_backend = Path::new(env!("CARGO_BIN_EXE_switchboard"))
        .parent()
        .unwrap()
        .join("examples/bench_backend")
        .is_file();
    for (h, n) in HOSTS {
        net.start_service(h, n);
        net.etcdctl(&[
            "put",
            &format!("/services/web/{h}"),
            &format!("10.77.0.{n}:8080"),
        ])
        .unwrap();
        if h2_backend {
            net.start_h2_service(h, n);
            net.etcdctl(&[
                "put",
                &format!("/services/grpc/{h}"),
                &format!("10.77.0.{n}:8081"),
            ])
            .unwrap();
        }
        net.start_switchboard(h, n);
    }
    // Every host's Switchboard is up and its incoming router routes before the first call
    // (an error from one still starting would count against it in failure accrual).
    for (h, n) in HOSTS {
        until(
            &format!("host {h}'s switchboard"),
            Duration::from_secs(20),
            || {
                let ok = |args: &[&str]| {
                    net.exec(h, args)
                        .output()
                        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
                };
                // The incoming router routes to its own instance (with the example client
                // certificate, as another host's outgoing router would present).
                let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tls");
                let f = |n: &str| tls.join(n).display().to_string();
                let local = net
                    .exec(
                        h,
                        &[
                            "curl",
                            "-s",
                            "-m",
                            "2",
                            "--cacert",
                            &f("ca.pem"),
                            "--cert",
                            &f("outgoing.pem"),
                            "--key",
                            &f("outgoing.key"),
                            "--resolve",
                            &format!("web.mesh.test:4141:10.77.0.{n}"),
                            "-H",
                            "Host: web",
                            "https://web.mesh.test:4141/",
                        ],
                    )
                    .output()
                    .is_ok_and(|o| o.stdout == format!("host {h}").as_bytes());
                ok(&["curl", "-s", "-m", "2", "http://127.0.0.1:9990/admin/ping"]) && local
            },
        );
    }
    until("host a to route", Duration::from_secs(20), || {
        net.get("a").0 == 200
    });

    // Calls from a reach the instances on the other hosts, through their incoming routers
    // (once a's namer has seen them registered: each host registers itself as it starts).
    until("host a to reach b and c", Duration::from_secs(20), || {
        let served = burst(&net, 30, "all hosts up");
        served.contains_key("host b") && served.contains_key("host c")
    });
    let b = net.metrics("b");
    let handshakes = b["rt/incoming/server/10.77.0.2/4141/tls/handshakes"]
        .as_u64()
        .unwrap_or(0);
    assert!(handshakes >= 1, "b's incoming router saw no TLS handshake");

    // HTTP/2 crosses too: host a's h2 outgoing router, TLS with ALPN h2, the h2 instances.
    if h2_backend {
        for _ in 0..10 {
            let out = net
                .exec(
                    "a",
                    &[
                        "curl",
                        "-s",
                        "-m",
                        "10",
                        "--http2-prior-knowledge",
                        "-H",
                        "Host: grpc",
                        "-w",
                        " %{http_version} %{http_code}",
                        "http://127.0.0.1:4142/",
                    ],
                )
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "ok 2 200");
        }
        let alpn: u64 = HOSTS
            .iter()
            .map(|(h, n)| {
                net.metrics(h)[format!("rt/incoming-h2/server/10.77.0.{n}/4143/tls/alpn/h2")]
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum();
        assert!(alpn >= 1, "no incoming h2 router negotiated h2");
    } else {
        eprintln!("h2 across hosts not checked: examples/bench_backend is not built");
    }

    // A client without a certificate is refused by an incoming router.
    let refused = net
        .exec(
            "a",
            &[
                "curl",
                "-sk",
                "-m",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                "Host: web",
                "https://10.77.0.3:4141/",
            ],
        )
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&refused.stdout).into_owned();
    assert!(
        !refused.status.success() || code != "200",
        "c's incoming router answered a client without a certificate: {code}"
    );

    // b's instance stops: its incoming router has nowhere to send; no GET fails.
    net.stop_service("b");
    let served = burst(&net, 30, "b's instance stopped");
    assert!(!served.contains_key("host b"), "{served:?}");
    // The GETs that reached b were answered 502 there and retried elsewhere.
    let retries = |net: &Net| {
        net.metrics("a")["rt/outgoing/service/svc/web/retries/total"]
            .as_u64()
            .unwrap_or(0)
    };
    let after_stop = retries(&net);
    assert!(
        after_stop >= 1,
        "no GET was retried while b's instance was down"
    );

    // b's instance returns; once b serves again, its link is cut: still no GET fails.
    net.start_service("b", 2);
    until("b to serve again", Duration::from_secs(60), || {
        net.get("a").1 == "host b"
    });
    // Counted from here: what the cut alone causes.
    let before_cut = retries(&net);
    net.ip("br", "link set bb down").unwrap();
    let served = burst(&net, 30, "b's link cut");
    assert!(!served.contains_key("host b"), "{served:?}");
    let m = net.metrics("a");
    let requeues = m["rt/outgoing/client/%/io.l5d.port/4141/#/io.l5d.etcd/web/retries/requeues"]
        .as_u64()
        .unwrap_or(0);
    eprintln!(
        "link cut: retries {} -> {}, requeues {requeues}",
        before_cut,
        retries(&net)
    );
    assert!(
        retries(&net) > before_cut || requeues >= 1,
        "nothing was sent to b after its link was cut"
    );
}
