//! Name-tree transformers end to end (section 1.11): `io.l5d.port`, `io.l5d.localhost` and
//! `io.l5d.specificHost` on the interpreter and on a namer, through the router with real HTTP
//! backends and the fs namer: traffic goes where the transformed addresses say, bound ids carry
//! `/%/<prefix>` (client configs match that form), delegation shows Linkerd's transformation
//! nodes, and endpoint churn flows through a transformer without rebuilding the client.

mod support;

use support::*;

fn cfg(namer_transformers: &str, router_extra: &str) -> String {
    format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nnamers:\n- kind: io.l5d.fs\n  rootDir: {{disco}}\n{namer_transformers}routers:\n- protocol: http\n  label: http\n  dtab: /svc => /#/io.l5d.fs;\n  servers: [{{ip: 127.0.0.1, port: 0}}]\n{router_extra}"
    )
}

#[tokio::test]
async fn port_transformer_sends_to_the_port_and_prefixes_the_id() {
    let web = backend("web").await;
    let port = web.addr.port();
    let disco = Disco::new();
    // The service's own port is 1 (nothing listens there); the transformer sends to `port`.
    disco.set("web", &["127.0.0.1 1".to_string()]);
    let extra = format!(
        "  interpreter:\n    kind: default\n    transformers:\n    - kind: io.l5d.port\n      port: {port}\n  client:\n    kind: io.l5d.static\n    configs:\n    - prefix: /%/io.l5d.port/*/#/io.l5d.fs/{{service}}\n      loadBalancer: {{kind: roundRobin}}\n"
    );
    let p = proxy(&cfg("", &extra), &disco.path()).await;
    let r = get(p.addr, "web", "/echo", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let id = format!("/%/io.l5d.port/{port}/#/io.l5d.fs/web");
    assert_eq!(v["headers"]["l5d-dst-client"], id.as_str());
    // The client config's prefix matched the transformed id.
    let m = metrics(p.admin).await;
    let client = format!("rt/http/client/{}", id.trim_start_matches('/'));
    assert_eq!(m[format!("{client}/loadbalancer/algorithm/roundRobin")], 1);

    // Delegation shows the transformer's step, as Linkerd renders it.
    let d = delegator(p.admin, "/svc/web").await;
    let leaf = &d["delegate"];
    assert_eq!(leaf["type"], "transformation", "{d}");
    assert_eq!(leaf["name"], "PortTransformer");
    assert_eq!(leaf["path"], "/#/io.l5d.fs/web");
    assert_eq!(leaf["bound"]["id"], "/#/io.l5d.fs/web");
    assert_eq!(leaf["bound"]["addr"]["addrs"][0]["port"], 1);
    assert_eq!(leaf["tree"]["type"], "leaf");
    assert_eq!(leaf["tree"]["path"], id.as_str());
    assert_eq!(leaf["tree"]["bound"]["id"], id.as_str());
    assert_eq!(leaf["tree"]["bound"]["addr"]["addrs"][0]["port"], port);
    assert_eq!(leaf["tree"]["dentry"]["prefix"], "/svc");
}

async fn delegator(admin: std::net::SocketAddr, path: &str) -> serde_json::Value {
    let r = get(
        admin,
        "127.0.0.1",
        // The router's dtab, as the delegator UI sends it.
        &format!("/delegator.json?namespace=http&path={path}&dtab=/svc%3D%3E/%23/io.l5d.fs"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

#[tokio::test]
async fn localhost_and_specific_host_keep_only_this_hosts_addresses() {
    let local = backend("local").await;
    let disco = Disco::new();
    // 192.0.2.1 (TEST-NET-1) is no interface of this host: only the local one remains.
    disco.set(
        "web",
        &[
            format!("127.0.0.1 {}", local.addr.port()),
            format!("192.0.2.1 {}", local.addr.port()),
        ],
    );
    for (where_, kind) in [
        ("interpreter", "{kind: io.l5d.localhost}"),
        ("namer", "{kind: io.l5d.localhost}"),
        (
            "interpreter",
            "{kind: io.l5d.specificHost, host: 127.0.0.1}",
        ),
    ] {
        let text = match where_ {
            "namer" => cfg(&format!("  transformers: [{kind}]\n"), ""),
            _ => cfg(
                "",
                &format!("  interpreter:\n    kind: default\n    transformers: [{kind}]\n"),
            ),
        };
        let p = proxy(&text, &disco.path()).await;
        let before = local.hits.load(std::sync::atomic::Ordering::Relaxed);
        for _ in 0..20 {
            let r = get(p.addr, "web", "/", &[]).await;
            assert_eq!(r.status, 200, "{where_} {kind}: {}", r.body);
        }
        assert_eq!(
            local.hits.load(std::sync::atomic::Ordering::Relaxed) - before,
            20,
            "{where_} {kind}"
        );
        let m = metrics(p.admin).await;
        let sizes: Vec<(String, serde_json::Value)> = m
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.ends_with("/loadbalancer/size"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(sizes.len(), 1, "{sizes:?}");
        assert_eq!(sizes[0].1, 1, "{where_} {kind}: {sizes:?}");
        let prefix = if kind.contains("specificHost") {
            "%/io.l5d.specificHost/"
        } else {
            "%/io.l5d.localhost/"
        };
        assert!(sizes[0].0.contains(prefix), "{sizes:?}");
    }
}

#[tokio::test]
async fn churn_flows_through_a_transformer_without_a_new_client() {
    let (a, b) = (backend("a").await, backend("b").await);
    let disco = Disco::new();
    disco.set("web", &[format!("127.0.0.1 {}", a.addr.port())]);
    let p = proxy(
        &cfg(
            "",
            "  interpreter:\n    kind: default\n    transformers: [{kind: io.l5d.localhost}]\n",
        ),
        &disco.path(),
    )
    .await;
    assert_eq!(get(p.addr, "web", "/", &[]).await.body, "a");
    disco.set_backends("web", &[&a, &b]);
    let size = "rt/http/client/%/io.l5d.localhost/#/io.l5d.fs/web/loadbalancer/size";
    until_metric(p.admin, size, |v| v == 2).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        seen.insert(get(p.addr, "web", "/", &[]).await.body);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    // One client for the name throughout: the set changed in place.
    let m = metrics(p.admin).await;
    assert_eq!(m["rt/http/bindcache/client/misses"], 1);
}

#[tokio::test]
async fn replace_and_const_bind_their_own_path() {
    let (web, other) = (backend("web").await, backend("other").await);
    let disco = Disco::new();
    disco.set_backends("web", &[&web]);
    disco.set_backends("other", &[&other]);
    // io.l5d.replace: every bound leaf becomes /#/io.l5d.fs/other; a Neg name stays Neg.
    let p = proxy(
        &cfg(
            "",
            "  interpreter:\n    kind: default\n    transformers: [{kind: io.l5d.replace, path: /#/io.l5d.fs/other}]\n",
        ),
        &disco.path(),
    )
    .await;
    let r = get(p.addr, "web", "/echo", &[]).await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["backend"], "other");
    assert_eq!(
        v["headers"]["l5d-dst-client"],
        "/%/io.l5d.replace/#/io.l5d.fs/other"
    );
    assert_eq!(get(p.addr, "nothing", "/", &[]).await.status, 502);
    // io.l5d.const: whatever the name binds to, even Neg.
    let p = proxy(
        &cfg(
            "",
            "  interpreter:\n    kind: default\n    transformers: [{kind: io.l5d.const, path: /#/io.l5d.fs/other}]\n",
        ),
        &disco.path(),
    )
    .await;
    assert_eq!(get(p.addr, "web", "/", &[]).await.body, "other");
    assert_eq!(get(p.addr, "nothing", "/", &[]).await.body, "other");
    // On a namer they are refused where they are written.
    let e = switchboard::config::load(
        &cfg("  transformers: [{kind: io.l5d.const, path: /a}]\n", "")
            .replace("{disco}", &disco.path().display().to_string()),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains(
            "namers[0] (io.l5d.fs).transformers[0] (io.l5d.const): `io.l5d.const` binds a path"
        ),
        "{e}"
    );
}
