//! `io.l5d.dnssrv` against the real DNS server (dnsmasq) that `integration/backends.sh start dns`
//! runs on loopback. Records are changed with the script's `dns-srv` helper. The tests share one
//! server, so they take turns (a process-wide lock) and use distinct names.

use std::net::SocketAddr;
use std::time::Duration;

use switchboard_namer_core::testing::ports;
use switchboard_namer_core::{Name, NameTree, Namer, Path, State, Var};
use switchboard_namer_dnssrv::DnsSrvNamer;
use tokio::sync::Mutex;

static TURN: Mutex<()> = Mutex::const_new(());
const WAIT: Duration = Duration::from_secs(15);
const REFRESH: Duration = Duration::from_millis(100);

/// The DNS server and the script, or `None` (skip) when the backends are not running.
fn env() -> Option<(SocketAddr, String, String)> {
    let dns = std::env::var("SWITCHBOARD_DNS").ok();
    let script = std::env::var("SWITCHBOARD_BACKENDS").ok();
    let zone = std::env::var("SWITCHBOARD_DNS_ZONE").unwrap_or_else(|_| "test.switchboard".into());
    match (dns, script) {
        (Some(d), Some(s)) => Some((d.parse().expect("SWITCHBOARD_DNS"), s, zone)),
        _ => {
            assert!(
                std::env::var("SWITCHBOARD_REQUIRE_BACKENDS").is_err(),
                "SWITCHBOARD_DNS is not set; run integration/backends.sh start dns"
            );
            eprintln!("DNS backend not running (integration/backends.sh start dns); skipped");
            None
        }
    }
}

async fn script(script: &str, args: &[&str]) {
    let out = tokio::process::Command::new(script)
        .args(args)
        .output()
        .await
        .expect("run backends.sh");
    assert!(
        out.status.success(),
        "backends.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn until<T: Clone + std::fmt::Debug>(v: &mut Var<T>, pred: impl Fn(&T) -> bool) -> T {
    switchboard_namer_core::testing::until(v, WAIT, pred).await
}

fn namer(dns: SocketAddr) -> DnsSrvNamer {
    DnsSrvNamer::new(vec![dns], REFRESH, Path::read("/#/io.l5d.dnssrv").unwrap()).unwrap()
}

#[tokio::test]
async fn register_change_deregister() {
    let Some((dns, sh, zone)) = env() else { return };
    let _turn = TURN.lock().await;
    let name = format!("_web._tcp.{zone}");
    script(
        &sh,
        &[
            "dns-srv",
            "set",
            &name,
            "0",
            "10",
            "8081",
            "127.0.0.1",
            "0",
            "30",
            "8082",
            "127.0.0.1",
        ],
    )
    .await;
    let n = namer(dns);
    let mut tree = n.lookup(&Path::utf8([name.as_str(), "rest"]));
    let t = until(&mut tree, |t| matches!(t, State::Ok(NameTree::Leaf(_)))).await;
    let State::Ok(NameTree::Leaf(Name::Bound(b))) = t else {
        unreachable!()
    };
    assert_eq!(b.id.show(), format!("/#/io.l5d.dnssrv/{name}"));
    assert_eq!(b.residual.show(), "/rest");
    let mut addr = b.addr.clone();
    until(&mut addr, |a| ports(a) == [(8081, 10.0), (8082, 30.0)]).await;

    // Churn: the address set changes, the tree does not.
    script(
        &sh,
        &["dns-srv", "set", &name, "0", "10", "8081", "127.0.0.1"],
    )
    .await;
    until(&mut addr, |a| ports(a) == [(8081, 10.0)]).await;
    assert!(!tree.has_changed(), "churn republished the tree");
    assert!(matches!(tree.get(), State::Ok(NameTree::Leaf(_))));

    // Only the best priority group.
    script(
        &sh,
        &[
            "dns-srv",
            "set",
            &name,
            "10",
            "1",
            "9001",
            "127.0.0.1",
            "0",
            "1",
            "9000",
            "127.0.0.1",
        ],
    )
    .await;
    until(&mut addr, |a| ports(a) == [(9000, 1.0)]).await;

    // Gone: NXDOMAIN is Neg, so a dtab falls back.
    script(&sh, &["dns-srv", "clear", &name]).await;
    until(&mut tree, |t| *t == State::Ok(NameTree::Neg)).await;
    let st = n.state();
    assert!(st["services"][name.as_str()]["state"] == "neg", "{st}");
}

#[tokio::test]
async fn unknown_name_is_neg() {
    let Some((dns, _, zone)) = env() else { return };
    let n = namer(dns);
    let mut tree = n.lookup(&Path::utf8([format!("_none._tcp.{zone}")]));
    until(&mut tree, |t| *t == State::Ok(NameTree::Neg)).await;
}

#[tokio::test]
async fn server_outage_keeps_the_last_good_set() {
    let Some((dns, sh, zone)) = env() else { return };
    let _turn = TURN.lock().await;
    let name = format!("_outage._tcp.{zone}");
    script(
        &sh,
        &["dns-srv", "set", &name, "0", "5", "7001", "127.0.0.1"],
    )
    .await;
    let n = namer(dns);
    let mut tree = n.lookup(&Path::utf8([name.as_str()]));
    let t = until(&mut tree, |t| matches!(t, State::Ok(NameTree::Leaf(_)))).await;
    let State::Ok(NameTree::Leaf(Name::Bound(b))) = t else {
        unreachable!()
    };
    let mut addr = b.addr.clone();
    until(&mut addr, |a| ports(a) == [(7001, 5.0)]).await;

    script(&sh, &["stop", "dns"]).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !n.state()["services"][name.as_str()]["stale"]
        .as_bool()
        .unwrap_or(false)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never marked stale: {}",
            n.state()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        ports(&addr.get()),
        [(7001, 5.0)],
        "the last good set was dropped"
    );
    assert!(matches!(tree.get(), State::Ok(NameTree::Leaf(_))));

    // Back, with a change: it flows again and the set is fresh.
    script(&sh, &["start", "dns"]).await;
    script(
        &sh,
        &["dns-srv", "set", &name, "0", "5", "7002", "127.0.0.1"],
    )
    .await;
    until(&mut addr, |a| ports(a) == [(7002, 5.0)]).await;
    assert_eq!(n.state()["services"][name.as_str()]["stale"], false);
}
