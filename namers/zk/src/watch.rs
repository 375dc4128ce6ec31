//! The task that keeps one [`ServiceCell`] up to date with one ZooKeeper node: a serverset
//! (its `member_*` children, each child's data watched) or a leader-election group (its
//! children, the leader's data watched).
//!
//! - node missing: the cell is Neg and an exists-watch waits for the node to appear;
//! - connection lost: the cell keeps its last good state, marked stale; on reconnection (same
//!   session) the children are listed again, the client having re-armed its watches;
//! - session gone (expired, closed): everything is read again with the next session;
//! - a read that fails is retried with jittered backoff, the cell keeping its last good state;
//! - the task ends, and the cell is released, once nobody observes the cell (checked at every
//!   wake-up and every [`LIVENESS_CHECK`]).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use switchboard_namer_core::service::ServiceCell;
use switchboard_namer_core::{Endpoint, Path};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use zookeeper_client as zk;

use crate::data::{self, MEMBER_PREFIX};
use crate::session::{Backoff, Conn, LIVENESS_CHECK};
use crate::Inner;

/// How long one host name resolution of a member may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a watched node is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    /// A serverset: `member_*` children, `endpoint` selects an additional endpoint instead of
    /// the service endpoint, `shard` keeps only members of that shard.
    Serverset {
        zk_path: String,
        endpoint: Option<String>,
        shard: Option<i32>,
    },
    /// A leader-election group: the child with the lowest sequence number is the leader.
    Leader { zk_path: String },
}

impl Target {
    pub fn zk_path(&self) -> &str {
        match self {
            Target::Serverset { zk_path, .. } | Target::Leader { zk_path } => zk_path,
        }
    }
}

/// Aborts a one-shot watch's waiting task when dropped (which drops the client's watcher).
struct WatchGuard {
    serial: u64,
    task: JoinHandle<()>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
enum Watched {
    /// The node's children (or its existence, while it is missing).
    Node,
    /// A child's data.
    Child(String),
}

struct NodeEvent {
    gen: u64,
    serial: u64,
    watched: Watched,
    event: zk::WatchedEvent,
}

struct Child {
    /// Resolved addresses this child contributes; `Err` when its data is unusable.
    addrs: Result<Vec<SocketAddr>, String>,
    watch: WatchGuard,
}

pub(crate) struct ServiceWatch {
    inner: Arc<Inner>,
    key: Path,
    target: Target,
    cell: Arc<ServiceCell>,
    tx: mpsc::UnboundedSender<NodeEvent>,
    /// The session generation everything below belongs to.
    gen: u64,
    client: Option<zk::Client>,
    states: Option<zk::StateWatcher>,
    disconnected: bool,
    next_serial: u64,
    node_watch: Option<WatchGuard>,
    /// The node's children as last listed; `None` while the node does not exist.
    children: Option<Vec<String>>,
    members: HashMap<String, Child>,
    /// The children must be listed again.
    list_dirty: bool,
    /// Something changed since the last publication.
    dirty: bool,
    retry_at: Option<Instant>,
    backoff: Backoff,
}

impl ServiceWatch {
    /// Starts watching; the task runs until the cell is unobserved or the namer is dropped.
    pub fn spawn(inner: Arc<Inner>, key: Path, target: Target, cell: Arc<ServiceCell>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let w = ServiceWatch {
            inner,
            key,
            target,
            cell,
            tx,
            gen: u64::MAX,
            client: None,
            states: None,
            disconnected: false,
            next_serial: 0,
            node_watch: None,
            children: None,
            members: HashMap::new(),
            list_dirty: true,
            dirty: true,
            retry_at: None,
            backoff: crate::session::backoff(),
        };
        tokio::spawn(w.run(rx));
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<NodeEvent>) {
        let kind = self.inner.kind;
        self.inner.stats.watch_opens.fetch_add(1, Relaxed);
        tracing::debug!(namer = kind, service = %self.key, zk_path = self.target.zk_path(), "watch started");
        let mut conn_rx = self.inner.session.subscribe();
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut conn_dirty = true;
        // The first release check waits for a first read or wake-up: the lookup that started
        // this task takes its tree from the cell just after starting it.
        let mut started = false;
        loop {
            if *shutdown.borrow()
                || (started && self.inner.services.release_if_unobserved(&self.key))
            {
                break;
            }
            started = true;
            if conn_dirty {
                conn_dirty = false;
                let conn = conn_rx.borrow_and_update().clone();
                self.adopt(conn);
            }
            if self.should_sync() {
                if let Some(client) = self.client.clone() {
                    let limit = self.inner.session.session_timeout() * 2 + Duration::from_secs(30);
                    match tokio::time::timeout(limit, self.sync(&client)).await {
                        Ok(Ok(())) => {
                            self.backoff.reset();
                            self.retry_at = None;
                        }
                        Ok(Err(e)) => self.read_failed(e),
                        Err(_) => self.read_failed(zk::Error::Timeout),
                    }
                    // Events may have arrived meanwhile: look again before waiting.
                    continue;
                }
            }
            let mut wait = LIVENESS_CHECK;
            if let (Some(at), Some(_), false) = (self.retry_at, &self.client, self.disconnected) {
                wait = wait.min(at.saturating_duration_since(Instant::now()));
            }
            tokio::select! {
                ev = rx.recv() => {
                    if let Some(ev) = ev {
                        self.on_event(ev);
                    }
                }
                st = next_state(&mut self.states) => self.on_state(st),
                r = conn_rx.changed() => {
                    if r.is_err() {
                        break;
                    }
                    conn_dirty = true;
                }
                r = shutdown.changed() => {
                    if r.is_err() {
                        break;
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
        self.inner.stats.watch_closes.fetch_add(1, Relaxed);
        tracing::debug!(namer = kind, service = %self.key, "watch stopped");
    }

    fn should_sync(&self) -> bool {
        self.client.is_some()
            && !self.disconnected
            && (self.dirty || self.list_dirty)
            && self.retry_at.is_none_or(|t| Instant::now() >= t)
    }

    /// Forgets every watch and everything read (they belong to a session).
    fn clear(&mut self) {
        self.node_watch = None;
        self.members.clear();
        self.children = None;
        self.list_dirty = true;
        self.dirty = true;
        self.retry_at = None;
    }

    /// Takes up a newly published session snapshot.
    fn adopt(&mut self, conn: Conn) {
        if conn.gen == self.gen {
            return;
        }
        self.gen = conn.gen;
        self.clear();
        self.disconnected = false;
        match conn.client {
            Some(client) => {
                let states = client.state_watcher();
                let st = states.peek_state();
                self.client = Some(client);
                self.states = Some(states);
                self.on_state(st);
            }
            None => {
                self.client = None;
                self.states = None;
                if let Some(e) = conn.error {
                    self.fail(e);
                }
            }
        }
    }

    fn fail(&self, msg: impl Into<String>) {
        let msg = msg.into();
        self.inner.stats.errors.fetch_add(1, Relaxed);
        tracing::debug!(namer = self.inner.kind, service = %self.key, error = %msg, "serving the last good state");
        self.cell.set_error(msg);
    }

    fn on_state(&mut self, st: zk::SessionState) {
        if st.is_terminated() {
            self.session_lost(st);
        } else if st == zk::SessionState::Disconnected {
            if !self.disconnected {
                self.disconnected = true;
                self.fail(format!(
                    "lost the connection to ZooKeeper at {}; reconnecting",
                    self.inner.session.connect_string()
                ));
            }
        } else if self.disconnected {
            // Reconnected within the session: the client re-armed our watches; list again to
            // refresh (and un-stale) the cell.
            self.disconnected = false;
            self.list_dirty = true;
            self.dirty = true;
            self.retry_at = None;
        }
    }

    /// The session ended for good; wait for the next one (the session task starts it).
    fn session_lost(&mut self, st: zk::SessionState) {
        if self.client.is_none() {
            return;
        }
        self.client = None;
        self.states = None;
        self.node_watch = None;
        self.members.clear();
        self.fail(format!("ZooKeeper session {st}; starting a new one"));
    }

    fn read_failed(&mut self, e: zk::Error) {
        match e {
            zk::Error::SessionExpired | zk::Error::ClientClosed | zk::Error::AuthFailed => {
                self.session_lost(match e {
                    zk::Error::AuthFailed => zk::SessionState::AuthFailed,
                    zk::Error::ClientClosed => zk::SessionState::Closed,
                    _ => zk::SessionState::Expired,
                });
            }
            e => {
                let delay = self.backoff.next_delay();
                self.retry_at = Some(Instant::now() + delay);
                tracing::warn!(namer = self.inner.kind, service = %self.key, zk_path = self.target.zk_path(), error = %e, retry_in = ?delay, "ZooKeeper read failed");
                self.fail(format!(
                    "reading {} from ZooKeeper failed: {e}",
                    self.target.zk_path()
                ));
            }
        }
    }

    fn on_event(&mut self, ev: NodeEvent) {
        if ev.gen != self.gen {
            return;
        }
        if ev.event.event_type == zk::EventType::Session {
            // One-shot watches only see the session end.
            if ev.event.session_state.is_terminated() {
                self.session_lost(ev.event.session_state);
            }
            return;
        }
        match ev.watched {
            Watched::Node => {
                if self.node_watch.as_ref().map(|w| w.serial) == Some(ev.serial) {
                    self.node_watch = None;
                    self.list_dirty = true;
                    self.dirty = true;
                }
            }
            Watched::Child(name) => {
                if self.members.get(&name).map(|c| c.watch.serial) == Some(ev.serial) {
                    self.members.remove(&name);
                    self.dirty = true;
                }
            }
        }
    }

    /// Waits for a one-shot watch in a task of its own, reporting it on the event channel.
    fn spawn_watch(&mut self, w: zk::OneshotWatcher, watched: Watched) -> WatchGuard {
        let serial = self.next_serial;
        self.next_serial += 1;
        let gen = self.gen;
        let tx = self.tx.clone();
        let task = tokio::spawn(async move {
            let event = w.changed().await;
            let _ = tx.send(NodeEvent {
                gen,
                serial,
                watched,
                event,
            });
        });
        WatchGuard { serial, task }
    }

    /// Lists the node if needed, reads the data of children not read yet (each with a watch),
    /// and publishes the result.
    async fn sync(&mut self, client: &zk::Client) -> Result<(), zk::Error> {
        let path = self.target.zk_path().to_string();
        if self.list_dirty {
            let mut raced = 0;
            loop {
                match client.get_and_watch_children(&path).await {
                    Ok((children, _stat, w)) => {
                        self.node_watch = Some(self.spawn_watch(w, Watched::Node));
                        self.children = Some(children);
                        break;
                    }
                    Err(zk::Error::NoNode) => match client.check_and_watch_stat(&path).await {
                        Ok((None, w)) => {
                            self.node_watch = Some(self.spawn_watch(w, Watched::Node));
                            self.children = None;
                            break;
                        }
                        Ok((Some(_), _)) => {
                            // Created between the two reads: list it.
                            raced += 1;
                            if raced > 5 {
                                return Err(zk::Error::UnexpectedError(format!(
                                    "{path} keeps being created and deleted"
                                )));
                            }
                        }
                        Err(e) => return Err(e),
                    },
                    Err(e) => return Err(e),
                }
            }
            self.list_dirty = false;
        }

        // The children whose data matters.
        let wanted: Vec<String> = match (&self.children, &self.target) {
            (None, _) => Vec::new(),
            (Some(ch), Target::Serverset { .. }) => ch
                .iter()
                .filter(|c| c.starts_with(MEMBER_PREFIX))
                .cloned()
                .collect(),
            (Some(ch), Target::Leader { .. }) => data::leader_of(ch)
                .map(str::to_string)
                .into_iter()
                .collect(),
        };
        let keep: HashSet<&str> = wanted.iter().map(String::as_str).collect();
        self.members.retain(|name, _| keep.contains(name.as_str()));
        let missing: Vec<String> = wanted
            .iter()
            .filter(|n| !self.members.contains_key(*n))
            .cloned()
            .collect();
        // Send all reads before awaiting any: the client pipelines them in order.
        let reads: Vec<_> = missing
            .iter()
            .map(|name| client.get_and_watch_data(&data::child_path(&path, name)))
            .collect();
        for (name, read) in missing.into_iter().zip(reads) {
            match read.await {
                Ok((bytes, _stat, w)) => {
                    let addrs = self.child_addrs(&name, &bytes).await;
                    let watch = self.spawn_watch(w, Watched::Child(name.clone()));
                    self.members.insert(name, Child { addrs, watch });
                }
                // Deleted since the listing: list again rather than publish a state that
                // never was (a vanished leader is not "no leader").
                Err(zk::Error::NoNode) => self.list_dirty = true,
                Err(e) => return Err(e),
            }
        }
        if self.list_dirty {
            return Ok(());
        }

        self.publish(&wanted);
        self.dirty = false;
        Ok(())
    }

    /// What one child's data contributes (host names resolved).
    async fn child_addrs(&self, name: &str, bytes: &[u8]) -> Result<Vec<SocketAddr>, String> {
        let kind = self.inner.kind;
        let zk_path = self.target.zk_path();
        let hosts: Vec<(String, u16)> = match &self.target {
            Target::Serverset {
                endpoint, shard, ..
            } => {
                let selected =
                    data::parse_member(bytes).and_then(|m| m.select(endpoint.as_deref(), *shard));
                match selected {
                    Ok(hp) => hp.into_iter().collect(),
                    Err(e) => {
                        tracing::warn!(namer = kind, zk_path, member = name, error = %e, "malformed serverset member skipped");
                        return Err(e);
                    }
                }
            }
            Target::Leader { .. } => match data::parse_leader_data(bytes) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(namer = kind, zk_path, leader = name, error = %e, "malformed leader data");
                    return Err(format!("{}: {e}", data::child_path(zk_path, name)));
                }
            },
        };
        let mut out = Vec::new();
        for (host, port) in hosts {
            out.extend(resolve(kind, zk_path, name, &host, port).await);
        }
        Ok(out)
    }

    fn publish(&self, wanted: &[String]) {
        self.inner.stats.updates.fetch_add(1, Relaxed);
        if self.children.is_none() {
            tracing::debug!(
                namer = self.inner.kind,
                zk_path = self.target.zk_path(),
                "node missing: neg"
            );
            self.cell.set_neg();
            return;
        }
        match &self.target {
            Target::Serverset { .. } => {
                let eps: Vec<Endpoint> = self
                    .members
                    .values()
                    .filter_map(|c| c.addrs.as_ref().ok())
                    .flatten()
                    .map(|a| Endpoint::new(*a))
                    .collect();
                tracing::debug!(
                    namer = self.inner.kind,
                    zk_path = self.target.zk_path(),
                    endpoints = eps.len(),
                    "serverset updated"
                );
                self.cell.set_endpoints(eps);
            }
            Target::Leader { .. } => {
                match wanted.first().and_then(|leader| self.members.get(leader)) {
                    // No leader.
                    None => self.cell.set_neg(),
                    Some(Child { addrs: Ok(a), .. }) => {
                        self.cell
                            .set_endpoints(a.iter().map(|a| Endpoint::new(*a)).collect());
                    }
                    Some(Child { addrs: Err(e), .. }) => self.fail(e.clone()),
                }
            }
        }
    }
}

/// The next session state, or never when there is no client.
async fn next_state(states: &mut Option<zk::StateWatcher>) -> zk::SessionState {
    match states {
        Some(s) => s.changed().await,
        None => std::future::pending().await,
    }
}

/// A member's host: an IP literal as is, a name through the system resolver (an unresolvable
/// name is left out with a warning).
async fn resolve(
    kind: &str,
    zk_path: &str,
    member: &str,
    host: &str,
    port: u16,
) -> Vec<SocketAddr> {
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return vec![SocketAddr::new(ip, port)];
    }
    match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(addrs)) => {
            let v: Vec<SocketAddr> = addrs.collect();
            if v.is_empty() {
                tracing::warn!(
                    namer = kind,
                    zk_path,
                    member,
                    host,
                    "host resolves to no address; left out"
                );
            }
            v
        }
        Ok(Err(e)) => {
            tracing::warn!(namer = kind, zk_path, member, host, error = %e, "unresolvable host left out");
            Vec::new()
        }
        Err(_) => {
            tracing::warn!(
                namer = kind,
                zk_path,
                member,
                host,
                "host resolution timed out; left out"
            );
            Vec::new()
        }
    }
}
