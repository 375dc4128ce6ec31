//! Shared pieces of the end-to-end tests: real HTTP backends on loopback port 0, a Switchboard
//! started in-process on a config written to a temp dir (fs namer, servers and admin on port
//! 0), and a small HTTP/1.1 client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(s: impl Into<Bytes>) -> BoxBody {
    Full::new(s.into()).boxed()
}

/// A backend's request counter and address.
#[derive(Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub name: String,
}

/// Starts a backend named `name`. Paths: `/status/<code>`, `/slow/<ms>`, `/echo` (request
/// headers as JSON), `/count` (reads the body, answers its length), `/big/<bytes>` (streams
/// that many bytes), `/ws` (upgrade, then echoes bytes); anything else answers `name`.
pub async fn backend(name: &str) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    backend_on(listener, name)
}

pub fn backend_on(listener: TcpListener, name: &str) -> Backend {
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let b = Backend {
        addr,
        hits: Arc::clone(&hits),
        name: name.to_string(),
    };
    let name = name.to_string();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let name = name.clone();
            let hits = Arc::clone(&hits);
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    answer(name.clone(), addr, req)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    b
}

async fn answer(
    name: String,
    addr: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<BoxBody>, Infallible> {
    let path = req.uri().path().to_string();
    let mut resp = Response::new(full(name.clone()));
    if let Some(code) = path.strip_prefix("/status/") {
        *resp.status_mut() = StatusCode::from_u16(code.parse().unwrap()).unwrap();
    } else if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
    } else if path == "/echo" {
        let h: HashMap<String, String> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let v = serde_json::json!({"headers": h, "uri": req.uri().to_string(), "backend": name});
        resp = Response::new(full(v.to_string()));
    } else if path == "/count" {
        let mut n = 0u64;
        let mut body = req.into_body();
        while let Some(f) = body.frame().await {
            // A body the proxy cut off (the client's upload broke): count what came.
            let Ok(f) = f else { break };
            if let Ok(d) = f.into_data() {
                n += d.len() as u64;
            }
        }
        resp = Response::new(full(n.to_string()));
    } else if let Some(n) = path.strip_prefix("/big/") {
        let total: usize = n.parse().unwrap();
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures_util::stream::unfold(0usize, move |sent| {
            let chunk = chunk.clone();
            async move {
                if sent >= total {
                    return None;
                }
                let n = chunk.len().min(total - sent);
                Some((Ok::<_, Infallible>(Frame::data(chunk.slice(..n))), sent + n))
            }
        });
        resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    } else if path == "/ws" {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let (mut r, mut w) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        resp = Response::new(full(""));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        resp.headers_mut()
            .insert("upgrade", "websocket".parse().unwrap());
        resp.headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
    }
    resp.headers_mut()
        .insert("x-backend", name.parse().unwrap());
    resp.headers_mut()
        .insert("x-backend-addr", addr.to_string().parse().unwrap());
    Ok(resp)
}

/// A disco directory for io.l5d.fs.
pub struct Disco {
    pub dir: tempfile::TempDir,
}

impl Disco {
    pub fn new() -> Disco {
        Disco {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("disco")
    }
    /// Writes a service file listing `backends` (each optionally weighted), atomically.
    pub fn set(&self, svc: &str, lines: &[String]) {
        let dir = self.path();
        std::fs::create_dir_all(&dir).unwrap();
        let tmp = dir.join(format!(".{svc}.tmp"));
        std::fs::write(&tmp, lines.join("\n") + "\n").unwrap();
        std::fs::rename(&tmp, dir.join(svc)).unwrap();
    }
    pub fn set_backends(&self, svc: &str, bs: &[&Backend]) {
        let lines: Vec<String> = bs
            .iter()
            .map(|b| format!("{} {}", b.addr.ip(), b.addr.port()))
            .collect();
        self.set(svc, &lines);
    }
}

/// A started Switchboard and where it listens.
pub struct Proxy {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub servers: Vec<(String, SocketAddr)>,
    pub shutdown: switchboard::proxy::server::Shutdown,
    pub done: tokio::task::JoinHandle<()>,
}

/// Starts Switchboard on `yaml`, with `{disco}` replaced by the disco dir. Routers' servers
/// and the admin server should use port 0.
pub async fn proxy(yaml: &str, disco: &Path) -> Proxy {
    let text = yaml.replace("{disco}", &disco.display().to_string());
    let (cfg, _, raw) =
        switchboard::config::load_with_source(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let running = switchboard::run::start(cfg, raw).await.unwrap();
    let servers = running.servers.clone();
    let admin = running.admin;
    let shutdown = running.shutdown_handle();
    let done = tokio::spawn(running.wait());
    Proxy {
        addr: servers[0].1,
        admin,
        servers,
        shutdown,
        done,
    }
}

/// A response, its body read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn header(&self, n: &str) -> &str {
        self.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// One request on a fresh connection.
pub async fn send(addr: SocketAddr, req: Request<BoxBody>) -> Resp {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = tx.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// GET `path` with `Host: host` and extra headers.
pub async fn get(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut b = Request::get(path).header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(addr, b.body(full("")).unwrap()).await
}

pub fn body(s: impl Into<Bytes>) -> BoxBody {
    full(s)
}

/// Reads the admin flat metrics.
pub async fn metrics(admin: SocketAddr) -> serde_json::Value {
    let r = get(admin, "localhost", "/admin/metrics.json", &[]).await;
    serde_json::from_str(&r.body).unwrap()
}

/// Polls the admin metrics until `pred` holds for metric `key`, for at most 10 s; returns the
/// metrics that matched. Tests wait with this instead of sleeping.
pub async fn until_metric(
    admin: SocketAddr,
    key: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = metrics(admin).await;
        if pred(&m[key]) {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key} never matched: {}",
            m[key]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `pending` gauge's key of the server listening on `addr`.
pub fn pending_key(addr: SocketAddr) -> String {
    format!("rt/http/server/127.0.0.1/{}/pending", addr.port())
}

/// A basic config: the fs namer on `{disco}`, one http router on port 0 with `dtab`, extra
/// router keys `router_extra` (YAML lines indented by two spaces), admin on port 0.
pub fn config(dtab: &str, router_extra: &str) -> String {
    format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nnamers:\n- kind: io.l5d.fs\n  rootDir: {{disco}}\nrouters:\n- protocol: http\n  label: http\n  dtab: |\n    {}\n  servers: [{{ip: 127.0.0.1, port: 0}}]\n{router_extra}telemetry:\n- kind: io.l5d.prometheus\n",
        dtab.replace('\n', "\n    ")
    )
}

/// This process's peak resident memory (VmHWM), in KB.
pub fn vm_hwm_kb() -> i64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Sends `bytes` on a fresh connection and reads until the peer closes (or 10 s pass, a safety
/// net, not a measurement); returns the status of the first response (0 if none) and
/// everything read.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}
