//! Dtab storage: namespaces, each a dtab with the store's own version (etcd's mod revision,
//! ZooKeeper's mzxid, Consul's ModifyIndex, a counter in memory), so that compare-and-set is the
//! store's and a change made by anyone (another namerd, `etcdctl`, `zkCli`) is seen. Every store
//! is watched by one background task that publishes the whole namespace map as a [`Var`]; while
//! the store cannot be reached the last map stays published, marked with the error. A stored
//! value that is not a dtab is kept as an error for that namespace only.
//!
//! This module does not serve HTTP or bind names; see `controller` and `namespace`.

pub mod consul;
pub mod etcd;
pub mod memory;
pub mod zk;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use switchboard_namer_core::{Dtab, Updater, Var};

/// Longest namespace name accepted.
pub const MAX_NAMESPACE_LEN: usize = 128;
/// Largest stored dtab (a request body or a store's value).
pub const MAX_DTAB_BYTES: usize = 256 * 1024;
/// Most namespaces a store's listing may hold; more is a store fault, not loaded. Creating
/// more through namerd is refused.
pub const MAX_NAMESPACES: usize = 10_000;
/// Most bytes all stored dtabs may take together (what a full listing of the store reads);
/// a write that would pass it is refused.
pub const MAX_STORE_BYTES: usize = 32 * 1024 * 1024;
/// How long a write waits for the store's watch to show it before answering.
pub const WRITE_VISIBLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on one call to a store.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Reconnect backoff bounds.
pub const BACKOFF_MIN: Duration = Duration::from_millis(200);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// One namespace as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The store's version of the value; grows with every change of this namespace.
    pub version: u64,
    /// The stored value's size.
    pub bytes: usize,
    /// The dtab, or why the stored value is not one.
    pub dtab: Result<Dtab, String>,
}

impl Entry {
    /// Decodes a stored value.
    pub fn decode(version: u64, value: &[u8]) -> Entry {
        let dtab = if value.len() > MAX_DTAB_BYTES {
            Err(format!(
                "the stored dtab is {} bytes, over the {MAX_DTAB_BYTES}-byte limit",
                value.len()
            ))
        } else {
            std::str::from_utf8(value)
                .map_err(|e| format!("the stored dtab is not UTF-8: {e}"))
                .and_then(|s| {
                    Dtab::read(s).map_err(|e| format!("the stored dtab does not parse: {e}"))
                })
        };
        Entry {
            version,
            bytes: value.len(),
            dtab,
        }
    }
}

/// What a store's watch shows.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct StoreState {
    /// Every namespace; `None` until the store was first read.
    pub namespaces: Option<Arc<BTreeMap<String, Entry>>>,
    /// Why the store cannot be read now (the namespaces are the last ones read).
    pub error: Option<String>,
}

/// Why a write was refused.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("namespace `{0}` already exists")]
    Exists(String),
    #[error("namespace `{0}` does not exist")]
    NotFound(String),
    #[error("namespace `{ns}` is not at version {expected}{}", current.map(|c| format!(" (it is at {c})")).unwrap_or_default())]
    VersionMismatch {
        ns: String,
        expected: u64,
        current: Option<u64>,
    },
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Full(String),
}

/// Whether `ns` can name a namespace: one path segment of `[A-Za-z0-9_.-]`, not `.` or `..`.
pub fn check_namespace(ns: &str) -> Result<(), String> {
    if ns.is_empty() {
        return Err("a namespace name is empty".into());
    }
    if ns.len() > MAX_NAMESPACE_LEN {
        return Err(format!(
            "a namespace name is at most {MAX_NAMESPACE_LEN} bytes"
        ));
    }
    if ns == "." || ns == ".." {
        return Err(format!("`{ns}` cannot name a namespace"));
    }
    if let Some(c) = ns
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "`{ns}`: a namespace name holds letters, digits, `_`, `-` and `.` only, not {c:?}"
        ));
    }
    Ok(())
}

/// A configured dtab store.
pub enum Store {
    Memory(memory::MemoryStore),
    Etcd(etcd::EtcdStore),
    Zk(zk::ZkStore),
    Consul(consul::ConsulStore),
}

impl Store {
    /// The watched namespaces.
    pub fn state(&self) -> Var<StoreState> {
        self.published().var()
    }

    fn published(&self) -> &Updater<StoreState> {
        match self {
            Store::Memory(s) => s.published(),
            Store::Etcd(s) => s.published(),
            Store::Zk(s) => s.published(),
            Store::Consul(s) => s.published(),
        }
    }

    /// `io.l5d.etcd at 127.0.0.1:2379 /namerd/dtabs`, for logs and the admin page.
    pub fn describe(&self) -> String {
        match self {
            Store::Memory(_) => "io.l5d.inMemory".into(),
            Store::Etcd(s) => s.describe(),
            Store::Zk(s) => s.describe(),
            Store::Consul(s) => s.describe(),
        }
    }

    /// Refuses a write that would take the store past [`MAX_NAMESPACES`] or [`MAX_STORE_BYTES`]
    /// (so that it can still be listed whole).
    async fn within_budget(&self, ns: &str, dtab: &Dtab) -> Result<(), StoreError> {
        let mut state = self.state();
        let loaded = async {
            loop {
                let s = state.get();
                if s.namespaces.is_some() || !state.changed().await {
                    return s;
                }
            }
        };
        let s = tokio::time::timeout(WRITE_VISIBLE_TIMEOUT, loaded)
            .await
            .unwrap_or_default();
        let Some(m) = &s.namespaces else {
            return Err(StoreError::Unavailable(format!(
                "the dtab store has not been read yet: {}",
                s.error.as_deref().unwrap_or("connecting")
            )));
        };
        if !m.contains_key(ns) && m.len() >= MAX_NAMESPACES {
            return Err(StoreError::Full(format!(
                "the store holds {MAX_NAMESPACES} namespaces, the most namerd keeps"
            )));
        }
        let others: usize = m
            .iter()
            .filter(|(k, _)| *k != ns)
            .map(|(_, e)| e.bytes)
            .sum();
        if others + dtab.show().len() > MAX_STORE_BYTES {
            return Err(StoreError::Full(format!(
                "the store's dtabs would take over {MAX_STORE_BYTES} bytes together"
            )));
        }
        Ok(())
    }

    /// Creates `ns`; its version (0 when not known: someone wrote after it).
    pub async fn create(&self, ns: &str, dtab: &Dtab) -> Result<u64, StoreError> {
        self.within_budget(ns, dtab).await?;
        let v = match self {
            Store::Memory(s) => s.create(ns, dtab),
            Store::Etcd(s) => s.create(ns, dtab).await,
            Store::Zk(s) => s.create(ns, dtab).await,
            Store::Consul(s) => s.create(ns, dtab).await,
        }?;
        self.visible(ns, |e| e.is_some_and(|e| e.version >= v))
            .await;
        Ok(v)
    }

    /// Replaces the dtab of `ns`, if it is at version `expected` when given; its new version.
    pub async fn update(
        &self,
        ns: &str,
        dtab: &Dtab,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        if expected == Some(0) {
            return Err(self.no_such_version(ns));
        }
        self.within_budget(ns, dtab).await?;
        let v = match self {
            Store::Memory(s) => s.update(ns, dtab, expected),
            Store::Etcd(s) => s.update(ns, dtab, expected).await,
            Store::Zk(s) => s.update(ns, dtab, expected).await,
            Store::Consul(s) => s.update(ns, dtab, expected).await,
        }?;
        self.visible(ns, |e| e.is_some_and(|e| e.version >= v))
            .await;
        Ok(v)
    }

    /// Deletes `ns`, if it is at version `expected` when given.
    pub async fn delete(&self, ns: &str, expected: Option<u64>) -> Result<(), StoreError> {
        if expected == Some(0) {
            return Err(self.no_such_version(ns));
        }
        match self {
            Store::Memory(s) => s.delete(ns, expected),
            Store::Etcd(s) => s.delete(ns, expected).await,
            Store::Zk(s) => s.delete(ns, expected).await,
            Store::Consul(s) => s.delete(ns, expected).await,
        }?;
        self.visible(ns, |e| e.is_none()).await;
        Ok(())
    }

    /// No store issues version 0: a write conditional on it fails as a mismatch, or as not
    /// found when the namespace is not there.
    fn no_such_version(&self, ns: &str) -> StoreError {
        let current = self
            .state()
            .sample()
            .namespaces
            .and_then(|m| m.get(ns).map(|e| e.version));
        match current {
            None => StoreError::NotFound(ns.to_string()),
            current => StoreError::VersionMismatch {
                ns: ns.to_string(),
                expected: 0,
                current,
            },
        }
    }

    /// Waits (bounded) until the watch shows what a write did, so that an answered write is
    /// what the next read and every linker sees.
    async fn visible(&self, ns: &str, done: impl Fn(Option<&Entry>) -> bool) {
        let mut state = self.state();
        let wait = async {
            loop {
                let s = state.get();
                if let Some(m) = &s.namespaces {
                    if done(m.get(ns)) {
                        return;
                    }
                }
                if !state.changed().await {
                    return;
                }
            }
        };
        if tokio::time::timeout(WRITE_VISIBLE_TIMEOUT, wait)
            .await
            .is_err()
        {
            tracing::warn!(namespace = ns, store = %self.describe(), "a write was not seen by the store's watch in time");
        }
    }
}

/// The publishing side every store shares.
pub(crate) struct Published {
    pub up: Updater<StoreState>,
}

impl Published {
    pub fn new() -> Published {
        let (up, _) = Updater::new(StoreState::default());
        Published { up }
    }

    /// A full read: replaces every namespace, clears the error.
    pub fn replace(&self, m: BTreeMap<String, Entry>) {
        self.up.set(StoreState {
            namespaces: Some(Arc::new(m)),
            error: None,
        });
    }

    /// One namespace changed (`None`: deleted).
    pub fn apply(&self, ns: &str, e: Option<Entry>) {
        self.up.modify(|s| {
            let mut m = s.namespaces.as_deref().cloned().unwrap_or_default();
            let changed = match e {
                Some(e) => m.insert(ns.to_string(), e.clone()).as_ref() != Some(&e),
                None => m.remove(ns).is_some(),
            };
            if changed || s.namespaces.is_none() {
                s.namespaces = Some(Arc::new(m));
            }
            changed
        });
    }

    /// The store cannot be read; what was read stays.
    pub fn fail(&self, msg: String) {
        self.up.modify(|s| {
            if s.error.as_deref() == Some(&msg) {
                return false;
            }
            s.error = Some(msg);
            true
        });
    }
}

/// The stores' retry delays: from [`BACKOFF_MIN`] to [`BACKOFF_MAX`].
pub(crate) fn backoff() -> switchboard_namer_core::backoff::Backoff {
    switchboard_namer_core::backoff::Backoff::new(BACKOFF_MIN, BACKOFF_MAX)
}

/// Aborts a background task when its store goes away.
pub(crate) struct TaskGuard(pub tokio::task::AbortHandle);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `prefix` + `/` + `ns`, for key-value stores.
pub(crate) fn key_of(prefix: &str, ns: &str) -> String {
    format!("{}/{ns}", prefix.trim_end_matches('/'))
}

/// The namespace a key under `prefix` names, if it is a direct child with a valid name.
pub(crate) fn ns_of<'a>(prefix: &str, key: &'a str) -> Option<&'a str> {
    let rest = key.strip_prefix(prefix.trim_end_matches('/'))?;
    let ns = rest.strip_prefix('/')?;
    check_namespace(ns).ok()?;
    Some(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names() {
        let check = |ns: &str, ok: bool| assert_eq!(check_namespace(ns).is_ok(), ok, "{ns:?}");
        check("default", true);
        check("prod-1.eu_west", true);
        check("", false);
        check(".", false);
        check("..", false);
        check("a/b", false);
        check("a b", false);
        check("é", false);
        check(&"x".repeat(MAX_NAMESPACE_LEN), true);
        check(&"x".repeat(MAX_NAMESPACE_LEN + 1), false);
    }

    #[test]
    fn keys_and_namespaces() {
        assert_eq!(key_of("/namerd/dtabs", "web"), "/namerd/dtabs/web");
        assert_eq!(key_of("/namerd/dtabs/", "web"), "/namerd/dtabs/web");
        assert_eq!(ns_of("/namerd/dtabs", "/namerd/dtabs/web"), Some("web"));
        assert_eq!(ns_of("/namerd/dtabs", "/namerd/dtabs/web/x"), None);
        assert_eq!(ns_of("/namerd/dtabs", "/namerd/dtabsweb"), None);
        assert_eq!(ns_of("/namerd/dtabs", "/namerd/dtabs/"), None);
    }

    #[tokio::test]
    async fn writes_past_the_namespace_limit_are_refused() {
        let d = Dtab::read("/a=>/b").unwrap();
        let full: BTreeMap<String, Dtab> = (0..MAX_NAMESPACES)
            .map(|i| (format!("ns{i}"), d.clone()))
            .collect();
        let store = Store::Memory(memory::MemoryStore::new(full));
        match store.create("one-more", &d).await {
            Err(StoreError::Full(m)) => assert!(m.contains("namespaces"), "{m}"),
            other => panic!("{other:?}"),
        }
        // An existing namespace can still change.
        assert!(store.update("ns0", &d, None).await.is_ok());
        let big = Dtab::read(&format!("/a=>/{}", "x".repeat(MAX_STORE_BYTES))).unwrap();
        match store.update("ns1", &big, None).await {
            Err(StoreError::Full(m)) => assert!(m.contains("bytes"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stored_values() {
        let e = Entry::decode(3, b"/svc=>/#/io.l5d.fs");
        assert_eq!(e.dtab.unwrap().show(), "/svc=>/#/io.l5d.fs");
        assert!(Entry::decode(3, b"/svc=>")
            .dtab
            .unwrap_err()
            .contains("does not parse"));
        assert!(Entry::decode(3, &[0xff])
            .dtab
            .unwrap_err()
            .contains("UTF-8"));
        assert!(Entry::decode(3, &vec![b' '; MAX_DTAB_BYTES + 1])
            .dtab
            .unwrap_err()
            .contains("limit"));
    }
}
