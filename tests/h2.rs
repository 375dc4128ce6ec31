//! End-to-end tests of the `h2` router: Switchboard in-process, an HTTP/2 backend written here
//! on hyper (gRPC-shaped: length-prefixed messages, `grpc-status` in trailers), clients with
//! prior knowledge. Streaming both ways, trailers, large bodies, gRPC errors Switchboard
//! produces itself, an endpoint that dies mid-stream, and HTTP/1.1 clients on an h2 router.

#[path = "support/h2.rs"]
mod h2s;
mod support;

use std::time::Duration;

use bytes::Bytes;
use h2s::*;
use http::Request;
use http_body_util::BodyExt;
use hyper::body::Frame;
use support::{vm_hwm_kb, Disco};

fn h2_config(extra: &str) -> String {
    format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nnamers:\n- kind: io.l5d.fs\n  rootDir: {{disco}}\nrouters:\n- protocol: h2\n  label: h2\n  dtab: /svc => /#/io.l5d.fs;\n  servers: [{{ip: 127.0.0.1, port: 0}}]\n{extra}"
    )
}

async fn world(extra: &str) -> (support::Proxy, Disco) {
    let backend = h2_backend().await;
    let disco = Disco::new();
    disco.set("echo", &[format!("127.0.0.1 {}", backend.port())]);
    let p = support::proxy(&h2_config(extra), &disco.path()).await;
    (p, disco)
}

#[tokio::test]
async fn unary_call_with_trailers_by_authority_and_by_path() {
    let (p, _d) = world("").await;
    let mut c = h2_client(p.addr).await;
    let r = c
        .send_request(grpc_req("echo", "/echo.Echo/Unary", full("hello")))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-seen"],
        "authority=echo te=trailers dst=/svc/echo"
    );
    let (body, t) = read_all(r).await;
    assert_eq!(body, "hello");
    assert_eq!(t.unwrap()["grpc-status"], "0");

    // io.l5d.header.path: the gRPC service names the destination.
    let (p, d) = world("  identifier: {kind: io.l5d.header.path, segments: 1}\n").await;
    let backend = std::fs::read_to_string(d.path().join("echo")).unwrap();
    d.set("echo.Echo", &[backend.trim().to_string()]);
    let mut c = h2_client(p.addr).await;
    let r = c
        .send_request(grpc_req("whatever", "/echo.Echo/Unary", full("by path")))
        .await
        .unwrap();
    assert_eq!(
        r.headers()["x-seen"],
        "authority=whatever te=trailers dst=/svc/echo.Echo"
    );
    assert_eq!(read_all(r).await.0, "by path");
}

#[tokio::test]
async fn bidirectional_stream_is_not_buffered() {
    let (p, _d) = world("").await;
    let mut c = h2_client(p.addr).await;
    let (tx, body) = channel_body();
    let r = c
        .send_request(grpc_req("echo", "/echo.Echo/Stream", body))
        .await
        .unwrap();
    let mut inb = r.into_body();
    // Each message comes back before the next is sent: nothing waits for the end of stream.
    for i in 0..20 {
        let msg = Bytes::from(format!("message {i}"));
        tx.send(Ok(Frame::data(msg.clone()))).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), inb.frame())
            .await
            .expect("echo of one message while the stream stays open")
            .unwrap()
            .unwrap();
        assert_eq!(got.into_data().unwrap(), msg);
    }
    drop(tx);
    let last = inb.frame().await.unwrap().unwrap();
    assert_eq!(last.into_trailers().unwrap()["grpc-status"], "0");
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    let (p, _d) = world("").await;
    let hwm_before = vm_hwm_kb();
    let mut c = h2_client(p.addr).await;
    // 64 MB up, counted by the backend as it arrives.
    let (tx, body) = channel_body();
    let up = tokio::spawn(async move {
        let chunk = Bytes::from(vec![b'y'; 256 * 1024]);
        for _ in 0..256 {
            tx.send(Ok(Frame::data(chunk.clone()))).await.unwrap();
        }
    });
    let r = c
        .send_request(grpc_req("echo", "/echo.Echo/Count", body))
        .await
        .unwrap();
    up.await.unwrap();
    assert_eq!(read_all(r).await.0, (64 * 1024 * 1024).to_string());
    // 64 MB down, counted frame by frame.
    let r = c
        .send_request(grpc_req(
            "echo",
            &format!("/echo.Echo/Big?n={}", 64 * 1024 * 1024),
            full(""),
        ))
        .await
        .unwrap();
    let mut inb = r.into_body();
    let (mut got, mut status) = (0usize, None);
    while let Some(f) = inb.frame().await {
        let f = f.unwrap();
        match f.into_data() {
            Ok(d) => got += d.len(),
            Err(f) => status = f.into_trailers().ok().map(|t| t["grpc-status"].clone()),
        }
    }
    assert_eq!(got, 64 * 1024 * 1024);
    assert_eq!(status.unwrap(), "0");
    // Backend, proxy and client share this process; none of them may hold a body whole.
    let grown_mb = (vm_hwm_kb() - hwm_before) / 1024;
    assert!(
        grown_mb < 32,
        "peak memory grew by {grown_mb} MB for 64 MB each way"
    );
}

#[tokio::test]
async fn switchboard_errors_on_grpc_calls_are_grpc_statuses() {
    let (p, _d) = world(
        "  service:\n    kind: io.l5d.static\n    configs:\n    - prefix: /svc/echo\n      totalTimeoutMs: 300\n",
    )
    .await;
    let mut c = h2_client(p.addr).await;
    // No route: UNAVAILABLE, trailers-only, HTTP 200.
    let r = c
        .send_request(grpc_req("nowhere", "/x.Y/Z", full("")))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["grpc-status"], "14");
    assert!(r.headers()["grpc-message"]
        .to_str()
        .unwrap()
        .contains("Unable to route request!"));
    assert_eq!(r.headers()["content-type"], "application/grpc");
    let (body, _) = read_all(r).await;
    assert!(body.is_empty());
    // The service's total timeout: DEADLINE_EXCEEDED.
    let r = c
        .send_request(grpc_req("echo", "/echo.Echo/Slow", full("")))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["grpc-status"], "4");
    // A backend's own trailers-only failure passes through unchanged.
    let r = c
        .send_request(grpc_req("echo", "/echo.Echo/Fail", full("")))
        .await
        .unwrap();
    assert_eq!(r.headers()["grpc-status"], "14");
    assert_eq!(r.headers()["grpc-message"], "backend unavailable");
    // A plain HTTP/2 request (not gRPC) gets Linkerd's l5d-err answer.
    let r = c
        .send_request(
            Request::builder()
                .uri("http://nowhere/")
                .body(full(""))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.headers().contains_key("l5d-err"));
}

#[tokio::test]
async fn an_endpoint_dying_mid_stream_resets_the_stream() {
    let (p, _d) = world("").await;
    let mut c = h2_client(p.addr).await;
    let r = c
        .send_request(grpc_req("echo", "/echo.Echo/Die", full("")))
        .await
        .unwrap();
    let mut inb = r.into_body();
    let first = inb.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "first");
    // The backend's connection dies: the client's stream fails, promptly, and does not hang.
    let next = tokio::time::timeout(Duration::from_secs(5), inb.frame())
        .await
        .expect("the stream ends when its endpoint dies");
    assert!(
        matches!(next, Some(Err(_))),
        "want a stream error, got {next:?}"
    );
    // The router goes on serving on a new connection.
    let r = c
        .send_request(grpc_req("echo", "/echo.Echo/Unary", full("again")))
        .await
        .unwrap();
    assert_eq!(read_all(r).await.0, "again");
}

#[tokio::test]
async fn http1_clients_of_an_h2_router_reach_h2_endpoints() {
    let (p, _d) = world("").await;
    let r = support::send(
        p.addr,
        Request::builder()
            .method("POST")
            .uri("/echo.Echo/Unary")
            .header("host", "echo")
            .body(support::body("over http/1.1"))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "over http/1.1");
    assert_eq!(r.header("x-seen"), "authority=echo te=- dst=/svc/echo");
}

#[tokio::test]
async fn h2_metrics_count_streams_and_one_connection() {
    let (p, _d) = world("").await;
    let mut c = h2_client(p.addr).await;
    let mut calls = Vec::new();
    for i in 0..10 {
        let f = c.send_request(grpc_req("echo", "/echo.Echo/Unary", full(format!("{i}"))));
        calls.push(f);
    }
    for (i, f) in calls.into_iter().enumerate() {
        assert_eq!(read_all(f.await.unwrap()).await.0, i.to_string());
    }
    let m = support::metrics(p.admin).await;
    let client = "rt/h2/client/#/io.l5d.fs/echo";
    assert_eq!(m[format!("{client}/requests")], 10);
    // Ten calls share one multiplexed connection to the endpoint.
    assert_eq!(m[format!("{client}/connects")], 1);
}

const GRPC_RETRIES: &str = "  service:\n    responseClassifier: {kind: io.l5d.h2.grpc.default}\n";

#[tokio::test]
async fn unary_calls_failing_in_trailers_are_retried_with_their_body() {
    let (p, _d) = world(GRPC_RETRIES).await;
    let mut c = h2_client(p.addr).await;
    let r = c
        .send_request(grpc_req("echo", "/echo.Echo/Flaky", full("payload")))
        .await
        .unwrap();
    // The second attempt answered, with the request body replayed whole.
    assert_eq!(r.headers()["x-attempt"], "1");
    let (body, t) = read_all(r).await;
    assert_eq!(body, "payload");
    assert_eq!(t.unwrap()["grpc-status"], "0");
    let m = support::metrics(p.admin).await;
    assert_eq!(m["rt/h2/service/svc/echo/retries/total"], 1);
    // The failed attempt counts as a failure of the client.
    assert_eq!(m["rt/h2/client/#/io.l5d.fs/echo/failures"], 1);

    // The same with a streamed body and no Content-Length (as gRPC clients send): the retry
    // carries the whole body again, never an empty one.
    let (p, _d) = world(GRPC_RETRIES).await;
    let mut c = h2_client(p.addr).await;
    let (tx, body) = channel_body();
    tokio::spawn(async move {
        tx.send(Ok(Frame::data(Bytes::from_static(b"pay"))))
            .await
            .unwrap();
        tx.send(Ok(Frame::data(Bytes::from_static(b"load"))))
            .await
            .unwrap();
    });
    let r = c
        .send_request(grpc_req("echo", "/echo.Echo/Flaky", body))
        .await
        .unwrap();
    assert_eq!(r.headers()["x-attempt"], "1");
    assert_eq!(read_all(r).await.0, "payload");
}

#[tokio::test]
async fn calls_larger_than_the_retry_buffer_are_not_retried() {
    let (p, _d) = world(
        "  service:\n    responseClassifier: {kind: io.l5d.h2.grpc.default}\n    retryBufferSize: {requestBytes: 4}\n",
    )
    .await;
    let mut c = h2_client(p.addr).await;
    let r = c
        .send_request(grpc_req(
            "echo",
            "/echo.Echo/Flaky",
            full("more than four bytes"),
        ))
        .await
        .unwrap();
    assert_eq!(r.headers()["x-attempt"], "0");
    let (_, t) = read_all(r).await;
    assert_eq!(t.unwrap()["grpc-status"], "14");
    let m = support::metrics(p.admin).await;
    assert_eq!(m["rt/h2/service/svc/echo/retries/total"], 0);
}

#[tokio::test]
async fn grpc_timeout_is_a_deadline() {
    let (p, _d) = world("").await;
    let mut c = h2_client(p.addr).await;
    let mut req = grpc_req("echo", "/echo.Echo/Slow", full(""));
    req.headers_mut()
        .insert("grpc-timeout", "200m".parse().unwrap());
    let started = std::time::Instant::now();
    let r = c.send_request(req).await.unwrap();
    assert_eq!(r.headers()["grpc-status"], "4");
    assert!(r.headers()["grpc-message"]
        .to_str()
        .unwrap()
        .contains("grpc-timeout"));
    // Well before the service's default total timeout (60 s).
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn resets_cross_the_proxy_both_ways_with_their_reason() {
    // The endpoint resets: the client's stream is reset with the endpoint's reason.
    let (p, _d) = world("").await;
    let mut c = h2_client(p.addr).await;
    let r = c
        .send_request(grpc_req("echo", "/echo.Echo/Reset", full("")))
        .await
        .unwrap();
    let mut inb = r.into_body();
    assert_eq!(
        inb.frame().await.unwrap().unwrap().into_data().unwrap(),
        "one"
    );
    let e = tokio::time::timeout(Duration::from_secs(5), inb.frame())
        .await
        .expect("the reset arrives")
        .unwrap()
        .unwrap_err();
    assert_eq!(reason_of(&e), "REFUSED_STREAM");

    // The client resets: the endpoint's stream is reset with the client's reason.
    let (backend, seen) = h2_backend_with_state().await;
    let disco = Disco::new();
    disco.set("echo", &[format!("127.0.0.1 {}", backend.port())]);
    let p = support::proxy(&h2_config(""), &disco.path()).await;
    let mut c = h2_client(p.addr).await;
    let (tx2, body) = channel_body_fallible();
    let r = c
        .send_request(grpc_req("echo", "/echo.Echo/Stream", body))
        .await
        .unwrap();
    tx2.send(Ok(Frame::data(Bytes::from_static(b"hello"))))
        .await
        .unwrap();
    let mut inb = r.into_body();
    assert_eq!(
        inb.frame().await.unwrap().unwrap().into_data().unwrap(),
        "hello"
    );
    tx2.send(Err(Box::new(h2::Error::from(
        h2::Reason::ENHANCE_YOUR_CALM,
    ))))
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(r) = seen.body_error.lock().unwrap().clone() {
            assert_eq!(r, "ENHANCE_YOUR_CALM");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the endpoint saw no reset"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn server_stream_and_header_limits_apply() {
    // maxConcurrentStreamsPerConnection: 1: a second stream waits for the first to end.
    let cfg = h2_config("").replace(
        "servers: [{ip: 127.0.0.1, port: 0}]",
        "servers: [{ip: 127.0.0.1, port: 0, maxConcurrentStreamsPerConnection: 1, maxHeaderListBytes: 2048}]",
    );
    let backend = h2_backend().await;
    let disco = Disco::new();
    disco.set("echo", &[format!("127.0.0.1 {}", backend.port())]);
    let p = support::proxy(&cfg, &disco.path()).await;
    let mut c = h2_client(p.addr).await;
    let (tx, body) = channel_body();
    let first = c
        .send_request(grpc_req("echo", "/echo.Echo/Stream", body))
        .await
        .unwrap();
    let second = c.send_request(grpc_req("echo", "/echo.Echo/Unary", full("second")));
    tokio::pin!(second);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), second.as_mut())
            .await
            .is_err(),
        "a second stream ran beside the first with maxConcurrentStreamsPerConnection: 1"
    );
    drop(tx);
    let _ = read_all(first).await;
    let r = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the second stream runs once the first ends")
        .unwrap();
    assert_eq!(read_all(r).await.0, "second");

    // maxHeaderListBytes: 2048: a request with 4 KB of headers is refused, a small one is not.
    let mut c = h2_client(p.addr).await;
    let mut big = grpc_req("echo", "/echo.Echo/Unary", full("x"));
    big.headers_mut()
        .insert("x-big", "v".repeat(4096).parse().unwrap());
    let refused = match c.send_request(big).await {
        Err(_) => true,
        Ok(r) => r.status() == 431,
    };
    assert!(
        refused,
        "a 4 KB header list passed maxHeaderListBytes: 2048"
    );
    let mut c = h2_client(p.addr).await;
    let r = c
        .send_request(grpc_req("echo", "/echo.Echo/Unary", full("small")))
        .await
        .unwrap();
    assert_eq!(read_all(r).await.0, "small");
}

/// Two endpoints, one failing every call in its trailers after `delay_ms`; failure accrual
/// (two consecutive failures) must take it out, whether its status came within the
/// classification window or at the end of a longer stream.
async fn accrual_world(delay_ms: u64) -> (support::Proxy, Disco) {
    let (bad, seen) = h2_backend_with_state().await;
    seen.fail_all
        .store(true, std::sync::atomic::Ordering::SeqCst);
    seen.fail_delay_ms
        .store(delay_ms, std::sync::atomic::Ordering::SeqCst);
    let good = h2_backend().await;
    let disco = Disco::new();
    disco.set(
        "echo",
        &[
            format!("127.0.0.1 {}", bad.port()),
            format!("127.0.0.1 {}", good.port()),
        ],
    );
    let cfg = h2_config(
        "  client:\n    failureAccrual: {kind: io.l5d.consecutiveFailures, failures: 2, backoff: {kind: constant, ms: 60000}}\n  service:\n    responseClassifier: {kind: io.l5d.h2.grpc.neverRetryable}\n",
    );
    let p = support::proxy(&cfg, &disco.path()).await;
    (p, disco)
}

#[tokio::test]
async fn grpc_failures_in_trailers_take_an_endpoint_out() {
    for delay in [0, 400] {
        let (p, _d) = accrual_world(delay).await;
        let mut c = h2_client(p.addr).await;
        let mut failed = 0;
        for _ in 0..30 {
            let r = c
                .send_request(grpc_req("echo", "/echo.Echo/Unary", full("x")))
                .await
                .unwrap();
            let (_, t) = read_all(r).await;
            if t.is_some_and(|t| t["grpc-status"] == "14") {
                failed += 1;
            }
        }
        // Two failures mark the failing endpoint dead; afterwards every call succeeds.
        assert_eq!(failed, 2, "delay {delay} ms");
        let m = support::metrics(p.admin).await;
        assert_eq!(
            m["rt/h2/client/#/io.l5d.fs/echo/loadbalancer/available"], 1,
            "delay {delay} ms"
        );
    }
}

#[tokio::test]
async fn a_client_that_never_sends_its_preface_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = h2_backend().await;
    let disco = Disco::new();
    disco.set("echo", &[format!("127.0.0.1 {}", backend.port())]);
    let cfg = h2_config("").replace(
        "servers: [{ip: 127.0.0.1, port: 0}]",
        "servers: [{ip: 127.0.0.1, port: 0, headerReadTimeoutMs: 300}]",
    );
    let p = support::proxy(&cfg, &disco.path()).await;
    // Part of a preface, then nothing: closed after the header read timeout.
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"PRI * HTTP").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("the server closes a connection that stalls before its preface")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // A client that opened properly may stay idle past it (gRPC channels do).
    let mut c = h2_client(p.addr).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let r = c
        .send_request(grpc_req("echo", "/echo.Echo/Unary", full("idle then")))
        .await
        .unwrap();
    assert_eq!(read_all(r).await.0, "idle then");
}
