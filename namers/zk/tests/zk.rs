//! The ZooKeeper namers against a REAL ZooKeeper:
//!
//! ```text
//! integration/backends.sh start zk
//! eval "$(integration/backends.sh env)"   # SWITCHBOARD_ZK, SWITCHBOARD_BACKENDS
//! cargo test -p switchboard-namer-zk
//! ```
//!
//! Without `SWITCHBOARD_ZK` each test prints a notice and passes, unless
//! `SWITCHBOARD_REQUIRE_BACKENDS=1`, which makes it fail. Every test writes under its own
//! `/switchboard-test/<unique>` root and waits for what it expects with a bounded timeout,
//! never asserting on how fast something happens. All tests take one process-wide lock: the
//! restart test stops the shared server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use switchboard_namer_core::{Activity, Addr, Bound, Name, NameTree, Namer, Path, State, Var};
use switchboard_namer_zk::{ServersetsNamer, ZkLeaderNamer, ZkOptions};
use tokio::sync::Mutex;
use zookeeper_client as zk;

static LOCK: Mutex<()> = Mutex::const_new(());

/// Bound on waiting for ZooKeeper changes to reach a namer.
const WAIT: Duration = Duration::from_secs(10);
/// Bound on waits that span a ZooKeeper restart and a session expiry.
const RESTART_WAIT: Duration = Duration::from_secs(60);

static PERSISTENT: &zk::CreateOptions<'static> =
    &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
static SEQUENTIAL: &zk::CreateOptions<'static> =
    &zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
static EPHEMERAL_SEQUENTIAL: &zk::CreateOptions<'static> =
    &zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());

fn required() -> bool {
    std::env::var("SWITCHBOARD_REQUIRE_BACKENDS").is_ok_and(|v| v == "1")
}

/// `$SWITCHBOARD_ZK`, or `None` (after a notice) when the test should be skipped.
fn zk_addr(test: &str) -> Option<String> {
    match std::env::var("SWITCHBOARD_ZK") {
        Ok(a) if !a.trim().is_empty() => Some(a.trim().to_string()),
        _ => {
            assert!(
                !required(),
                "{test}: SWITCHBOARD_ZK is not set but SWITCHBOARD_REQUIRE_BACKENDS=1 \
                 (run integration/backends.sh start zk; eval \"$(integration/backends.sh env)\")"
            );
            eprintln!(
                "skipping {test}: SWITCHBOARD_ZK is not set \
                 (integration/backends.sh start zk; eval \"$(integration/backends.sh env)\")"
            );
            None
        }
    }
}

/// `$SWITCHBOARD_BACKENDS` (the backends.sh script), or `None` when the test should be skipped.
fn backends_script(test: &str) -> Option<String> {
    match std::env::var("SWITCHBOARD_BACKENDS") {
        Ok(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => {
            assert!(
                !required(),
                "{test}: SWITCHBOARD_BACKENDS is not set but SWITCHBOARD_REQUIRE_BACKENDS=1"
            );
            eprintln!("skipping {test}: SWITCHBOARD_BACKENDS is not set");
            None
        }
    }
}

fn zk_addrs(addr: &str) -> Vec<(String, u16)> {
    addr.split(',')
        .map(|hp| {
            let (h, p) = hp
                .rsplit_once(':')
                .unwrap_or_else(|| panic!("SWITCHBOARD_ZK must be host:port, got {addr}"));
            let port = p
                .parse()
                .unwrap_or_else(|_| panic!("bad port in SWITCHBOARD_ZK={addr}"));
            (h.to_string(), port)
        })
        .collect()
}

fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "t{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn path(s: &str) -> Path {
    Path::read(s).unwrap_or_else(|e| panic!("bad path {s}: {e:?}"))
}

fn ss_prefix() -> Path {
    path("/#/io.l5d.serversets")
}

/// Serverset member JSON.
fn member(port: u16, http: Option<u16>, shard: Option<u32>, status: Option<&str>) -> String {
    let mut v = json!({
        "serviceEndpoint": {"host": "127.0.0.1", "port": port},
        "additionalEndpoints": {},
    });
    if let Some(h) = http {
        v["additionalEndpoints"]["http"] = json!({"host": "127.0.0.1", "port": h});
    }
    if let Some(s) = shard {
        v["shard"] = json!(s);
    }
    if let Some(s) = status {
        v["status"] = json!(s);
    }
    v.to_string()
}

fn alive(port: u16) -> String {
    member(port, None, None, Some("ALIVE"))
}

async fn connect(addr: &str) -> zk::Client {
    zk::Client::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connecting to ZooKeeper at {addr}: {e}"))
}

/// A test's own ZooKeeper client and root node.
struct Zk {
    client: zk::Client,
    root: String,
}

impl Zk {
    async fn new(addr: &str) -> Zk {
        Zk::with_root(addr, format!("/switchboard-test/{}", unique())).await
    }

    async fn with_root(addr: &str, root: String) -> Zk {
        let client = connect(addr).await;
        client
            .mkdir(&root, PERSISTENT)
            .await
            .unwrap_or_else(|e| panic!("mkdir {root}: {e}"));
        Zk { client, root }
    }

    fn abs(&self, rel: &str) -> String {
        format!("{}{rel}", self.root)
    }

    /// The lookup path of `rel` (`/switchboard-test/<unique><rel>`).
    fn path(&self, rel: &str) -> Path {
        path(&self.abs(rel))
    }

    async fn mkdir(&self, rel: &str) {
        let p = self.abs(rel);
        self.client
            .mkdir(&p, PERSISTENT)
            .await
            .unwrap_or_else(|e| panic!("mkdir {p}: {e}"));
    }

    /// Creates node `rel` (its parent must exist) holding `data`.
    async fn put(&self, rel: &str, data: &str) {
        let p = self.abs(rel);
        self.client
            .create(&p, data.as_bytes(), PERSISTENT)
            .await
            .unwrap_or_else(|e| panic!("create {p}: {e}"));
    }

    async fn set(&self, rel: &str, data: &str) {
        let p = self.abs(rel);
        self.client
            .set_data(&p, data.as_bytes(), None)
            .await
            .unwrap_or_else(|e| panic!("set {p}: {e}"));
    }

    /// Adds a persistent sequential `member_` child of `dir` holding `data`; returns its
    /// path relative to the root.
    async fn member(&self, dir: &str, data: &str) -> String {
        let prefix = self.abs(&format!("{dir}/member_"));
        let (_, seq) = self
            .client
            .create(&prefix, data.as_bytes(), SEQUENTIAL)
            .await
            .unwrap_or_else(|e| panic!("create {prefix}: {e}"));
        format!("{dir}/member_{seq}")
    }

    async fn delete(&self, rel: &str) {
        let p = self.abs(rel);
        self.client
            .delete(&p, None)
            .await
            .unwrap_or_else(|e| panic!("delete {p}: {e}"));
    }
}

type Tree = State<NameTree<Name>>;

fn bound(s: &Tree) -> Option<Bound> {
    match s {
        State::Ok(NameTree::Leaf(Name::Bound(b))) => Some(b.clone()),
        _ => None,
    }
}

fn is_bound(s: &Tree) -> bool {
    bound(s).is_some()
}

fn is_neg(s: &Tree) -> bool {
    matches!(s, State::Ok(NameTree::Neg))
}

fn ports(a: &Addr) -> Vec<u16> {
    match a {
        Addr::Bound { endpoints, .. } => {
            let mut v: Vec<u16> = endpoints.iter().map(|e| e.addr.port()).collect();
            v.sort_unstable();
            v
        }
        _ => Vec::new(),
    }
}

fn has_ports(want: &[u16]) -> impl Fn(&Addr) -> bool + '_ {
    move |a| matches!(a, Addr::Bound { .. }) && ports(a) == want
}

/// Waits (at most `limit`) until the lookup's state satisfies `pred`; returns that state.
async fn wait_tree(
    act: &mut Activity<NameTree<Name>>,
    what: &str,
    limit: Duration,
    pred: impl Fn(&Tree) -> bool,
) -> Tree {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let s = act.get();
        if pred(&s) {
            return s;
        }
        match tokio::time::timeout_at(deadline, act.changed()).await {
            Ok(true) => {}
            Ok(false) => panic!("{what}: the lookup can no longer change; last state {s:?}"),
            Err(_) => panic!("{what}: not seen within {limit:?}; last state {s:?}"),
        }
    }
}

/// Waits (at most `limit`) until the address set satisfies `pred`; returns it.
async fn wait_addr(
    addr: &mut Var<Addr>,
    what: &str,
    limit: Duration,
    pred: impl Fn(&Addr) -> bool,
) -> Addr {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let a = addr.get();
        if pred(&a) {
            return a;
        }
        match tokio::time::timeout_at(deadline, addr.changed()).await {
            Ok(true) => {}
            Ok(false) => panic!("{what}: the address set can no longer change; last {a:?}"),
            Err(_) => panic!("{what}: not seen within {limit:?}; last {a:?}"),
        }
    }
}

/// Waits (at most `limit`, polling) until `cond` holds; for values that are not watched
/// (the namer's state JSON).
async fn wait_until(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not seen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the lookup has a new state nobody has seen (checked without waiting).
async fn has_new_state(act: &mut Activity<NameTree<Name>>) -> bool {
    tokio::time::timeout(Duration::ZERO, act.changed())
        .await
        .is_ok()
}

/// Looks `rel` up and waits for a bound name; returns the lookup, the name and its addresses.
async fn lookup_bound(
    namer: &dyn Namer,
    zk: &Zk,
    rel: &str,
    limit: Duration,
) -> (Activity<NameTree<Name>>, Bound, Var<Addr>) {
    let mut act = namer.lookup(&zk.path(rel));
    let st = wait_tree(&mut act, &format!("{rel} bound"), limit, is_bound).await;
    let b = bound(&st).expect("bound");
    let addr = b.addr.clone();
    (act, b, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serverset_members_come_and_go_without_changing_the_tree() {
    let _lock = LOCK.lock().await;
    let Some(addr) = zk_addr("serverset_members_come_and_go_without_changing_the_tree") else {
        return;
    };
    let zk = Zk::new(&addr).await;
    zk.mkdir("/web").await;
    let namer = ServersetsNamer::new(zk_addrs(&addr), ss_prefix());

    // An empty serverset is Neg (and so is every shorter prefix).
    let mut act = namer.lookup(&zk.path("/web"));
    wait_tree(&mut act, "empty serverset", WAIT, is_neg).await;

    let m1 = zk.member("/web", &alive(8080)).await;
    let st = wait_tree(&mut act, "first member", WAIT, is_bound).await;
    let b = bound(&st).expect("bound");
    assert_eq!(b.id, ss_prefix().concat(&zk.path("/web")));
    assert!(b.residual.is_empty(), "{:?}", b.residual);
    let mut a = b.addr.clone();
    wait_addr(&mut a, "the first member", WAIT, has_ports(&[8080])).await;

    // No status counts as alive.
    let m2 = zk.member("/web", &member(8081, None, None, None)).await;
    wait_addr(&mut a, "both members", WAIT, has_ports(&[8080, 8081])).await;
    assert!(
        !has_new_state(&mut act).await,
        "member churn must not change the tree"
    );
    assert_eq!(bound(&act.sample()).map(|x| x.id), Some(b.id.clone()));

    let state = namer.state();
    assert_eq!(state["kind"], "io.l5d.serversets");
    let svc = &state["services"][zk.abs("/web").as_str()];
    assert_eq!(svc["state"], "bound", "{state:#}");
    assert_eq!(svc["stale"].as_bool(), Some(false), "{state:#}");
    assert!(namer.stats().iter().any(|(n, v)| n == "stale" && *v == 0));

    zk.delete(&m1).await;
    wait_addr(&mut a, "one member left", WAIT, has_ports(&[8081])).await;
    zk.delete(&m2).await;
    wait_tree(&mut act, "all members gone", WAIT, is_neg).await;
    wait_addr(&mut a, "neg address set", WAIT, |x| matches!(x, Addr::Neg)).await;

    // And back.
    zk.member("/web", &alive(8082)).await;
    wait_tree(&mut act, "a member again", WAIT, is_bound).await;
    wait_addr(&mut a, "the new member", WAIT, has_ports(&[8082])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longest_serverset_prefix_wins() {
    let _lock = LOCK.lock().await;
    let Some(addr) = zk_addr("longest_serverset_prefix_wins") else {
        return;
    };
    let zk = Zk::new(&addr).await;
    zk.mkdir("/a/b").await;
    zk.member("/a/b", &alive(9000)).await;
    let namer = ServersetsNamer::new(zk_addrs(&addr), ss_prefix());

    let (mut act, b, mut a) = lookup_bound(&*namer, &zk, "/a/b/c/rest", WAIT).await;
    assert_eq!(b.id, ss_prefix().concat(&zk.path("/a/b")));
    assert_eq!(b.residual, path("/c/rest"));
    wait_addr(&mut a, "/a/b's member", WAIT, has_ports(&[9000])).await;

    // A longer serverset that appears later takes over.
    zk.mkdir("/a/b/c").await;
    zk.member("/a/b/c", &alive(9001)).await;
    let st = wait_tree(&mut act, "bound to /a/b/c", WAIT, |s| {
        bound(s).is_some_and(|b| b.residual == path("/rest"))
    })
    .await;
    let b = bound(&st).expect("bound");
    assert_eq!(b.id, ss_prefix().concat(&zk.path("/a/b/c")));
    let mut a = b.addr.clone();
    wait_addr(&mut a, "/a/b/c's member", WAIT, has_ports(&[9001])).await;

    // Nothing on the way is a serverset: Neg.
    let mut act = namer.lookup(&zk.path("/nothing/here"));
    wait_tree(&mut act, "no serverset on the path", WAIT, is_neg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_selection() {
    let _lock = LOCK.lock().await;
    let Some(addr) = zk_addr("endpoint_selection") else {
        return;
    };
    let zk = Zk::new(&addr).await;
    zk.mkdir("/web").await;
    zk.member("/web", &member(8080, Some(8081), None, Some("ALIVE")))
        .await;
    zk.member("/web", &member(8090, None, None, Some("ALIVE")))
        .await;
    let namer = ServersetsNamer::new(zk_addrs(&addr), ss_prefix());

    let (_http, b, mut a) = lookup_bound(&*namer, &zk, "/web:http/x", WAIT).await;
    assert_eq!(b.id, ss_prefix().concat(&zk.path("/web:http")));
    assert_eq!(b.residual, path("/x"));
    wait_addr(&mut a, "the http endpoints", WAIT, has_ports(&[8081])).await;

    let (_svc, _, mut a) = lookup_bound(&*namer, &zk, "/web", WAIT).await;
    wait_addr(
        &mut a,
        "the service endpoints",
        WAIT,
        has_ports(&[8080, 8090]),
    )
    .await;

    // No member has an `admin` endpoint.
    let mut act = namer.lookup(&zk.path("/web:admin"));
    wait_tree(&mut act, "unknown endpoint", WAIT, is_neg).await;

    // Not job syntax: the lookup fails, as in Linkerd.
    let mut act = namer.lookup(&zk.path("/web:a:b"));
    wait_tree(&mut act, "bad job syntax", WAIT, |s| {
        matches!(s, State::Failed(_))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_selection() {
    let _lock = LOCK.lock().await;
    let Some(addr) = zk_addr("shard_selection") else {
        return;
    };
    let zk = Zk::new(&addr).await;
    zk.mkdir("/web").await;
    zk.member("/web", &member(9000, Some(9100), Some(0), Some("ALIVE")))
        .await;
    zk.member("/web", &member(9001, Some(9101), Some(1), Some("ALIVE")))
        .await;
    let namer = ServersetsNamer::new(zk_addrs(&addr), ss_prefix());

    let (_all, _, mut a) = lookup_bound(&*namer, &zk, "/web", WAIT).await;
    wait_addr(&mut a, "all shards", WAIT, has_ports(&[9000, 9001])).await;

    let (_s1, b, mut a) = lookup_bound(&*namer, &zk, "/web#1", WAIT).await;
    assert_eq!(b.id, ss_prefix().concat(&zk.path("/web#1")));
    wait_addr(&mut a, "shard 1", WAIT, has_ports(&[9001])).await;

    let (_s0, _, mut a) = lookup_bound(&*namer, &zk, "/web:http#0", WAIT).await;
    wait_addr(&mut a, "shard 0's http endpoint", WAIT, has_ports(&[9100])).await;

    let mut act = namer.lookup(&zk.path("/web#7"));
    wait_tree(&mut act, "no such shard", WAIT, is_neg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_dead_members_are_left_out() {
    let _lock = LOCK.lock().await;
    let Some(addr) = zk_addr("malformed_and_dead_members_are_left_out") else {
        return;
    };
    let zk = Zk::new(&addr).await;
    zk.mkdir("/web").await;
    zk.member("/web", "this is not json").await;
    zk.member("/web", "").await;
    zk.member(
        "/web",
        r#"{"serviceEndpoint":{"host":"127.0.0.1","port":0}}"#,
    )
    .await;
    zk.member("/web", &member(7000, None, None, Some("DEAD")))
        .await;
    zk.member("/web", &member(7001, None, None, Some("ALIVE")))
        .await;
    // Not a member (Finagle reads only `member_*` children), whatever it holds.
    zk.put("/web/other", &alive(7002)).await;
    let namer = ServersetsNamer::new(zk_addrs(&addr), ss_prefix());

    let (_act, _, mut a) = lookup_bound(&*namer, &zk, "/web", WAIT).await;
    wait_addr(&mut a, "only the good member", WAIT, has_ports(&[7001])).await;

    // A set of nothing but bad members is Neg, not Failed.
    zk.mkdir("/bad").await;
    zk.member("/bad", "{").await;
    let mut act = namer.lookup(&zk.path("/bad"));
    wait_tree(&mut act, "only malformed members", WAIT, is_neg).await;

    // A bad member turning good is picked up (its data is watched).
    let bad = zk.member("/bad", "{}").await;
    zk.set(&bad, &alive(7003)).await;
    wait_tree(&mut act, "the repaired member", WAIT, is_bound).await;
    let b = bound(&act.sample()).expect("bound");
    let mut a = b.addr.clone();
    wait_addr(&mut a, "the repaired member", WAIT, has_ports(&[7003])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_host_names_are_resolved() {
    let _lock = LOCK.lock().await;
    let Some(addr) = zk_addr("member_host_names_are_resolved") else {
        return;
    };
    let zk = Zk::new(&addr).await;
    zk.mkdir("/web").await;
    zk.member(
        "/web",
        r#"{"serviceEndpoint":{"host":"localhost","port":7100},"status":"ALIVE"}"#,
    )
    .await;
    let namer = ServersetsNamer::new(zk_addrs(&addr), ss_prefix());
    let (_act, _, mut a) = lookup_bound(&*namer, &zk, "/web", WAIT).await;
    let got = wait_addr(&mut a, "localhost resolved", WAIT, |a| !ports(a).is_empty()).await;
    let Addr::Bound { endpoints, .. } = got else {
        unreachable!()
    };
    assert!(
        endpoints
            .iter()
            .all(|e| e.addr.port() == 7100 && e.addr.ip().is_loopback()),
        "{endpoints:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_member_goes_with_its_session() {
    let _lock = LOCK.lock().await;
    let Some(addr) = zk_addr("ephemeral_member_goes_with_its_session") else {
        return;
    };
    let zk = Zk::new(&addr).await;
    zk.mkdir("/web").await;
    let namer = ServersetsNamer::new(zk_addrs(&addr), ss_prefix());

    let owner = connect(&addr).await;
    owner
        .create(
            &zk.abs("/web/member_"),
            alive(6000).as_bytes(),
            EPHEMERAL_SEQUENTIAL,
        )
        .await
        .expect("create an ephemeral member");
    let (mut act, _, mut a) = lookup_bound(&*namer, &zk, "/web", WAIT).await;
    wait_addr(&mut a, "the ephemeral member", WAIT, has_ports(&[6000])).await;

    // Dropping the last handle closes the session; ZooKeeper deletes its ephemeral nodes.
    drop(owner);
    wait_tree(&mut act, "the ephemeral member gone", WAIT, is_neg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_leader_follows_the_lowest_sequence_number() {
    let _lock = LOCK.lock().await;
    let Some(addr) = zk_addr("zk_leader_follows_the_lowest_sequence_number") else {
        return;
    };
    let zk = Zk::new(&addr).await;
    zk.mkdir("/group").await;
    // Explicit names, so the sequence numbers are known.
    zk.put("/group/member_0000000002", &alive(7002)).await;
    zk.put("/group/member_0000000001", "127.0.0.1:7001").await;
    zk.put("/group/lock", "127.0.0.1:7999").await;
    let prefix = path("/#/io.l5d.zkLeader");
    let namer = ZkLeaderNamer::new(zk_addrs(&addr), prefix.clone());

    let (mut act, b, mut a) = lookup_bound(&*namer, &zk, "/group/extra", WAIT).await;
    assert_eq!(b.id, prefix.concat(&zk.path("/group")));
    assert_eq!(b.residual, path("/extra"));
    wait_addr(&mut a, "leader 1 (host:port)", WAIT, has_ports(&[7001])).await;

    // The leader's data is watched.
    zk.set("/group/member_0000000001", "127.0.0.1:7011").await;
    wait_addr(&mut a, "leader 1's new address", WAIT, has_ports(&[7011])).await;

    // Leader 1 leaves: member 2 (serverset JSON) leads; the tree stays.
    zk.delete("/group/member_0000000001").await;
    wait_addr(&mut a, "leader 2 (JSON)", WAIT, has_ports(&[7002])).await;
    assert!(
        !has_new_state(&mut act).await,
        "a new leader must not change the tree"
    );

    zk.delete("/group/member_0000000002").await;
    wait_tree(&mut act, "no leader", WAIT, is_neg).await;
    assert_eq!(namer.state()["kind"], "io.l5d.zkLeader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_zookeeper_fails_the_lookup() {
    let _lock = LOCK.lock().await;
    // Needs no server: nothing listens on port 1.
    let namer = ServersetsNamer::new(vec![("127.0.0.1".to_string(), 1)], ss_prefix());
    let mut act = namer.lookup(&path("/web"));
    wait_tree(&mut act, "failed lookup", WAIT, |s| {
        matches!(s, State::Failed(_))
    })
    .await;
    let state = namer.state();
    let session = state["session"].as_str().unwrap_or_default().to_string();
    assert!(session.starts_with("failed"), "{state:#}");
}

/// Stops the test ZooKeeper; starts it again when dropped unless `start` was called.
struct ZkOutage {
    script: String,
    stopped: bool,
}

async fn backends(script: &str, cmd: &str) {
    let status = tokio::process::Command::new(script)
        .args([cmd, "zk"])
        .status()
        .await
        .unwrap_or_else(|e| panic!("running {script} {cmd} zk: {e}"));
    assert!(status.success(), "{script} {cmd} zk: {status}");
}

impl ZkOutage {
    async fn stop(script: &str) -> ZkOutage {
        backends(script, "stop").await;
        ZkOutage {
            script: script.to_string(),
            stopped: true,
        }
    }

    async fn start(&mut self) {
        backends(&self.script, "start").await;
        self.stopped = false;
    }
}

impl Drop for ZkOutage {
    fn drop(&mut self) {
        if self.stopped {
            let _ = std::process::Command::new(&self.script)
                .args(["start", "zk"])
                .status();
        }
    }
}

/// `backends.sh restart zk` is `stop` then `start` (a fresh, empty server); the two halves are
/// run apart here so the namer can be looked at during the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_restart_keeps_the_last_good_set_then_recovers() {
    let _lock = LOCK.lock().await;
    let test = "zookeeper_restart_keeps_the_last_good_set_then_recovers";
    let Some(addr) = zk_addr(test) else {
        return;
    };
    let Some(script) = backends_script(test) else {
        return;
    };
    let zk = Zk::new(&addr).await;
    let root = zk.root.clone();
    zk.mkdir("/web").await;
    zk.member("/web", &alive(5000)).await;
    // A short session, so the session lost with the old server expires soon.
    let namer = ServersetsNamer::with_options(
        zk_addrs(&addr),
        ss_prefix(),
        ZkOptions {
            session_timeout: Duration::from_secs(4),
        },
    );
    let (mut act, b, mut a) = lookup_bound(&*namer, &zk, "/web", WAIT).await;
    wait_addr(
        &mut a,
        "the member before the restart",
        WAIT,
        has_ports(&[5000]),
    )
    .await;
    let key = zk.abs("/web");
    drop(zk);

    let mut outage = ZkOutage::stop(&script).await;
    wait_until(
        "the service marked stale during the outage",
        RESTART_WAIT,
        || namer.state()["services"][key.as_str()]["stale"].as_bool() == Some(true),
    )
    .await;
    // The last good set and the bound tree stay.
    assert_eq!(ports(&a.sample()), vec![5000]);
    assert_eq!(bound(&act.sample()).map(|x| x.id), Some(b.id.clone()));
    assert!(
        namer.stats().iter().any(|(n, v)| n == "stale" && *v >= 1),
        "{:?}",
        namer.stats()
    );

    outage.start().await;
    // The restarted server is empty: register again; the namer must see it (no lost watch,
    // a new session after the old one expired).
    let zk = Zk::with_root(&addr, root).await;
    zk.mkdir("/web").await;
    zk.member("/web", &alive(5001)).await;
    wait_addr(
        &mut a,
        "the member added after the restart",
        RESTART_WAIT,
        has_ports(&[5001]),
    )
    .await;
    wait_tree(&mut act, "bound after the restart", RESTART_WAIT, is_bound).await;
    wait_until("fresh after the restart", WAIT, || {
        namer.state()["services"][key.as_str()]["stale"].as_bool() == Some(false)
    })
    .await;

    // Watches work on the new session too.
    zk.member("/web", &alive(5002)).await;
    wait_addr(
        &mut a,
        "a second member after the restart",
        WAIT,
        has_ports(&[5001, 5002]),
    )
    .await;
}
