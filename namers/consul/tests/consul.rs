//! `io.l5d.consul` against the Consul API stand-in (`integration/consul_standin.py`, started by
//! `integration/backends.sh start consul`), which follows Consul's documented HTTP API,
//! blocking queries included; no real Consul server can be installed here. Each test uses its
//! own service names; the fault-injection test takes a process-wide lock.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use switchboard_namer_consul::{ConsulConfig, ConsulNamer};
use switchboard_namer_core::testing::ports;
use switchboard_namer_core::{Addr, Name, NameTree, Namer, Path, State, Var};
use tokio::sync::Mutex;

static TURN: Mutex<()> = Mutex::const_new(());
const WAIT: Duration = Duration::from_secs(15);

fn consul() -> Option<String> {
    match std::env::var("SWITCHBOARD_CONSUL") {
        Ok(c) => Some(c),
        Err(_) => {
            assert!(
                std::env::var("SWITCHBOARD_REQUIRE_BACKENDS").is_err(),
                "SWITCHBOARD_CONSUL is not set; run integration/backends.sh start consul"
            );
            eprintln!(
                "Consul stand-in not running (integration/backends.sh start consul); skipped"
            );
            None
        }
    }
}

fn unique(name: &str) -> String {
    format!("{name}-{}", fastrand::u32(..))
}

async fn call(c: &str, method: &str, path: &str, body: Value) -> Value {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{c}{path}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(
        status.is_success(),
        "{method} {path}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

async fn register(
    c: &str,
    name: &str,
    id: &str,
    port: u16,
    tags: &[&str],
    status: &str,
    weights: Option<(u32, u32)>,
) {
    let mut svc = json!({
        "Name": name, "ID": id, "Tags": tags, "Address": "127.0.0.1", "Port": port,
        "Check": {"TTL": "10m", "Status": status},
    });
    if let Some((p, w)) = weights {
        svc["Weights"] = json!({"Passing": p, "Warning": w});
    }
    call(c, "PUT", "/v1/agent/service/register", svc).await;
}

fn namer(c: &str, f: impl FnOnce(&mut ConsulConfig)) -> ConsulNamer {
    let (host, port) = c.split_once(':').unwrap();
    let mut cfg = ConsulConfig {
        host: host.into(),
        port: port.parse().unwrap(),
        ..Default::default()
    };
    f(&mut cfg);
    ConsulNamer::new(cfg, Path::read("/#/io.l5d.consul").unwrap())
}

async fn until<T: Clone + std::fmt::Debug>(v: &mut Var<T>, pred: impl Fn(&T) -> bool) -> T {
    switchboard_namer_core::testing::until(v, WAIT, pred).await
}

async fn bound(
    n: &ConsulNamer,
    path: &str,
) -> (Var<State<NameTree<Name>>>, switchboard_namer_core::Bound) {
    let mut tree = n.lookup(&Path::read(path).unwrap());
    let t = until(&mut tree, |t| matches!(t, State::Ok(NameTree::Leaf(_)))).await;
    let State::Ok(NameTree::Leaf(Name::Bound(b))) = t else {
        unreachable!()
    };
    (tree, b)
}

#[tokio::test]
async fn catalog_register_churn_deregister() {
    let Some(c) = consul() else { return };
    let web = unique("web");
    register(&c, &web, &format!("{web}-1"), 8081, &[], "passing", None).await;
    let n = namer(&c, |_| {});
    let (mut tree, b) = bound(&n, &format!("/.local/{}/rest", web.to_uppercase())).await;
    assert_eq!(
        b.id.show(),
        format!("/#/io.l5d.consul/.local/{}", web.to_uppercase())
    );
    assert_eq!(b.residual.show(), "/rest");
    let mut addr = b.addr.clone();
    until(&mut addr, |a| ports(a) == [(8081, 1.0)]).await;
    register(
        &c,
        &web,
        &format!("{web}-2"),
        8082,
        &[],
        "passing",
        Some((3, 1)),
    )
    .await;
    until(&mut addr, |a| ports(a) == [(8081, 1.0), (8082, 3.0)]).await;
    // The tree was not published again: churn changed the address set only.
    assert!(!tree.has_changed(), "churn republished the tree");
    assert!(matches!(tree.get(), State::Ok(NameTree::Leaf(_))));
    call(
        &c,
        "PUT",
        &format!("/v1/agent/service/deregister/{web}-1"),
        Value::Null,
    )
    .await;
    call(
        &c,
        "PUT",
        &format!("/v1/agent/service/deregister/{web}-2"),
        Value::Null,
    )
    .await;
    until(&mut tree, |t| *t == State::Ok(NameTree::Neg)).await;
    // The same via the explicit datacenter; an unknown datacenter is Neg.
    let mut dc1 = n.lookup(&Path::read(&format!("/dc1/{web}")).unwrap());
    until(&mut dc1, |t| *t == State::Ok(NameTree::Neg)).await;
    let mut nodc = n.lookup(&Path::read(&format!("/nowhere/{web}")).unwrap());
    until(&mut nodc, |t| *t == State::Ok(NameTree::Neg)).await;
}

#[tokio::test]
async fn health_statuses_weights_tags_and_set_host() {
    let Some(c) = consul() else { return };
    let api = unique("api");
    register(
        &c,
        &api,
        &format!("{api}-a"),
        9001,
        &["prod", "canary"],
        "passing",
        Some((10, 1)),
    )
    .await;
    register(
        &c,
        &api,
        &format!("{api}-b"),
        9002,
        &["prod"],
        "critical",
        None,
    )
    .await;
    register(
        &c,
        &api,
        &format!("{api}-c"),
        9003,
        &["dev"],
        "warning",
        Some((10, 2)),
    )
    .await;

    // Health: only passing by default.
    let n = namer(&c, |cfg| cfg.use_health_check = true);
    let (_, b) = bound(&n, &format!("/.local/{api}")).await;
    let mut addr = b.addr.clone();
    until(&mut addr, |a| ports(a) == [(9001, 10.0)]).await;
    // A check turns warning... and with warning allowed the Warning weight applies.
    let n2 = namer(&c, |cfg| {
        cfg.use_health_check = true;
        cfg.health_statuses = vec!["passing".into(), "warning".into()];
    });
    let (_, b2) = bound(&n2, &format!("/.local/{api}")).await;
    let mut addr2 = b2.addr.clone();
    until(&mut addr2, |a| ports(a) == [(9001, 10.0), (9003, 2.0)]).await;
    call(
        &c,
        "PUT",
        &format!("/v1/agent/check/fail/service:{api}-a"),
        Value::Null,
    )
    .await;
    until(&mut addr2, |a| ports(a) == [(9003, 2.0)]).await;
    call(
        &c,
        "PUT",
        &format!("/v1/agent/check/pass/service:{api}-a"),
        Value::Null,
    )
    .await;
    until(&mut addr, |a| ports(a) == [(9001, 10.0)]).await;

    // Tags in the path, the `weights` tag map, and setHost's authority.
    let n3 = namer(&c, |cfg| {
        cfg.include_tag = true;
        cfg.set_host = true;
        cfg.weights = vec![("canary".into(), 0.5), ("prod".into(), 2.0)];
    });
    let (_, b3) = bound(&n3, &format!("/dc1/prod/{api}")).await;
    let mut addr3 = b3.addr.clone();
    let a = until(&mut addr3, |a| ports(a) == [(9001, 20.0), (9002, 2.0)]).await;
    let Addr::Bound { endpoints, .. } = a else {
        unreachable!()
    };
    assert_eq!(
        endpoints[0].meta["authority"],
        format!("prod.{api}.service.dc1.consul")
    );
    for id in ["a", "b", "c"] {
        call(
            &c,
            "PUT",
            &format!("/v1/agent/service/deregister/{api}-{id}"),
            Value::Null,
        )
        .await;
    }
}

async fn standin_stats(c: &str) -> Value {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let resp = client
        .get(format!("http://{c}/_standin/stats").parse().unwrap())
        .await
        .unwrap();
    serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

#[tokio::test]
async fn blocking_query_rules_and_outages() {
    let Some(c) = consul() else { return };
    let _turn = TURN.lock().await;
    let svc = unique("db");
    register(&c, &svc, &format!("{svc}-1"), 7001, &[], "passing", None).await;
    let n = namer(&c, |_| {});
    let (_, b) = bound(&n, &format!("/dc1/{svc}")).await;
    let mut addr = b.addr.clone();
    until(&mut addr, |a| ports(a) == [(7001, 1.0)]).await;
    let path = format!("/v1/catalog/service/{svc}");

    // The index goes backwards, then to 0, then answers come back early and unchanged: the
    // watch keeps working and does not storm the server.
    call(&c, "PUT", "/_standin/stats/reset", Value::Null).await;
    for mode in ["index_backwards", "index_zero", "early_return"] {
        call(
            &c,
            "PUT",
            "/_standin/fault",
            json!({"mode": mode, "count": 3, "path": path}),
        )
        .await;
        register(
            &c,
            &svc,
            &format!("{svc}-{mode}"),
            7100,
            &[],
            "passing",
            None,
        )
        .await;
        until(&mut addr, |a| ports(a).iter().any(|p| p.0 == 7100)).await;
        call(
            &c,
            "PUT",
            &format!("/v1/agent/service/deregister/{svc}-{mode}"),
            Value::Null,
        )
        .await;
        until(&mut addr, |a| ports(a) == [(7001, 1.0)]).await;
    }
    // The watch's own requests: rate-limited (a bucket of 2, 5 per second), so even answers
    // that return at once cannot make it storm.
    let stats = standin_stats(&c).await;
    let mine = &stats["by_path"][format!("GET {path}")];
    let max = mine["max_per_second"]
        .as_u64()
        .expect("stand-in stats per path");
    assert!(
        (1..=8).contains(&max),
        "the watch stormed the server: {mine}"
    );

    // Errors: the last good set stays (stale) and updates resume afterwards.
    call(
        &c,
        "PUT",
        "/_standin/fault",
        json!({"mode": "error500", "count": 0, "path": path}),
    )
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while n.state()["services"][format!("dc1/{svc}")]["stale"] != true {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never stale: {}",
            n.state()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ports(&addr.get()), [(7001, 1.0)]);
    call(&c, "PUT", "/_standin/fault", json!({"mode": "none"})).await;
    register(&c, &svc, &format!("{svc}-2"), 7002, &[], "passing", None).await;
    until(&mut addr, |a| ports(a) == [(7001, 1.0), (7002, 1.0)]).await;
    assert_eq!(n.state()["services"][format!("dc1/{svc}")]["stale"], false);
    for id in ["1", "2"] {
        call(
            &c,
            "PUT",
            &format!("/v1/agent/service/deregister/{svc}-{id}"),
            Value::Null,
        )
        .await;
    }
}

/// A private stand-in serving HTTPS with client certificates required; its address and the
/// client TLS (CA, client certificate) to reach it.
struct TlsStandin {
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
    addr: String,
    tls: std::sync::Arc<rustls::ClientConfig>,
    no_cert: std::sync::Arc<rustls::ClientConfig>,
}

async fn tls_standin() -> Option<TlsStandin> {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    // The stand-in runs wherever python3 does (the test command installs nothing for it).
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("SWITCHBOARD_REQUIRE_BACKENDS").is_err(),
            "python3 missing"
        );
        eprintln!("python3 missing; skipped");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "consul test CA");
    let ca = p.self_signed(&ca_key).unwrap();
    let leaf = |names: &[&str], eku| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.extended_key_usages = vec![eku];
        let c = p.signed_by(&key, &ca, &ca_key).unwrap();
        (c.pem(), key.serialize_pem())
    };
    let (sc, sk) = leaf(&["consul.test"], ExtendedKeyUsagePurpose::ServerAuth);
    let (cc, ck) = leaf(&["client.test"], ExtendedKeyUsagePurpose::ClientAuth);
    let file = |name: &str, s: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, s).unwrap();
        p
    };
    let (ca_f, sc_f, sk_f) = (
        file("ca.pem", &ca.pem()),
        file("s.pem", &sc),
        file("s.key", &sk),
    );
    let ready = dir.path().join("ready");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../integration/consul_standin.py");
    let child = tokio::process::Command::new("python3")
        .arg(&script)
        .args(["--port", "0", "--quiet", "--ready-file"])
        .arg(&ready)
        .arg("--tls-cert")
        .arg(&sc_f)
        .arg("--tls-key")
        .arg(&sk_f)
        .arg("--tls-client-ca")
        .arg(&ca_f)
        .kill_on_drop(true)
        .spawn()
        .expect("start the stand-in");
    let deadline = tokio::time::Instant::now() + WAIT;
    let port = loop {
        if let Ok(p) = std::fs::read_to_string(&ready) {
            if let Ok(p) = p.trim().parse::<u16>() {
                break p;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "stand-in not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(cc.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(ck.as_bytes()).unwrap(),
        )
        .unwrap();
    let no_cert = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Some(TlsStandin {
        _child: child,
        _dir: dir,
        addr: format!("127.0.0.1:{port}"),
        tls: std::sync::Arc::new(tls),
        no_cert: std::sync::Arc::new(no_cert),
    })
}

#[tokio::test]
async fn tls_with_a_client_certificate() {
    let Some(s) = tls_standin().await else { return };
    // Register over HTTPS.
    let conn = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*s.tls).clone())
        .https_only()
        .with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(
            rustls::pki_types::ServerName::try_from("consul.test").unwrap(),
        ))
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(conn);
    let svc = json!({"Name": "web", "ID": "web-1", "Address": "127.0.0.1", "Port": 8091});
    let resp = client
        .request(
            hyper::Request::put(format!("https://{}/v1/agent/service/register", s.addr))
                .body(Full::new(Bytes::from(svc.to_string())))
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(resp.status().is_success());

    let with = |config| {
        namer(&s.addr, |c| {
            c.tls = Some(switchboard_namer_consul::ConsulTls {
                config,
                server_name: Some("consul.test".into()),
            })
        })
    };
    let n = with(s.tls.clone());
    let (_tree, b) = bound(&n, "/dc1/web").await;
    let mut addr = b.addr.clone();
    until(&mut addr, |a| ports(a) == [(8091, 1.0)]).await;

    // Without a client certificate the stand-in refuses: the name never binds.
    let n = with(s.no_cert.clone());
    let mut tree = n.lookup(&Path::read("/dc1/web").unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !matches!(tree.get(), State::Ok(NameTree::Leaf(_))),
        "bound without a client certificate: {:?}",
        tree.get()
    );
    let _ = &mut tree;
}
