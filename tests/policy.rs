//! Behaviours the README claims that no test pinned before the protocol-neutral data-path
//! rework (mesh-transport issue, section 0): retry budgets running out, classifiers, attempt and
//! server timeouts, connection pools, per-client and per-service configs, `dstPrefix`,
//! `clearContext`, `l5d-dst-residual`, and the server and balancer metrics. Switchboard
//! in-process on loopback port 0 with real HTTP backends, as in `tests/http.rs`; waits poll with
//! a bound instead of sleeping.

mod support;

use std::time::Duration;

use support::*;

const FS_DTAB: &str = "/svc => /#/io.l5d.fs;";
const WAIT: Duration = Duration::from_secs(10);

fn n(m: &serde_json::Value, key: &str) -> u64 {
    m[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing: {m}"))
}

#[tokio::test]
async fn an_empty_retry_budget_stops_retries() {
    let b = backend("bad").await;
    let disco = Disco::new();
    disco.set_backends("flaky", &[&b]);
    // No reserve, no deposits: a retryable 503 is never retried.
    let extra = "  service:\n    responseClassifier: {kind: io.l5d.http.retryableRead5XX}\n    retries:\n      budget: {minRetriesPerSec: 0, percentCanRetry: 0.0}\n  client:\n    failureAccrual: {kind: none}\n";
    let p = proxy(&config(FS_DTAB, extra), &disco.path()).await;
    for _ in 0..3 {
        assert_eq!(get(p.addr, "flaky", "/status/503", &[]).await.status, 503);
    }
    let m = metrics(p.admin).await;
    assert_eq!(n(&m, "rt/http/service/svc/flaky/retries/total"), 0, "{m}");
    assert_eq!(
        n(&m, "rt/http/service/svc/flaky/retries/budget_exhausted"),
        3
    );
    assert_eq!(b.hits.load(std::sync::atomic::Ordering::SeqCst), 3);

    // A budget of half a retry per request: 4 failing requests earn 2 retries.
    let b2 = backend("bad2").await;
    disco.set_backends("half", &[&b2]);
    let extra = "  service:\n    responseClassifier: {kind: io.l5d.http.retryableRead5XX}\n    retries:\n      budget: {minRetriesPerSec: 0, percentCanRetry: 0.5}\n  client:\n    failureAccrual: {kind: none}\n";
    let p = proxy(&config(FS_DTAB, extra), &disco.path()).await;
    for _ in 0..4 {
        assert_eq!(get(p.addr, "half", "/status/503", &[]).await.status, 503);
    }
    let m = metrics(p.admin).await;
    assert_eq!(n(&m, "rt/http/service/svc/half/retries/total"), 2, "{m}");
    // Requests 1 and 3 find it empty; 2 and 4 retry once, and their retry's 503 finds it empty.
    assert_eq!(
        n(&m, "rt/http/service/svc/half/retries/budget_exhausted"),
        4
    );
}

#[tokio::test]
async fn classifiers_decide_failure_and_retry() {
    let b = backend("svc").await;
    let disco = Disco::new();
    disco.set_backends("s", &[&b]);
    // (classifier, method, retried?, counted as a failure?)
    let rows = [
        ("io.l5d.http.nonRetryable5XX", "GET", false, true),
        ("io.l5d.http.retryableRead5XX", "GET", true, true),
        ("io.l5d.http.retryableRead5XX", "PUT", false, true),
        ("io.l5d.http.retryableIdempotent5XX", "PUT", true, true),
        ("io.l5d.http.retryableIdempotent5XX", "POST", false, true),
        ("io.l5d.http.retryableAll5XX", "POST", true, true),
        ("io.l5d.http.allSuccessful", "GET", false, false),
    ];
    for (kind, method, retried, failure) in rows {
        let extra = format!(
            "  service:\n    responseClassifier: {{kind: {kind}}}\n    retries:\n      budget: {{minRetriesPerSec: 1000}}\n  client:\n    failureAccrual: {{kind: none}}\n"
        );
        let p = proxy(&config(FS_DTAB, &extra), &disco.path()).await;
        let req = http::Request::builder()
            .method(method)
            .uri("/status/500")
            .header("host", "s")
            .body(body(""))
            .unwrap();
        assert_eq!(send(p.addr, req).await.status, 500, "{kind} {method}");
        let m = metrics(p.admin).await;
        let retries = n(&m, "rt/http/service/svc/s/retries/total");
        assert_eq!(retries > 0, retried, "{kind} {method}: {retries} retries");
        let failures = m["rt/http/service/svc/s/failures"].as_u64().unwrap_or(0);
        assert_eq!(
            failures > 0,
            failure,
            "{kind} {method}: {failures} failures"
        );
    }
}

#[tokio::test]
async fn attempt_and_server_timeouts() {
    let b = backend("slow").await;
    let disco = Disco::new();
    disco.set_backends("slow", &[&b]);
    let extra = "  client:\n    requestAttemptTimeoutMs: 100\n    failureAccrual: {kind: none}\n";
    let p = proxy(&config(FS_DTAB, extra), &disco.path()).await;
    let r = get(p.addr, "slow", "/slow/2000", &[]).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("request attempt timeout"), "{r:?}");
    assert_eq!(get(p.addr, "slow", "/slow/10", &[]).await.status, 200);

    let yaml = config(
        FS_DTAB,
        "  servers: [{ip: 127.0.0.1, port: 0, timeoutMs: 100}]\n",
    )
    .replace("  servers: [{ip: 127.0.0.1, port: 0}]\n", "");
    let p = proxy(&yaml, &disco.path()).await;
    let r = get(p.addr, "slow", "/slow/2000", &[]).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("server timeout"), "{r:?}");
}

#[tokio::test]
async fn a_full_pool_is_503_and_not_an_endpoint_failure() {
    let b = backend("slow").await;
    let disco = Disco::new();
    disco.set_backends("slow", &[&b]);
    let extra = "  client:\n    hostConnectionPool: {maxSize: 1, maxWaiters: 0}\n";
    let p = proxy(&config(FS_DTAB, extra), &disco.path()).await;
    let addr = p.addr;
    let first = tokio::spawn(async move { get(addr, "slow", "/slow/500", &[]).await.status });
    // The first request holds the pool's one connection.
    until_metric(p.admin, &pending_key(p.addr), |v| v == 1).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while b.hits.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = get(p.addr, "slow", "/", &[]).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(first.await.unwrap(), 200);
    let m = metrics(p.admin).await;
    assert_eq!(
        n(&m, "rt/http/client/#/io.l5d.fs/slow/loadbalancer/available"),
        1
    );
    assert_eq!(get(p.addr, "slow", "/", &[]).await.status, 200);
}

#[tokio::test]
async fn idle_pooled_connections_are_closed() {
    let b = backend("web").await;
    let disco = Disco::new();
    disco.set_backends("web", &[&b]);
    let extra =
        "  bindingCache: {idleTtlSecs: 1}\n  client:\n    hostConnectionPool: {idleTimeMs: 100}\n";
    let p = proxy(&config(FS_DTAB, extra), &disco.path()).await;
    assert_eq!(get(p.addr, "web", "/", &[]).await.status, 200);
    let open = |cs: &serde_json::Value| {
        cs["http"]["clients"]["/#/io.l5d.fs/web"]["endpoints"][0]["connections"].as_u64()
    };
    let cs: serde_json::Value = serde_json::from_str(
        &get(p.admin, "localhost", "/client_state.json", &[])
            .await
            .body,
    )
    .unwrap();
    assert_eq!(open(&cs), Some(1), "{cs}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let cs: serde_json::Value = serde_json::from_str(
            &get(p.admin, "localhost", "/client_state.json", &[])
                .await
                .body,
        )
        .unwrap();
        if open(&cs) == Some(0) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still open: {cs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn per_client_and_per_service_static_configs() {
    let (slow, other) = (backend("slow").await, backend("other").await);
    let disco = Disco::new();
    disco.set_backends("slow", &[&slow]);
    disco.set_backends("other", &[&other]);
    // Only the client of /#/io.l5d.fs/slow gets the short attempt timeout; only the service
    // /svc/other gets the short total timeout.
    let extra = "  client:\n    kind: io.l5d.static\n    configs:\n    - prefix: /#/io.l5d.fs/slow\n      requestAttemptTimeoutMs: 100\n  service:\n    kind: io.l5d.static\n    configs:\n    - prefix: /svc/other\n      totalTimeoutMs: 100\n";
    let p = proxy(&config(FS_DTAB, extra), &disco.path()).await;
    let r = get(p.addr, "slow", "/slow/500", &[]).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("request attempt timeout"), "{r:?}");
    let r = get(p.addr, "other", "/slow/500", &[]).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("total timeout"), "{r:?}");
    // Neither applies elsewhere: /svc/slow has no total timeout, /#/io.l5d.fs/other no
    // attempt timeout.
    let r = get(p.addr, "other", "/slow/50", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test]
async fn dst_prefix_clear_context_and_residuals() {
    let b = backend("web").await;
    let disco = Disco::new();
    disco.set_backends("web", &[&b]);
    // A non-default dstPrefix, and io.l5d.path naming two segments of which the namer uses one.
    let extra =
        "  dstPrefix: /http\n  identifier: {kind: io.l5d.path, segments: 2, consume: true}\n";
    let p = proxy(&config("/http => /#/io.l5d.fs;", extra), &disco.path()).await;
    let r = get(p.addr, "ignored", "/web/extra/echo", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["headers"]["l5d-dst-service"], "/http/web/extra");
    assert_eq!(v["headers"]["l5d-dst-client"], "/#/io.l5d.fs/web");
    assert_eq!(v["headers"]["l5d-dst-residual"], "/extra");

    // clearContext: inbound l5d-ctx-* and l5d-dtab are dropped, and l5d-* leave responses.
    let yaml = config(
        FS_DTAB,
        "  servers: [{ip: 127.0.0.1, port: 0, clearContext: true}]\n",
    )
    .replace("  servers: [{ip: 127.0.0.1, port: 0}]\n", "");
    let p = proxy(&yaml, &disco.path()).await;
    let r = get(
        p.addr,
        "web",
        "/echo",
        &[
            ("l5d-ctx-trace", "abc"),
            ("l5d-dtab", "/svc/web=>/$/fail"),
            ("l5d-sample", "1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "the l5d-dtab was obeyed: {r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    for h in ["l5d-ctx-trace", "l5d-sample", "l5d-ctx-dtab", "l5d-dtab"] {
        assert!(
            v["headers"].get(h).is_none(),
            "{h} reached the backend: {v}"
        );
    }
    assert!(
        r.headers.keys().all(|k| !k.as_str().starts_with("l5d-")),
        "{:?}",
        r.headers
    );
}

#[tokio::test]
async fn server_and_balancer_metrics() {
    let (a, b) = (backend("a").await, backend("b").await);
    let disco = Disco::new();
    disco.set_backends("web", &[&a, &b]);
    let p = proxy(&config(FS_DTAB, ""), &disco.path()).await;
    for _ in 0..3 {
        assert_eq!(get(p.addr, "web", "/", &[]).await.status, 200);
    }
    assert_eq!(get(p.addr, "web", "/status/503", &[]).await.status, 503);
    let srv = format!("rt/http/server/127.0.0.1/{}", p.addr.port());
    let m = until_metric(p.admin, &format!("{srv}/connections"), |v| v == 0).await;
    // One connection per request (the test client does not reuse them), all closed.
    assert_eq!(n(&m, &format!("{srv}/connects")), 4, "{m}");
    assert_eq!(n(&m, &format!("{srv}/requests")), 4);
    assert_eq!(n(&m, &format!("{srv}/status/5XX")), 1);
    assert_eq!(n(&m, &format!("{srv}/status/503")), 1);
    let c = "rt/http/client/#/io.l5d.fs/web";
    assert_eq!(n(&m, &format!("{c}/loadbalancer/size")), 2);
    assert_eq!(n(&m, &format!("{c}/loadbalancer/available")), 2);
    assert_eq!(n(&m, "rt/http/service/svc/web/requests"), 4);
    // Churn: one endpoint leaves.
    disco.set_backends("web", &[&a]);
    until_metric(p.admin, &format!("{c}/loadbalancer/size"), |v| v == 1).await;
    let m = metrics(p.admin).await;
    assert_eq!(n(&m, &format!("{c}/loadbalancer/removes")), 1, "{m}");
}

#[tokio::test]
async fn names_share_a_client_and_caches_evict_and_expire() {
    let (web, api) = (backend("web").await, backend("api").await);
    let disco = Disco::new();
    disco.set_backends("web", &[&web]);
    disco.set_backends("api", &[&api]);
    // www and web are two names bound to one client.
    let p = proxy(
        &config("/svc => /#/io.l5d.fs; /svc/www => /svc/web;", ""),
        &disco.path(),
    )
    .await;
    assert_eq!(get(p.addr, "web", "/", &[]).await.body, "web");
    assert_eq!(get(p.addr, "www", "/", &[]).await.body, "web");
    let m = metrics(p.admin).await;
    assert_eq!(n(&m, "rt/http/client/#/io.l5d.fs/web/requests"), 2, "{m}");
    assert_eq!(n(&m, "rt/http/service/svc/web/requests"), 1);
    assert_eq!(n(&m, "rt/http/service/svc/www/requests"), 1);
    assert_eq!(n(&m, "rt/http/bindcache/client/misses"), 1);
    assert_eq!(n(&m, "rt/http/bindcache/path/misses"), 2);

    // Capacity 1: a second name evicts the first binding, and its then unused client.
    let p = proxy(
        &config(FS_DTAB, "  bindingCache: {paths: 1, clients: 1}\n"),
        &disco.path(),
    )
    .await;
    assert_eq!(get(p.addr, "web", "/", &[]).await.body, "web");
    assert_eq!(get(p.addr, "api", "/", &[]).await.body, "api");
    assert_eq!(get(p.addr, "web", "/", &[]).await.body, "web");
    let m = metrics(p.admin).await;
    assert!(n(&m, "rt/http/bindcache/path/evicts") >= 2, "{m}");
    assert!(n(&m, "rt/http/bindcache/client/evicts") >= 1, "{m}");

    // idleTtlSecs: an idle binding expires, and so does its client.
    let p = proxy(
        &config(FS_DTAB, "  bindingCache: {idleTtlSecs: 1}\n"),
        &disco.path(),
    )
    .await;
    assert_eq!(get(p.addr, "web", "/", &[]).await.body, "web");
    until_metric(p.admin, "rt/http/bindcache/path/expires", |v| v == 1).await;
    until_metric(p.admin, "rt/http/bindcache/client/expires", |v| v == 1).await;
    // A request after expiry binds again.
    assert_eq!(get(p.addr, "web", "/", &[]).await.body, "web");
}

#[tokio::test]
async fn success_rate_accrual_takes_an_endpoint_out_and_a_probe_brings_it_back() {
    for accrual in [
        "{kind: io.l5d.successRate, successRate: 0.9, requests: 5, backoff: {kind: constant, ms: 300}}",
        "{kind: io.l5d.successRateWindowed, successRate: 0.9, window: 5, backoff: {kind: constant, ms: 300}}",
    ] {
        let good = backend("good").await;
        // An endpoint that refuses connections, on a port the test can bring to life later.
        let spare = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = spare.local_addr().unwrap().port();
        drop(spare);
        let disco = Disco::new();
        disco.set(
            "web",
            &[
                format!("127.0.0.1 {}", good.addr.port()),
                format!("127.0.0.1 {port}"),
            ],
        );
        let extra = format!("  client:\n    failureAccrual: {accrual}\n");
        let p = proxy(&config(FS_DTAB, &extra), &disco.path()).await;
        let avail = "rt/http/client/#/io.l5d.fs/web/loadbalancer/available";
        // Connection failures are requeued (every request succeeds) and counted against the
        // refusing endpoint until its success rate drops below 0.9.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            assert_eq!(get(p.addr, "web", "/", &[]).await.status, 200, "{accrual}");
            if metrics(p.admin).await[avail] == 1 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{accrual}: never marked dead");
        }
        // The endpoint comes to life; after the backoff a real request probes it, succeeds,
        // and it is back in rotation.
        let revived = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let _revived = backend_on(revived, "revived");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            assert_eq!(get(p.addr, "web", "/", &[]).await.status, 200);
            if metrics(p.admin).await[avail] == 2 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{accrual}: never revived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn a_name_still_pending_after_binding_timeout_ms_is_502() {
    // A "Consul" that accepts connections and never answers: the name stays Pending.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let disco = Disco::new();
    let yaml = config("/svc => /#/io.l5d.consul/dc1;", "  bindingTimeoutMs: 200\n").replace(
        "namers:\n",
        &format!("namers:\n- kind: io.l5d.consul\n  host: 127.0.0.1\n  port: {port}\n"),
    );
    let p = proxy(&yaml, &disco.path()).await;
    let r = get(p.addr, "web", "/", &[]).await;
    assert_eq!(r.status, 502, "{r:?}");
    assert!(
        r.body
            .contains("Exceeded 200.milliseconds binding timeout while resolving name: /svc/web"),
        "{r:?}"
    );
    // The namer's counters reach the metrics page.
    let m = metrics(p.admin).await;
    assert!(n(&m, "namer/#/io.l5d.consul/lookups") >= 1, "{m}");
    assert!(n(&m, "namer/#/io.l5d.consul/watch/opens") >= 1, "{m}");
    assert_eq!(n(&m, "namer/#/io.l5d.consul/watched"), 1, "{m}");
}

#[tokio::test]
async fn aperture_keeps_a_light_load_on_few_endpoints() {
    let mut bs = Vec::new();
    for i in 0..4 {
        bs.push(backend(&format!("b{i}")).await);
    }
    let disco = Disco::new();
    disco.set_backends("web", &[&bs[0], &bs[1], &bs[2], &bs[3]]);
    let distinct = |extra: String| {
        let disco_path = disco.path();
        async move {
            let p = proxy(&config(FS_DTAB, &extra), &disco_path).await;
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..40 {
                let r = get(p.addr, "web", "/", &[]).await;
                assert_eq!(r.status, 200);
                seen.insert(r.header("x-backend-addr").to_string());
            }
            seen.len()
        }
    };
    // One request at a time is far below the aperture's low load: its window stays at
    // minAperture, one endpoint.
    let aperture = distinct(
        "  client:\n    loadBalancer: {kind: aperture, minAperture: 1, lowLoad: 0.5, highLoad: 2.0}\n"
            .to_string(),
    )
    .await;
    assert_eq!(
        aperture, 1,
        "aperture spread a light load over {aperture} endpoints"
    );
    // p2c over all four spreads the same load (all four are hit with near certainty).
    let p2c = distinct("  client:\n    loadBalancer: {kind: p2c}\n".to_string()).await;
    assert!(p2c >= 3, "p2c used only {p2c} endpoints");
}

#[tokio::test]
async fn endpoint_weights_split_idle_traffic_in_proportion() {
    // Weights 1 and 3 from the fs namer: one request at a time splits about 1:3.
    let (light, heavy) = (backend("light").await, backend("heavy").await);
    let disco = Disco::new();
    disco.set(
        "web",
        &[
            format!("127.0.0.1 {} * 1", light.addr.port()),
            format!("127.0.0.1 {} * 3", heavy.addr.port()),
        ],
    );
    let p = proxy(&config("/svc => /#/io.l5d.fs;", ""), &disco.path()).await;
    let total = 400;
    for _ in 0..total {
        assert_eq!(get(p.addr, "web", "/", &[]).await.status, 200);
    }
    let h = heavy.hits.load(std::sync::atomic::Ordering::Relaxed) as f64 / total as f64;
    // Expected 0.75; the bound leaves room for chance (sd about 0.02).
    assert!((0.65..=0.85).contains(&h), "heavy share {h}");
}

#[tokio::test]
async fn attempts_that_time_out_are_retried_when_the_classifier_retries() {
    // An endpoint that accepts and never answers, beside a good one.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let good = backend("good").await;
    let disco = Disco::new();
    disco.set(
        "web",
        &[
            format!("127.0.0.1 {silent_port}"),
            format!("127.0.0.1 {}", good.addr.port()),
        ],
    );
    let client = "  client:\n    requestAttemptTimeoutMs: 200\n    failureAccrual: {kind: none}\n";
    // Reads retried on a 5XX: every GET is answered by the good endpoint, promptly.
    let p = proxy(
        &config(
            FS_DTAB,
            &format!("{client}  service:\n    responseClassifier: {{kind: io.l5d.http.retryableRead5XX}}\n"),
        ),
        &disco.path(),
    )
    .await;
    for _ in 0..20 {
        let started = std::time::Instant::now();
        let r = get(p.addr, "web", "/", &[]).await;
        assert_eq!((r.status, r.body.as_str()), (200, "good"));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    let m = metrics(p.admin).await;
    assert!(n(&m, "rt/http/service/svc/web/retries/total") >= 1);
    // Without a retrying classifier, a timed-out attempt is the answer (503).
    let p = proxy(&config(FS_DTAB, client), &disco.path()).await;
    let mut statuses = std::collections::BTreeSet::new();
    for _ in 0..20 {
        statuses.insert(get(p.addr, "web", "/", &[]).await.status);
    }
    assert!(statuses.contains(&503), "{statuses:?}");
}
