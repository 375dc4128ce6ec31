//! namerd end to end: its HTTP API and status codes, each store (the real etcd and ZooKeeper
//! that `integration/backends.sh` starts, the Consul stand-in's KV API, memory), two namerds
//! on one store, linkers routing through `io.l5d.namerd.http` (re-routing on a change, going on
//! while namerd is down and converging after), a store restart, and the `io.l5d.fs`
//! interpreter. Tests that need a backend skip when it is not running, unless
//! SWITCHBOARD_REQUIRE_BACKENDS is set.

#[path = "support/h2.rs"]
mod h2s;
#[path = "support/pki.rs"]
mod pki;
mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use support::*;
use tokio::process::{Child, Command};

fn env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) => Some(v),
        Err(_) => {
            assert!(
                std::env::var("SWITCHBOARD_REQUIRE_BACKENDS").is_err(),
                "{var} is not set; run integration/backends.sh start"
            );
            eprintln!("{var} not set; skipped");
            None
        }
    }
}

/// Retries `f` until it returns true, for at most 20 s (a bound, not a measurement).
async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// A namerd started in this process on `storage` (YAML of the `storage:` value).
async fn namerd(storage: &str) -> (SocketAddr, SocketAddr, switchboard::namerd::RunningNamerd) {
    let text = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nstorage: {storage}\ninterfaces:\n- kind: io.l5d.httpController\n  ip: 127.0.0.1\n  port: 0\n"
    );
    let (cfg, _) =
        switchboard::config::namerd::load(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let n = switchboard::namerd::start(cfg).await.unwrap();
    (n.interfaces[0].addr, n.admin.addr, n)
}

/// A linker routing `Host: <name>` through namerd at `namerd`, namespace `ns`.
async fn linker(namerd: SocketAddr, ns: &str, router_dtab: &str) -> Proxy {
    let cfg = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nrouters:\n- protocol: http\n  label: http\n  bindingTimeoutMs: 2000\n  dtab: '{router_dtab}'\n  interpreter:\n    kind: io.l5d.namerd.http\n    experimental: true\n    dst: /$/inet/127.0.0.1/{}\n    namespace: {ns}\n    retry: {{baseSeconds: 1, maxSeconds: 1}}\n  servers: [{{ip: 127.0.0.1, port: 0}}]\n",
        namerd.port()
    );
    proxy(&cfg, &Disco::new().path()).await
}

async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    payload: &str,
) -> Resp {
    let mut b = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "namerd");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(addr, b.body(body(payload.to_string())).unwrap()).await
}

const DTAB: (&str, &str) = ("content-type", "application/dtab");

/// A mesh request's `root`: the namespace `ns` as a one-element path.
fn mesh_root(ns: &str) -> Option<switchboard_namerd::mesh::proto::PathPb> {
    Some(switchboard_namerd::mesh::proto::path_pb(
        &switchboard_namer_core::Path::utf8([ns]),
    ))
}

/// TLS to a namerd whose certificate names `namerd`, trusting `pki`'s CA, presenting its
/// `linker` certificate when `with_cert`.
fn namerd_client_tls(pki: &pki::Pki, with_cert: bool) -> switchboard_namerd::net::ClientTls {
    let t = switchboard::config::model::ClientTls {
        common_name: Some("namerd".into()),
        trust_certs_bundle: Some(pki.path("ca.pem")),
        client_auth: with_cert.then(|| switchboard::config::model::ClientAuth {
            cert_path: pki.path("linker.pem"),
            key_path: pki.path("linker.key"),
            intermediate_certs_path: None,
        }),
        ..Default::default()
    };
    let built = switchboard::transport::tls::ClientTlsConfig::build(
        &t,
        &[switchboard::transport::ALPN_HTTP11],
        &switchboard::metrics::Metrics::new().scope("t"),
    )
    .unwrap();
    switchboard_namerd::net::ClientTls {
        config: built.rustls_config(),
        server_name: rustls::pki_types::ServerName::try_from("namerd").unwrap(),
    }
}

fn inet(b: &Backend) -> String {
    format!("/$/inet/127.0.0.1/{}", b.addr.port())
}

/// (method, path, headers, body, status, what the answer contains).
type Row<'a> = (
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    &'a str,
    u16,
    &'a str,
);

#[tokio::test]
async fn http_api_status_codes_and_shapes() {
    let (api, admin, _n) =
        namerd("{kind: io.l5d.inMemory, namespaces: {default: '/svc=>/$/inet/127.0.0.1/1'}}").await;
    let json = ("content-type", "application/json");
    let accept_dtab = ("accept", "application/dtab");
    // (method, path, headers, body, status, body contains)
    let rows: &[Row] = &[
        ("GET", "/api/1/dtabs", &[], "", 200, r#"["default"]"#),
        (
            "GET",
            "/api/1/dtabs/default",
            &[],
            "",
            200,
            r#"[{"prefix":"/svc","dst":"/$/inet/127.0.0.1/1"}]"#,
        ),
        (
            "GET",
            "/api/1/dtabs/default",
            &[accept_dtab],
            "",
            200,
            "/svc=>/$/inet/127.0.0.1/1",
        ),
        ("GET", "/api/1/dtabs/nope", &[], "", 404, "not found"),
        ("GET", "/api/1/dtabs/a%20b", &[], "", 400, "namespace name"),
        (
            "POST",
            "/api/1/dtabs/default",
            &[DTAB],
            "/svc=>/x",
            409,
            "already exists",
        ),
        (
            "POST",
            "/api/1/dtabs/web",
            &[],
            "/svc=>/x",
            400,
            "Content-Type",
        ),
        (
            "POST",
            "/api/1/dtabs/web",
            &[("content-type", "text/html")],
            "/svc=>/x",
            415,
            "application/dtab",
        ),
        (
            "POST",
            "/api/1/dtabs/web",
            &[DTAB],
            "/svc=>",
            400,
            "invalid dtab",
        ),
        (
            "POST",
            "/api/1/dtabs/web",
            &[json],
            r#"[{"prefix":"svc","dst":"/x"}]"#,
            400,
            "invalid JSON dtab",
        ),
        (
            "POST",
            "/api/1/dtabs/web",
            &[json],
            r#"[{"prefix":"/svc","dst":"/$/inet/127.0.0.1/2"}]"#,
            204,
            "",
        ),
        (
            "PUT",
            "/api/1/dtabs/nope",
            &[DTAB],
            "/svc=>/x",
            404,
            "does not exist",
        ),
        (
            "PUT",
            "/api/1/dtabs/web",
            &[DTAB, ("if-match", "\"999\"")],
            "/svc=>/x",
            412,
            "not at version 999",
        ),
        (
            "PUT",
            "/api/1/dtabs/web",
            &[DTAB, ("if-match", "garbage")],
            "/svc=>/x",
            412,
            "If-Match",
        ),
        (
            "DELETE",
            "/api/1/dtabs/nope",
            &[],
            "",
            404,
            "does not exist",
        ),
        (
            "GET",
            "/api/1/bind/default?path=/svc/foo",
            &[],
            "",
            200,
            r#""id":"/$/inet/127.0.0.1/1","path":"/foo""#,
        ),
        (
            "GET",
            "/api/1/bind/default?path=svc",
            &[],
            "",
            400,
            "Invalid path: svc",
        ),
        (
            "GET",
            "/api/1/bind/default?path=/svc/%zz",
            &[],
            "",
            400,
            "not valid percent-encoded",
        ),
        (
            "GET",
            "/api/1/bind/default?path=/svc/%FF",
            &[],
            "",
            400,
            "not valid percent-encoded",
        ),
        (
            "GET",
            "/api/1/bind/default?path=/svc/a&dtab=/svc/a%3D%3E/$/inet/127.0.0.1/3",
            &[],
            "",
            200,
            r#""port":3"#,
        ),
        (
            "GET",
            "/api/1/bind/default?path=/x",
            &[],
            "",
            200,
            r#"{"type":"neg"}"#,
        ),
        (
            "GET",
            "/api/1/bind/nope?path=/svc/foo",
            &[],
            "",
            200,
            r#"{"type":"neg"}"#,
        ),
        (
            "GET",
            "/api/1/addr/default?path=/$/inet/127.0.0.1/4",
            &[],
            "",
            200,
            r#"{"type":"bound","addrs":[{"ip":"127.0.0.1","port":4,"meta":{}}],"meta":{}}"#,
        ),
        (
            "GET",
            "/api/1/resolve/default?path=/svc/foo",
            &[],
            "",
            200,
            r#""port":1"#,
        ),
        (
            "GET",
            "/api/1/delegate/default?path=/svc/foo",
            &[],
            "",
            200,
            r#""dentry":{"prefix":"/svc","dst":"/$/inet/127.0.0.1/1"}"#,
        ),
        (
            "GET",
            "/api/1/delegate?path=/svc/foo&dtab=/svc%3D%3E/$/inet/127.0.0.1/5",
            &[],
            "",
            200,
            r#""port":5"#,
        ),
        ("GET", "/api/1/bound-names", &[], "", 200, "[]"),
        ("GET", "/api/1/nothing", &[], "", 404, "no such API"),
        ("GET", "/elsewhere", &[], "", 404, "no such API"),
        ("PATCH", "/api/1/dtabs/default", &[], "", 405, "not allowed"),
    ];
    for (method, path, headers, payload, status, want) in rows {
        let r = call(api, method, path, headers, payload).await;
        assert_eq!(r.status, *status, "{method} {path}: {}", r.body);
        assert!(r.body.contains(want), "{method} {path}: {}", r.body);
    }
    // Versions: ETag on reads and writes, If-Match taken, a stale one refused.
    let r = call(api, "GET", "/api/1/dtabs/web", &[], "").await;
    let v1 = r.header("etag").to_string();
    assert!(v1.starts_with('"'), "{v1}");
    let head = call(api, "HEAD", "/api/1/dtabs/web", &[], "").await;
    assert_eq!((head.status, head.header("etag")), (200, v1.as_str()));
    let r = call(
        api,
        "PUT",
        "/api/1/dtabs/web",
        &[DTAB, ("if-match", &v1)],
        "/svc=>/$/inet/127.0.0.1/6",
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let v2 = r.header("etag").to_string();
    assert_ne!(v1, v2);
    let r = call(
        api,
        "PUT",
        "/api/1/dtabs/web",
        &[DTAB, ("if-match", &v1)],
        "/svc=>/x",
    )
    .await;
    assert_eq!(r.status, 412, "a stale If-Match must be refused");
    // A body over the limit is refused before it is parsed.
    let big = format!(
        "/svc=>/{}",
        "a".repeat(switchboard_namerd::store::MAX_DTAB_BYTES)
    );
    assert_eq!(
        call(api, "PUT", "/api/1/dtabs/web", &[DTAB], &big)
            .await
            .status,
        413
    );
    // A query value past its limit is refused, not bound (hyper's URI limit, 64 KB, comes
    // first: 414).
    let long = format!(
        "GET /api/1/bind/default?path=/{} HTTP/1.1\r\nHost: namerd\r\n\r\n",
        "a".repeat(switchboard_namerd::controller::MAX_QUERY_BYTES + 1)
    );
    let (status, _) = raw_exchange(api, long.as_bytes()).await;
    assert_eq!(status, 414);
    // History and rollback.
    let h: serde_json::Value =
        serde_json::from_str(&call(api, "GET", "/api/1/history/web", &[], "").await.body).unwrap();
    let versions: Vec<&str> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, [v1.trim_matches('"'), v2.trim_matches('"')]);
    let r = call(
        api,
        "POST",
        &format!("/api/1/rollback/web?version={}", v1.trim_matches('"')),
        &[("if-match", &v2)],
        "",
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = call(api, "GET", "/api/1/dtabs/web", &[accept_dtab], "").await;
    assert_eq!(r.body.trim(), "/svc=>/$/inet/127.0.0.1/2");
    assert_eq!(
        call(api, "POST", "/api/1/rollback/web?version=12345", &[], "")
            .await
            .status,
        404
    );
    assert_eq!(
        call(api, "DELETE", "/api/1/dtabs/web", &[], "")
            .await
            .status,
        204
    );
    assert_eq!(
        call(api, "GET", "/api/1/dtabs/web", &[], "").await.status,
        404
    );
    let h = call(api, "GET", "/api/1/history/web", &[], "").await.body;
    assert!(h.contains(r#""change":"deleted""#), "{h}");
    // Admin pages.
    let s = get(admin, "x", "/storage.json", &[]).await;
    assert!(
        s.body.contains(r#""store":"io.l5d.inMemory""#),
        "{}",
        s.body
    );
    assert_eq!(
        get(admin, "x", "/admin/ping", &[]).await.body.trim(),
        "pong"
    );
}

/// Reads a watch stream's lines as they come.
async fn watch_lines(addr: SocketAddr, path: &str) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", "namerd")
        .header("l5d-namerd-client", "watcher-1")
        .body(body(""))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let (out, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _tx = tx;
        let mut body = resp.into_body();
        let mut buf = String::new();
        while let Some(Ok(f)) = body.frame().await {
            if let Ok(d) = f.into_data() {
                buf.push_str(&String::from_utf8_lossy(&d));
                while let Some(i) = buf.find('\n') {
                    let line: String = buf.drain(..=i).collect();
                    let _ = out.send(line.trim().to_string());
                }
            }
        }
    });
    rx
}

async fn next_line(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no line in time")
        .expect("stream ended")
}

#[tokio::test]
async fn watch_streams_follow_changes_and_admin_lists_linkers() {
    let (api, admin, _n) =
        namerd("{kind: io.l5d.inMemory, namespaces: {default: '/svc=>/$/inet/127.0.0.1/1'}}").await;
    let mut dtabs = watch_lines(api, "/api/1/dtabs/default?watch=true").await;
    let mut bind = watch_lines(api, "/api/1/bind/default?path=/svc/a&watch=true").await;
    let mut list = watch_lines(api, "/api/1/dtabs?watch=true").await;
    assert!(next_line(&mut dtabs).await.contains("127.0.0.1/1"));
    assert!(next_line(&mut bind).await.contains(r#""port":1"#));
    assert_eq!(next_line(&mut list).await, r#"["default"]"#);
    // A write that changes nothing visible to a stream is not repeated on it.
    let r = call(
        api,
        "PUT",
        "/api/1/dtabs/default",
        &[DTAB],
        "/svc=>/$/inet/127.0.0.1/2",
    )
    .await;
    assert_eq!(r.status, 204);
    assert!(next_line(&mut dtabs).await.contains("127.0.0.1/2"));
    assert!(next_line(&mut bind).await.contains(r#""port":2"#));
    call(api, "POST", "/api/1/dtabs/other", &[DTAB], "/a=>/b").await;
    assert_eq!(next_line(&mut list).await, r#"["default","other"]"#);
    // The admin page shows which version the watching linker was sent.
    let version = r.header("etag").trim_matches('"').to_string();
    eventually("the watcher is listed at the new version", async || {
        let j: serde_json::Value =
            serde_json::from_str(&get(admin, "x", "/namespaces.json", &[]).await.body).unwrap();
        j["default"]["linkers"]["watcher-1"]["version"] == version.as_str()
            && j["default"]["linkers"]["watcher-1"]["current"] == true
    })
    .await;
    // Deleting the namespace ends its stream with an error line.
    call(api, "DELETE", "/api/1/dtabs/default", &[], "").await;
    assert!(next_line(&mut dtabs).await.contains("not found"));
}

#[tokio::test]
async fn a_linker_routes_by_namerd_and_follows_a_dtab_change() {
    let (a, b) = (backend("a").await, backend("b").await);
    let ns = format!(
        "{{kind: io.l5d.inMemory, namespaces: {{default: '/svc=>{}'}}}}",
        inet(&a)
    );
    let (api, nadmin, _n) = namerd(&ns).await;
    // The router's own dtab comes after the namespace's, so it wins for /svc/override.
    let l = linker(api, "default", &format!("/svc/override=>{}", inet(&b))).await;
    assert_eq!(get(l.addr, "web", "/", &[]).await.body, "a");
    assert_eq!(get(l.addr, "override", "/", &[]).await.body, "b");
    let r = call(
        api,
        "PUT",
        "/api/1/dtabs/default",
        &[DTAB],
        &format!("/svc=>{}", inet(&b)),
    )
    .await;
    assert_eq!(r.status, 204);
    eventually("the linker routes by the new dtab", async || {
        get(l.addr, "web", "/", &[]).await.body == "b"
    })
    .await;
    // The linker is listed by its own name at the current version.
    let version = r.header("etag").trim_matches('"').to_string();
    eventually("namerd lists the linker as current", async || {
        let j: serde_json::Value =
            serde_json::from_str(&get(nadmin, "x", "/namespaces.json", &[]).await.body).unwrap();
        j["default"]["linkers"].as_object().is_some_and(|m| {
            m.iter()
                .any(|(k, v)| k.ends_with("/http") && v["version"] == version.as_str())
        })
    })
    .await;
    let m = metrics(l.admin).await;
    assert_eq!(m["rt/http/interpreter/io.l5d.namerd.http/stale"], 0, "{m}");
    // The linker's dtab playground asks namerd, whose namespace dtab explains the name.
    let d = get(
        l.admin,
        "localhost",
        "/delegator.json?namespace=http&path=/svc/web",
        &[],
    )
    .await;
    assert_eq!(d.status, 200, "{}", d.body);
    assert!(
        d.body.contains(&format!(
            r#""dentry":{{"prefix":"/svc","dst":"{}"}}"#,
            inet(&b)
        )),
        "{}",
        d.body
    );
    let st = get(
        l.admin,
        "localhost",
        "/http/interpreter_state/io.l5d.namerd.http/default.json",
        &[],
    )
    .await;
    assert!(st.body.contains(r#""stale":false"#), "{}", st.body);
}

/// A namerd run as its own process on a fixed port, so it can be killed and started again.
struct NamerdProcess {
    child: Option<Child>,
    config: tempfile::NamedTempFile,
    port: u16,
}

impl NamerdProcess {
    async fn start(storage: &str) -> NamerdProcess {
        let port = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            config.path(),
            format!("admin: {{ip: 127.0.0.1, port: 0}}\nstorage: {storage}\ninterfaces:\n- kind: io.l5d.httpController\n  port: {port}\n"),
        )
        .unwrap();
        let mut p = NamerdProcess {
            child: None,
            config,
            port,
        };
        p.up().await;
        p
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    async fn up(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("namerd")
            .arg(self.config.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let addr = self.addr();
        eventually("namerd answers", async || {
            tokio::net::TcpStream::connect(addr).await.is_ok()
        })
        .await;
    }

    async fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
    }
}

#[tokio::test]
async fn namerd_down_linkers_keep_routing_then_converge() {
    let Some(etcd) = env("SWITCHBOARD_ETCD") else {
        return;
    };
    let (a, b) = (backend("a").await, backend("b").await);
    let prefix = format!("/namerd-e2e/{}", fastrand::u32(..));
    let (host, port) = etcd.split_once(':').unwrap();
    let storage =
        format!("{{kind: io.l5d.etcd, host: {host}, port: {port}, pathPrefix: {prefix}}}");
    let mut nd = NamerdProcess::start(&storage).await;
    let r = call(
        nd.addr(),
        "POST",
        "/api/1/dtabs/default",
        &[DTAB],
        &format!("/svc=>{}", inet(&a)),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let l = linker(nd.addr(), "default", "/x=>/y").await;
    assert_eq!(get(l.addr, "web", "/", &[]).await.body, "a");
    nd.down().await;
    // Routing goes on with what namerd last said; the interpreter says it is stale.
    until_metric(
        l.admin,
        "rt/http/interpreter/io.l5d.namerd.http/stale",
        |v| v == 1,
    )
    .await;
    for _ in 0..5 {
        assert_eq!(get(l.addr, "web", "/", &[]).await.body, "a");
    }
    // A name never bound is Pending until bindingTimeoutMs, then refused.
    let r = get(l.addr, "never-seen", "/", &[]).await;
    assert!(r.status >= 500, "{r:?}");
    // The dtab changes in the store while namerd is down (as another namerd would write it).
    let mut c =
        switchboard_namer_etcd::client::Client::connect(&[etcd.as_str()], &Default::default())
            .await
            .unwrap();
    c.put(
        format!("{prefix}/default"),
        format!("/svc=>{}", inet(&b)),
        0,
    )
    .await
    .unwrap();
    nd.up().await;
    eventually(
        "the linker converges on the dtab namerd serves again",
        async || get(l.addr, "web", "/", &[]).await.body == "b",
    )
    .await;
    until_metric(
        l.admin,
        "rt/http/interpreter/io.l5d.namerd.http/stale",
        |v| v == 0,
    )
    .await;
    nd.down().await;
}

/// Two namerds on one store: a write through one reaches linkers of the other; compare-and-set
/// is the store's across both; a change made with the store's own tool reaches both.
async fn two_namerds_one_store(storage: &str, external_write: impl AsyncFnOnce(&str)) {
    let (a, b, c) = (backend("a").await, backend("b").await, backend("c").await);
    let (api1, _, _n1) = namerd(storage).await;
    let (api2, _, _n2) = namerd(storage).await;
    let ns = format!("ns{}", fastrand::u32(..));
    let r = call(
        api1,
        "POST",
        &format!("/api/1/dtabs/{ns}"),
        &[DTAB],
        &format!("/svc=>{}", inet(&a)),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let v1 = r.header("etag").to_string();
    let l = linker(api2, &ns, "/x=>/y").await;
    eventually(
        "the linker of namerd 2 routes by namerd 1's write",
        async || get(l.addr, "web", "/", &[]).await.body == "a",
    )
    .await;
    // namerd 2 sees the same version, and its compare-and-set holds against namerd 1's.
    eventually("namerd 2 shows the version namerd 1 wrote", async || {
        call(api2, "GET", &format!("/api/1/dtabs/{ns}"), &[], "")
            .await
            .header("etag")
            == v1
    })
    .await;
    let r = call(
        api2,
        "PUT",
        &format!("/api/1/dtabs/{ns}"),
        &[DTAB, ("if-match", &v1)],
        &format!("/svc=>{}", inet(&b)),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = call(
        api1,
        "PUT",
        &format!("/api/1/dtabs/{ns}"),
        &[DTAB, ("if-match", &v1)],
        "/svc=>/nowhere",
    )
    .await;
    assert_eq!(
        r.status, 412,
        "namerd 1 wrote over a version it had not seen: {}",
        r.body
    );
    assert_eq!(
        call(
            api1,
            "POST",
            &format!("/api/1/dtabs/{ns}"),
            &[DTAB],
            "/a=>/b"
        )
        .await
        .status,
        409
    );
    eventually("the linker follows namerd 2's write", async || {
        get(l.addr, "web", "/", &[]).await.body == "b"
    })
    .await;
    external_write(&format!("/svc=>{}", inet(&c))).await;
    eventually(
        "a change made outside namerd reaches the linker",
        async || get(l.addr, "web", "/", &[]).await.body == "c",
    )
    .await;
    let stale = call(
        api2,
        "DELETE",
        &format!("/api/1/dtabs/{ns}"),
        &[("if-match", &v1)],
        "",
    )
    .await;
    assert_eq!(
        stale.status, 412,
        "a delete at a stale version: {}",
        stale.body
    );
    assert_eq!(
        call(api2, "DELETE", &format!("/api/1/dtabs/{ns}"), &[], "")
            .await
            .status,
        204
    );
    let gone = call(
        api2,
        "DELETE",
        &format!("/api/1/dtabs/{ns}"),
        &[("if-match", &v1)],
        "",
    )
    .await;
    assert_eq!(
        gone.status, 404,
        "a conditional delete of a deleted namespace: {}",
        gone.body
    );
    eventually("the delete reaches namerd 1", async || {
        call(api1, "GET", &format!("/api/1/dtabs/{ns}"), &[], "")
            .await
            .status
            == 404
    })
    .await;
    // The other namerd kept the history it saw, the outside change included.
    let h = call(api1, "GET", &format!("/api/1/history/{ns}"), &[], "")
        .await
        .body;
    assert!(h.contains(&inet(&c)) && h.contains("deleted"), "{h}");
    // The namespace is recorded by the linker it's watched by.
    let _ = ns;
}

#[tokio::test]
async fn etcd_store_two_namerds() {
    let Some(etcd) = env("SWITCHBOARD_ETCD") else {
        return;
    };
    let prefix = format!("/namerd-e2e/{}", fastrand::u32(..));
    let (host, port) = etcd.split_once(':').unwrap();
    let storage =
        format!("{{kind: io.l5d.etcd, host: {host}, port: {port}, pathPrefix: {prefix}}}");
    let (e, p) = (etcd.clone(), prefix.clone());
    two_namerds_one_store(&storage, async move |dtab: &str| {
        // The namespace is the only key under the prefix.
        let mut c =
            switchboard_namer_etcd::client::Client::connect(&[e.as_str()], &Default::default())
                .await
                .unwrap();
        let keys = c.get_prefix(format!("{p}/").as_bytes()).await.unwrap();
        let key = keys.kvs[0].key.clone();
        c.put(key, dtab.to_string(), 0).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn zookeeper_store_two_namerds() {
    let Some(zk) = env("SWITCHBOARD_ZK") else {
        return;
    };
    let Some(sh) = env("SWITCHBOARD_BACKENDS") else {
        return;
    };
    let prefix = format!("/namerd-e2e-{}", fastrand::u32(..));
    let (host, port) = zk.split_once(':').unwrap();
    let storage = format!(
        "{{kind: io.l5d.zk, zkAddrs: [{{host: {host}, port: {port}}}], pathPrefix: {prefix}, sessionTimeoutMs: 10000}}"
    );
    let p = prefix.clone();
    two_namerds_one_store(&storage, async move |dtab: &str| {
        let ls = Command::new(&sh)
            .args(["zkcli", "ls", &p])
            .output()
            .await
            .unwrap();
        let out = String::from_utf8_lossy(&ls.stdout).to_string();
        let ns = out
            .lines()
            .rev()
            .find(|l| l.starts_with('['))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').to_string())
            .unwrap_or_else(|| panic!("no namespace under {p}: {out}"));
        let set = Command::new(&sh)
            .args(["zkcli", "set", &format!("{p}/{ns}"), dtab])
            .output()
            .await
            .unwrap();
        assert!(
            set.status.success(),
            "{}",
            String::from_utf8_lossy(&set.stderr)
        );
    })
    .await;
}

#[tokio::test]
async fn consul_kv_store_two_namerds() {
    let Some(consul) = env("SWITCHBOARD_CONSUL") else {
        return;
    };
    let prefix = format!("/namerd-e2e/{}", fastrand::u32(..));
    let (host, port) = consul.split_once(':').unwrap();
    let storage = format!(
        "{{kind: io.l5d.consul, host: {host}, port: {port}, pathPrefix: {prefix}, readConsistencyMode: consistent}}"
    );
    let (c, p) = (consul.clone(), prefix.clone());
    two_namerds_one_store(&storage, async move |dtab: &str| {
        let addr: SocketAddr = c.parse().unwrap();
        let keys = get(addr, &c, &format!("/v1/kv{p}/?keys"), &[]).await;
        let keys: Vec<String> = serde_json::from_str(&keys.body).unwrap();
        let r = call(addr, "PUT", &format!("/v1/kv/{}", keys[0]), &[], dtab).await;
        assert_eq!(r.body.trim(), "true");
    })
    .await;
}

/// A private etcd on its own ports and data directory, restarted with its data.
struct PrivateEtcd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
}

impl PrivateEtcd {
    async fn up(&mut self) {
        let (c, p, m) = (self.port, self.port + 10, self.port + 20);
        let child = Command::new("etcd")
            .args([
                "--name",
                "t",
                "--data-dir",
                self.dir.path().join("data").to_str().unwrap(),
                "--listen-client-urls",
                &format!("http://127.0.0.1:{c}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{c}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{p}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{p}"),
                "--initial-cluster",
                &format!("t=http://127.0.0.1:{p}"),
                "--listen-metrics-urls",
                &format!("http://127.0.0.1:{m}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
        let addr = format!("127.0.0.1:{c}");
        eventually("the private etcd answers", async || {
            match switchboard_namer_etcd::client::Client::connect(
                &[addr.as_str()],
                &Default::default(),
            )
            .await
            {
                Ok(mut cl) => cl.get_prefix(b"ready").await.is_ok(),
                Err(_) => false,
            }
        })
        .await;
    }

    async fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
    }
}

#[tokio::test]
async fn an_etcd_restart_loses_no_watch() {
    if env("SWITCHBOARD_ETCD").is_none() {
        return;
    }
    let (a, b) = (backend("a").await, backend("b").await);
    let mut etcd = PrivateEtcd {
        dir: tempfile::tempdir().unwrap(),
        child: None,
        port: 23797,
    };
    etcd.up().await;
    let storage = format!(
        "{{kind: io.l5d.etcd, host: 127.0.0.1, port: {}}}",
        etcd.port
    );
    let (api, nadmin, _n) = namerd(&storage).await;
    let r = call(
        api,
        "POST",
        "/api/1/dtabs/default",
        &[DTAB],
        &format!("/svc=>{}", inet(&a)),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let l = linker(api, "default", "/x=>/y").await;
    assert_eq!(get(l.addr, "web", "/", &[]).await.body, "a");
    etcd.down().await;
    eventually("namerd reports its store stale", async || {
        get(nadmin, "x", "/storage.json", &[])
            .await
            .body
            .contains(r#""stale":true"#)
    })
    .await;
    // Reads are served from the last state; writes fail plainly.
    assert_eq!(
        call(api, "GET", "/api/1/dtabs/default", &[], "")
            .await
            .status,
        200
    );
    let r = call(api, "PUT", "/api/1/dtabs/default", &[DTAB], "/svc=>/x").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(get(l.addr, "web", "/", &[]).await.body, "a");
    etcd.up().await;
    eventually("namerd's store recovers", async || {
        get(nadmin, "x", "/storage.json", &[])
            .await
            .body
            .contains(r#""stale":false"#)
    })
    .await;
    let r = call(
        api,
        "PUT",
        "/api/1/dtabs/default",
        &[DTAB],
        &format!("/svc=>{}", inet(&b)),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    eventually(
        "the write after the restart reaches the linker",
        async || get(l.addr, "web", "/", &[]).await.body == "b",
    )
    .await;
    etcd.down().await;
}

#[tokio::test]
async fn the_fs_interpreter_follows_its_dtab_file() {
    let (a, b) = (backend("a").await, backend("b").await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dtab");
    std::fs::write(&file, format!("/svc=>{};\n", inet(&a))).unwrap();
    let cfg = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nrouters:\n- protocol: http\n  dtab: /svc/pinned=>{}\n  interpreter:\n    kind: io.l5d.fs\n    dtabFile: {}\n  servers: [{{ip: 127.0.0.1, port: 0}}]\n",
        inet(&b),
        file.display()
    );
    let p = proxy(&cfg, &Disco::new().path()).await;
    assert_eq!(get(p.addr, "web", "/", &[]).await.body, "a");
    // The router's dtab comes after the file's.
    assert_eq!(get(p.addr, "pinned", "/", &[]).await.body, "b");
    std::fs::write(&file, format!("/svc=>{};\n", inet(&b))).unwrap();
    eventually("the router follows the file", async || {
        get(p.addr, "web", "/", &[]).await.body == "b"
    })
    .await;
    // A file that stops parsing keeps the last good dtab.
    std::fs::write(&file, "/svc=>").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(p.addr, "web", "/", &[]).await.body, "b");
}

/// The shipped example (config/namerd.yaml on the test etcd, config/linker-namerd.yaml), with
/// the dtab written, read, diffed, listed and rolled back by `switchboard dtab`.
#[tokio::test]
async fn the_shipped_example_and_the_dtab_commands() {
    let Some(etcd) = env("SWITCHBOARD_ETCD") else {
        return;
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let prefix = format!("/namerd-example/{}", fastrand::u32(..));
    let port = etcd.split_once(':').unwrap().1;
    let text = std::fs::read_to_string(root.join("config/namerd.yaml"))
        .unwrap()
        .replace("port: 23790", &format!("port: {port}"))
        .replace("/namerd/dtabs", &prefix)
        .replace(
            "rootDir: config/disco",
            &format!("rootDir: {}", root.join("config/disco").display()),
        )
        .replace("port: 9991", "port: 0")
        .replace("port: 4180", "port: 0");
    let (cfg, warnings) = switchboard::config::namerd::load(&text).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let n = switchboard::namerd::start(cfg).await.unwrap();
    let api = n.interfaces[0].addr;
    let (a, b) = (backend("a").await, backend("b").await);
    let linker_text = std::fs::read_to_string(root.join("config/linker-namerd.yaml"))
        .unwrap()
        .replace("127.0.0.1/4180", &format!("127.0.0.1/{}", api.port()))
        .replace("port: 9992", "port: 0")
        .replace("port: 4150", "port: 0");
    let l = proxy(&linker_text, &Disco::new().path()).await;
    let dir = tempfile::tempdir().unwrap();
    let (fa, fb) = (dir.path().join("a.dtab"), dir.path().join("b.dtab"));
    std::fs::write(
        &fa,
        format!("/svc => {};\n/svc/other => /#/io.l5d.fs/web;\n", inet(&a)),
    )
    .unwrap();
    std::fs::write(
        &fb,
        format!("/svc => {};\n/svc/other => /#/io.l5d.fs/web;\n", inet(&b)),
    )
    .unwrap();
    let url = format!("http://{api}");
    let cli = |args: Vec<String>| async move {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(&args)
            .output()
            .await
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let dtab = |cmd: &str, rest: &[&str]| {
        let mut v = vec![
            "dtab".to_string(),
            cmd.to_string(),
            "--namerd".into(),
            url.clone(),
            "default".into(),
        ];
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };
    let fa_s = fa.display().to_string();
    let fb_s = fb.display().to_string();
    // put creates the namespace; get prints it a dentry per line.
    let (code, out, err) = cli(dtab("put", &[&fa_s])).await;
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = cli(dtab("get", &[])).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        format!("/svc=>{};\n/svc/other=>/#/io.l5d.fs/web;\n", inet(&a))
    );
    let v1 = err.trim().strip_prefix("version ").unwrap().to_string();
    eventually("the example linker routes by namerd", async || {
        get(l.addr, "web", "/", &[]).await.body == "a"
    })
    .await;
    // diff shows the change and exits 1; put writes it.
    let (code, out, _) = cli(dtab("diff", &[&fb_s])).await;
    assert_eq!(code, Some(1));
    assert!(
        out.contains(&format!("- /svc=>{}", inet(&a)))
            && out.contains(&format!("+ /svc=>{}", inet(&b)))
            && out.contains("  /svc/other"),
        "{out}"
    );
    let (code, out, err) = cli(dtab("put", &[&fb_s])).await;
    assert_eq!(code, Some(0), "{out}{err}");
    eventually("the linker follows the put", async || {
        get(l.addr, "web", "/", &[]).await.body == "b"
    })
    .await;
    // A put naming a version that is no longer current writes nothing.
    let (code, _, err) = cli(dtab("put", &[&fa_s, "--version", &v1])).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("changed since it was read"), "{err}");
    // An invalid dtab is refused before anything is sent, with where it fails.
    std::fs::write(dir.path().join("bad.dtab"), "/svc => ").unwrap();
    let (code, _, err) = cli(dtab(
        "put",
        &[&dir.path().join("bad.dtab").display().to_string()],
    ))
    .await;
    assert_eq!(code, Some(1));
    assert!(err.contains("bad.dtab"), "{err}");
    // history lists both versions; rollback brings the first back.
    let (code, out, _) = cli(dtab("history", &[])).await;
    assert_eq!(code, Some(0));
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.starts_with(&format!("{v1}\t")), "{out}");
    let (code, out, err) = cli(dtab("rollback", &[&v1])).await;
    assert_eq!(code, Some(0), "{out}{err}");
    eventually("the linker follows the rollback", async || {
        get(l.addr, "web", "/", &[]).await.body == "a"
    })
    .await;
    let (_, out, _) = cli(dtab("diff", &[&fa_s])).await;
    assert!(out.lines().all(|l| l.starts_with("  ")), "{out}");
}

/// A namerd with an HTTP controller and a mesh interface, both on port 0.
async fn namerd_with_mesh(
    storage: &str,
) -> (SocketAddr, SocketAddr, switchboard::namerd::RunningNamerd) {
    let text = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nstorage: {storage}\ninterfaces:\n- {{kind: io.l5d.httpController, port: 0}}\n- {{kind: io.l5d.mesh, port: 0}}\n"
    );
    let (cfg, _) =
        switchboard::config::namerd::load(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let n = switchboard::namerd::start(cfg).await.unwrap();
    (n.interfaces[0].addr, n.interfaces[1].addr, n)
}

async fn grpc<Req, Rsp>(
    addr: SocketAddr,
    method: &'static str,
    req: Req,
) -> Result<Rsp, tonic::Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Rsp: prost::Message + Default + Send + Sync + 'static,
{
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut g = tonic::client::Grpc::new(ch);
    g.ready().await.unwrap();
    g.unary(
        tonic::Request::new(req),
        http::uri::PathAndQuery::from_static(method),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .map(|r| r.into_inner())
}

#[tokio::test]
async fn a_linker_routes_by_namerd_over_the_mesh_api() {
    use switchboard_namerd::mesh::proto as pb;
    let (a, b) = (backend("a").await, backend("b").await);
    let ns = format!(
        "{{kind: io.l5d.inMemory, namespaces: {{default: '/svc=>{}'}}}}",
        inet(&a)
    );
    let (api, mesh, n) = namerd_with_mesh(&ns).await;
    let cfg = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nrouters:\n- protocol: http\n  label: http\n  interpreter:\n    kind: io.l5d.mesh\n    dst: /$/inet/127.0.0.1/{}\n    root: /default\n    retry: {{baseSeconds: 1, maxSeconds: 1}}\n  servers: [{{ip: 127.0.0.1, port: 0}}]\n",
        mesh.port()
    );
    let l = proxy(&cfg, &Disco::new().path()).await;
    assert_eq!(get(l.addr, "web", "/", &[]).await.body, "a");
    let r = call(
        api,
        "PUT",
        "/api/1/dtabs/default",
        &[DTAB],
        &format!("/svc=>{}", inet(&b)),
    )
    .await;
    assert_eq!(r.status, 204);
    eventually("the mesh linker follows the change", async || {
        get(l.addr, "web", "/", &[]).await.body == "b"
    })
    .await;
    let m = metrics(l.admin).await;
    assert_eq!(m["rt/http/interpreter/io.l5d.mesh/stale"], 0, "{m}");
    // The linker's /delegator.json asks namerd's Delegator; it explains as namerd's own API
    // does (the addresses aside: each side renders its own).
    fn no_addr(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("addr");
                m.values_mut().for_each(no_addr);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(no_addr),
            _ => {}
        }
    }
    let d = get(
        l.admin,
        "localhost",
        "/delegator.json?namespace=http&path=/svc/web&dtab=/svc/web%3D%3E~%7C/svc/x",
        &[],
    )
    .await;
    assert_eq!(d.status, 200, "{}", d.body);
    let mut linker_view: serde_json::Value = serde_json::from_str(&d.body).unwrap();
    let mut namerd_view: serde_json::Value = serde_json::from_str(
        &get(
            api,
            "namerd",
            "/api/1/delegate/default?path=/svc/web&dtab=/svc/web%3D%3E~%7C/svc/x",
            &[],
        )
        .await
        .body,
    )
    .unwrap();
    assert!(linker_view.to_string().contains(&inet(&b)), "{linker_view}");
    no_addr(&mut linker_view);
    no_addr(&mut namerd_view);
    assert_eq!(linker_view, namerd_view);
    // namerd lists the mesh linker (by its address) at the current version.
    let version = r.header("etag").trim_matches('"').to_string();
    eventually("namerd lists the mesh linker as current", async || {
        let j: serde_json::Value =
            serde_json::from_str(&get(n.admin.addr, "x", "/namespaces.json", &[]).await.body)
                .unwrap();
        j["default"]["linkers"].as_object().is_some_and(|m| {
            m.values()
                .any(|v| v["version"] == version.as_str() && v["watching"] == true)
        })
    })
    .await;
    assert!(
        m["rt/http/interpreter/io.l5d.mesh/streams"]
            .as_i64()
            .unwrap()
            >= 2,
        "{m}"
    );

    // The services, called directly.
    let root = || mesh_root("default");
    let d: pb::DtabRsp = grpc(
        mesh,
        "/io.linkerd.mesh.Delegator/GetDtab",
        pb::DtabReq { root: root() },
    )
    .await
    .unwrap();
    let vd = d.dtab.unwrap();
    assert_eq!(
        String::from_utf8(vd.version.unwrap().id).unwrap(),
        r.header("etag").trim_matches('"')
    );
    assert_eq!(
        pb::dtab_of(&vd.dtab.unwrap()).unwrap().show(),
        format!("/svc=>{}", inet(&b))
    );
    let t: pb::BoundTreeRsp = grpc(
        mesh,
        "/io.linkerd.mesh.Interpreter/GetBoundTree",
        pb::BindReq {
            root: root(),
            name: Some(pb::path_pb(
                &switchboard_namer_core::Path::read("/svc/web").unwrap(),
            )),
            dtab: None,
        },
    )
    .await
    .unwrap();
    let tree = pb::bound_tree_of(&t.tree.unwrap()).unwrap();
    let switchboard_namer_core::NameTree::Leaf(leaf) = tree else {
        panic!("{tree:?}")
    };
    assert_eq!(leaf.id.show(), inet(&b));
    let rep: pb::Replicas = grpc(
        mesh,
        "/io.linkerd.mesh.Resolver/GetReplicas",
        pb::ReplicasReq {
            id: Some(pb::path_pb(&leaf.id)),
        },
    )
    .await
    .unwrap();
    match pb::addr_of(&rep).unwrap() {
        switchboard_namer_core::Addr::Bound { endpoints, .. } => {
            assert_eq!(endpoints[0].addr, b.addr)
        }
        other => panic!("{other:?}"),
    }
    let text: pb::TextPb = grpc(
        mesh,
        "/io.linkerd.mesh.Codec/ShowDtab",
        grpc::<_, pb::DtabMsg>(
            mesh,
            "/io.linkerd.mesh.Codec/ReadDtab",
            pb::TextPb {
                text: Some("/a => /b | /c".into()),
            },
        )
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        text.text.unwrap_or_default(),
        switchboard_namer_core::Dtab::read("/a=>/b|/c")
            .unwrap()
            .show()
    );
    // Errors are gRPC statuses, as Linkerd's.
    let bad = grpc::<_, pb::BoundTreeRsp>(
        mesh,
        "/io.linkerd.mesh.Interpreter/GetBoundTree",
        pb::BindReq {
            root: Some(pb::path_pb(
                &switchboard_namer_core::Path::read("/a/b").unwrap(),
            )),
            name: Some(pb::path_pb(
                &switchboard_namer_core::Path::read("/svc/web").unwrap(),
            )),
            dtab: None,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    assert!(bad.message().contains("exactly one segment"), "{bad:?}");
    let missing = grpc::<_, pb::DtabRsp>(
        mesh,
        "/io.linkerd.mesh.Delegator/GetDtab",
        pb::DtabReq {
            root: Some(pb::path_pb(
                &switchboard_namer_core::Path::read("/nope").unwrap(),
            )),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    // A request message past the limit is refused.
    let huge = grpc::<_, pb::DtabMsg>(
        mesh,
        "/io.linkerd.mesh.Codec/ReadDtab",
        pb::TextPb {
            text: Some(
                "/a=>/b;".repeat(switchboard_namerd::mesh::server::MAX_REQUEST_BYTES / 7 + 1),
            ),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(huge.code(), tonic::Code::ResourceExhausted, "{huge:?}");
    let delegated: pb::DelegateTreeRsp = grpc(
        mesh,
        "/io.linkerd.mesh.Delegator/GetDelegateTree",
        pb::DelegateTreeReq {
            root: root(),
            tree: Some(pb::path_tree_pb(&switchboard_namer_core::NameTree::Leaf(
                switchboard_namer_core::Path::read("/svc/web").unwrap(),
            ))),
            dtab: None,
        },
    )
    .await
    .unwrap();
    assert!(
        format!("{delegated:?}").contains("Delegate"),
        "{delegated:?}"
    );
    // A tree of paths, as Linkerd's Delegator takes: each leaf explained under a nop alt.
    let tree = switchboard_namer_core::NameTree::<switchboard_namer_core::Path>::read(
        "/svc/web | /nowhere/x",
    )
    .unwrap();
    let delegated: pb::DelegateTreeRsp = grpc(
        mesh,
        "/io.linkerd.mesh.Delegator/GetDelegateTree",
        pb::DelegateTreeReq {
            root: root(),
            tree: Some(pb::path_tree_pb(&tree)),
            dtab: None,
        },
    )
    .await
    .unwrap();
    let t = pb::delegate_of(&delegated.tree.unwrap(), &mut |id, res| {
        switchboard_namer_core::Bound::new(
            id,
            res,
            switchboard_namer_core::Var::constant(switchboard_namer_core::Addr::Pending),
        )
    })
    .unwrap();
    let j = switchboard_namer_core::delegate::delegate_json(&t);
    assert_eq!(j["type"], "alt", "{j}");
    assert_eq!(j["alt"][0]["path"], "/svc/web", "{j}");
    assert!(j["alt"][0].to_string().contains(&inet(&b)), "{j}");
    assert_eq!(j["alt"][1]["type"], "neg", "{j}");
    assert_eq!(j["alt"][1]["path"], "/nowhere/x", "{j}");
}

/// Endpoint churn in namerd's own namers reaches an addr watch (and a linker) without a new
/// tree; a stale If-Match or one on a deleted namespace is refused.
#[tokio::test]
async fn namerd_namers_churn_reaches_addr_watches() {
    let (a, b) = (backend("a").await, backend("b").await);
    let disco = Disco::new();
    disco.set_backends("web", &[&a]);
    let text = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nstorage: {{kind: io.l5d.inMemory, namespaces: {{default: '/svc=>/#/io.l5d.fs'}}}}\nnamers:\n- {{kind: io.l5d.fs, rootDir: {}}}\ninterfaces:\n- {{kind: io.l5d.httpController, port: 0}}\n",
        disco.path().display()
    );
    let (cfg, _) = switchboard::config::namerd::load(&text).unwrap();
    let n = switchboard::namerd::start(cfg).await.unwrap();
    let api = n.interfaces[0].addr;
    let mut addr = watch_lines(
        api,
        "/api/1/addr/default?path=/%23/io.l5d.fs/web&watch=true",
    )
    .await;
    assert!(next_line(&mut addr)
        .await
        .contains(&format!("\"port\":{}", a.addr.port())));
    let l = linker(api, "default", "/x=>/y").await;
    assert_eq!(get(l.addr, "web", "/", &[]).await.body, "a");
    disco.set_backends("web", &[&b]);
    assert!(next_line(&mut addr)
        .await
        .contains(&format!("\"port\":{}", b.addr.port())));
    eventually("the linker follows the endpoint change", async || {
        get(l.addr, "web", "/", &[]).await.body == "b"
    })
    .await;
    // A one-shot resolve waits for the addresses, not only the tree.
    let r = call(api, "GET", "/api/1/resolve/default?path=/svc/web", &[], "").await;
    assert!(
        r.body.contains(&format!("\"port\":{}", b.addr.port())),
        "{}",
        r.body
    );
    // If-Match on version 0 (never issued) and on a namespace that is gone.
    let r = call(
        api,
        "PUT",
        "/api/1/dtabs/default",
        &[DTAB, ("if-match", "\"0\"")],
        "/svc=>/x",
    )
    .await;
    assert_eq!(r.status, 412, "{}", r.body);
    assert_eq!(
        call(api, "DELETE", "/api/1/dtabs/default", &[], "")
            .await
            .status,
        204
    );
    let r = call(
        api,
        "DELETE",
        "/api/1/dtabs/default",
        &[("if-match", "\"1\"")],
        "",
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
}

/// `io.l5d.consul.interpreter`: the router's dtab comes from a namespace in Consul KV, as
/// namerd's Consul storage keeps it, watched.
#[tokio::test]
async fn the_consul_interpreter_follows_a_namespace_in_consul_kv() {
    let Some(consul) = env("SWITCHBOARD_CONSUL") else {
        return;
    };
    let (a, b) = (backend("a").await, backend("b").await);
    let prefix = format!("/linker-e2e/{}", fastrand::u32(..));
    let caddr: SocketAddr = consul.parse().unwrap();
    let put = async |dtab: String| {
        let r = call(
            caddr,
            "PUT",
            &format!("/v1/kv{prefix}/internal"),
            &[],
            &dtab,
        )
        .await;
        assert_eq!(r.body.trim(), "true", "{r:?}");
    };
    put(format!("/svc=>{}", inet(&a))).await;
    let (host, port) = consul.split_once(':').unwrap();
    let cfg = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nrouters:\n- protocol: http\n  dtab: /svc/pinned=>{}\n  interpreter:\n    kind: io.l5d.consul.interpreter\n    host: {host}\n    port: {port}\n    pathPrefix: {prefix}\n    namespace: internal\n  servers: [{{ip: 127.0.0.1, port: 0}}]\n",
        inet(&b)
    );
    let p = proxy(&cfg, &Disco::new().path()).await;
    eventually("the router routes by the namespace's dtab", async || {
        get(p.addr, "web", "/", &[]).await.body == "a"
    })
    .await;
    assert_eq!(get(p.addr, "pinned", "/", &[]).await.body, "b");
    put(format!("/svc=>{}", inet(&b))).await;
    eventually("the router follows the change in Consul", async || {
        get(p.addr, "web", "/", &[]).await.body == "b"
    })
    .await;
    // A value that is not a dtab keeps the last good one.
    put("/svc=>".into()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get(p.addr, "web", "/", &[]).await.body, "b");
}

/// `switchboard check` tells namerd and linker configs apart and checks both, located.
#[tokio::test]
async fn check_tells_namerd_and_linker_configs_apart() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .current_dir(root)
        .args(["check", "config/namerd.yaml", "config/linker-namerd.yaml"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("config/namerd.yaml: ok (namerd: 1 interface, 1 namer)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("config/linker-namerd.yaml: ok (1 router, 0 namers)"),
        "{stdout}"
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "storage: {kind: io.l5d.etcd, prot: 1}\ninterfaces: [{kind: io.l5d.httpController}]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("check")
        .arg(&bad)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("storage (io.l5d.etcd).prot: unknown field `prot`"),
        "{stderr}"
    );
    // A namerd config given to the proxy says which command runs it.
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("run")
        .arg(root.join("config/namerd.yaml"))
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("run it with `switchboard namerd CONFIG`"),
        "{stderr}"
    );
}

#[tokio::test]
async fn namerd_serves_its_counters_to_prometheus() {
    let text = "admin: {ip: 127.0.0.1, port: 0}\nstorage: {kind: io.l5d.inMemory}\ninterfaces:\n- {kind: io.l5d.httpController, port: 0}\ntelemetry:\n- {kind: io.l5d.prometheus, prefix: nd_}\n";
    let (cfg, warnings) = switchboard::config::namerd::load(text).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let n = switchboard::namerd::start(cfg).await.unwrap();
    let api = n.interfaces[0].addr;
    call(api, "POST", "/api/1/dtabs/web", &[DTAB], "/a=>/b").await;
    let r = get(n.admin.addr, "x", "/admin/metrics/prometheus", &[]).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body
            .contains("# TYPE nd_namerd_writes counter\nnd_namerd_writes 1\n"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("nd_namerd_store_namespaces 1\n"),
        "{}",
        r.body
    );
    // Other telemeters are accepted with a warning.
    let (_, warnings) = switchboard::config::namerd::load(&text.replace(
        "io.l5d.prometheus, prefix: nd_",
        "io.l5d.recentRequests, sampleRate: 1.0",
    ))
    .unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.to_string().contains("not wired for namerd")),
        "{warnings:?}"
    );
}

/// Namerd's interfaces and admin on TLS with client certificates required; linkers on
/// `io.l5d.namerd.http` and `io.l5d.mesh` reach it with their own certificates and route by it;
/// `switchboard dtab` writes through `https://`; a plaintext client, a linker with a certificate
/// from another CA, and one that does not trust namerd's certificate are all refused, and those
/// linkers are marked stale instead of routing.
#[tokio::test]
async fn linkers_reach_namerd_over_tls_with_client_certificates() {
    use pki::Pki;
    let pki = Pki::new();
    pki.issue("namerd", &["namerd", "127.0.0.1"], None);
    pki.issue("linker", &["linker"], None);
    let other = Pki::named("another CA");
    other.issue("linker", &["linker"], None);
    other.issue("namerd", &["namerd"], None);
    let (a, b) = (backend("a").await, backend("b").await);
    let ca = pki.path("ca.pem").display().to_string();
    let server_tls = format!(
        "{{certPath: {}, keyPath: {}, caCertPath: {ca}, requireClientAuth: true}}",
        pki.path("namerd.pem").display(),
        pki.path("namerd.key").display()
    );
    let text = format!(
        "admin: {{ip: 127.0.0.1, port: 0, tls: {server_tls}}}\nstorage: {{kind: io.l5d.inMemory, namespaces: {{default: '/svc=>{}'}}}}\ninterfaces:\n- {{kind: io.l5d.httpController, port: 0, tls: {server_tls}}}\n- {{kind: io.l5d.mesh, port: 0, tls: {server_tls}}}\n",
        inet(&a)
    );
    let (cfg, _) =
        switchboard::config::namerd::load(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let n = switchboard::namerd::start(cfg).await.unwrap();
    let (api, mesh) = (n.interfaces[0], n.interfaces[1]);
    assert!(api.tls && mesh.tls && n.admin.tls);
    assert_eq!(api.url(), format!("https://{}", api.addr));

    // `trust`: whose CA the linker trusts; `cert`: whose CA signed the linker's certificate.
    let linker = async |kind: &str, port: u16, trust: &Pki, cert: &Pki| {
        let extra = if kind == "io.l5d.mesh" {
            "root: /default"
        } else {
            "experimental: true\n    namespace: default"
        };
        let cfg = format!(
            "admin: {{ip: 127.0.0.1, port: 0}}\nrouters:\n- protocol: http\n  label: http\n  bindingTimeoutMs: 1000\n  interpreter:\n    kind: {kind}\n    dst: /$/inet/127.0.0.1/{port}\n    {extra}\n    retry: {{baseSeconds: 1, maxSeconds: 1}}\n    tls:\n      commonName: namerd\n      trustCertsBundle: {}\n      clientAuth: {{certPath: {}, keyPath: {}}}\n  servers: [{{ip: 127.0.0.1, port: 0}}]\n",
            trust.path("ca.pem").display(),
            cert.path("linker.pem").display(),
            cert.path("linker.key").display(),
        );
        proxy(&cfg, &Disco::new().path()).await
    };
    let http = linker("io.l5d.namerd.http", api.addr.port(), &pki, &pki).await;
    let grpc = linker("io.l5d.mesh", mesh.addr.port(), &pki, &pki).await;
    assert_eq!(get(http.addr, "web", "/", &[]).await.body, "a");
    assert_eq!(get(grpc.addr, "web", "/", &[]).await.body, "a");

    // The command line writes over https with its own certificate.
    let file = pki.path("new.dtab");
    std::fs::write(&file, format!("/svc => {};\n", inet(&b))).unwrap();
    let cli = async |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(args)
            .output()
            .await
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let url = api.url();
    let (cert, key) = (
        pki.path("linker.pem").display().to_string(),
        pki.path("linker.key").display().to_string(),
    );
    let file_s = file.display().to_string();
    let tls_args = [
        "--ca-cert",
        ca.as_str(),
        "--client-cert",
        &cert,
        "--client-key",
        &key,
    ];
    let mut put = vec!["dtab", "put", "--namerd", &url, "default", &file_s];
    put.extend(tls_args);
    let (code, out, err) = cli(&put).await;
    assert_eq!(code, Some(0), "{out}{err}");
    // Without a client certificate namerd refuses the handshake; without https the CLI says
    // that its TLS flags need it.
    let (code, _, err) = cli(&["dtab", "get", "--namerd", &url, "default", "--ca-cert", &ca]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&url),
        "the error names the URL as given: {err}"
    );
    assert!(
        err.to_lowercase().contains("certificate"),
        "the error says why: {err}"
    );
    let plain_url = format!("http://{}", api.addr);
    let (code, _, err) = cli(&[
        "dtab",
        "get",
        "--namerd",
        &plain_url,
        "default",
        "--ca-cert",
        &ca,
    ])
    .await;
    assert_eq!(code, Some(1));
    assert!(err.contains("need an https:// URL"), "{err}");
    eventually(
        "both linkers follow the change made over https",
        async || {
            get(http.addr, "web", "/", &[]).await.body == "b"
                && get(grpc.addr, "web", "/", &[]).await.body == "b"
        },
    )
    .await;
    for (l, kind) in [(&http, "io.l5d.namerd.http"), (&grpc, "io.l5d.mesh")] {
        let m = metrics(l.admin).await;
        assert_eq!(m[format!("rt/http/interpreter/{kind}/stale")], 0, "{m}");
    }

    // namerd's certificate rotates: the interfaces reload it (counted on namerd's admin, itself
    // on TLS with client certificates), and new linker connections take the new one.
    let admin_tls = namerd_client_tls(&pki, true);
    let reloads_key = "namerd/interface/0/tls/reloads";
    let admin_metrics = async || -> serde_json::Value {
        let (status, _, body) = switchboard_namerd::client::call(
            &n.admin.url(),
            Some(&admin_tls),
            http::Method::GET,
            "/metrics.json",
            None,
            None,
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
        serde_json::from_slice(&body).unwrap()
    };
    let m = admin_metrics().await;
    assert_eq!(m[&reloads_key], 0, "{m}");
    pki.issue("namerd", &["namerd", "127.0.0.1"], None);
    eventually("namerd reloads its rotated certificate", async || {
        admin_metrics().await[&reloads_key].as_u64() >= Some(1)
    })
    .await;
    let again = linker("io.l5d.namerd.http", api.addr.port(), &pki, &pki).await;
    assert_eq!(get(again.addr, "web", "/", &[]).await.body, "b");

    // Plaintext HTTP to a TLS interface gets no answer.
    let (status, _) = raw_exchange(api.addr, b"GET /api/1/dtabs HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(status, 0);
    let (status, _) = raw_exchange(
        n.admin.addr,
        b"GET /namespaces.json HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    assert_eq!(status, 0);

    // A certificate from another CA, or no trust in namerd's: refused, so those linkers never
    // bind (the name is Pending, then refused) and say they are stale.
    let cases = [
        ("io.l5d.namerd.http", api.addr.port(), &pki, &other),
        ("io.l5d.mesh", mesh.addr.port(), &pki, &other),
        ("io.l5d.namerd.http", api.addr.port(), &other, &pki),
        ("io.l5d.mesh", mesh.addr.port(), &other, &pki),
    ];
    for (kind, port, trust, cert) in cases {
        let l = linker(kind, port, trust, cert).await;
        let r = get(l.addr, "web", "/", &[]).await;
        assert!(r.status >= 500, "{kind}: {r:?}");
        until_metric(l.admin, &format!("rt/http/interpreter/{kind}/stale"), |v| {
            v == 1
        })
        .await;
    }
    assert_eq!(get(http.addr, "web", "/", &[]).await.body, "b");

    // A linker set up for TLS never falls back to plaintext: against a plaintext namerd it
    // does not bind.
    let (plain_api, _plain_admin, _plain) = namerd(&format!(
        "{{kind: io.l5d.inMemory, namespaces: {{default: '/svc=>{}'}}}}",
        inet(&a)
    ))
    .await;
    let l = linker("io.l5d.namerd.http", plain_api.port(), &pki, &pki).await;
    let r = get(l.addr, "web", "/", &[]).await;
    assert!(r.status >= 500, "{r:?}");
    until_metric(
        l.admin,
        "rt/http/interpreter/io.l5d.namerd.http/stale",
        |v| v == 1,
    )
    .await;
    drop(n);
}

/// The Consul stand-in on HTTPS with client certificates required: namerd's Consul storage and
/// the `io.l5d.consul.interpreter` reach it with their `tls` blocks (the server name defaults
/// to `host`); without a client certificate the store cannot be read and writes get 503.
#[tokio::test]
async fn consul_kv_over_tls_for_namerd_storage_and_the_interpreter() {
    use pki::Pki;
    if env("SWITCHBOARD_CONSUL").is_none() {
        return; // the same stand-in script, started here on TLS
    }
    let pki = Pki::new();
    let (sc, sk) = pki.issue("consul", &["127.0.0.1"], None);
    let (cc, ck) = pki.issue("client", &["client"], None);
    let ca = pki.path("ca.pem");
    let ready = pki.path("ready");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/consul_standin.py");
    let _standin = Command::new("python3")
        .arg(&script)
        .args(["--port", "0", "--quiet", "--ready-file"])
        .arg(&ready)
        .arg("--tls-cert")
        .arg(&sc)
        .arg("--tls-key")
        .arg(&sk)
        .arg("--tls-client-ca")
        .arg(&ca)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut port = 0u16;
    eventually("the TLS stand-in is ready", async || {
        port = std::fs::read_to_string(&ready)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0);
        port != 0
    })
    .await;
    let (a, b) = (backend("a").await, backend("b").await);
    let with_cert = format!(
        "{{trustCertsBundle: {}, clientAuth: {{certPath: {}, keyPath: {}}}}}",
        ca.display(),
        cc.display(),
        ck.display()
    );
    let storage = |tls: &str| {
        format!(
            "{{kind: io.l5d.consul, host: 127.0.0.1, port: {port}, pathPrefix: /tls, tls: {tls}}}"
        )
    };
    let (api, _admin, n) = namerd(&storage(&with_cert)).await;
    let r = call(
        api,
        "POST",
        "/api/1/dtabs/default",
        &[DTAB],
        &format!("/svc=>{}", inet(&a)),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let cfg = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nrouters:\n- protocol: http\n  interpreter:\n    kind: io.l5d.consul.interpreter\n    host: 127.0.0.1\n    port: {port}\n    pathPrefix: /tls\n    namespace: default\n    tls: {with_cert}\n  servers: [{{ip: 127.0.0.1, port: 0}}]\n"
    );
    let l = proxy(&cfg, &Disco::new().path()).await;
    eventually(
        "the interpreter reads the dtab namerd wrote over TLS",
        async || get(l.addr, "web", "/", &[]).await.body == "a",
    )
    .await;
    let r = call(api, "GET", "/api/1/dtabs/default", &[], "").await;
    let r = call(
        api,
        "PUT",
        "/api/1/dtabs/default",
        &[DTAB, ("if-match", r.header("etag"))],
        &format!("/svc=>{}", inet(&b)),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    eventually("the interpreter follows the change", async || {
        get(l.addr, "web", "/", &[]).await.body == "b"
    })
    .await;

    // No client certificate: the stand-in refuses the handshake; namerd has nothing to serve
    // and refuses writes as it does while its store is down.
    let no_cert = format!("{{trustCertsBundle: {}}}", ca.display());
    let (api2, _admin2, _n2) = namerd(&storage(&no_cert)).await;
    let r = call(api2, "POST", "/api/1/dtabs/other", &[DTAB], "/a=>/b").await;
    assert_eq!(r.status, 503, "{}", r.body);
    drop(n);
}

/// Reads `s` to its end; the server must close it within 25 s (a bound on a 10 s timeout, not
/// a measurement). What it sent before closing is returned.
async fn closed_by_server(s: &mut tokio::net::TcpStream, what: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(25), s.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "{what}: the connection is still open");
    String::from_utf8_lossy(&out).into_owned()
}

/// Clients that stall are dropped, each after its named timeout, while others are served:
/// a request head never finished (`HEADER_READ_TIMEOUT`), an idle keep-alive connection, a
/// dtab body never finished (`BODY_READ_TIMEOUT`, 408), a mesh connection that never sends the
/// HTTP/2 preface, and a TLS connection that never starts its handshake (`HANDSHAKE_TIMEOUT`).
#[tokio::test]
async fn namerd_drops_clients_that_stall() {
    use pki::Pki;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let pki = Pki::new();
    let (c, k) = pki.issue("namerd", &["namerd"], None);
    let text = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nstorage: {{kind: io.l5d.inMemory, namespaces: {{default: '/svc=>/x'}}}}\ninterfaces:\n- {{kind: io.l5d.httpController, port: 0}}\n- {{kind: io.l5d.mesh, port: 0}}\n- {{kind: io.l5d.httpController, port: 0, tls: {{certPath: {}, keyPath: {}}}}}\n",
        c.display(),
        k.display()
    );
    let (cfg, _) = switchboard::config::namerd::load(&text).unwrap();
    let n = switchboard::namerd::start(cfg).await.unwrap();
    let (api, mesh, tls_addr) = (
        n.interfaces[0].addr,
        n.interfaces[1].addr,
        n.interfaces[2].addr,
    );
    let head = async {
        let mut s = TcpStream::connect(api).await.unwrap();
        s.write_all(b"GET /api/1/dtabs HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        closed_by_server(&mut s, "an unfinished head").await
    };
    let idle = async {
        let mut s = TcpStream::connect(api).await.unwrap();
        s.write_all(b"GET /api/1/dtabs HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        closed_by_server(&mut s, "an idle keep-alive connection").await
    };
    let body = async {
        let mut s = TcpStream::connect(api).await.unwrap();
        s.write_all(
            b"PUT /api/1/dtabs/default HTTP/1.1\r\nhost: x\r\ncontent-type: application/dtab\r\ncontent-length: 100\r\n\r\n/svc=>",
        )
        .await
        .unwrap();
        closed_by_server(&mut s, "an unfinished body").await
    };
    let preface = async {
        let mut s = TcpStream::connect(mesh).await.unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        closed_by_server(&mut s, "half an HTTP/2 preface").await
    };
    let handshake = async {
        let mut s = TcpStream::connect(tls_addr).await.unwrap();
        closed_by_server(&mut s, "no TLS handshake").await
    };
    // Meanwhile namerd answers others, on the plain interface and on the TLS one.
    let served = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        call(api, "GET", "/api/1/dtabs/default", &[], "")
            .await
            .status
    };
    let served_tls = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let tls = namerd_client_tls(&pki, false);
        switchboard_namerd::client::call(
            &format!("https://{tls_addr}"),
            Some(&tls),
            http::Method::GET,
            "/api/1/dtabs/default",
            None,
            None,
        )
        .await
        .map(|(status, _, _)| status)
    };
    let (head, idle, body, preface, handshake, served, served_tls) =
        tokio::join!(head, idle, body, preface, handshake, served, served_tls);
    assert_eq!(served, 200);
    assert_eq!(served_tls, Ok(200));
    assert!(head.is_empty() || head.contains(" 408 "), "{head}");
    assert!(idle.starts_with("HTTP/1.1 200"), "{idle}");
    assert!(body.starts_with("HTTP/1.1 408"), "{body}");
    assert!(body.contains("not sent within"), "{body}");
    assert!(preface.is_empty(), "{preface}");
    assert!(handshake.is_empty(), "{handshake}");
    // The dtab was not changed by the unfinished PUT.
    let r = call(
        api,
        "GET",
        "/api/1/dtabs/default",
        &[("accept", "application/dtab")],
        "",
    )
    .await;
    assert_eq!(r.body.trim(), "/svc=>/x");
}

/// `MAX_WATCHES_PER_PEER`: one client address may hold 2,000 watches; the next is refused
/// (`ResourceExhausted` on the mesh interface, 503 on the HTTP one) while the others stay
/// open, and once they close the address may watch again.
#[tokio::test]
async fn one_client_may_hold_so_many_watches() {
    use switchboard_namerd::controller::MAX_WATCHES_PER_PEER;
    use switchboard_namerd::mesh::proto as pb;
    let (api, mesh, _n) =
        namerd_with_mesh("{kind: io.l5d.inMemory, namespaces: {default: '/svc=>/x'}}").await;
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{mesh}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let open = |ch: tonic::transport::Channel| async move {
        let mut g = tonic::client::Grpc::new(ch);
        g.ready().await.unwrap();
        let req = pb::DtabReq {
            root: mesh_root("default"),
        };
        g.server_streaming(
            tonic::Request::new(req),
            http::uri::PathAndQuery::from_static("/io.linkerd.mesh.Delegator/StreamDtab"),
            tonic_prost::ProstCodec::<pb::DtabReq, pb::DtabRsp>::default(),
        )
        .await
    };
    let mut held = Vec::new();
    for i in 0..MAX_WATCHES_PER_PEER {
        let mut s = open(ch.clone())
            .await
            .unwrap_or_else(|e| panic!("watch {i}: {e}"))
            .into_inner();
        // Each one is live: it carries the dtab.
        if i % 500 == 0 {
            assert!(s.message().await.unwrap().is_some());
        }
        held.push(s);
    }
    let refused = match open(ch.clone()).await {
        Ok(r) => r.into_inner().message().await.err(),
        Err(e) => Some(e),
    };
    let refused = refused.expect("the watch past the limit was taken");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused}");
    let r = get(api, "x", "/api/1/dtabs/default?watch=true", &[]).await;
    assert_eq!(r.status, 503, "{r:?}");
    // The held ones still follow changes.
    let r = call(api, "PUT", "/api/1/dtabs/default", &[DTAB], "/svc=>/y").await;
    assert_eq!(r.status, 204);
    let m = held[0].message().await.unwrap().unwrap();
    let d = pb::dtab_of(&m.dtab.unwrap().dtab.unwrap()).unwrap();
    assert_eq!(d.show(), "/svc=>/y");
    drop(held);
    eventually(
        "the address may watch again once its watches closed",
        async || match open(ch.clone()).await {
            Ok(r) => r.into_inner().message().await.is_ok(),
            Err(_) => false,
        },
    )
    .await;
}

/// A namerd that answers a bind with a good tree and then a line that never ends: the linker
/// reads at most `MAX_LINE_BYTES` of it, ends the stream as namerd's fault, marks the
/// interpreter stale and keeps routing on the last tree.
#[tokio::test]
async fn a_linker_bounds_the_lines_namerd_sends() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = backend("a").await;
    // Real answers to copy, from a real namerd.
    let (real, _admin, _n) = namerd(&format!(
        "{{kind: io.l5d.inMemory, namespaces: {{default: '/svc=>{}'}}}}",
        inet(&a)
    ))
    .await;
    let bind_line = call(real, "GET", "/api/1/bind/default?path=/svc/web", &[], "")
        .await
        .body;
    let id = serde_json::from_str::<serde_json::Value>(&bind_line).unwrap()["bound"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let addr_line = call(
        real,
        "GET",
        &format!("/api/1/addr/default?path={id}"),
        &[],
        "",
    )
    .await
    .body;
    assert!(addr_line.contains("\"bound\""), "{addr_line}");
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = l.local_addr().unwrap();
    let binds = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = binds.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let (bind_line, addr_line, counted) =
                (bind_line.clone(), addr_line.clone(), counted.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let chunk = |data: &[u8]| {
                    let mut c = format!("{:x}\r\n", data.len()).into_bytes();
                    c.extend_from_slice(data);
                    c.extend_from_slice(b"\r\n");
                    c
                };
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await;
                if head.starts_with("GET /api/1/bind/") {
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let _ = s
                        .write_all(&chunk(format!("{}\n", bind_line.trim()).as_bytes()))
                        .await;
                    // Then a line that never ends, 1 MB at a time.
                    let mb = vec![b'x'; 1 << 20];
                    for _ in 0..8 {
                        if s.write_all(&chunk(&mb)).await.is_err() {
                            return;
                        }
                    }
                } else {
                    let _ = s
                        .write_all(&chunk(format!("{}\n", addr_line.trim()).as_bytes()))
                        .await;
                }
                // Hold the stream open.
                let _ = s.read(&mut b).await;
            });
        }
    });
    let linker = linker(fake, "default", "/x=>/y").await;
    assert_eq!(get(linker.addr, "web", "/", &[]).await.body, "a");
    until_metric(
        linker.admin,
        "rt/http/interpreter/io.l5d.namerd.http/stale",
        |v| v == 1,
    )
    .await;
    for _ in 0..3 {
        assert_eq!(get(linker.addr, "web", "/", &[]).await.body, "a");
    }
    // It retries (retry: 1 s) and is cut off again each time.
    eventually("the linker binds again after the retry", async || {
        binds.load(std::sync::atomic::Ordering::Relaxed) >= 2
    })
    .await;
    assert_eq!(get(linker.addr, "web", "/", &[]).await.body, "a");
}

/// A watcher that stops reading is dropped after `WATCH_SEND_TIMEOUT` (its stream ends and its
/// connection is closed, its writes having made no progress), while another watcher of the
/// same namespace gets every change meanwhile.
#[tokio::test]
async fn a_watcher_that_stops_reading_is_dropped_and_blocks_nobody() {
    use switchboard_namerd::controller::WATCH_SEND_TIMEOUT;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (api, admin, _n) = namerd("{kind: io.l5d.inMemory, namespaces: {default: '/a=>/b'}}").await;
    let watches = async || {
        metrics(admin).await["namerd/watches"]
            .as_i64()
            .unwrap_or(-1)
    };
    // The stalled watcher: a small receive window, and it never reads.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut stalled = sock.connect(api).await.unwrap();
    stalled
        .write_all(b"GET /api/1/dtabs/default?watch=true HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut reading = watch_lines(api, "/api/1/dtabs/default?watch=true").await;
    let first = next_line(&mut reading).await;
    assert!(first.contains("/a"), "{first}");
    eventually("both watches are open", async || watches().await == 2).await;
    // Changes of about 100 KB each, 8 MB in all: several times what the stalled peer's and
    // namerd's buffers take.
    let mut last = String::new();
    for i in 0..80 {
        let dtab: String = (0..4000).map(|k| format!("/a{k}=>/b{i};")).collect();
        let r = call(api, "PUT", "/api/1/dtabs/default", &[DTAB], &dtab).await;
        assert_eq!(r.status, 204, "{}", r.body);
        last = format!("/b{i}");
    }
    // The reading watcher is not held up by the stalled one.
    eventually("the reading watcher sees the last change", async || {
        while let Ok(l) = reading.try_recv() {
            if l.contains(&format!("{last}\"")) {
                return true;
            }
        }
        false
    })
    .await;
    // Within the send timeout (and a margin: a bound, not a measurement) the stalled one is
    // gone.
    let deadline = tokio::time::Instant::now() + WATCH_SEND_TIMEOUT + Duration::from_secs(20);
    while watches().await != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled watch is still open"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Its connection was closed mid-body: what it had buffered reads out, then the stream ends
    // without the chunked body's last chunk (a namerd that only ended the stream would finish
    // the response once the peer read again).
    let mut sink = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(20), stalled.read_to_end(&mut sink)).await;
    assert!(ended.is_ok(), "the stalled connection is still open");
    assert!(sink.starts_with(b"HTTP/1.1 200"));
    assert!(
        !sink.ends_with(b"\r\n0\r\n\r\n"),
        "the response was finished"
    );
}

/// The mesh interface's equivalent: a stream whose reader stopped (its HTTP/2 window full) is
/// ended after `WATCH_SEND_TIMEOUT` and its watch released, while namerd serves others.
#[tokio::test]
async fn a_mesh_watcher_that_stops_reading_is_dropped() {
    use prost::Message;
    use switchboard_namerd::controller::WATCH_SEND_TIMEOUT;
    use switchboard_namerd::mesh::proto as pb;
    let (api, mesh, n) =
        namerd_with_mesh("{kind: io.l5d.inMemory, namespaces: {default: '/a=>/b'}}").await;
    let admin = n.admin.addr;
    let watches = async || {
        metrics(admin).await["namerd/watches"]
            .as_i64()
            .unwrap_or(-1)
    };
    // A client with small windows that never reads its stream.
    let tcp = tokio::net::TcpStream::connect(mesh).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535)
            .handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let msg = pb::DtabReq {
        root: mesh_root("default"),
    }
    .encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    framed.extend_from_slice(&msg);
    let resp = send
        .send_request(h2s::grpc_req(
            "namerd",
            "/io.linkerd.mesh.Delegator/StreamDtab",
            h2s::full(framed),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    eventually("the stream is a watch", async || watches().await == 1).await;
    for i in 0..40 {
        let dtab: String = (0..4000).map(|k| format!("/a{k}=>/b{i};")).collect();
        let r = call(api, "PUT", "/api/1/dtabs/default", &[DTAB], &dtab).await;
        assert_eq!(r.status, 204, "{}", r.body);
    }
    let deadline = tokio::time::Instant::now() + WATCH_SEND_TIMEOUT + Duration::from_secs(20);
    while watches().await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled mesh watch is still open"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Others are served meanwhile and after.
    let d: pb::DtabRsp = grpc(
        mesh,
        "/io.linkerd.mesh.Delegator/GetDtab",
        pb::DtabReq {
            root: mesh_root("default"),
        },
    )
    .await
    .unwrap();
    assert!(pb::dtab_of(&d.dtab.unwrap().dtab.unwrap())
        .unwrap()
        .show()
        .contains("/b39"));
    // The stalled client's connection was closed (hyper would otherwise hold the stream and
    // what was queued for it for as long as the connection lived).
    let closed = tokio::time::timeout(Duration::from_secs(20), conn).await;
    assert!(closed.is_ok(), "the stalled mesh connection is still open");
    drop(resp);
}
