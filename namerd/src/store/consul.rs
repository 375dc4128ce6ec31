//! `io.l5d.consul` storage on Consul's KV API: a namespace is the key `<pathPrefix>/<ns>`
//! holding the dtab text, its version the key's ModifyIndex. Writes use `?cas=`, so
//! compare-and-set is Consul's: `cas=0` creates only if absent, `cas=<index>` replaces only at
//! that index. One task follows the prefix with blocking queries (`?recurse&index=`), with the
//! configured token, datacenter and read consistency; on errors it backs off and keeps the last
//! namespaces published. Plain HTTP only.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use switchboard_namer_core::{Dtab, Updater};

use super::{
    key_of, ns_of, Entry, Published, StoreError, StoreState, TaskGuard, CALL_TIMEOUT,
    MAX_DTAB_BYTES, MAX_NAMESPACES,
};

/// Linkerd's default key prefix.
pub const DEFAULT_PATH_PREFIX: &str = "/namerd/dtabs";
/// How long one blocking query asks Consul to hold.
pub const BLOCKING_WAIT: Duration = Duration::from_secs(30);
/// Writes without a version retry this often when someone else writes in between.
pub const CAS_ATTEMPTS: usize = 5;
/// Largest KV listing read (every namespace's dtab, base64).
pub const MAX_LISTING_BYTES: usize = 64 * 1024 * 1024;

/// Consul's read consistency modes (`?stale`, `?consistent`, or neither).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    Default,
    Stale,
    Consistent,
}

impl Consistency {
    pub fn parse(s: &str) -> Option<Consistency> {
        match s.to_ascii_lowercase().as_str() {
            "default" => Some(Consistency::Default),
            "stale" => Some(Consistency::Stale),
            "consistent" => Some(Consistency::Consistent),
            _ => None,
        }
    }
    fn query(self) -> &'static str {
        match self {
            Consistency::Default => "",
            Consistency::Stale => "&stale",
            Consistency::Consistent => "&consistent",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ConsulConfig {
    pub host: String,
    pub port: u16,
    pub prefix: String,
    pub token: Option<String>,
    pub datacenter: Option<String>,
    pub read_consistency: Consistency,
    pub write_consistency: Consistency,
    /// TLS to Consul; plaintext when absent.
    pub tls: Option<crate::net::ClientTls>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KvPair {
    key: String,
    value: Option<String>,
    modify_index: u64,
}

struct Inner {
    cfg: ConsulConfig,
    http: Client<crate::net::Dialer, Full<Bytes>>,
    published: Published,
}

pub struct ConsulStore {
    inner: Arc<Inner>,
    _task: TaskGuard,
}

/// Consul key paths have no leading slash.
fn kv_path(key: &str) -> String {
    format!("/v1/kv/{}", key.trim_start_matches('/'))
}

impl ConsulStore {
    pub fn new(cfg: ConsulConfig) -> ConsulStore {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(Duration::from_secs(2)));
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(crate::net::Dialer::new(conn, cfg.tls.as_ref(), "Consul"));
        let inner = Arc::new(Inner {
            cfg,
            http,
            published: Published::new(),
        });
        let task = tokio::spawn(watch(Arc::downgrade(&inner))).abort_handle();
        ConsulStore {
            inner,
            _task: TaskGuard(task),
        }
    }

    pub(crate) fn published(&self) -> &Updater<StoreState> {
        &self.inner.published.up
    }

    pub fn describe(&self) -> String {
        format!(
            "io.l5d.consul at {}://{}:{} under {}",
            if self.inner.cfg.tls.is_some() {
                "https"
            } else {
                "http"
            },
            self.inner.cfg.host,
            self.inner.cfg.port,
            self.inner.cfg.prefix
        )
    }

    pub async fn create(&self, ns: &str, dtab: &Dtab) -> Result<u64, StoreError> {
        let key = key_of(&self.inner.cfg.prefix, ns);
        if !self.inner.cas_put(&key, 0, dtab).await? {
            return Err(StoreError::Exists(ns.to_string()));
        }
        self.inner.written(ns, &key, dtab).await
    }

    pub async fn update(
        &self,
        ns: &str,
        dtab: &Dtab,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let key = key_of(&self.inner.cfg.prefix, ns);
        // Without a version, replace whatever is there: read its index and write at it, again
        // if someone wrote in between (never over a deleted key).
        for _ in 0..CAS_ATTEMPTS {
            let at = match expected {
                Some(v) => v,
                None => self.inner.index_of(ns, &key).await?.0,
            };
            if self.inner.cas_put(&key, at, dtab).await? {
                return self.inner.written(ns, &key, dtab).await;
            }
            if expected.is_some() {
                return Err(self.inner.why_not(ns, &key, at).await);
            }
        }
        Err(StoreError::Unavailable(format!(
            "namespace `{ns}` changed {CAS_ATTEMPTS} times while it was written; nothing written"
        )))
    }

    pub async fn delete(&self, ns: &str, expected: Option<u64>) -> Result<(), StoreError> {
        let key = key_of(&self.inner.cfg.prefix, ns);
        // Consul answers `true` to a conditional delete of a key that is not there: look first.
        let (current, _) = self.inner.index_of(ns, &key).await?;
        let at = match expected {
            Some(v) if v != current => {
                return Err(StoreError::VersionMismatch {
                    ns: ns.to_string(),
                    expected: v,
                    current: Some(current),
                })
            }
            _ => current,
        };
        let path = format!("{}?cas={at}{}", kv_path(&key), self.inner.dc());
        let (status, _, body) = self
            .inner
            .call(hyper::Method::DELETE, &path, Bytes::new())
            .await?;
        match (status, body.as_ref()) {
            (200, b"true") => Ok(()),
            (200, _) => Err(self.inner.why_not(ns, &key, at).await),
            (s, b) => Err(consul_error(s, b)),
        }
    }
}

fn consul_error(status: u16, body: &[u8]) -> StoreError {
    StoreError::Unavailable(format!(
        "Consul answered {status}: {}",
        String::from_utf8_lossy(&body[..body.len().min(200)]).trim()
    ))
}

impl Inner {
    fn dc(&self) -> String {
        match &self.cfg.datacenter {
            Some(dc) => format!("&dc={dc}"),
            None => String::new(),
        }
    }

    async fn call(
        &self,
        method: hyper::Method,
        path_and_query: &str,
        body: Bytes,
    ) -> Result<(u16, Option<u64>, Bytes), StoreError> {
        let uri = format!("http://{}:{}{path_and_query}", self.cfg.host, self.cfg.port);
        let mut req = hyper::Request::builder().method(method).uri(&uri);
        if let Some(t) = &self.cfg.token {
            req = req.header("X-Consul-Token", t.as_str());
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| StoreError::Unavailable(format!("bad Consul request {uri}: {e}")))?;
        let limit = BLOCKING_WAIT + BLOCKING_WAIT / 16 + CALL_TIMEOUT;
        let resp = tokio::time::timeout(limit, self.http.request(req))
            .await
            .map_err(|_| StoreError::Unavailable("Consul did not answer in time".into()))?
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "Consul request failed: {}",
                    crate::net::error_chain(&e)
                ))
            })?;
        let status = resp.status().as_u16();
        let index = resp
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let body = tokio::time::timeout(
            limit,
            Limited::new(resp.into_body(), MAX_LISTING_BYTES).collect(),
        )
        .await
        .map_err(|_| StoreError::Unavailable("Consul's answer timed out".into()))?
        .map_err(|e| StoreError::Unavailable(format!("reading Consul's answer: {e}")))?
        .to_bytes();
        Ok((status, index, body))
    }

    async fn cas_put(&self, key: &str, at: u64, dtab: &Dtab) -> Result<bool, StoreError> {
        let path = format!("{}?cas={at}{}", kv_path(key), self.dc());
        let (status, _, body) = self
            .call(hyper::Method::PUT, &path, Bytes::from(dtab.show()))
            .await?;
        match (status, body.as_ref()) {
            (200, b"true") => Ok(true),
            (200, b"false") => Ok(false),
            (s, b) => Err(consul_error(s, b)),
        }
    }

    /// The key's ModifyIndex now (read with the write consistency mode).
    /// The version of what this namerd just wrote: the key's index if it still holds our
    /// value (read consistently); 0 ("not known") if someone wrote after us.
    async fn written(&self, ns: &str, key: &str, dtab: &Dtab) -> Result<u64, StoreError> {
        let (index, value) = self.index_of_with(ns, key, Consistency::Consistent).await?;
        Ok(if value == dtab.show().as_bytes() {
            index
        } else {
            0
        })
    }

    async fn index_of(&self, ns: &str, key: &str) -> Result<(u64, Vec<u8>), StoreError> {
        self.index_of_with(ns, key, self.cfg.write_consistency)
            .await
    }

    /// The key's ModifyIndex and value now.
    async fn index_of_with(
        &self,
        ns: &str,
        key: &str,
        consistency: Consistency,
    ) -> Result<(u64, Vec<u8>), StoreError> {
        let q = format!("{}{}", self.dc(), consistency.query());
        let path = match q.strip_prefix('&') {
            Some(q) => format!("{}?{q}", kv_path(key)),
            None => kv_path(key),
        };
        let (status, _, body) = self.call(hyper::Method::GET, &path, Bytes::new()).await?;
        match status {
            200 => {
                let pairs: Vec<KvPair> = serde_json::from_slice(&body).map_err(|e| {
                    StoreError::Unavailable(format!("Consul's KV answer is not JSON: {e}"))
                })?;
                let p = pairs
                    .first()
                    .ok_or_else(|| StoreError::NotFound(ns.to_string()))?;
                let value = match p.value.as_deref() {
                    None => Vec::new(),
                    Some(v) => base64::engine::general_purpose::STANDARD
                        .decode(v)
                        .unwrap_or_default(),
                };
                Ok((p.modify_index, value))
            }
            404 => Err(StoreError::NotFound(ns.to_string())),
            s => Err(consul_error(s, &body)),
        }
    }

    async fn why_not(&self, ns: &str, key: &str, at: u64) -> StoreError {
        match self.index_of(ns, key).await {
            Ok((current, _)) => StoreError::VersionMismatch {
                ns: ns.to_string(),
                expected: at,
                current: Some(current),
            },
            Err(e) => e,
        }
    }

    /// One blocking read of the prefix after `index`; the index it answered at.
    async fn poll(&self, index: u64) -> Result<u64, String> {
        let dir = format!("{}/", self.cfg.prefix.trim_end_matches('/'));
        let path = format!(
            "{}?recurse&index={index}&wait={}s{}{}",
            kv_path(&dir),
            BLOCKING_WAIT.as_secs(),
            self.dc(),
            self.cfg.read_consistency.query()
        );
        let (status, new_index, body) = self
            .call(hyper::Method::GET, &path, Bytes::new())
            .await
            .map_err(|e| e.to_string())?;
        let m = match status {
            200 => {
                let pairs: Vec<KvPair> = serde_json::from_slice(&body)
                    .map_err(|e| format!("Consul's KV listing is not JSON: {e}"))?;
                if pairs.len() > MAX_NAMESPACES {
                    return Err(format!(
                        "{dir} holds {} keys, over the {MAX_NAMESPACES}-namespace limit",
                        pairs.len()
                    ));
                }
                let mut m = BTreeMap::new();
                for p in pairs {
                    let key = format!("/{}", p.key.trim_start_matches('/'));
                    let Some(ns) = ns_of(&self.cfg.prefix, &key) else {
                        continue;
                    };
                    let raw = match p.value.as_deref() {
                        None => Vec::new(),
                        Some(v) if v.len() > MAX_DTAB_BYTES * 2 => vec![0; MAX_DTAB_BYTES + 1],
                        Some(v) => match base64::engine::general_purpose::STANDARD.decode(v) {
                            Ok(b) => b,
                            Err(_) => b"\xff".to_vec(),
                        },
                    };
                    m.insert(ns.to_string(), Entry::decode(p.modify_index, &raw));
                }
                m
            }
            404 => BTreeMap::new(),
            s => return Err(format!("{}", consul_error(s, &body))),
        };
        self.published.replace(m);
        let new_index = new_index.unwrap_or(0);
        // An index that goes backwards (or is 0) restarts the blocking (Consul's advice).
        Ok(if new_index < index || new_index == 0 {
            0
        } else {
            new_index
        })
    }
}

async fn watch(weak: Weak<Inner>) {
    let mut backoff = super::backoff();
    let mut index = 0;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        match inner.poll(index).await {
            Ok(i) => {
                backoff.reset();
                // Answers without a change at once (index 0) are throttled.
                if i == 0 || i == index {
                    drop(inner);
                    tokio::time::sleep(super::BACKOFF_MIN).await;
                }
                index = i;
            }
            Err(e) => {
                tracing::warn!(store = %inner.cfg.prefix, error = %e, "Consul dtab store unavailable; keeping the last dtabs and retrying");
                inner.published.fail(e);
                drop(inner);
                index = 0;
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}
