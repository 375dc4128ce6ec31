//! The `io.l5d.consul` namer: `/<dc>/<service>` (or `/<dc>/<tag>/<service>` with `includeTag`)
//! binds to the service's instances from Consul's catalog, or from its health API with
//! `useHealthCheck` (instances whose checks are all in `healthStatuses`). `.local` is the agent's
//! datacenter; service and tag are lowercased. An instance's weight is its Consul `Weights`
//! (Passing, or Warning when a check warns) times the highest matching `weights` tag entry.
//!
//! Each service has one long-poll watch shared by all users, done by Consul's blocking-query
//! rules: `index` + `wait`; the index is reset to 0 when it goes backwards and raised to 1 when
//! it is below 1; answers that do not move the index are rate-limited (a token bucket, burst 2,
//! 5 per second) so a misbehaving server cannot make the loop spin; errors back off with jitter
//! (10 ms to 5 s). No instances, or an unknown datacenter (`No path to datacenter`), is
//! Neg so a dtab falls back; any other failure keeps the last good set, marked stale.
//!
//! It talks HTTP itself (hyper) because the Consul crates time out long polls and drop
//! `Weights`, `Meta` and `Checks` (reference/backends.md §5). TLS to Consul is not supported.
//! It only names; it does not route.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::{json, Value};
use switchboard_namer_core::service::{NamerStats, ServiceCell, Services};
use switchboard_namer_core::{Activity, Endpoint, Name, NameTree, Namer, Path, State, Var};

/// The namer's `kind` in config.
pub const KIND: &str = "io.l5d.consul";
/// How long one blocking query waits (Consul caps it at 10 minutes).
pub const BLOCKING_WAIT: Duration = Duration::from_secs(60);
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Rate limit of one watch's loop: a bucket of 2 tokens, refilled at this many per second.
const REQUESTS_PER_SEC: f64 = 5.0;
const BUCKET: f64 = 2.0;
/// Metadata key Linkerd's `setHost` uses for the Host to send.
pub const AUTHORITY_KEY: &str = "authority";

/// Read consistency of the blocking queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    #[default]
    Default,
    Stale,
    Consistent,
}

/// Everything the namer is configured with.
#[derive(Debug, Clone)]
pub struct ConsulConfig {
    pub host: String,
    pub port: u16,
    pub include_tag: bool,
    pub use_health_check: bool,
    pub health_statuses: Vec<String>,
    pub token: Option<String>,
    pub set_host: bool,
    pub consistency: Consistency,
    pub prefer_service_address: bool,
    /// `(tag, weight)`: an instance with the tag gets the highest matching weight.
    pub weights: Vec<(String, f64)>,
    /// TLS to the agent (`https://`); `None`: plaintext.
    pub tls: Option<ConsulTls>,
}

/// TLS to Consul: the rustls config (roots, client certificate) and the name the agent's
/// certificate must carry (default: `host`).
#[derive(Clone)]
pub struct ConsulTls {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: Option<String>,
}

impl std::fmt::Debug for ConsulTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulTls")
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl Default for ConsulConfig {
    fn default() -> Self {
        ConsulConfig {
            host: "localhost".into(),
            port: 8500,
            include_tag: false,
            use_health_check: false,
            health_statuses: vec!["passing".into()],
            token: None,
            set_host: false,
            consistency: Consistency::Default,
            prefer_service_address: true,
            weights: Vec::new(),
            tls: None,
        }
    }
}

/// What a watch is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// `None` for `.local`.
    pub dc: Option<String>,
    pub tag: Option<String>,
    pub service: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Weights {
    passing: Option<f64>,
    warning: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CatalogEntry {
    address: String,
    service_address: Option<String>,
    service_port: u16,
    service_tags: Option<Vec<String>>,
    service_weights: Option<Weights>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthEntry {
    node: HealthNode,
    service: HealthService,
    checks: Option<Vec<HealthCheck>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthNode {
    address: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthService {
    address: Option<String>,
    port: u16,
    tags: Option<Vec<String>>,
    weights: Option<Weights>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthCheck {
    status: String,
}

/// One instance as the API gave it.
struct Instance {
    node_address: String,
    service_address: Option<String>,
    port: u16,
    tags: Vec<String>,
    weights: Option<Weights>,
    warning: bool,
}

/// Why a poll got no instance list.
enum PollError {
    /// The datacenter is unknown: Neg.
    NoDatacenter,
    Other(String),
}

/// The `io.l5d.consul` namer (cheap to clone).
#[derive(Clone)]
pub struct ConsulNamer {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: ConsulConfig,
    prefix: Path,
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    services: Services<Key>,
    stats: NamerStats,
    local_dc: Mutex<Option<String>>,
}

fn jittered(d: Duration) -> Duration {
    let ms = d.as_millis() as u64;
    Duration::from_millis(ms / 2 + fastrand::u64(0..=ms / 2))
}

/// Percent-encodes a URL path segment or query value.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl ConsulNamer {
    pub fn new(cfg: ConsulConfig, prefix: Path) -> ConsulNamer {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(Duration::from_secs(2)));
        conn.enforce_http(false);
        // Plaintext or TLS by the URI's scheme, which `base` chooses from `tls`.
        let b = hyper_rustls::HttpsConnectorBuilder::new();
        let conn = match &cfg.tls {
            Some(t) => {
                let b = b.with_tls_config((*t.config).clone()).https_only();
                let b = match t
                    .server_name
                    .as_ref()
                    .and_then(|n| rustls::pki_types::ServerName::try_from(n.clone()).ok())
                {
                    Some(n) => {
                        b.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(n))
                    }
                    None => b,
                };
                b.enable_http1().wrap_connector(conn)
            }
            // Plain HTTP only: an https URI would find no trust roots.
            None => b
                .with_tls_config(
                    rustls::ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                )
                .https_or_http()
                .enable_http1()
                .wrap_connector(conn),
        };
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(conn);
        ConsulNamer {
            inner: Arc::new(Inner {
                cfg,
                prefix,
                http,
                services: Services::default(),
                stats: NamerStats::default(),
                local_dc: Mutex::new(None),
            }),
        }
    }
}

/// A token bucket limiting one watch's request rate.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            tokens: BUCKET,
            at: Instant::now(),
        }
    }

    async fn take(&mut self) {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * REQUESTS_PER_SEC)
            .min(BUCKET);
        self.at = now;
        if self.tokens < 1.0 {
            let wait = (1.0 - self.tokens) / REQUESTS_PER_SEC;
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            self.tokens = 1.0;
            self.at = Instant::now();
        }
        self.tokens -= 1.0;
    }
}

impl Inner {
    fn base(&self) -> String {
        let scheme = if self.cfg.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}:{}", self.cfg.host, self.cfg.port)
    }

    async fn get(&self, path_and_query: &str) -> Result<(u16, Option<u64>, Bytes), String> {
        let uri: hyper::Uri = format!("{}{path_and_query}", self.base())
            .parse()
            .map_err(|e| format!("bad request URI: {e}"))?;
        let mut req = hyper::Request::get(uri);
        if let Some(t) = &self.cfg.token {
            req = req.header("X-Consul-Token", t.as_str());
        }
        let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
        // The server holds a blocking query for `wait` plus up to wait/16 of jitter.
        let limit = BLOCKING_WAIT + BLOCKING_WAIT / 16 + Duration::from_secs(10);
        let resp = tokio::time::timeout(limit, self.http.request(req))
            .await
            .map_err(|_| "Consul did not answer in time".to_string())?
            .map_err(|e| format!("Consul request failed: {e}"))?;
        let status = resp.status().as_u16();
        let index = resp
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let body = tokio::time::timeout(limit, resp.into_body().collect())
            .await
            .map_err(|_| "Consul body timed out".to_string())?
            .map_err(|e| format!("reading Consul's answer: {e}"))?
            .to_bytes();
        Ok((status, index, body))
    }

    /// The agent's datacenter (for `setHost` on `.local` names).
    async fn local_dc(&self) -> Option<String> {
        if let Some(dc) = self.local_dc.lock().ok()?.clone() {
            return Some(dc);
        }
        let (status, _, body) = self.get("/v1/agent/self").await.ok()?;
        if status != 200 {
            return None;
        }
        let v: Value = serde_json::from_slice(&body).ok()?;
        let dc = v.get("Config")?.get("Datacenter")?.as_str()?.to_lowercase();
        if let Ok(mut g) = self.local_dc.lock() {
            *g = Some(dc.clone());
        }
        Some(dc)
    }

    fn url(&self, key: &Key, index: u64) -> String {
        let api = if self.cfg.use_health_check {
            "health"
        } else {
            "catalog"
        };
        let mut q = format!(
            "/v1/{api}/service/{}?index={index}&wait={}s",
            enc(&key.service),
            BLOCKING_WAIT.as_secs()
        );
        if let Some(dc) = &key.dc {
            q.push_str(&format!("&dc={}", enc(dc)));
        }
        if let Some(tag) = &key.tag {
            q.push_str(&format!("&tag={}", enc(tag)));
        }
        match self.cfg.consistency {
            Consistency::Default => {}
            Consistency::Stale => q.push_str("&stale"),
            Consistency::Consistent => q.push_str("&consistent"),
        }
        q
    }

    fn instances(&self, body: &[u8]) -> Result<Vec<Instance>, String> {
        if self.cfg.use_health_check {
            let entries: Vec<HealthEntry> =
                serde_json::from_slice(body).map_err(|e| format!("bad health answer: {e}"))?;
            Ok(entries
                .into_iter()
                .filter_map(|e| {
                    let statuses: Vec<String> = e
                        .checks
                        .unwrap_or_default()
                        .into_iter()
                        .map(|c| c.status.to_lowercase())
                        .collect();
                    let ok = statuses
                        .iter()
                        .all(|s| self.cfg.health_statuses.iter().any(|h| h == s));
                    ok.then(|| Instance {
                        node_address: e.node.address,
                        service_address: e.service.address,
                        port: e.service.port,
                        tags: e.service.tags.unwrap_or_default(),
                        weights: e.service.weights,
                        warning: statuses.iter().any(|s| s == "warning"),
                    })
                })
                .collect())
        } else {
            let entries: Vec<CatalogEntry> =
                serde_json::from_slice(body).map_err(|e| format!("bad catalog answer: {e}"))?;
            Ok(entries
                .into_iter()
                .map(|e| Instance {
                    node_address: e.address,
                    service_address: e.service_address,
                    port: e.service_port,
                    tags: e.service_tags.unwrap_or_default(),
                    weights: e.service_weights,
                    warning: false,
                })
                .collect())
        }
    }

    async fn endpoints(&self, key: &Key, instances: Vec<Instance>) -> Vec<Endpoint> {
        let authority = if self.cfg.set_host {
            let dc = match &key.dc {
                Some(dc) => Some(dc.clone()),
                None => self.local_dc().await,
            };
            dc.map(|dc| match &key.tag {
                Some(t) => format!("{t}.{}.service.{dc}.consul", key.service),
                None => format!("{}.service.{dc}.consul", key.service),
            })
        } else {
            None
        };
        let mut out = Vec::new();
        for i in instances {
            let host = match (&i.service_address, self.cfg.prefer_service_address) {
                (Some(a), true) if !a.is_empty() => a.clone(),
                _ => i.node_address.clone(),
            };
            let ips: Vec<IpAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                Err(_) => match tokio::net::lookup_host((host.as_str(), i.port)).await {
                    Ok(it) => it.map(|a| a.ip()).collect(),
                    Err(e) => {
                        tracing::warn!(namer = KIND, %host, error = %e, "instance address does not resolve; skipped");
                        Vec::new()
                    }
                },
            };
            let consul_weight = match &i.weights {
                Some(w) if i.warning => w.warning.unwrap_or(1.0),
                Some(w) => w.passing.unwrap_or(1.0),
                None => 1.0,
            };
            let tag_weight = self
                .cfg
                .weights
                .iter()
                .filter(|(t, _)| i.tags.iter().any(|x| x == t))
                .map(|(_, w)| *w)
                .fold(None, |m: Option<f64>, w| Some(m.map_or(w, |m| m.max(w))))
                .unwrap_or(1.0);
            for ip in ips {
                let mut ep = Endpoint::new(SocketAddr::new(ip, i.port))
                    .with_weight(consul_weight * tag_weight);
                if let Some(a) = &authority {
                    ep.meta.insert(AUTHORITY_KEY.into(), json!(a));
                }
                out.push(ep);
            }
        }
        out
    }

    async fn poll(&self, key: &Key, index: u64) -> Result<(Vec<Endpoint>, Option<u64>), PollError> {
        let (status, new_index, body) = self
            .get(&self.url(key, index))
            .await
            .map_err(PollError::Other)?;
        match status {
            200 => {
                let instances = self.instances(&body).map_err(PollError::Other)?;
                Ok((self.endpoints(key, instances).await, new_index))
            }
            _ => {
                let text = String::from_utf8_lossy(&body).trim().to_string();
                if text.contains("No path to datacenter") {
                    Err(PollError::NoDatacenter)
                } else {
                    Err(PollError::Other(format!(
                        "Consul answered {status}: {text}"
                    )))
                }
            }
        }
    }

    async fn run(self: Arc<Self>, key: Key, cell: Arc<ServiceCell>) {
        self.stats.watch_opens.fetch_add(1, Relaxed);
        let mut index = 0u64;
        let mut backoff = BACKOFF_MIN;
        let mut bucket = Bucket::new();
        // Answers that move the index are real changes and are followed at once; answers that
        // do not (early returns, timeouts, a stuck index) spend a token, so they cannot loop hot.
        let mut advanced = false;
        loop {
            if self.services.release_if_unobserved(&key) {
                break;
            }
            if !advanced {
                bucket.take().await;
            }
            advanced = false;
            match self.poll(&key, index).await {
                Ok((eps, new_index)) => {
                    backoff = BACKOFF_MIN;
                    let before = cell.addr();
                    cell.set_endpoints(eps);
                    if cell.addr() != before {
                        self.stats.updates.fetch_add(1, Relaxed);
                    }
                    advanced = new_index.is_some_and(|n| n > index && index > 0);
                    index = match new_index {
                        // Consul's rules: backwards resets to 0, below 1 counts as 1.
                        Some(n) if n < index => 0,
                        Some(n) => n.max(1),
                        None => 0,
                    };
                }
                Err(PollError::NoDatacenter) => {
                    cell.set_neg();
                    index = 0;
                    tokio::time::sleep(jittered(BACKOFF_MAX)).await;
                }
                Err(PollError::Other(e)) => {
                    self.stats.errors.fetch_add(1, Relaxed);
                    tracing::warn!(namer = KIND, service = %key.service, error = %e, "Consul unavailable; keeping the last good set");
                    cell.set_error(e);
                    tokio::time::sleep(jittered(backoff)).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    index = 0;
                }
            }
        }
        self.stats.watch_closes.fetch_add(1, Relaxed);
    }
}

impl Namer for ConsulNamer {
    fn lookup(&self, path: &Path) -> Activity<NameTree<Name>> {
        let this = &self.inner;
        this.stats.lookups.fetch_add(1, Relaxed);
        let need = if this.cfg.include_tag { 3 } else { 2 };
        let elems: Option<Vec<String>> = (0..need)
            .map(|i| {
                path.elem_str(i)
                    .filter(|s| !s.is_empty())
                    .map(str::to_lowercase)
            })
            .collect();
        let Some(elems) = elems else {
            return Var::Const(State::Ok(NameTree::Neg));
        };
        let dc = (elems[0] != ".local").then(|| elems[0].clone());
        let key = Key {
            dc,
            tag: this.cfg.include_tag.then(|| elems[1].clone()),
            service: elems[need - 1].clone(),
        };
        let me = Arc::clone(this);
        let k2 = key.clone();
        let cell = this.services.get_or_start(
            &key,
            || this.prefix.concat(&path.take(need)),
            |cell| {
                tokio::spawn(me.run(k2, cell));
            },
        );
        cell.tree(&path.drop(need))
    }

    fn state(&self) -> Value {
        let this = &self.inner;
        let services = this.services.states(|k| {
            format!(
                "{}/{}{}",
                k.dc.as_deref().unwrap_or(".local"),
                k.tag.as_ref().map(|t| format!("{t}/")).unwrap_or_default(),
                k.service
            )
        });
        json!({
            "kind": KIND,
            "host": this.cfg.host,
            "port": this.cfg.port,
            "services": services,
            "stats": this.stats.json(),
        })
    }

    fn stats(&self) -> Vec<(String, i64)> {
        self.inner.services.stats_with(&self.inner.stats)
    }
}
