//! End-to-end tests of the `http` router: Switchboard in-process on loopback port 0, real HTTP
//! backends, the fs namer on a temp dir. Each test builds its own world.

mod support;

use std::time::Duration;

use http::Request;
use support::*;

const FS_DTAB: &str = "/svc => /#/io.l5d.fs;";

#[tokio::test]
async fn routes_by_host_through_the_fs_namer() {
    let (web, api) = (backend("web").await, backend("api").await);
    let disco = Disco::new();
    disco.set_backends("web", &[&web]);
    disco.set_backends("api", &[&api]);
    let p = proxy(&config(FS_DTAB, ""), &disco.path()).await;
    assert_eq!(get(p.addr, "web", "/", &[]).await.body, "web");
    assert_eq!(get(p.addr, "api", "/", &[]).await.body, "api");
    // The l5d-dst-* headers the backend sees.
    let r = get(p.addr, "web", "/echo", &[]).await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["headers"]["l5d-dst-service"], "/svc/web");
    assert_eq!(v["headers"]["l5d-dst-client"], "/#/io.l5d.fs/web");
    assert!(v["headers"].get("l5d-dst-residual").is_none());
    assert_eq!(v["headers"]["via"], "1.1 linkerd");
    assert!(v["headers"]["l5d-reqid"].as_str().unwrap().len() == 16);
    assert_eq!(r.header("via"), "1.1 linkerd");
}

#[tokio::test]
async fn identifiers_route_each_their_way() {
    let (a, b) = (backend("a").await, backend("b").await);
    let disco = Disco::new();
    disco.set_backends("a", &[&a]);
    disco.set_backends("b", &[&b]);
    // io.l5d.path with consume: /a/echo → service a, forwarded as /echo.
    let p = proxy(
        &config(
            FS_DTAB,
            "  identifier: {kind: io.l5d.path, segments: 1, consume: true}\n",
        ),
        &disco.path(),
    )
    .await;
    let r = get(p.addr, "ignored", "/b/echo?x=1", &[]).await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        (v["backend"].as_str(), v["uri"].as_str()),
        (Some("b"), Some("/echo?x=1"))
    );
    assert_eq!(get(p.addr, "x", "/", &[]).await.status, 400);

    // io.l5d.header, then io.l5d.methodAndHost through a dtab, in a list.
    let p = proxy(
        &config(
            "/svc => /#/io.l5d.fs; /svc/1.1/GET => /svc;",
            "  identifier:\n  - {kind: io.l5d.header, header: x-name}\n  - kind: io.l5d.methodAndHost\n",
        ),
        &disco.path(),
    )
    .await;
    assert_eq!(get(p.addr, "zzz", "/", &[("x-name", "/a")]).await.body, "a");
    assert_eq!(get(p.addr, "b", "/", &[]).await.body, "b");

    // io.l5d.static
    let p = proxy(
        &config(FS_DTAB, "  identifier: {kind: io.l5d.static, path: /b}\n"),
        &disco.path(),
    )
    .await;
    assert_eq!(get(p.addr, "whatever", "/", &[]).await.body, "b");
}

#[tokio::test]
async fn per_request_dtab_overrides() {
    let (a, b) = (backend("a").await, backend("b").await);
    let disco = Disco::new();
    disco.set_backends("a", &[&a]);
    disco.set_backends("b", &[&b]);
    let p = proxy(&config(FS_DTAB, ""), &disco.path()).await;
    assert_eq!(
        get(p.addr, "a", "/", &[("l5d-dtab", "/svc/a => /svc/b")])
            .await
            .body,
        "b"
    );
    // l5d-dtab comes after l5d-ctx-dtab, so it wins.
    let r = get(
        p.addr,
        "a",
        "/echo",
        &[
            ("l5d-ctx-dtab", "/svc/a => /svc/b"),
            ("l5d-dtab", "/svc/a => /#/io.l5d.fs/a"),
        ],
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["backend"], "a");
    // Forwarded as l5d-ctx-dtab; l5d-dtab itself is not forwarded.
    assert_eq!(
        v["headers"]["l5d-ctx-dtab"],
        "/svc/a=>/svc/b;/svc/a=>/#/io.l5d.fs/a"
    );
    assert!(v["headers"].get("l5d-dtab").is_none());
    let bad = get(p.addr, "a", "/", &[("l5d-dtab", "/svc/a =>")]).await;
    assert_eq!(bad.status, 400);
    assert!(bad.header("l5d-err").starts_with("Invalid+dtab"), "{bad:?}");
}

#[tokio::test]
async fn weighted_unions_split_traffic() {
    let (a, b) = (backend("a").await, backend("b").await);
    let disco = Disco::new();
    disco.set_backends("a", &[&a]);
    disco.set_backends("b", &[&b]);
    let p = proxy(
        &config("/svc/u => 3 * /#/io.l5d.fs/a & 1 * /#/io.l5d.fs/b;", ""),
        &disco.path(),
    )
    .await;
    let mut na = 0;
    for _ in 0..400 {
        if get(p.addr, "u", "/", &[]).await.body == "a" {
            na += 1;
        }
    }
    // 300 expected; a binomial(400, .75) is within 240..360 with overwhelming probability.
    assert!((240..=360).contains(&na), "a got {na} of 400");
}

#[tokio::test]
async fn endpoint_churn_under_load_loses_nothing_and_keeps_the_client() {
    let bs: Vec<Backend> = futures_util::future::join_all((0..4).map(|i| {
        let n = format!("b{i}");
        async move { backend(&n).await }
    }))
    .await;
    let disco = Disco::new();
    disco.set_backends("web", &[&bs[0], &bs[1]]);
    let p = proxy(&config(FS_DTAB, ""), &disco.path()).await;
    assert_eq!(get(p.addr, "web", "/", &[]).await.status, 200);
    let addr = p.addr;
    // The load runs until the churn is over (at least 50 rounds), so every set sees traffic
    // however fast the proxy answers.
    let churned = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = std::sync::Arc::clone(&churned);
    let load = tokio::spawn(async move {
        let mut statuses = Vec::new();
        let mut rounds = 0;
        while rounds < 50 || !done.load(std::sync::atomic::Ordering::SeqCst) {
            rounds += 1;
            let rs = futures_util::future::join_all(
                (0..8).map(|_| async move { get(addr, "web", "/", &[]).await.status }),
            )
            .await;
            statuses.extend(rs);
        }
        statuses
    });
    // Every set keeps at least one live endpoint.
    let sets: [&[&Backend]; 6] = [
        &[&bs[0], &bs[1], &bs[2]],
        &[&bs[2]],
        &[&bs[2], &bs[3]],
        &[&bs[3], &bs[0]],
        &[&bs[1]],
        &[&bs[0], &bs[1], &bs[2], &bs[3]],
    ];
    for s in sets {
        disco.set_backends("web", s);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    churned.store(true, std::sync::atomic::Ordering::SeqCst);
    let statuses = load.await.unwrap();
    assert!(statuses.len() >= 400);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let m = metrics(p.admin).await;
    assert_eq!(
        m["rt/http/bindcache/client/misses"], 1,
        "the client was rebuilt"
    );
    assert!(
        m["rt/http/client/#/io.l5d.fs/web/loadbalancer/adds"]
            .as_u64()
            .unwrap()
            >= 4
    );
    assert!(
        m["rt/http/client/#/io.l5d.fs/web/loadbalancer/removes"]
            .as_u64()
            .unwrap()
            >= 3
    );
    assert_eq!(m["rt/http/client/#/io.l5d.fs/web/loadbalancer/size"], 4);
    assert!(bs
        .iter()
        .all(|b| b.hits.load(std::sync::atomic::Ordering::SeqCst) > 0));
}

#[tokio::test]
async fn streams_large_bodies_both_ways_without_buffering() {
    let b = backend("big").await;
    let disco = Disco::new();
    disco.set_backends("big", &[&b]);
    let p = proxy(&config(FS_DTAB, ""), &disco.path()).await;
    const N: usize = 96 * 1024 * 1024;
    let hwm_before = vm_hwm_kb();
    // Download, counted frame by frame.
    let stream = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get(format!("/big/{N}"))
        .header("host", "big")
        .body(body(""))
        .unwrap();
    let mut resp = tx.send_request(req).await.unwrap().into_body();
    let mut got = 0;
    while let Some(f) = http_body_util::BodyExt::frame(&mut resp).await {
        got += f.unwrap().into_data().map(|d| d.len()).unwrap_or(0);
    }
    assert_eq!(got, N);
    // Upload, chunked, generated on the fly.
    let chunk = bytes::Bytes::from(vec![b'y'; 64 * 1024]);
    let stream =
        futures_util::stream::iter((0..N / chunk.len()).map(move |_| {
            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(chunk.clone()))
        }));
    let body = http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(stream));
    let req = Request::post("/count")
        .header("host", "big")
        .body(body)
        .unwrap();
    let r = send(p.addr, req).await;
    assert_eq!(r.body, N.to_string());
    // Backend, proxy and client share this process; none of them may hold the body whole.
    let grown_mb = (vm_hwm_kb() - hwm_before) / 1024;
    assert!(
        grown_mb < 32,
        "peak memory grew by {grown_mb} MB for {} MB each way",
        N >> 20
    );
}

#[tokio::test]
async fn websocket_upgrade_is_tunnelled() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = backend("ws").await;
    let disco = Disco::new();
    disco.set_backends("ws", &[&b]);
    let p = proxy(&config(FS_DTAB, ""), &disco.path()).await;
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: ws\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "closed before the 101: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for msg in [&b"hello"[..], b"second frame"] {
        s.write_all(msg).await.unwrap();
        let mut echo = vec![0u8; msg.len()];
        s.read_exact(&mut echo).await.unwrap();
        assert_eq!(echo, msg);
    }
}

#[tokio::test]
async fn loops_are_detected() {
    let disco = Disco::new();
    disco.set("none", &[]);
    // Via entries over maxCallDepth.
    let extra = "  servers: [{ip: 127.0.0.1, port: 0, maxCallDepth: 2}]\n";
    let cfg = config(FS_DTAB, "").replace("  servers: [{ip: 127.0.0.1, port: 0}]\n", extra);
    let p = proxy(&cfg, &disco.path()).await;
    let r = get(p.addr, "x", "/", &[("via", "1.1 a, 1.1 b, 1.1 c")]).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        "Maximum number of calls (2) has been exceeded. Please check for proxy loops."
    );
    // A real loop: the router routes to itself until the depth runs out.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let cfg = config(&format!("/svc => /$/inet/127.0.0.1/{port};"), "")
        .replace("port: 0}]", &format!("port: {port}, maxCallDepth: 5}}]"));
    let p = proxy(&cfg, &disco.path()).await;
    let r = get(p.addr, "loop", "/", &[]).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("Maximum number of calls (5)"), "{r:?}");
}

#[tokio::test]
async fn error_statuses() {
    let ok = backend("ok").await;
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let disco = Disco::new();
    disco.set_backends("ok", &[&ok]);
    disco.set("dead", &[format!("127.0.0.1 {}", dead_addr.port())]);
    disco.set("empty", &[]);
    let extra = "  identifier: {kind: io.l5d.header.token, header: x-svc}\n  service:\n    totalTimeoutMs: 200\n";
    let p = proxy(&config(FS_DTAB, extra), &disco.path()).await;
    // Unidentified.
    let r = get(p.addr, "ok", "/", &[]).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Unknown destination: x-svc header is absent")
    );
    // No such service: 502 with the rich message.
    let r = get(p.addr, "h", "/", &[("x-svc", "nope")]).await;
    assert_eq!(r.status, 502);
    assert!(r.body.starts_with("Unable to route request!\n\nservice name: /svc/nope\nresolutions considered:\n  /#/io.l5d.fs/nope (neg)\n"), "{}", r.body);
    assert!(r
        .header("l5d-err")
        .starts_with("Unable+to+route+request%21"));
    // A service with no endpoints.
    assert_eq!(
        get(p.addr, "h", "/", &[("x-svc", "empty")]).await.status,
        502
    );
    // Connection refused: 502, retryable.
    let r = get(p.addr, "h", "/", &[("x-svc", "dead")]).await;
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(r.header("l5d-retryable"), "true");
    // Total timeout: 503.
    let r = get(p.addr, "h", "/slow/2000", &[("x-svc", "ok")]).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("total timeout"), "{r:?}");
    // Backend errors pass through.
    assert_eq!(
        get(p.addr, "h", "/status/418", &[("x-svc", "ok")])
            .await
            .status,
        418
    );
    // The status namer answers by itself.
    let r = get(
        p.addr,
        "h",
        "/",
        &[
            ("x-svc", "x"),
            ("l5d-dtab", "/svc/x => /$/io.buoyant.http.status/401"),
        ],
    )
    .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn max_concurrent_requests_rejects_at_once() {
    let b = backend("slow").await;
    let disco = Disco::new();
    disco.set_backends("slow", &[&b]);
    let extra = "  servers: [{ip: 127.0.0.1, port: 0, maxConcurrentRequests: 1}]\n";
    let cfg = config(FS_DTAB, "").replace("  servers: [{ip: 127.0.0.1, port: 0}]\n", extra);
    let p = proxy(&cfg, &disco.path()).await;
    let addr = p.addr;
    let slow = tokio::spawn(async move { get(addr, "slow", "/slow/500", &[]).await.status });
    until_metric(p.admin, &pending_key(p.addr), |v| v == 1).await;
    assert_eq!(get(p.addr, "slow", "/", &[]).await.status, 503);
    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(get(p.addr, "slow", "/", &[]).await.status, 200);
}

#[tokio::test]
async fn retries_read_requests_within_the_budget() {
    let (good, bad) = (backend("good").await, backend("bad").await);
    let disco = Disco::new();
    disco.set_backends("flaky", &[&good, &bad]);
    let extra = "  service:\n    responseClassifier: {kind: io.l5d.http.retryableRead5XX}\n  client:\n    failureAccrual: {kind: none}\n    loadBalancer: {kind: roundRobin}\n";
    let p = proxy(&config(FS_DTAB, extra), &disco.path()).await;
    // Both endpoints answer 503 for /status/503: a GET is retried (each retry within the
    // budget and the per-request cap) and the last 503 is returned.
    let r = get(p.addr, "flaky", "/status/503", &[]).await;
    assert_eq!(r.status, 503);
    let m = metrics(p.admin).await;
    let retries = m["rt/http/service/svc/flaky/retries/total"]
        .as_u64()
        .unwrap();
    assert_eq!(retries, 25, "{m}");
    let hits = good.hits.load(std::sync::atomic::Ordering::SeqCst)
        + bad.hits.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(hits, 26);
    // A read that succeeds is not retried.
    assert_eq!(get(p.addr, "flaky", "/", &[]).await.status, 200);
    // A POST with a body is never retried.
    let before = good.hits.load(std::sync::atomic::Ordering::SeqCst)
        + bad.hits.load(std::sync::atomic::Ordering::SeqCst);
    let req = Request::post("/status/503")
        .header("host", "flaky")
        .body(body("data"))
        .unwrap();
    assert_eq!(send(p.addr, req).await.status, 503);
    let after = good.hits.load(std::sync::atomic::Ordering::SeqCst)
        + bad.hits.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(after - before, 1);
}

#[tokio::test]
async fn failure_accrual_takes_a_failing_endpoint_out() {
    let (good, bad) = (backend("good").await, backend("bad").await);
    let disco = Disco::new();
    disco.set_backends("svc", &[&good]);
    disco.set_backends("bad", &[&bad]);
    // /svc/mixed is a union of a healthy and a failing service sharing no client; instead use
    // one client with two endpoints where one is dead (connection refused).
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    disco.set(
        "mixed",
        &[
            format!("127.0.0.1 {}", good.addr.port()),
            format!("127.0.0.1 {dead_port}"),
        ],
    );
    let extra = "  client:\n    failureAccrual:\n      kind: io.l5d.consecutiveFailures\n      failures: 2\n      backoff: {kind: constant, ms: 60000}\n";
    let p = proxy(&config(FS_DTAB, extra), &disco.path()).await;
    // Connection failures are requeued to the other endpoint, so every request succeeds, and
    // after two failures the dead endpoint is skipped.
    for _ in 0..30 {
        assert_eq!(get(p.addr, "mixed", "/", &[]).await.status, 200);
    }
    let m = metrics(p.admin).await;
    let requeues = m["rt/http/client/#/io.l5d.fs/mixed/retries/requeues"]
        .as_u64()
        .unwrap();
    assert!((1..=2).contains(&requeues), "requeues {requeues}");
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let b = backend("slow").await;
    let disco = Disco::new();
    disco.set_backends("slow", &[&b]);
    let p = proxy(&config(FS_DTAB, ""), &disco.path()).await;
    let addr = p.addr;
    let inflight = tokio::spawn(async move { get(addr, "slow", "/slow/400", &[]).await.status });
    until_metric(p.admin, &pending_key(p.addr), |v| v == 1).await;
    let r = send(
        p.admin,
        Request::post("/admin/shutdown")
            .header("host", "localhost")
            .body(body(""))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(inflight.await.unwrap(), 200);
    tokio::time::timeout(Duration::from_secs(5), p.done)
        .await
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting"
    );
}

#[tokio::test]
async fn admin_endpoints() {
    let web = backend("web").await;
    let disco = Disco::new();
    disco.set_backends("web", &[&web]);
    let p = proxy(&config(FS_DTAB, ""), &disco.path()).await;
    assert_eq!(get(p.addr, "web", "/", &[]).await.status, 200);
    let a = p.admin;
    assert_eq!(get(a, "localhost", "/admin/ping", &[]).await.body, "pong");
    let m = metrics(a).await;
    assert_eq!(m["rt/http/service/svc/web/requests"], 1);
    assert_eq!(m["rt/http/client/#/io.l5d.fs/web/status/200"], 1);
    assert_eq!(m["rt/http/client/#/io.l5d.fs/web/status/2XX"], 1);
    let server = format!("rt/http/server/127.0.0.1/{}/requests", p.addr.port());
    assert_eq!(m[server.as_str()], 1, "{m}");
    assert_eq!(m["rt/http/service/svc/web/request_latency_ms.count"], 1);
    let tree: serde_json::Value = serde_json::from_str(
        &get(a, "localhost", "/admin/metrics.json?tree=1", &[])
            .await
            .body,
    )
    .unwrap();
    assert_eq!(tree["rt"]["http"]["service"]["svc/web"]["requests"], 1);
    let q = get(a, "localhost", "/admin/metrics.json?q=rt/http/service", &[]).await;
    let qv: serde_json::Value = serde_json::from_str(&q.body).unwrap();
    assert_eq!(qv["svc/web"]["success"], 1);
    assert_eq!(
        get(a, "localhost", "/admin/metrics.json?q=rt/nope", &[])
            .await
            .status,
        404
    );
    let prom = get(a, "localhost", "/admin/metrics/prometheus", &[])
        .await
        .body;
    assert!(
        prom.contains("rt:service:requests{rt=\"http\", service=\"svc/web\"} 1\n"),
        "{prom}"
    );
    assert!(
        prom.contains(
            "rt:service:request_latency_ms{rt=\"http\", service=\"svc/web\", quantile=\"0.5\"}"
        ),
        "{prom}"
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&get(a, "localhost", "/config.json", &[]).await.body).unwrap();
    assert_eq!(cfg["routers"][0]["label"], "http");
    let d = get(
        a,
        "localhost",
        "/delegator.json?namespace=http&path=/svc/web&dtab=/svc%3D%3E/%23/io.l5d.fs",
        &[],
    )
    .await;
    let dv: serde_json::Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(dv["type"], "delegate");
    assert_eq!(dv["delegate"]["bound"]["id"], "/#/io.l5d.fs/web");
    let post = Request::post("/delegator.json")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(body(
            r#"{"namespace":"http","dtab":"/svc=>/#/io.l5d.fs","path":"/svc/web"}"#,
        ))
        .unwrap();
    assert_eq!(send(a, post).await.body, d.body);
    assert_eq!(
        get(a, "localhost", "/delegator.json?path=svc&dtab=", &[])
            .await
            .status,
        400
    );
    assert!(
        get(a, "localhost", "/delegator.json?path=/a&dtab=/a%3D%3E", &[])
            .await
            .body
            .starts_with("Invalid dtab: ")
    );
    let names = get(a, "localhost", "/bound-names.json", &[]).await.body;
    assert_eq!(names, r#"["/#/io.l5d.fs/web"]"#);
    let st: serde_json::Value = serde_json::from_str(
        &get(a, "localhost", "/namer_state/io.l5d.fs.json", &[])
            .await
            .body,
    )
    .unwrap();
    assert_eq!(st["kind"], "io.l5d.fs");
    assert_eq!(
        get(a, "localhost", "/namer_state/nope.json", &[])
            .await
            .status,
        404
    );
    let cs: serde_json::Value =
        serde_json::from_str(&get(a, "localhost", "/client_state.json", &[]).await.body).unwrap();
    assert_eq!(cs["http"]["clients"]["/#/io.l5d.fs/web"]["state"], "bound");
    assert!(get(a, "localhost", "/admin", &[])
        .await
        .body
        .contains("/admin/metrics.json"));
    assert_eq!(
        get(a, "localhost", "/admin/shutdown", &[]).await.status,
        405
    );
}

#[tokio::test]
async fn access_log_records_requests() {
    let web = backend("web").await;
    let disco = Disco::new();
    disco.set_backends("web", &[&web]);
    let log = disco.dir.path().join("access.log");
    let extra = format!("  httpAccessLog: {}\n", log.display());
    let p = proxy(&config(FS_DTAB, &extra), &disco.path()).await;
    assert_eq!(
        get(p.addr, "web", "/hello?x=1", &[("user-agent", "curl/8")])
            .await
            .status,
        200
    );
    assert_eq!(get(p.addr, "nope", "/", &[]).await.status, 502);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 2 {
            let lines: Vec<&str> = text.lines().collect();
            assert!(lines[0].starts_with("127.0.0.1 - - ["), "{text}");
            assert!(
                lines[0].ends_with("\"GET /hello?x=1 HTTP/1.1\" 200 3 \"-\" \"curl/8\""),
                "{text}"
            );
            assert!(lines[1].contains("\"GET / HTTP/1.1\" 502 "), "{text}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "access log: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn recent_requests_are_sampled_for_the_admin() {
    let web = backend("web").await;
    let disco = Disco::new();
    disco.set_backends("web", &[&web]);
    let cfg = config(FS_DTAB, "").replace(
        "telemetry:\n- kind: io.l5d.prometheus\n",
        "telemetry:\n- kind: io.l5d.prometheus\n- kind: io.l5d.recentRequests\n  sampleRate: 1.0\n  capacity: 2\n",
    );
    let p = proxy(&cfg, &disco.path()).await;
    for path in ["/one", "/two", "/three"] {
        assert_eq!(get(p.addr, "web", path, &[]).await.status, 200);
    }
    let v: serde_json::Value =
        serde_json::from_str(&get(p.admin, "localhost", "/requests.json", &[]).await.body).unwrap();
    let uris: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect();
    assert_eq!(uris, ["/three", "/two"]);
    assert_eq!(v[0]["status"], 200);
    assert_eq!(v[0]["host"], "web");
    assert_eq!(v[0]["router"], "http");
}

#[tokio::test]
async fn evicted_names_take_their_metrics_with_them() {
    let web = backend("web").await;
    let disco = Disco::new();
    for n in ["a", "b", "c"] {
        disco.set_backends(n, &[&web]);
    }
    let p = proxy(
        &config(FS_DTAB, "  bindingCache: {paths: 2}\n"),
        &disco.path(),
    )
    .await;
    for n in ["a", "b", "c"] {
        assert_eq!(get(p.addr, n, "/", &[]).await.status, 200);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let m = metrics(p.admin).await;
    assert!(m.get("rt/http/service/svc/a/requests").is_none(), "{m}");
    assert_eq!(m["rt/http/service/svc/c/requests"], 1);
    assert_eq!(m["rt/http/bindcache/path/evicts"], 1);
}

#[tokio::test]
async fn a_client_hanging_up_leaves_no_pending_request() {
    use tokio::io::AsyncWriteExt;
    let b = backend("slow").await;
    let disco = Disco::new();
    disco.set_backends("slow", &[&b]);
    let p = proxy(&config(FS_DTAB, ""), &disco.path()).await;
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /slow/500 HTTP/1.1\r\nHost: slow\r\n\r\n")
        .await
        .unwrap();
    // Hang up once the request has reached the backend.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while b.hits.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(s);
    let key = format!("rt/http/server/127.0.0.1/{}/pending", p.addr.port());
    let failures = format!("rt/http/server/127.0.0.1/{}/failures", p.addr.port());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = metrics(p.admin).await;
        if m[key.as_str()] == 0 && m[failures.as_str()] == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn http_1_0_clients_get_http_1_0_answers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = backend("web").await;
    let disco = Disco::new();
    disco.set_backends("web", &[&b]);
    let p = proxy(&config(FS_DTAB, ""), &disco.path()).await;
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    assert!(text.to_lowercase().contains("via: 1.0 linkerd"), "{text}");
    assert!(text.ends_with("web"), "{text}");
}
