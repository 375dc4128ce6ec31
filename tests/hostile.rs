//! A hostile client against the `http` router and the admin server, one row per defect of the
//! hostile-clients issue: Switchboard in-process on loopback port 0, real HTTP backends, the fs
//! namer, and raw sockets where a well-behaved client library would refuse to send the bytes.
//! Every row asserts the proxy's answer and that it still serves good requests afterwards.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use http::Request;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FS_DTAB: &str = "/svc => /#/io.l5d.fs;";
/// A safety net for reads that must end; not a measurement.
const WAIT: Duration = Duration::from_secs(10);

async fn raw(addr: SocketAddr, bytes: &[u8]) -> (u16, String) {
    raw_exchange(addr, bytes).await
}

/// Sends `bytes` and reads only the response head; returns its status.
async fn raw_head(addr: SocketAddr, bytes: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(WAIT, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Opens a WebSocket tunnel through the proxy to the backend's echoing `/ws`, and checks that
/// bytes cross it.
async fn open_tunnel(addr: SocketAddr) -> TcpStream {
    let mut ws = TcpStream::connect(addr).await.unwrap();
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nHost: web\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, ws.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        head.extend_from_slice(&buf[..n]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    ws.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    tokio::time::timeout(WAIT, ws.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"ping");
    ws
}

fn echo_headers(r: &Resp) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_else(|_| panic!("{r:?}"));
    v["headers"].clone()
}

async fn world() -> (Backend, Backend, Disco, Proxy) {
    let (web, web2) = (backend("web").await, backend("web").await);
    let api = backend("api").await;
    let disco = Disco::new();
    disco.set_backends("web", &[&web, &web2]);
    disco.set_backends("api", &[&api]);
    let p = proxy(
        &config(
            FS_DTAB,
            "  servers: [{ip: 127.0.0.1, port: 0, headerReadTimeoutMs: 300}]\n",
        )
        .replace("  servers: [{ip: 127.0.0.1, port: 0}]\n", ""),
        &disco.path(),
    )
    .await;
    (web, api, disco, p)
}

/// Union and alternative chains that double their work per dentry, in an `l5d-dtab` of a few
/// hundred bytes: each once took seconds of CPU and gigabytes.
fn doubling(op: &str, n: usize, last: &str) -> String {
    (0..n)
        .map(|i| {
            let next = if i + 1 == n {
                last.to_string()
            } else {
                format!("/x{} {op} /x{}", i + 1, i + 1)
            };
            format!("/x{i}=>{next}")
        })
        .collect::<Vec<_>>()
        .join(";")
}

#[tokio::test]
async fn binding_work_is_bounded_and_answered_400() {
    let (_web, _api, _disco, p) = world().await;
    let rows = [
        (
            "unions",
            format!("{};/svc/web=>/x0", doubling("&", 22, "/$/inet/127.0.0.1/1")),
        ),
        (
            "alternatives",
            format!("{};/svc/web=>/x0", doubling("|", 22, "~")),
        ),
    ];
    for (name, dtab) in &rows {
        let r = get(p.addr, "web", "/", &[("l5d-dtab", dtab)]).await;
        assert_eq!(r.status, 400, "{name}: {r:?}");
        assert!(
            r.header("l5d-err").contains("binding+limit"),
            "{name}: {r:?}"
        );
        // The admin delegator is bounded the same way.
        let q = format!(
            "/delegator.json?path=/svc/web&dtab={}",
            dtab.replace('/', "%2F")
                .replace('=', "%3D")
                .replace('>', "%3E")
                .replace('&', "%26")
                .replace('|', "%7C")
                .replace(';', "%3B")
                .replace(' ', "%20")
                .replace('$', "%24")
                .replace('~', "%7E")
        );
        let d = get(p.admin, "localhost", &q, &[]).await;
        assert_eq!(d.status, 400, "{name}: delegator {d:?}");
        assert!(d.body.contains("binding limit"), "{name}: {d:?}");
    }
    assert_eq!(get(p.addr, "web", "/", &[]).await.status, 200);
}

#[tokio::test]
async fn sizes_are_enforced() {
    let (_web, _api, _disco, p) = world().await;
    // maxInitialLineKB (4): 414.
    let long = format!("/{}", "a".repeat(5 * 1024));
    assert_eq!(get(p.addr, "web", &long, &[]).await.status, 414);
    // maxHeadersKB (8): 431, for a big Host and a big l5d-dtab alike.
    let host = "h".repeat(9 * 1024);
    assert_eq!(get(p.addr, &host, "/", &[]).await.status, 431);
    let big_dtab = format!("/a=>/{}", "b".repeat(9 * 1024));
    assert_eq!(
        get(p.addr, "web", "/", &[("l5d-dtab", &big_dtab)])
            .await
            .status,
        431
    );
    // Within the header limit but over the local dtab's caps: 400.
    let dtab = format!("/a=>/{}", "b".repeat(5 * 1024));
    let r = get(p.addr, "web", "/", &[("l5d-dtab", &dtab)]).await;
    assert_eq!(r.status, 400, "{r:?}");
    let many: Vec<String> = (0..100).map(|i| format!("/a{i}=>/b")).collect();
    let r = get(p.addr, "web", "/", &[("l5d-dtab", &many.join(";"))]).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.header("l5d-err").contains("dentries"), "{r:?}");
    // The admin server reads at most 64 KB of a body: 413, not an echo of it.
    let post = Request::post("/delegator.json")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(body(vec![b'x'; 1024 * 1024]))
        .unwrap();
    let r = send(p.admin, post).await;
    assert_eq!(r.status, 413, "{}", &r.body[..r.body.len().min(200)]);
    assert!(r.body.len() < 1024);
    assert_eq!(get(p.addr, "web", "/", &[]).await.status, 200);
}

#[tokio::test]
async fn names_made_up_by_clients_stay_bounded_in_metrics() {
    let (_web, _api, _disco, p) = world().await;
    // 200 distinct 6 KB Host names (each Neg: 502), then the metrics page.
    for i in 0..200 {
        let host = format!("{i}-{}", "h".repeat(6 * 1024));
        let r = get(p.addr, &host, "/", &[]).await;
        assert_eq!(r.status, 502, "{}", r.status);
    }
    let m = get(p.admin, "localhost", "/admin/metrics.json", &[]).await;
    assert_eq!(m.status, 200);
    // Labels are cut to 256 bytes plus a hash: far below 200 x 6 KB per metric.
    assert!(
        m.body.len() < 2_000_000,
        "metrics.json is {} bytes",
        m.body.len()
    );
}

#[tokio::test]
async fn http_semantics_of_a_careful_proxy() {
    let (_web, _api, _disco, p) = world().await;
    // Absolute form: the authority wins over Host, and replaces it.
    let (status, text) = raw(
        p.addr,
        b"GET http://web/echo HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"backend\":\"web\""), "{text}");
    assert!(text.contains("\"host\":\"web\""), "{text}");
    // Two Host headers: 400, nothing forwarded.
    let (status, text) = raw(
        p.addr,
        b"GET /echo HTTP/1.1\r\nHost: web\r\nHost: api\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "{text}");
    // `Connection: host` does not strip Host (nor framing) on the way out.
    let r = get(
        p.addr,
        "web",
        "/echo",
        &[("connection", "host, content-length")],
    )
    .await;
    assert_eq!(echo_headers(&r)["host"], "web", "{r:?}");
    // Proxy-* headers are the proxy's own.
    let r = get(
        p.addr,
        "web",
        "/echo",
        &[
            ("proxy-authorization", "Basic c2VjcmV0"),
            ("proxy-connection", "keep-alive"),
        ],
    )
    .await;
    let h = echo_headers(&r);
    assert!(h.get("proxy-authorization").is_none(), "{h}");
    assert!(h.get("proxy-connection").is_none(), "{h}");
    // h2c is not tunnelled: the request is served (and seen) as plain HTTP/1.1.
    let r = get(
        p.addr,
        "web",
        "/echo",
        &[
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAAQAAP__"),
            ("connection", "Upgrade, HTTP2-Settings"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let h = echo_headers(&r);
    assert!(h.get("upgrade").is_none(), "{h}");
    assert!(h.get("http2-settings").is_none(), "{h}");
    // A backend's 101 to a request that asked for no upgrade: 502, not relayed.
    let r = get(p.addr, "web", "/ws", &[]).await;
    assert_eq!(r.status, 502, "{r:?}");
    // WebSocket still works (asked for): 101.
    let status = raw_head(
        p.addr,
        b"GET /ws HTTP/1.1\r\nHost: web\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    .await;
    assert_eq!(status, 101);
}

#[tokio::test]
async fn a_broken_upload_is_the_clients_fault() {
    let (_web, _api, _disco, p) = world().await;
    // 30 uploads with an invalid chunk size: each is answered 400 (or the connection closed),
    // and none counts against the two healthy endpoints (5 consecutive failures would mark
    // each dead).
    for _ in 0..30 {
        let (status, text) = raw(
            p.addr,
            b"POST /count HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
        )
        .await;
        assert!(status == 400 || status == 0, "{text}");
    }
    let m = metrics(p.admin).await;
    assert_eq!(
        m["rt/http/client/#/io.l5d.fs/web/loadbalancer/available"], 2,
        "{}",
        m
    );
    assert_eq!(
        m.get("rt/http/client/#/io.l5d.fs/web/failures")
            .and_then(|v| v.as_u64())
            .unwrap_or(0),
        0
    );
    for _ in 0..10 {
        assert_eq!(get(p.addr, "web", "/", &[]).await.status, 200);
    }
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let (_web, _api, _disco, p) = world().await;
    // A request line, then nothing: closed once the header read timeout (300 ms here) passes.
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await;
    assert!(
        r.is_ok(),
        "a stalled request head is still open after {WAIT:?}"
    );
    // One byte at a time, slower than the timeout allows.
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let mut closed = false;
    for b in b"GET / HTTP/1.1\r\nHost: web\r\n\r\n" {
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut one = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut one)).await {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "a client sending a byte every 100 ms was never cut off"
    );
    // An idle keep-alive connection is closed too.
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "an idle keep-alive connection is still open");
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
    assert_eq!(get(p.addr, "web", "/", &[]).await.status, 200);
}

#[tokio::test]
async fn the_admin_server_cannot_be_forged() {
    let (_web, _api, _disco, p) = world().await;
    let post = |host: &str, extra: &[(&str, &str)]| {
        let mut b = Request::post("/admin/shutdown").header("host", host);
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        b.body(body("")).unwrap()
    };
    let rows: [(&str, &[(&str, &str)]); 4] = [
        // A web page's cross-origin POST.
        ("localhost", &[("origin", "http://evil.example")]),
        // An HTML form's content types need no preflight.
        (
            "localhost",
            &[("content-type", "application/x-www-form-urlencoded")],
        ),
        ("localhost", &[("content-type", "text/plain;charset=UTF-8")]),
        // DNS rebinding: a foreign name resolving to loopback.
        ("evil.example:9990", &[]),
    ];
    for (host, extra) in rows {
        let r = send(p.admin, post(host, extra)).await;
        assert_eq!(r.status, 403, "{host} {extra:?}: {r:?}");
    }
    let r = get(p.admin, "evil.example", "/admin/metrics.json", &[]).await;
    assert_eq!(r.status, 403);
    // Still running.
    assert_eq!(get(p.addr, "web", "/", &[]).await.status, 200);
    // Same-origin POST works.
    let port = p.admin.port();
    let origin = format!("http://127.0.0.1:{port}");
    let host = format!("127.0.0.1:{port}");
    let r = send(p.admin, post(&host, &[("origin", &origin)])).await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test]
async fn admin_security_is_enforced() {
    let disco = Disco::new();
    let yaml = config(FS_DTAB, "").replace(
        "admin: {ip: 127.0.0.1, port: 0}",
        "admin:\n  ip: 127.0.0.1\n  port: 0\n  security:\n    controlEnabled: false\n    uiEnabled: false\n    pathWhitelist: [/delegator.json]\n    pathBlacklist: [/admin/metrics/prometheus]",
    );
    let p = proxy(&yaml, &disco.path()).await;
    let check = |path: &'static str, want: u16| {
        let a = p.admin;
        async move {
            let r = get(a, "localhost", path, &[]).await;
            assert_eq!(r.status, want, "{path}: {r:?}");
        }
    };
    check("/admin/ping", 200).await; // diagnostics: on
    check("/config.json", 404).await; // UI: off
    check("/delegator.json", 400).await; // UI, but whitelisted (400: no path given)
    check("/admin/metrics/prometheus", 404).await; // blacklisted
    let r = send(
        p.admin,
        Request::post("/admin/shutdown")
            .header("host", "localhost")
            .body(body(""))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 404, "control is off: {r:?}");
}

#[tokio::test]
async fn a_stalled_upload_is_cut_off_as_the_clients_fault() {
    let web = backend("web").await;
    let disco = Disco::new();
    disco.set_backends("web", &[&web]);
    let p = proxy(
        &config(FS_DTAB, "  bodyReadTimeoutMs: 300\n"),
        &disco.path(),
    )
    .await;
    // 5 of 100 promised bytes, then silence.
    let (status, text) = raw(
        p.addr,
        b"POST /count HTTP/1.1\r\nHost: web\r\nContent-Length: 100\r\n\r\nhello",
    )
    .await;
    assert!(status == 400 || status == 0, "{text}");
    let m = metrics(p.admin).await;
    assert_eq!(
        m["rt/http/client/#/io.l5d.fs/web/loadbalancer/available"],
        1
    );
    assert_eq!(get(p.addr, "web", "/", &[]).await.status, 200);
}

#[tokio::test]
async fn connections_past_max_connections_are_refused_and_counted() {
    let web = backend("web").await;
    let disco = Disco::new();
    disco.set_backends("web", &[&web]);
    let yaml = config(
        FS_DTAB,
        "  servers: [{ip: 127.0.0.1, port: 0, maxConnections: 2}]\n",
    )
    .replace("  servers: [{ip: 127.0.0.1, port: 0}]\n", "");
    let p = proxy(&yaml, &disco.path()).await;
    let _a = TcpStream::connect(p.addr).await.unwrap();
    let _b = TcpStream::connect(p.addr).await.unwrap();
    // Both are counted once accepted; wait for that (bounded), then the third is closed.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = metrics(p.admin).await;
        let key = format!("rt/http/server/127.0.0.1/{}/connections", p.addr.port());
        if m[&key] == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    let mut buf = [0u8; 1];
    let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n").await;
    let n = tokio::time::timeout(WAIT, c.read(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{n:?}");
    let m = metrics(p.admin).await;
    let key = format!(
        "rt/http/server/127.0.0.1/{}/connections_refused",
        p.addr.port()
    );
    assert_eq!(m[&key], 1, "{m}");
}

#[tokio::test]
async fn an_open_websocket_tunnel_counts_as_a_connection() {
    let web = backend("web").await;
    let disco = Disco::new();
    disco.set_backends("web", &[&web]);
    let yaml = config(
        FS_DTAB,
        "  servers: [{ip: 127.0.0.1, port: 0, maxConnections: 1}]\n",
    )
    .replace("  servers: [{ip: 127.0.0.1, port: 0}]\n", "");
    let p = proxy(&yaml, &disco.path()).await;
    let key = format!("rt/http/server/127.0.0.1/{}/connections", p.addr.port());
    // Bytes cross the tunnel: the HTTP connection has handed over to it.
    let ws = open_tunnel(p.addr).await;
    let m = metrics(p.admin).await;
    assert_eq!(m[key.as_str()], 1, "the open tunnel is not counted");
    // So the server is full: a new connection is closed at once.
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n").await;
    let mut one = [0u8; 1];
    let r = tokio::time::timeout(WAIT, c.read(&mut one)).await.unwrap();
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    // Closing the tunnel gives the connection back.
    drop(ws);
    until_metric(p.admin, &key, |v| v == 0).await;
    assert_eq!(get(p.addr, "web", "/", &[]).await.status, 200);
}

#[tokio::test]
async fn graceful_shutdown_closes_open_tunnels() {
    let web = backend("web").await;
    let disco = Disco::new();
    disco.set_backends("web", &[&web]);
    let p = proxy(&config(FS_DTAB, ""), &disco.path()).await;
    let mut ws = open_tunnel(p.addr).await;
    let mut buf = [0u8; 16];
    p.shutdown.trigger();
    // The tunnel is closed by the drain, not left open until the process exits.
    let r = tokio::time::timeout(WAIT, ws.read(&mut buf)).await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "tunnel still open: {r:?}"
    );
    tokio::time::timeout(WAIT, p.done).await.unwrap().unwrap();
}
