//! `switchboard run` as a process: an invalid config binds nothing and exits 1; SIGTERM lets an
//! in-flight request finish and exits 0; `shutdownGraceMs` bounds how long a request that never
//! ends can hold the exit. The built binary, a config on port 0, a plain-socket backend.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A safety net for waits that must end; not a measurement.
const WAIT: Duration = Duration::from_secs(20);

/// A backend that answers each request after `delay` (never, for `None`); the receiver hears
/// of each request head it has read.
fn backend(delay: Option<Duration>) -> (SocketAddr, std::sync::mpsc::Receiver<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send(());
                match delay {
                    Some(d) => {
                        std::thread::sleep(d);
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                    }
                    None => std::thread::sleep(Duration::from_secs(3600)),
                }
            });
        }
    });
    (addr, rx)
}

struct Proc {
    child: Child,
    router: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path, backend: SocketAddr, grace_ms: u64) -> Proc {
    let disco = dir.join("disco");
    std::fs::create_dir_all(&disco).unwrap();
    std::fs::write(disco.join("web"), format!("127.0.0.1 {}\n", backend.port())).unwrap();
    let cfg = dir.join("l.yaml");
    std::fs::write(
        &cfg,
        format!(
            "admin: {{ip: 127.0.0.1, port: 0, shutdownGraceMs: {grace_ms}}}\nnamers:\n- kind: io.l5d.fs\n  rootDir: {}\nrouters:\n- protocol: http\n  dtab: /svc => /#/io.l5d.fs;\n  servers: [{{ip: 127.0.0.1, port: 0}}]\n",
            disco.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("run")
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let router = loop {
        let line = lines.next().expect("the banner").unwrap();
        if let Some(a) = line.strip_prefix("router http serving on ") {
            break a.parse().unwrap();
        }
    };
    // Keep reading stdout so the process never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Proc { child, router }
}

fn get(addr: SocketAddr) -> std::thread::JoinHandle<String> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        .unwrap();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
}

fn sigterm(p: &Proc) {
    let ok = Command::new("kill")
        .args(["-TERM", &p.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn wait_exit(p: &mut Proc) -> Option<i32> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(s) = p.child.try_wait().unwrap() {
            return s.code();
        }
        assert!(Instant::now() < deadline, "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_invalid_config_binds_nothing_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(
        &cfg,
        format!("routers:\n- protocol: http\n  dtab: /svc => \n  servers: [{{ip: 127.0.0.1, port: {port}}}]\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("run")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("routers[0].dtab"), "{err}");
    // Nothing was left bound.
    assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
}

#[test]
fn sigterm_lets_in_flight_requests_finish_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (b, reached) = backend(Some(Duration::from_millis(500)));
    let mut p = start(dir.path(), b, 10_000);
    let inflight = get(p.router);
    reached
        .recv_timeout(WAIT)
        .expect("the request reached the backend");
    sigterm(&p);
    let resp = inflight.join().unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(wait_exit(&mut p), Some(0));
}

#[test]
fn shutdown_grace_bounds_a_request_that_never_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (b, reached) = backend(None);
    let mut p = start(dir.path(), b, 300);
    let inflight = get(p.router);
    reached
        .recv_timeout(WAIT)
        .expect("the request reached the backend");
    sigterm(&p);
    // The process exits although the request never got its answer.
    assert_eq!(wait_exit(&mut p), Some(0));
    let resp = inflight.join().unwrap();
    assert!(!resp.starts_with("HTTP/1.1 200"), "{resp}");
}
