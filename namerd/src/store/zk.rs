//! `io.l5d.zk`: a namespace is the znode `<pathPrefix>/<ns>` holding the dtab text; its version
//! is the znode's mzxid (which, unlike the data version, never repeats after a delete and
//! create). A conditional write reads the znode's stat and writes with its data version, so a
//! write between the two fails as ZooKeeper's BadVersion. Nodes are created with the configured
//! `acls` after authenticating with `authInfo`. One task holds a session, reads the prefix and
//! follows it with a persistent recursive watch; after a disconnect or a new session it reads
//! everything again (ZooKeeper does not replay events missed while disconnected).

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use switchboard_namer_core::{Dtab, Updater};
use tokio::sync::Mutex;
use zookeeper_client as zk;

use super::{
    key_of, ns_of, Entry, Published, StoreError, StoreState, TaskGuard, CALL_TIMEOUT,
    MAX_NAMESPACES,
};

/// Linkerd's default znode prefix.
pub const DEFAULT_PATH_PREFIX: &str = "/dtabs";
/// Linkerd's default session timeout.
pub const DEFAULT_SESSION_TIMEOUT_MS: u64 = 10_000;

/// One configured ACL: scheme, id and permissions from `crwda`.
#[derive(Clone, Debug)]
pub struct AclSpec {
    pub scheme: String,
    pub id: String,
    pub perms: String,
}

/// Turns `crwda` letters into a permission; the letter that is not one of them.
pub fn permission(perms: &str) -> Result<zk::Permission, char> {
    let mut p = zk::Permission::NONE;
    for c in perms.chars() {
        p = p | match c {
            'c' => zk::Permission::CREATE,
            'r' => zk::Permission::READ,
            'w' => zk::Permission::WRITE,
            'd' => zk::Permission::DELETE,
            'a' => zk::Permission::ADMIN,
            other => return Err(other),
        };
    }
    Ok(p)
}

pub struct ZkConfig {
    pub connect: String,
    pub prefix: String,
    pub session_timeout: Duration,
    pub auth: Option<(String, Vec<u8>)>,
    pub acls: Vec<AclSpec>,
}

struct Inner {
    cfg: ZkConfig,
    acls: Vec<zk::Acl>,
    client: Mutex<Option<zk::Client>>,
    published: Published,
}

pub struct ZkStore {
    inner: Arc<Inner>,
    _task: TaskGuard,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("ZooKeeper {what}: {e}"))
}

async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, zk::Error>>,
) -> Result<Result<T, zk::Error>, StoreError> {
    tokio::time::timeout(CALL_TIMEOUT, f)
        .await
        .map_err(|_| unavailable(what, format!("no answer within {CALL_TIMEOUT:?}")))
}

impl ZkStore {
    pub fn new(cfg: ZkConfig) -> ZkStore {
        let acls = if cfg.acls.is_empty() {
            zk::Acls::anyone_all().to_vec()
        } else {
            cfg.acls
                .iter()
                .map(|a| {
                    zk::Acl::new(
                        permission(&a.perms).unwrap_or(zk::Permission::ALL),
                        zk::AuthId::new(&a.scheme, &a.id),
                    )
                })
                .collect()
        };
        let inner = Arc::new(Inner {
            cfg,
            acls,
            client: Mutex::new(None),
            published: Published::new(),
        });
        let task = tokio::spawn(watch(Arc::downgrade(&inner))).abort_handle();
        ZkStore {
            inner,
            _task: TaskGuard(task),
        }
    }

    pub(crate) fn published(&self) -> &Updater<StoreState> {
        &self.inner.published.up
    }

    pub fn describe(&self) -> String {
        format!(
            "io.l5d.zk at {} under {}",
            self.inner.cfg.connect, self.inner.cfg.prefix
        )
    }

    pub async fn create(&self, ns: &str, dtab: &Dtab) -> Result<u64, StoreError> {
        let c = self.inner.client().await?;
        let path = key_of(&self.inner.cfg.prefix, ns);
        let text = dtab.show();
        let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::new(&self.inner.acls));
        match timed("create", c.create(&path, text.as_bytes(), &opts)).await? {
            Ok((stat, _)) => Ok(stat.mzxid.max(0) as u64),
            Err(zk::Error::NodeExists) => Err(StoreError::Exists(ns.to_string())),
            Err(e) => Err(self.inner.failed("create", e).await),
        }
    }

    /// The znode's stat, if `expected` (an mzxid) matches.
    async fn stat_for(
        &self,
        c: &zk::Client,
        ns: &str,
        path: &str,
        expected: Option<u64>,
    ) -> Result<zk::Stat, StoreError> {
        match timed("read", c.check_stat(path)).await? {
            Ok(None) | Err(zk::Error::NoNode) => Err(StoreError::NotFound(ns.to_string())),
            Ok(Some(stat)) => match expected {
                Some(v) if stat.mzxid.max(0) as u64 != v => Err(StoreError::VersionMismatch {
                    ns: ns.to_string(),
                    expected: v,
                    current: Some(stat.mzxid.max(0) as u64),
                }),
                _ => Ok(stat),
            },
            Err(e) => Err(self.inner.failed("read", e).await),
        }
    }

    pub async fn update(
        &self,
        ns: &str,
        dtab: &Dtab,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let c = self.inner.client().await?;
        let path = key_of(&self.inner.cfg.prefix, ns);
        let stat = self.stat_for(&c, ns, &path, expected).await?;
        let version = expected.map(|_| stat.version);
        let text = dtab.show();
        match timed("setData", c.set_data(&path, text.as_bytes(), version)).await? {
            Ok(stat) => Ok(stat.mzxid.max(0) as u64),
            Err(zk::Error::NoNode) => Err(StoreError::NotFound(ns.to_string())),
            Err(zk::Error::BadVersion) => Err(StoreError::VersionMismatch {
                ns: ns.to_string(),
                expected: expected.unwrap_or_default(),
                current: None,
            }),
            Err(e) => Err(self.inner.failed("setData", e).await),
        }
    }

    pub async fn delete(&self, ns: &str, expected: Option<u64>) -> Result<(), StoreError> {
        let c = self.inner.client().await?;
        let path = key_of(&self.inner.cfg.prefix, ns);
        let stat = self.stat_for(&c, ns, &path, expected).await?;
        let version = expected.map(|_| stat.version);
        match timed("delete", c.delete(&path, version)).await? {
            Ok(()) => Ok(()),
            Err(zk::Error::NoNode) => Err(StoreError::NotFound(ns.to_string())),
            Err(zk::Error::BadVersion) => Err(StoreError::VersionMismatch {
                ns: ns.to_string(),
                expected: expected.unwrap_or_default(),
                current: None,
            }),
            Err(e) => Err(self.inner.failed("delete", e).await),
        }
    }
}

impl Inner {
    async fn connect(&self) -> Result<zk::Client, String> {
        let mut b = zk::Client::connector()
            .with_session_timeout(self.cfg.session_timeout)
            .with_fail_eagerly();
        if let Some((scheme, auth)) = &self.cfg.auth {
            b = b.with_auth(scheme, auth);
        }
        let c = tokio::time::timeout(CALL_TIMEOUT, b.connect(&self.cfg.connect))
            .await
            .map_err(|_| format!("no ZooKeeper session at {} in time", self.cfg.connect))?
            .map_err(|e| format!("cannot connect to ZooKeeper at {}: {e}", self.cfg.connect))?;
        Ok(c)
    }

    async fn client(&self) -> Result<zk::Client, StoreError> {
        let mut c = self.client.lock().await;
        if let Some(cl) = &*c {
            if !cl.state().is_terminated() {
                return Ok(cl.clone());
            }
        }
        let new = self.connect().await.map_err(StoreError::Unavailable)?;
        *c = Some(new.clone());
        Ok(new)
    }

    async fn failed(&self, what: &str, e: zk::Error) -> StoreError {
        if matches!(
            e,
            zk::Error::SessionExpired | zk::Error::ClientClosed | zk::Error::ConnectionLoss
        ) {
            *self.client.lock().await = None;
        }
        unavailable(what, e)
    }

    async fn read_all(&self, c: &zk::Client) -> Result<BTreeMap<String, Entry>, String> {
        let prefix = self.cfg.prefix.trim_end_matches('/');
        let children = match timed("list", c.list_children(prefix)).await {
            Ok(Ok(v)) => v,
            Ok(Err(zk::Error::NoNode)) => Vec::new(),
            Ok(Err(e)) => return Err(format!("listing {prefix}: {e}")),
            Err(e) => return Err(e.to_string()),
        };
        if children.len() > MAX_NAMESPACES {
            return Err(format!(
                "{prefix} has {} children, over the {MAX_NAMESPACES}-namespace limit",
                children.len()
            ));
        }
        let mut m = BTreeMap::new();
        for ns in children {
            if let Some(e) = self.read_one(c, &ns).await? {
                m.insert(ns, e);
            }
        }
        Ok(m)
    }

    async fn read_one(&self, c: &zk::Client, ns: &str) -> Result<Option<Entry>, String> {
        if super::check_namespace(ns).is_err() {
            return Ok(None);
        }
        let path = key_of(&self.cfg.prefix, ns);
        match timed("read", c.get_data(&path)).await {
            Ok(Ok((data, stat))) => Ok(Some(Entry::decode(stat.mzxid.max(0) as u64, &data))),
            Ok(Err(zk::Error::NoNode)) => Ok(None),
            Ok(Err(e)) => Err(format!("reading {path}: {e}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// One session's worth of following; the error that ended it.
    async fn follow(&self) -> String {
        let c = match self.client().await {
            Ok(c) => c,
            Err(e) => return e.to_string(),
        };
        let prefix = self.cfg.prefix.trim_end_matches('/').to_string();
        let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::new(&self.acls));
        match timed("mkdir", c.mkdir(&prefix, &opts)).await {
            Ok(Ok(())) | Ok(Err(zk::Error::NodeExists)) => {}
            Ok(Err(e)) => return format!("creating {prefix}: {e}"),
            Err(e) => return e.to_string(),
        }
        let mut watcher = match timed(
            "watch",
            c.watch(&prefix, zk::AddWatchMode::PersistentRecursive),
        )
        .await
        {
            Ok(Ok(w)) => w,
            Ok(Err(e)) => return format!("watching {prefix}: {e}"),
            Err(e) => return e.to_string(),
        };
        match self.read_all(&c).await {
            Ok(m) => self.published.replace(m),
            Err(e) => return e,
        }
        loop {
            let ev = watcher.changed().await;
            match ev.event_type {
                zk::EventType::Session => {
                    if ev.session_state.is_terminated() {
                        *self.client.lock().await = None;
                        return format!("ZooKeeper session {}", ev.session_state);
                    }
                    if ev.session_state == zk::SessionState::SyncConnected {
                        // Events while disconnected are lost: read everything again.
                        match self.read_all(&c).await {
                            Ok(m) => self.published.replace(m),
                            Err(e) => return e,
                        }
                    } else if ev.session_state == zk::SessionState::Disconnected {
                        self.published.fail(format!(
                            "disconnected from ZooKeeper at {}",
                            self.cfg.connect
                        ));
                    }
                }
                zk::EventType::NodeDeleted => {
                    if let Some(ns) = ns_of(&prefix, &ev.path) {
                        self.published.apply(ns, None);
                    }
                }
                zk::EventType::NodeCreated | zk::EventType::NodeDataChanged => {
                    if let Some(ns) = ns_of(&prefix, &ev.path) {
                        match self.read_one(&c, ns).await {
                            Ok(e) => self.published.apply(ns, e),
                            Err(e) => return e,
                        }
                    }
                }
                zk::EventType::NodeChildrenChanged => {}
            }
        }
    }
}

async fn watch(weak: Weak<Inner>) {
    let mut backoff = super::backoff();
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let started = tokio::time::Instant::now();
        let err = inner.follow().await;
        tracing::warn!(store = %inner.cfg.prefix, error = %err, "ZooKeeper dtab store unavailable; keeping the last dtabs and retrying");
        inner.published.fail(err);
        drop(inner);
        if started.elapsed() > super::BACKOFF_MAX * 2 {
            backoff.reset();
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
