//! The `io.l5d.etcd` namer (Linkerd 1 had none): services registered in etcd v3 under a key
//! prefix, watched.
//!
//! Layout: `/<service>/rest` binds to the keys under `<pathPrefix>/<service>/`, one key per
//! endpoint. A value is either etcd's own Go naming layout
//! (`go.etcd.io/etcd/client/v3/naming/endpoints`: `{"Addr":"10.0.0.1:8080","Metadata":{...}}`,
//! with an optional numeric `weight` in `Metadata`) or plain `host:port`. A value that parses as
//! neither is skipped with a warning; it does not fail the service. Keys attached to a lease
//! vanish when it expires, and so do their endpoints.
//!
//! Watching: a prefix get, then a watch from the next revision, on one watch stream shared by
//! all of the namer's services (`hub`). After a disconnect the watch is resumed from the last
//! revision seen; if that revision was compacted away, the service is listed again. While etcd cannot be reached the last good set keeps serving, marked stale.
//! It only names; it does not route.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use switchboard_namer_core::service::{NamerStats, ServiceCell, Services};
use switchboard_namer_core::{Activity, Endpoint, Name, NameTree, Namer, Path, State, Var};
use tokio::sync::Mutex;

pub mod client;
mod hub;
use client::{Client, ConnectOptions};
use hub::{Hub, WatchMsg};

/// The namer's `kind` in config.
pub const KIND: &str = "io.l5d.etcd";
/// Default etcd endpoint.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:2379";
/// Default key prefix under which services live.
pub const DEFAULT_PATH_PREFIX: &str = "/services";
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often an idle watch checks whether anyone still observes its service.
const RELEASE_CHECK: Duration = Duration::from_secs(2);

/// Parses one endpoint value: etcd's Go naming JSON or `host:port`. `None` if neither.
pub fn parse_value(v: &[u8]) -> Option<Endpoint> {
    let text = std::str::from_utf8(v).ok()?.trim();
    if text.starts_with('{') {
        let j: Value = serde_json::from_str(text).ok()?;
        let addr: SocketAddr = j.get("Addr")?.as_str()?.parse().ok()?;
        let weight = j
            .get("Metadata")
            .and_then(|m| m.get("weight"))
            .and_then(|w| w.as_f64().or_else(|| w.as_str()?.parse().ok()));
        let ep = Endpoint::new(addr);
        return Some(match weight {
            Some(w) if w.is_finite() && w >= 0.0 => ep.with_weight(w),
            _ => ep,
        });
    }
    text.parse::<SocketAddr>().ok().map(Endpoint::new)
}

/// The `io.l5d.etcd` namer (cheap to clone).
#[derive(Clone)]
pub struct EtcdNamer {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Vec<String>,
    opts: ConnectOptions,
    path_prefix: String,
    prefix: Path,
    client: Mutex<Option<Client>>,
    hub: std::sync::OnceLock<Hub>,
    services: Services<String>,
    stats: NamerStats,
    /// Listings made again because the watch's revision was compacted away.
    relists: std::sync::atomic::AtomicU64,
}

impl EtcdNamer {
    /// A namer reading `path_prefix` from the etcd cluster at `endpoints`. Connects lazily.
    pub fn new(endpoints: Vec<String>, path_prefix: &str, prefix: Path) -> EtcdNamer {
        EtcdNamer::with_options(endpoints, path_prefix, prefix, ConnectOptions::default())
    }

    /// The same, with connection options (TLS among them).
    pub fn with_options(
        endpoints: Vec<String>,
        path_prefix: &str,
        prefix: Path,
        opts: ConnectOptions,
    ) -> EtcdNamer {
        let endpoints = if endpoints.is_empty() {
            vec![DEFAULT_ENDPOINT.to_string()]
        } else {
            endpoints
        };
        EtcdNamer {
            inner: Arc::new(Inner {
                endpoints,
                opts,
                path_prefix: path_prefix.trim_end_matches('/').to_string(),
                prefix,
                client: Mutex::new(None),
                hub: std::sync::OnceLock::new(),
                services: Services::default(),
                stats: NamerStats::default(),
                relists: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }
}

fn jittered(d: Duration) -> Duration {
    let ms = d.as_millis() as u64;
    Duration::from_millis(ms / 2 + (ms / 2).saturating_mul(u64::from(nanos() % 1000)) / 1000)
}

fn nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

enum WatchEnd {
    /// Nobody observes the service any more.
    Released,
    /// The revision to resume from was compacted: list again.
    Compacted,
    /// The stream broke; resume from the last revision.
    Broken(String),
}

impl Inner {
    async fn client(&self) -> Result<Client, String> {
        let mut c = self.client.lock().await;
        if let Some(c) = c.as_ref() {
            return Ok(c.clone());
        }
        let client = Client::connect(&self.endpoints, &self.opts)
            .await
            .map_err(|e| e.to_string())?;
        *c = Some(client.clone());
        Ok(client)
    }

    async fn drop_client(&self) {
        *self.client.lock().await = None;
    }

    fn publish(&self, cell: &ServiceCell, kvs: &BTreeMap<Vec<u8>, Endpoint>) {
        let before = cell.addr();
        cell.set_endpoints(kvs.values().cloned().collect());
        if cell.addr() != before {
            self.stats.updates.fetch_add(1, Relaxed);
        }
    }

    fn record_error(&self, cell: &ServiceCell, service: &str, e: &str) {
        self.stats.errors.fetch_add(1, Relaxed);
        tracing::warn!(namer = KIND, %service, error = %e, "etcd unavailable; keeping the last good set");
        cell.set_error(e.to_string());
    }

    /// Lists the service; returns its endpoints by key and the revision of the listing.
    async fn list(&self, key: &str) -> Result<(BTreeMap<Vec<u8>, Endpoint>, i64), String> {
        let mut client = self.client().await?;
        let resp = client
            .get_prefix(key.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
        let mut kvs = BTreeMap::new();
        for kv in resp.kvs {
            match parse_value(&kv.value) {
                Some(ep) => {
                    kvs.insert(kv.key, ep);
                }
                None => {
                    tracing::warn!(namer = KIND, key = %String::from_utf8_lossy(&kv.key), "value is neither host:port nor an etcd naming endpoint; skipped")
                }
            }
        }
        Ok((kvs, rev))
    }

    /// The namer's shared watch stream, started on first use.
    fn hub(self: &Arc<Self>) -> &Hub {
        self.hub.get_or_init(|| {
            let me = Arc::downgrade(self);
            Hub::start(move || {
                let me = me.clone();
                async move {
                    match me.upgrade() {
                        Some(i) => i.client().await,
                        None => Err("the namer is gone".to_string()),
                    }
                }
            })
        })
    }

    /// Watches from `rev + 1` on the shared stream, applying events to `kvs`, until the watch
    /// ends.
    async fn watch(
        self: &Arc<Self>,
        service: &str,
        key: &str,
        cell: &ServiceCell,
        kvs: &mut BTreeMap<Vec<u8>, Endpoint>,
        rev: &mut i64,
    ) -> WatchEnd {
        let hub = self.hub().clone();
        let mut rx = hub.watch(key, *rev + 1);
        let mut id = None;
        loop {
            let msg = tokio::select! {
                m = rx.recv() => m,
                _ = tokio::time::sleep(RELEASE_CHECK) => {
                    if self.services.release_if_unobserved(&service.to_string()) {
                        if let Some(id) = id {
                            hub.cancel(id);
                        }
                        return WatchEnd::Released;
                    }
                    continue;
                }
            };
            match msg {
                None => return WatchEnd::Broken("the watch hub stopped".into()),
                Some(WatchMsg::Created(i)) => {
                    // Watching again: what we serve is current.
                    id = Some(i);
                    self.publish(cell, kvs);
                }
                Some(WatchMsg::Compacted) => return WatchEnd::Compacted,
                Some(WatchMsg::Broken(e)) => return WatchEnd::Broken(e),
                Some(WatchMsg::Events(changes, header_rev)) => {
                    for c in changes {
                        *rev = (*rev).max(c.mod_revision);
                        if !c.put {
                            kvs.remove(&c.key);
                            continue;
                        }
                        match parse_value(&c.value) {
                            Some(ep) => {
                                kvs.insert(c.key, ep);
                            }
                            None => {
                                tracing::warn!(namer = KIND, key = %String::from_utf8_lossy(&c.key), "value is neither host:port nor an etcd naming endpoint; skipped");
                                kvs.remove(&c.key);
                            }
                        }
                    }
                    *rev = (*rev).max(header_rev);
                    self.publish(cell, kvs);
                }
            }
        }
    }

    async fn run(self: Arc<Self>, service: String, cell: Arc<ServiceCell>) {
        self.stats.watch_opens.fetch_add(1, Relaxed);
        let key = format!("{}/{}/", self.path_prefix, service);
        let mut backoff = BACKOFF_MIN;
        let mut state: Option<(BTreeMap<Vec<u8>, Endpoint>, i64)> = None;
        loop {
            if self.services.release_if_unobserved(&service) {
                break;
            }
            let (mut kvs, mut rev) = match state.take() {
                Some(s) => s,
                None => match self.list(&key).await {
                    Ok((kvs, rev)) => {
                        self.publish(&cell, &kvs);
                        (kvs, rev)
                    }
                    Err(e) => {
                        self.record_error(&cell, &service, &e);
                        self.drop_client().await;
                        tokio::time::sleep(jittered(backoff)).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                },
            };
            match self.watch(&service, &key, &cell, &mut kvs, &mut rev).await {
                WatchEnd::Released => break,
                WatchEnd::Compacted => {
                    self.relists.fetch_add(1, Relaxed);
                    tracing::info!(namer = KIND, %service, "watch revision compacted; listing again");
                    backoff = BACKOFF_MIN;
                }
                WatchEnd::Broken(e) => {
                    self.record_error(&cell, &service, &e);
                    // Resume from the last revision seen.
                    state = Some((kvs, rev));
                    tokio::time::sleep(jittered(backoff)).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        self.stats.watch_closes.fetch_add(1, Relaxed);
    }
}

impl Namer for EtcdNamer {
    fn lookup(&self, path: &Path) -> Activity<NameTree<Name>> {
        let this = &self.inner;
        this.stats.lookups.fetch_add(1, Relaxed);
        let Some(service) = path
            .elem_str(0)
            .filter(|s| !s.is_empty() && !s.contains('/'))
        else {
            return Var::Const(State::Ok(NameTree::Neg));
        };
        let service = service.to_string();
        let me = Arc::clone(this);
        let cell = this.services.get_or_start(
            &service,
            || this.prefix.concat(&path.take(1)),
            |cell| {
                tokio::spawn(me.run(service.clone(), cell));
            },
        );
        cell.tree(&path.drop(1))
    }

    fn state(&self) -> Value {
        let this = &self.inner;
        let services = this.services.states(String::clone);
        json!({
            "kind": KIND,
            "endpoints": this.endpoints,
            "pathPrefix": this.path_prefix,
            "services": services,
            "stats": this.stats.json(),
            "relists": this.relists.load(Relaxed),
        })
    }

    fn stats(&self) -> Vec<(String, i64)> {
        self.inner.services.stats_with(&self.inner.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_rows() {
        let check = |v: &str, want: Option<(&str, f64)>| {
            let got = parse_value(v.as_bytes()).map(|e| (e.addr.to_string(), e.weight));
            assert_eq!(got, want.map(|(a, w)| (a.to_string(), w)), "{v}");
        };
        check("127.0.0.1:8080", Some(("127.0.0.1:8080", 1.0)));
        check(" [::1]:9000\n", Some(("[::1]:9000", 1.0)));
        check(r#"{"Addr":"10.0.0.1:80"}"#, Some(("10.0.0.1:80", 1.0)));
        check(
            r#"{"Addr":"10.0.0.1:80","Metadata":{"weight":3}}"#,
            Some(("10.0.0.1:80", 3.0)),
        );
        check(
            r#"{"Addr":"10.0.0.1:80","Metadata":{"weight":"0.5"}}"#,
            Some(("10.0.0.1:80", 0.5)),
        );
        check(
            r#"{"Addr":"10.0.0.1:80","Metadata":"opaque"}"#,
            Some(("10.0.0.1:80", 1.0)),
        );
        check(
            r#"{"Op":0,"Addr":"10.0.0.1:80","Metadata":null}"#,
            Some(("10.0.0.1:80", 1.0)),
        );
        check(r#"{"addr":"10.0.0.1:80"}"#, None);
        check("web:80", None);
        check("", None);
        check("{not json", None);
    }
}
