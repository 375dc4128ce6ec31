//! `io.l5d.etcd` on etcd's v3 API: a namespace is the key `<pathPrefix>/<ns>` holding the dtab
//! text, its version the key's mod revision. Writes are transactions that compare the key's
//! create or mod revision, so compare-and-set is etcd's. One task reads the prefix and then
//! watches it from the next revision; when the watch ends (etcd restarted, compacted, the
//! connection dropped) it reconnects with backoff and reads everything again, keeping the last
//! namespaces published meanwhile.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use switchboard_namer_core::{Dtab, Updater};
use switchboard_namer_etcd::client::{self, pb, Client, ConnectOptions};
use tokio::sync::Mutex;

use super::{key_of, ns_of, Entry, Published, StoreError, StoreState, TaskGuard, MAX_NAMESPACES};

/// Linkerd's default key prefix.
pub const DEFAULT_PATH_PREFIX: &str = "/namerd/dtabs";

struct Inner {
    endpoints: Vec<String>,
    prefix: String,
    opts: ConnectOptions,
    client: Mutex<Option<Client>>,
    published: Published,
}

pub struct EtcdStore {
    inner: Arc<Inner>,
    _task: TaskGuard,
}

impl EtcdStore {
    /// Starts watching `prefix` on the cluster at `endpoints` (needs a tokio runtime).
    pub fn new(endpoints: Vec<String>, prefix: String, opts: ConnectOptions) -> EtcdStore {
        let inner = Arc::new(Inner {
            endpoints,
            prefix,
            opts,
            client: Mutex::new(None),
            published: Published::new(),
        });
        let task = tokio::spawn(watch(Arc::downgrade(&inner))).abort_handle();
        EtcdStore {
            inner,
            _task: TaskGuard(task),
        }
    }

    pub(crate) fn published(&self) -> &Updater<StoreState> {
        &self.inner.published.up
    }

    pub fn describe(&self) -> String {
        format!(
            "io.l5d.etcd at {} under {}",
            self.inner.endpoints.join(","),
            self.inner.prefix
        )
    }

    pub async fn create(&self, ns: &str, dtab: &Dtab) -> Result<u64, StoreError> {
        let key = key_of(&self.inner.prefix, ns);
        let r = self
            .inner
            .txn(compare(&key, pb::TARGET_CREATE, 0), put(&key, dtab), ns)
            .await?;
        match r {
            Some(rev) => Ok(rev),
            None => Err(StoreError::Exists(ns.to_string())),
        }
    }

    pub async fn update(
        &self,
        ns: &str,
        dtab: &Dtab,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let key = key_of(&self.inner.prefix, ns);
        let cmp = match expected {
            Some(v) => compare(&key, pb::TARGET_MOD, v as i64),
            None => pb::Compare {
                result: pb::COMPARE_GREATER,
                ..compare(&key, pb::TARGET_CREATE, 0)
            },
        };
        match self.inner.txn(cmp, put(&key, dtab), ns).await? {
            Some(rev) => Ok(rev),
            None => Err(self.inner.why_not(ns, &key, expected).await),
        }
    }

    pub async fn delete(&self, ns: &str, expected: Option<u64>) -> Result<(), StoreError> {
        let key = key_of(&self.inner.prefix, ns);
        let cmp = match expected {
            Some(v) => compare(&key, pb::TARGET_MOD, v as i64),
            None => pb::Compare {
                result: pb::COMPARE_GREATER,
                ..compare(&key, pb::TARGET_CREATE, 0)
            },
        };
        let del = pb::request_op::Request::RequestDeleteRange(pb::DeleteRangeRequest {
            key: key.clone().into_bytes(),
            ..Default::default()
        });
        match self.inner.txn(cmp, del, ns).await? {
            Some(_) => Ok(()),
            None => Err(self.inner.why_not(ns, &key, expected).await),
        }
    }
}

fn compare(key: &str, target: i32, v: i64) -> pb::Compare {
    use pb::compare::TargetUnion;
    pb::Compare {
        result: pb::COMPARE_EQUAL,
        target,
        key: key.as_bytes().to_vec(),
        target_union: Some(match target {
            pb::TARGET_CREATE => TargetUnion::CreateRevision(v),
            _ => TargetUnion::ModRevision(v),
        }),
    }
}

fn put(key: &str, dtab: &Dtab) -> pb::request_op::Request {
    pb::request_op::Request::RequestPut(pb::PutRequest {
        key: key.as_bytes().to_vec(),
        value: dtab.show().into_bytes(),
        ..Default::default()
    })
}

impl Inner {
    async fn client(&self) -> Result<Client, StoreError> {
        let mut c = self.client.lock().await;
        if let Some(c) = &*c {
            return Ok(c.clone());
        }
        let new = Client::connect(&self.endpoints, &self.opts)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        *c = Some(new.clone());
        Ok(new)
    }

    async fn forget(&self) {
        *self.client.lock().await = None;
    }

    /// Runs `op` if `cmp` holds; the revision it made, or `None` if `cmp` failed.
    async fn txn(
        &self,
        cmp: pb::Compare,
        op: pb::request_op::Request,
        ns: &str,
    ) -> Result<Option<u64>, StoreError> {
        let mut c = self.client().await?;
        let resp = c
            .txn(pb::TxnRequest {
                compare: vec![cmp],
                success: vec![pb::RequestOp { request: Some(op) }],
                failure: Vec::new(),
            })
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                self.forget().await;
                return Err(StoreError::Unavailable(format!(
                    "writing namespace `{ns}`: {e}"
                )));
            }
        };
        if !resp.succeeded {
            return Ok(None);
        }
        Ok(Some(
            resp.header.map(|h| h.revision).unwrap_or_default().max(0) as u64,
        ))
    }

    /// Why a conditional write failed: the key is gone, or at another revision.
    async fn why_not(&self, ns: &str, key: &str, expected: Option<u64>) -> StoreError {
        let cur = match self.client().await {
            Ok(mut c) => match c
                .range(pb::RangeRequest {
                    key: key.as_bytes().to_vec(),
                    ..Default::default()
                })
                .await
            {
                Ok(r) => r.kvs.first().map(|kv| kv.mod_revision.max(0) as u64),
                Err(e) => return StoreError::Unavailable(format!("reading namespace `{ns}`: {e}")),
            },
            Err(e) => return e,
        };
        match (cur, expected) {
            (None, _) | (_, None) => StoreError::NotFound(ns.to_string()),
            (current, Some(expected)) => StoreError::VersionMismatch {
                ns: ns.to_string(),
                expected,
                current,
            },
        }
    }

    fn entry(&self, kv: &pb::KeyValue) -> Option<(String, Entry)> {
        let key = std::str::from_utf8(&kv.key).ok()?;
        let ns = ns_of(&self.prefix, key)?;
        Some((
            ns.to_string(),
            Entry::decode(kv.mod_revision.max(0) as u64, &kv.value),
        ))
    }

    /// Reads the prefix and follows it until the watch ends; the error that ended it.
    async fn follow(&self) -> String {
        let mut c = match self.client().await {
            Ok(c) => c,
            Err(e) => return e.to_string(),
        };
        let dir = format!("{}/", self.prefix.trim_end_matches('/'));
        let all = match c.get_prefix(dir.as_bytes()).await {
            Ok(r) => r,
            Err(e) => {
                self.forget().await;
                return format!("reading {dir}: {e}");
            }
        };
        if all.kvs.len() > MAX_NAMESPACES {
            return format!(
                "{dir} holds {} keys, over the {MAX_NAMESPACES}-namespace limit",
                all.kvs.len()
            );
        }
        let rev = all.header.as_ref().map(|h| h.revision).unwrap_or(0);
        self.published.replace(
            all.kvs
                .iter()
                .filter_map(|kv| self.entry(kv))
                .collect::<BTreeMap<_, _>>(),
        );
        let (_tx, mut stream) = match c
            .watch(pb::WatchCreateRequest {
                key: dir.as_bytes().to_vec(),
                range_end: client::prefix_end(dir.as_bytes()),
                start_revision: rev + 1,
                ..Default::default()
            })
            .await
        {
            Ok(w) => w,
            Err(e) => {
                self.forget().await;
                return format!("watching {dir}: {e}");
            }
        };
        loop {
            match stream.message().await {
                Ok(Some(resp)) => {
                    if resp.canceled {
                        return format!(
                            "etcd cancelled the watch of {dir}: {} (compacted to {})",
                            resp.cancel_reason, resp.compact_revision
                        );
                    }
                    for ev in &resp.events {
                        let Some(kv) = &ev.kv else { continue };
                        match ev.r#type {
                            pb::EVENT_DELETE => {
                                if let Some(ns) = std::str::from_utf8(&kv.key)
                                    .ok()
                                    .and_then(|k| ns_of(&self.prefix, k))
                                {
                                    self.published.apply(ns, None);
                                }
                            }
                            _ => {
                                if let Some((ns, e)) = self.entry(kv) {
                                    self.published.apply(&ns, Some(e));
                                }
                            }
                        }
                    }
                }
                Ok(None) => {
                    self.forget().await;
                    return format!("the etcd watch of {dir} ended");
                }
                Err(e) => {
                    self.forget().await;
                    return format!("the etcd watch of {dir} failed: {e}");
                }
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
        tracing::warn!(store = %inner.prefix, error = %err, "etcd dtab store unavailable; keeping the last dtabs and retrying");
        inner.published.fail(err);
        drop(inner);
        if started.elapsed() > super::BACKOFF_MAX * 2 {
            backoff.reset();
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
