//! `io.l5d.etcd` against real etcd: the server `integration/backends.sh start etcd` runs, and,
//! for the outage and compaction cases, a private etcd this test starts and restarts on its own
//! data directory (a restart that keeps data, as production restarts do). Keys are written with
//! the namer crate's own etcd client. Tests that stop servers take a process-wide lock.

use std::process::Stdio;
use std::time::Duration;

use switchboard_namer_core::testing::ports;
use switchboard_namer_core::{Addr, Name, NameTree, Namer, Path, State, Var};
use switchboard_namer_etcd::client::{Client, ConnectOptions};
use switchboard_namer_etcd::EtcdNamer;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

static TURN: Mutex<()> = Mutex::const_new(());
const WAIT: Duration = Duration::from_secs(20);

fn shared_etcd() -> Option<String> {
    match std::env::var("SWITCHBOARD_ETCD") {
        Ok(e) => Some(e),
        Err(_) => {
            assert!(
                std::env::var("SWITCHBOARD_REQUIRE_BACKENDS").is_err(),
                "SWITCHBOARD_ETCD is not set; run integration/backends.sh start etcd"
            );
            eprintln!("etcd not running (integration/backends.sh start etcd); skipped");
            None
        }
    }
}

fn unique(name: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("/switchboard-test/{name}-{n}")
}

async fn until<T: Clone + std::fmt::Debug>(v: &mut Var<T>, pred: impl Fn(&T) -> bool) -> T {
    switchboard_namer_core::testing::until(v, WAIT, pred).await
}

/// Waits (bounded) until the `web` service's `stale` flag in the namer state is `want`.
async fn until_stale(n: &EtcdNamer, want: bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while n.state()["services"]["web"]["stale"] != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stale never became {want}: {}",
            n.state()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn bound(n: &EtcdNamer, path: &str) -> (Var<State<NameTree<Name>>>, Var<Addr>) {
    let mut tree = n.lookup(&Path::read(path).unwrap());
    let t = until(&mut tree, |t| matches!(t, State::Ok(NameTree::Leaf(_)))).await;
    let State::Ok(NameTree::Leaf(Name::Bound(b))) = t else {
        unreachable!()
    };
    (tree, b.addr.clone())
}

#[tokio::test]
async fn register_weights_leases_and_neg() {
    let Some(etcd) = shared_etcd() else { return };
    let root = unique("svc");
    let mut c = Client::connect(&[etcd.as_str()], &ConnectOptions::default())
        .await
        .unwrap();
    c.put(format!("{root}/web/a"), "127.0.0.1:8081", 0)
        .await
        .unwrap();
    let n = EtcdNamer::new(
        vec![etcd.clone()],
        &root,
        Path::read("/#/io.l5d.etcd").unwrap(),
    );
    let (mut tree, mut addr) = bound(&n, "/web/x").await;
    until(&mut addr, |a| ports(a) == [(8081, 1.0)]).await;

    // The Go naming layout, with a weight; a malformed value is skipped.
    c.put(
        format!("{root}/web/b"),
        r#"{"Addr":"127.0.0.1:8082","Metadata":{"weight":3}}"#,
        0,
    )
    .await
    .unwrap();
    c.put(format!("{root}/web/c"), "not an address", 0)
        .await
        .unwrap();
    until(&mut addr, |a| ports(a) == [(8081, 1.0), (8082, 3.0)]).await;
    // The tree was not published again: churn changed the address set only.
    assert!(!tree.has_changed(), "churn republished the tree");
    assert!(matches!(tree.get(), State::Ok(NameTree::Leaf(_))));

    // A leased key goes with its lease.
    let lease = c.lease_grant(60).await.unwrap();
    c.put(format!("{root}/web/d"), "127.0.0.1:8083", lease)
        .await
        .unwrap();
    until(&mut addr, |a| ports(a).len() == 3).await;
    c.lease_revoke(lease).await.unwrap();
    until(&mut addr, |a| ports(a) == [(8081, 1.0), (8082, 3.0)]).await;

    // Deregistered: Neg, so a dtab falls back.
    c.delete_prefix(format!("{root}/web/").as_bytes())
        .await
        .unwrap();
    until(&mut tree, |t| *t == State::Ok(NameTree::Neg)).await;
    // An unknown service is Neg from the start.
    let mut none = n.lookup(&Path::read("/nothing").unwrap());
    until(&mut none, |t| *t == State::Ok(NameTree::Neg)).await;
}

/// A private etcd on its own ports and data directory, restartable with its data.
struct PrivateEtcd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    client_port: u16,
}

impl PrivateEtcd {
    async fn start() -> Option<PrivateEtcd> {
        let bin = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        if bin.is_none() {
            assert!(
                std::env::var("SWITCHBOARD_REQUIRE_BACKENDS").is_err(),
                "etcd binary missing; run integration/backends.sh install"
            );
            eprintln!("etcd binary not installed; skipped");
            return None;
        }
        let mut e = PrivateEtcd {
            dir: tempfile::tempdir().unwrap(),
            child: None,
            client_port: 23795,
        };
        e.up().await;
        Some(e)
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    async fn up(&mut self) {
        let (c, p, m) = (
            self.client_port,
            self.client_port + 10,
            self.client_port + 20,
        );
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
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(mut cl) = Client::connect(&[self.addr()], &ConnectOptions::default()).await {
                if cl.get_prefix(b"ready").await.is_ok() {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "private etcd not ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
            let _ = c.wait().await;
        }
    }
}

/// A TCP forwarder on a fixed loopback port to `target`, which the test can cut (closing its
/// listener and every forwarded connection) and restore: an outage seen by the namer alone,
/// while the test still reaches etcd directly.
struct Forwarder {
    port: u16,
    target: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Forwarder {
    async fn start(port: u16, target: String) -> Forwarder {
        let mut f = Forwarder {
            port,
            target,
            task: None,
        };
        f.up().await;
        f
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind the forwarder");
        let target = self.target.clone();
        self.task = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut a, _)) = listener.accept().await else {
                    continue;
                };
                let target = target.clone();
                conns.spawn(async move {
                    if let Ok(mut b) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                    }
                });
            }
        }));
    }

    /// Cuts every forwarded connection and stops listening.
    fn down(&mut self) {
        if let Some(t) = self.task.take() {
            // Aborting the accept task drops its JoinSet, which aborts every connection.
            t.abort();
        }
    }
}

#[tokio::test]
async fn outage_keeps_the_last_good_set_then_resumes_and_relists_after_compaction() {
    let _turn = TURN.lock().await;
    let Some(mut etcd) = PrivateEtcd::start().await else {
        return;
    };
    let mut c = Client::connect(&[etcd.addr()], &ConnectOptions::default())
        .await
        .unwrap();
    c.put("/svc/web/a", "127.0.0.1:9001", 0).await.unwrap();
    // The namer reaches etcd through a forwarder the test can cut on its own.
    let mut fwd = Forwarder::start(23799, etcd.addr()).await;
    let n = EtcdNamer::new(
        vec![fwd.addr()],
        "/svc",
        Path::read("/#/io.l5d.etcd").unwrap(),
    );
    let (mut tree, mut addr) = bound(&n, "/web").await;
    until(&mut addr, |a| ports(a) == [(9001, 1.0)]).await;

    // Outage: still serving, marked stale.
    etcd.down().await;
    until_stale(&n, true).await;
    assert_eq!(ports(&addr.get()), [(9001, 1.0)]);
    assert!(matches!(tree.get(), State::Ok(NameTree::Leaf(_))));

    // Back with its data: changes flow again.
    etcd.up().await;
    let mut c = Client::connect(&[etcd.addr()], &ConnectOptions::default())
        .await
        .unwrap();
    c.put("/svc/web/b", "127.0.0.1:9002", 0).await.unwrap();
    until(&mut addr, |a| ports(a) == [(9001, 1.0), (9002, 1.0)]).await;
    until_stale(&n, false).await;

    // Another outage, seen by the namer alone (the forwarder is cut) while the test changes the
    // service and compacts history past the namer's revision: on reconnecting, resuming is
    // impossible, so it must list again.
    let relists = n.state()["relists"].as_u64().unwrap_or(0);
    fwd.down();
    until_stale(&n, true).await;
    let mut c = Client::connect(&[etcd.addr()], &ConnectOptions::default())
        .await
        .unwrap();
    c.delete("/svc/web/a").await.unwrap();
    let r = c.put("/svc/web/c", "127.0.0.1:9003", 0).await.unwrap();
    let rev = r.header.unwrap().revision;
    c.compact(rev).await.unwrap();
    fwd.up().await;
    until(&mut addr, |a| ports(a) == [(9002, 1.0), (9003, 1.0)]).await;
    // The new set came from a fresh listing, not from resuming the compacted watch.
    assert_eq!(
        n.state()["relists"].as_u64().unwrap_or(0),
        relists + 1,
        "no relist after compaction: {}",
        n.state()
    );
    etcd.down().await;
}

#[tokio::test]
async fn an_etcd_that_never_answers_times_out() {
    // Accepts connections and never says a byte: no HTTP/2 settings, no answer.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let opts = ConnectOptions {
        keep_alive: None,
        ..ConnectOptions::default()
    };
    // The call ends on its own with an error (the outer bound is only a safety net).
    let call = async {
        match Client::connect(&[addr.as_str()], &opts).await {
            Ok(mut c) => c.get_prefix(b"/x").await.map(|_| ()),
            Err(e) => Err(e),
        }
    };
    let r = tokio::time::timeout(switchboard_namer_etcd::client::CALL_TIMEOUT * 3, call)
        .await
        .expect("the call to a silent etcd never ended");
    let e = r.expect_err("a silent etcd answered");
    assert!(e.to_string().contains("no answer within"), "{e}");
}

/// A CA and certificates for a TLS etcd, as PEM strings: (ca, server cert, server key, client
/// cert, client key).
fn pki() -> (String, String, String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "etcd test CA");
    let ca = p.self_signed(&ca_key).unwrap();
    let leaf = |names: &[&str], eku| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.extended_key_usages = vec![eku];
        let c = p.signed_by(&key, &ca, &ca_key).unwrap();
        (c.pem(), key.serialize_pem())
    };
    let (sc, sk) = leaf(&["etcd.test"], ExtendedKeyUsagePurpose::ServerAuth);
    let (cc, ck) = leaf(&["client.test"], ExtendedKeyUsagePurpose::ClientAuth);
    (ca.pem(), sc, sk, cc, ck)
}

#[tokio::test]
async fn tls_with_client_certificates() {
    let _turn = TURN.lock().await;
    if !std::path::Path::new("/usr/bin/etcd").exists() {
        assert!(
            std::env::var("SWITCHBOARD_REQUIRE_BACKENDS").is_err(),
            "etcd binary missing; run integration/backends.sh install"
        );
        eprintln!("etcd binary not installed; skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, sc, sk, cc, ck) = pki();
    let file = |name: &str, s: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, s).unwrap();
        p.to_str().unwrap().to_string()
    };
    let (ca_f, sc_f, sk_f) = (file("ca.pem", &ca), file("s.pem", &sc), file("s.key", &sk));
    let (c, peer, metrics) = (23797, 23807, 23817);
    let _etcd = Command::new("etcd")
        .args([
            "--name",
            "tls",
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "--listen-client-urls",
            &format!("https://127.0.0.1:{c}"),
            "--advertise-client-urls",
            &format!("https://127.0.0.1:{c}"),
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-cluster",
            &format!("tls=http://127.0.0.1:{peer}"),
            "--listen-metrics-urls",
            &format!("http://127.0.0.1:{metrics}"),
            "--cert-file",
            &sc_f,
            "--key-file",
            &sk_f,
            "--trusted-ca-file",
            &ca_f,
            "--client-cert-auth",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start etcd");
    let addr = format!("127.0.0.1:{c}");
    let tls = switchboard_namer_etcd::client::Tls {
        ca_pem: ca.clone().into_bytes(),
        identity: Some((cc.into_bytes(), ck.into_bytes())),
        domain: Some("etcd.test".into()),
    };
    let opts = ConnectOptions {
        tls: Some(tls.clone()),
        ..ConnectOptions::default()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut client = loop {
        if let Ok(mut cl) = Client::connect(&[addr.as_str()], &opts).await {
            if cl.get_prefix(b"ready").await.is_ok() {
                break cl;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "TLS etcd not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    client
        .put("/services/web/a", "127.0.0.1:8088", 0)
        .await
        .unwrap();
    let n = EtcdNamer::with_options(
        vec![addr.clone()],
        "/services",
        Path::read("/#/io.l5d.etcd").unwrap(),
        opts,
    );
    let (_tree, mut a) = bound(&n, "/web").await;
    until(&mut a, |a| ports(a) == [(8088, 1.0)]).await;

    // Without a client certificate etcd refuses the call.
    let no_cert = ConnectOptions {
        tls: Some(switchboard_namer_etcd::client::Tls {
            identity: None,
            ..tls.clone()
        }),
        ..ConnectOptions::default()
    };
    let refused = match Client::connect(&[addr.as_str()], &no_cert).await {
        Ok(mut cl) => cl.get_prefix(b"/services").await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "etcd answered a client without a certificate");
    // In plaintext, nothing.
    let plain = match Client::connect(&[addr.as_str()], &ConnectOptions::default()).await {
        Ok(mut cl) => cl.get_prefix(b"/services").await.is_err(),
        Err(_) => true,
    };
    assert!(plain, "etcd answered in plaintext");
}
