//! End to end through the router with the backend namers: register → routable, deregister →
//! 502, against the real etcd and DNS servers and the Consul API stand-in started by
//! `integration/backends.sh` (skipped when they are not running, unless
//! SWITCHBOARD_REQUIRE_BACKENDS is set).

mod support;

use std::time::Duration;

use support::*;

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

/// Retries `f` until it returns true, for at most 15 s (a bound, not a measurement).
async fn eventually(mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition never held"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `integration/backends.sh ARGS` and insists that it worked.
async fn backends_sh(sh: &str, args: &[&str]) {
    let out = tokio::process::Command::new(sh)
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "backends.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn consul_put(c: &str, path: &str, body: &str) {
    let req = http::Request::put(path)
        .header("host", c)
        .body(body_of(body))
        .unwrap();
    let r = send(c.parse().unwrap(), req).await;
    assert_eq!(r.status, 200, "{path}: {r:?}");
}

fn body_of(
    s: &str,
) -> http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible> {
    body(s.to_string())
}

/// Registers `svc` (instance `<svc>-1`) on 127.0.0.1:`port` with the Consul agent at `c`.
async fn consul_register(c: &str, svc: &str, port: u16) {
    consul_put(
        c,
        "/v1/agent/service/register",
        &format!(r#"{{"Name":"{svc}","ID":"{svc}-1","Address":"127.0.0.1","Port":{port}}}"#),
    )
    .await;
}

#[tokio::test]
async fn consul_register_route_set_host_deregister() {
    let Some(c) = env("SWITCHBOARD_CONSUL") else {
        return;
    };
    let b = backend("consul-web").await;
    let svc = format!("shop{}", fastrand::u32(..));
    let (host, port) = c.split_once(':').unwrap();
    let cfg = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nnamers:\n- kind: io.l5d.consul\n  host: {host}\n  port: {port}\n  setHost: true\nrouters:\n- protocol: http\n  dtab: /svc => /#/io.l5d.consul/dc1;\n  servers: [{{ip: 127.0.0.1, port: 0}}]\n"
    );
    let disco = Disco::new();
    let p = proxy(&cfg, &disco.path()).await;
    consul_register(&c, &svc, b.addr.port()).await;
    eventually(async || get(p.addr, &svc, "/", &[]).await.status == 200).await;
    let r = get(p.addr, &svc, "/echo", &[]).await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["headers"]["host"], format!("{svc}.service.dc1.consul"));
    assert_eq!(
        v["headers"]["l5d-dst-client"],
        format!("/#/io.l5d.consul/dc1/{svc}")
    );
    consul_put(&c, &format!("/v1/agent/service/deregister/{svc}-1"), "").await;
    eventually(async || get(p.addr, &svc, "/", &[]).await.status == 502).await;
}

#[tokio::test]
async fn etcd_register_route_deregister() {
    let Some(e) = env("SWITCHBOARD_ETCD") else {
        return;
    };
    let Some(sh) = env("SWITCHBOARD_BACKENDS") else {
        return;
    };
    let b = backend("etcd-web").await;
    let root = format!("/e2e{}", fastrand::u32(..));
    let cfg = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nnamers:\n- kind: io.l5d.etcd\n  endpoints: [{e}]\n  pathPrefix: {root}\nrouters:\n- protocol: http\n  dtab: /svc => /#/io.l5d.etcd;\n  servers: [{{ip: 127.0.0.1, port: 0}}]\n"
    );
    let disco = Disco::new();
    let p = proxy(&cfg, &disco.path()).await;
    assert_eq!(get(p.addr, "web", "/", &[]).await.status, 502);
    backends_sh(
        &sh,
        &[
            "etcdctl",
            "put",
            &format!("{root}/web/1"),
            &b.addr.to_string(),
        ],
    )
    .await;
    eventually(async || get(p.addr, "web", "/", &[]).await.body == "etcd-web").await;
    backends_sh(&sh, &["etcdctl", "del", &format!("{root}/web/1")]).await;
    eventually(async || get(p.addr, "web", "/", &[]).await.status == 502).await;
}

#[tokio::test]
async fn dns_srv_route() {
    let Some(dns) = env("SWITCHBOARD_DNS") else {
        return;
    };
    let Some(sh) = env("SWITCHBOARD_BACKENDS") else {
        return;
    };
    let zone = std::env::var("SWITCHBOARD_DNS_ZONE").unwrap_or_else(|_| "test.switchboard".into());
    let b = backend("dns-web").await;
    let name = format!("_e2e{}._tcp.{zone}", fastrand::u32(..));
    let port = b.addr.port().to_string();
    backends_sh(
        &sh,
        &["dns-srv", "set", &name, "0", "1", &port, "127.0.0.1"],
    )
    .await;
    let cfg = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nnamers:\n- kind: io.l5d.dnssrv\n  refreshIntervalSeconds: 1\n  dnsHosts: ['{dns}']\nrouters:\n- protocol: http\n  dtab: /svc => /#/io.l5d.dnssrv;\n  servers: [{{ip: 127.0.0.1, port: 0}}]\n"
    );
    let disco = Disco::new();
    let p = proxy(&cfg, &disco.path()).await;
    eventually(async || get(p.addr, &name, "/", &[]).await.body == "dns-web").await;
    let _ = tokio::process::Command::new(&sh)
        .args(["dns-srv", "clear", &name])
        .output()
        .await;
}

#[tokio::test]
async fn consul_empty_falls_back_through_the_dtab() {
    let Some(c) = env("SWITCHBOARD_CONSUL") else {
        return;
    };
    let (consul_be, fs_be) = (backend("from-consul").await, backend("from-fs").await);
    let svc = format!("fb{}", fastrand::u32(..));
    let disco = Disco::new();
    disco.set_backends(&svc, &[&fs_be]);
    let (host, port) = c.split_once(':').unwrap();
    let cfg = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nnamers:\n- kind: io.l5d.fs\n  rootDir: {{disco}}\n- kind: io.l5d.consul\n  host: {host}\n  port: {port}\nrouters:\n- protocol: http\n  dtab: /svc => /#/io.l5d.consul/dc1 | /#/io.l5d.fs;\n  servers: [{{ip: 127.0.0.1, port: 0}}]\n"
    );
    let p = proxy(&cfg, &disco.path()).await;
    // Nothing in Consul: Neg, so the dtab falls back to the file.
    eventually(async || get(p.addr, &svc, "/", &[]).await.body == "from-fs").await;
    consul_put(
        &c,
        "/v1/agent/service/register",
        &format!(
            r#"{{"Name":"{svc}","ID":"{svc}-1","Address":"127.0.0.1","Port":{}}}"#,
            consul_be.addr.port()
        ),
    )
    .await;
    eventually(async || get(p.addr, &svc, "/", &[]).await.body == "from-consul").await;
    consul_put(&c, &format!("/v1/agent/service/deregister/{svc}-1"), "").await;
    eventually(async || get(p.addr, &svc, "/", &[]).await.body == "from-fs").await;
}

#[tokio::test]
async fn zookeeper_serverset_register_route_deregister() {
    let Some(zk) = env("SWITCHBOARD_ZK") else {
        return;
    };
    let Some(sh) = env("SWITCHBOARD_BACKENDS") else {
        return;
    };
    let b = backend("zk-web").await;
    let root = format!("/e2e{}", fastrand::u32(..));
    let zkcli = |cmds: String| {
        let sh = sh.clone();
        async move {
            let mut child = tokio::process::Command::new(&sh)
                .arg("zkcli")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            use tokio::io::AsyncWriteExt;
            let mut stdin = child.stdin.take().unwrap();
            stdin
                .write_all(format!("{cmds}quit\n").as_bytes())
                .await
                .unwrap();
            drop(stdin);
            assert!(child.wait().await.unwrap().success());
        }
    };
    let member = format!(
        r#"{{"serviceEndpoint":{{"host":"127.0.0.1","port":{}}},"additionalEndpoints":{{}},"status":"ALIVE"}}"#,
        b.addr.port()
    );
    zkcli(format!(
        "create {root} x\ncreate {root}/web x\ncreate {root}/web/member_0000000001 {member}\n"
    ))
    .await;
    let (host, port) = zk.split_once(':').unwrap();
    let cfg = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nnamers:\n- kind: io.l5d.serversets\n  zkAddrs: [{{host: {host}, port: {port}}}]\nrouters:\n- protocol: http\n  dtab: /svc => /#/io.l5d.serversets{root};\n  servers: [{{ip: 127.0.0.1, port: 0}}]\n"
    );
    let disco = Disco::new();
    let p = proxy(&cfg, &disco.path()).await;
    eventually(async || get(p.addr, "web", "/", &[]).await.body == "zk-web").await;
    zkcli(format!("delete {root}/web/member_0000000001\n")).await;
    eventually(async || get(p.addr, "web", "/", &[]).await.status == 502).await;
    zkcli(format!("deleteall {root}\n")).await;
}

#[path = "support/h2.rs"]
mod h2s;

#[tokio::test]
async fn consul_set_host_on_an_h2_router_sets_the_authority() {
    let Some(c) = env("SWITCHBOARD_CONSUL") else {
        return;
    };
    let backend = h2s::h2_backend().await;
    let svc = format!("grpc{}", fastrand::u32(..));
    let (host, port) = c.split_once(':').unwrap();
    let cfg = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nnamers:\n- kind: io.l5d.consul\n  host: {host}\n  port: {port}\n  setHost: true\nrouters:\n- protocol: h2\n  dtab: /svc => /#/io.l5d.consul/dc1;\n  servers: [{{ip: 127.0.0.1, port: 0}}]\n"
    );
    let disco = Disco::new();
    let p = proxy(&cfg, &disco.path()).await;
    consul_register(&c, &svc, backend.port()).await;
    let mut client = h2s::h2_client(p.addr).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let seen = loop {
        let r = client
            .send_request(h2s::grpc_req(&svc, "/echo.Echo/Unary", h2s::full("x")))
            .await
            .unwrap();
        if let Some(v) = r.headers().get("x-seen") {
            break v.to_str().unwrap().to_string();
        }
        assert!(tokio::time::Instant::now() < deadline, "never routed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The endpoint's authority goes in :authority; no separate Host header contradicts it.
    assert!(
        seen.starts_with(&format!("authority={svc}.service.dc1.consul ")),
        "{seen}"
    );
    consul_put(&c, &format!("/v1/agent/service/deregister/{svc}-1"), "").await;
}
