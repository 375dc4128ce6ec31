//! The typed shape of a Linkerd 1 linker config: admin, routers and servers, client and service
//! parameters, and the per-namer and per-telemeter wrappers. Every struct rejects unknown keys;
//! absent keys stay `None` here and get their Linkerd default (named constants below) where they
//! are used. Cross-field checks (labels, ports, dtabs, files) live in `validate`.

use std::path::PathBuf;

use serde::de::{Deserializer, Error as _};
use serde::Deserialize;
use serde_json::Value;

use super::plugins::{
    Announcers, Backoffs, FailureAccruals, Identifiers, Interpreters, LoadBalancers, NoParams,
    ResponseClassifiers, TracePropagators, Transformers,
};
use super::registry::{nest, params, Entry, Family, Plugin};

/// Admin server port when `admin.port` is absent.
pub const DEFAULT_ADMIN_PORT: u16 = 9990;
/// Address the admin server and routers' servers bind when `ip` is absent.
pub const DEFAULT_IP: &str = "127.0.0.1";
/// `http` server port when `port` is absent.
pub const DEFAULT_HTTP_PORT: u16 = 4140;
/// `h2` server port when `port` is absent.
pub const DEFAULT_H2_PORT: u16 = 4142;

/// The protocol a router serves and speaks to its endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `http`: HTTP/1.1 (and 1.0) in, HTTP/1.1 out.
    Http1,
    /// `h2`: HTTP/2 in (prior knowledge, or ALPN `h2` with TLS), HTTP/2 out.
    H2,
}
/// Prefix put in front of identified names.
pub const DEFAULT_DST_PREFIX: &str = "/svc";
/// How long a request may wait for its name to bind.
pub const DEFAULT_BINDING_TIMEOUT_MS: u64 = 10_000;
/// Graceful shutdown deadline of the admin `/admin/shutdown`.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 10_000;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdminConfig {
    pub ip: Option<String>,
    pub port: Option<u16>,
    pub socket_options: Option<SocketOptions>,
    pub http_identifier_port: Option<u16>,
    pub shutdown_grace_ms: Option<u64>,
    pub tls: Option<ServerTls>,
    pub security: Option<AdminSecurity>,
    pub worker_threads: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdminSecurity {
    pub ui_enabled: Option<bool>,
    pub control_enabled: Option<bool>,
    pub diagnostics_enabled: Option<bool>,
    pub path_whitelist: Option<Vec<String>>,
    pub path_blacklist: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SocketOptions {
    pub no_delay: Option<bool>,
    pub reuse_addr: Option<bool>,
    pub reuse_port: Option<bool>,
    pub read_timeout_ms: Option<u64>,
    pub write_timeout_ms: Option<u64>,
    pub keep_alive: Option<bool>,
    pub backlog: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerTls {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// `serverCaChainPath` is its Linkerd 1.4.0 name.
    #[serde(alias = "serverCaChainPath")]
    pub intermediate_certs_path: Option<PathBuf>,
    pub ca_cert_path: Option<PathBuf>,
    pub require_client_auth: Option<bool>,
    pub protocols: Option<Vec<String>>,
    pub ciphers: Option<Vec<String>>,
    /// Listed by Linkerd's docs (not its code); accepted so documented configs load.
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Usage {
    pub org_id: Option<String>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Session {
    pub idle_time_ms: Option<u64>,
    pub life_time_ms: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// Servers

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerConfig {
    pub port: Option<u16>,
    pub ip: Option<String>,
    pub label: Option<String>,
    pub socket_options: Option<SocketOptions>,
    pub tls: Option<ServerTls>,
    pub max_concurrent_requests: Option<u32>,
    pub timeout_ms: Option<u64>,
    pub announce: Option<Vec<String>>,
    pub clear_context: Option<bool>,
    pub server_session: Option<Session>,
    pub add_forwarded_header: Option<ForwardedHeader>,
    pub timestamp_header: Option<String>,
    pub max_call_depth: Option<u32>,
    /// Beyond Linkerd: bound on reading a request head and on an idle keep-alive connection.
    pub header_read_timeout_ms: Option<u64>,
    /// Beyond Linkerd: open connections beyond which new ones are closed at once.
    pub max_connections: Option<usize>,
    // h2 servers (section 1.6).
    pub window_update_ratio: Option<f64>,
    pub header_table_bytes: Option<u32>,
    pub initial_stream_window_bytes: Option<u32>,
    pub max_concurrent_streams_per_connection: Option<u32>,
    pub max_frame_bytes: Option<u32>,
    pub max_header_list_bytes: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardedHeader {
    pub by: Option<Plugin<Labelers>>,
    #[serde(rename = "for")]
    pub for_: Option<Plugin<Labelers>>,
}

/// How a `Forwarded` header names a node (`by` / `for`).
#[derive(Debug, Clone, PartialEq)]
pub enum LabelerKind {
    Ip,
    IpPort,
    ConnectionRandom,
    RequestRandom,
    Router,
    Static { label: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticLabel {
    label: String,
}

pub struct Labelers;
impl Family for Labelers {
    type Out = LabelerKind;
    const NAME: &'static str = "forwarded-header labeler";
    fn kinds() -> &'static [(&'static str, Entry<LabelerKind>)] {
        &[
            (
                "ip",
                Entry::Supported(|v| params::<NoParams>(v).map(|_| LabelerKind::Ip)),
            ),
            (
                "ip:port",
                Entry::Supported(|v| params::<NoParams>(v).map(|_| LabelerKind::IpPort)),
            ),
            (
                "connectionRandom",
                Entry::Supported(|v| params::<NoParams>(v).map(|_| LabelerKind::ConnectionRandom)),
            ),
            (
                "requestRandom",
                Entry::Supported(|v| params::<NoParams>(v).map(|_| LabelerKind::RequestRandom)),
            ),
            (
                "router",
                Entry::Supported(|v| params::<NoParams>(v).map(|_| LabelerKind::Router)),
            ),
            (
                "static",
                Entry::Supported(|v| {
                    params::<StaticLabel>(v).map(|p| LabelerKind::Static { label: p.label })
                }),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Routers

/// The keys of an `http` router.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRouterConfig {
    pub protocol: String,
    pub label: Option<String>,
    pub dtab: Option<String>,
    pub dst_prefix: Option<String>,
    pub binding_timeout_ms: Option<u64>,
    pub binding_cache: Option<BindingCache>,
    pub client: Option<Plugin<Clients>>,
    pub service: Option<Plugin<Services>>,
    pub interpreter: Option<Plugin<Interpreters>>,
    pub originator: Option<bool>,
    pub announcers: Option<Vec<Plugin<Announcers>>>,
    pub experimental: Option<bool>,
    pub identifier: Option<IdentifierList>,
    pub servers: Option<Vec<ServerConfig>>,
    pub http_access_log: Option<PathBuf>,
    pub http_access_log_roll_policy: Option<String>,
    pub http_access_log_append: Option<bool>,
    pub http_access_log_rotate_count: Option<i32>,
    pub h2_access_log: Option<PathBuf>,
    pub h2_access_log_roll_policy: Option<String>,
    pub h2_access_log_append: Option<bool>,
    pub h2_access_log_rotate_count: Option<i32>,
    #[serde(rename = "maxHeadersKB")]
    pub max_headers_kb: Option<u32>,
    #[serde(rename = "maxInitialLineKB")]
    pub max_initial_line_kb: Option<u32>,
    #[serde(rename = "maxErrResponseKB")]
    pub max_err_response_kb: Option<u32>,
    #[serde(rename = "streamAfterContentLengthKB")]
    pub stream_after_content_length_kb: Option<u32>,
    pub streaming_enabled: Option<bool>,
    /// Beyond Linkerd: the longest pause allowed inside a request body (0: none).
    pub body_read_timeout_ms: Option<u64>,
    pub compression_level: Option<i32>,
    pub trace_propagator: Option<Plugin<TracePropagators>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BindingCache {
    pub paths: Option<usize>,
    pub trees: Option<usize>,
    pub bounds: Option<usize>,
    pub clients: Option<usize>,
    pub idle_ttl_secs: Option<u64>,
}

/// `identifier:` holds one identifier or a list tried in order.
#[derive(Debug, Clone)]
pub struct IdentifierList(pub Vec<Plugin<Identifiers>>);

impl<'de> Deserialize<'de> for IdentifierList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    serde_json::from_value(v)
                        .map_err(|e| D::Error::custom(nest(&format!("[{i}]"), &e.to_string())))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(IdentifierList),
            one => serde_json::from_value(one)
                .map(|p| IdentifierList(vec![p]))
                .map_err(D::Error::custom),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client and service configs: `io.l5d.global` (default) or `io.l5d.static` with prefixes

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientParams {
    pub load_balancer: Option<Plugin<LoadBalancers>>,
    pub failure_accrual: Option<Plugin<FailureAccruals>>,
    pub fail_fast: Option<bool>,
    pub requeue_budget: Option<RetryBudget>,
    pub request_attempt_timeout_ms: Option<u64>,
    pub host_connection_pool: Option<HostConnectionPool>,
    pub client_session: Option<Session>,
    pub socket_options: Option<SocketOptions>,
    pub tls: Option<ClientTls>,
    pub forward_client_cert: Option<bool>,
    // h2 clients (section 1.6).
    pub window_update_ratio: Option<f64>,
    pub header_table_bytes: Option<u32>,
    pub initial_stream_window_bytes: Option<u32>,
    pub max_frame_bytes: Option<u32>,
    pub max_header_list_bytes: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetryBudget {
    pub min_retries_per_sec: Option<u32>,
    pub percent_can_retry: Option<f64>,
    pub ttl_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostConnectionPool {
    pub min_size: Option<usize>,
    pub max_size: Option<usize>,
    pub idle_time_ms: Option<u64>,
    pub max_waiters: Option<usize>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientTls {
    pub common_name: Option<String>,
    pub disable_validation: Option<bool>,
    pub trust_certs: Option<Vec<PathBuf>>,
    pub trust_certs_bundle: Option<PathBuf>,
    pub client_auth: Option<ClientAuth>,
    pub protocols: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientAuth {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub intermediate_certs_path: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceParams {
    pub total_timeout_ms: Option<u64>,
    pub retries: Option<Retries>,
    pub response_classifier: Option<Plugin<ResponseClassifiers>>,
    // h2 services (section 1.6).
    pub classification_timeout_ms: Option<u64>,
    pub retry_buffer_size: Option<RetryBufferSize>,
}

/// How much of an h2 request (and response) is kept so the call can be retried.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetryBufferSize {
    pub request_bytes: Option<u64>,
    pub response_bytes: Option<u64>,
}

/// Default `retryBufferSize.requestBytes` and `responseBytes` (Linkerd's).
pub const DEFAULT_RETRY_BUFFER_BYTES: u64 = 16_383;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retries {
    pub budget: Option<RetryBudget>,
    pub backoff: Option<Plugin<Backoffs>>,
}

/// Parameters that apply to everything (`io.l5d.global`) or per prefix (`io.l5d.static`).
#[derive(Debug, Clone)]
pub enum PerPrefix<P> {
    Global(P),
    Static(Vec<(String, P)>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticConfigs {
    configs: Vec<Value>,
}

fn per_prefix<P: serde::de::DeserializeOwned>(
    v: Value,
    statically: bool,
) -> Result<PerPrefix<P>, String> {
    if !statically {
        return params(v).map(PerPrefix::Global);
    }
    let s: StaticConfigs = params(v)?;
    let mut out = Vec::new();
    for (i, mut c) in s.configs.into_iter().enumerate() {
        let at = format!("configs[{i}]");
        let prefix = match c.as_object_mut().map(|m| m.remove("prefix")) {
            Some(Some(Value::String(p))) => p,
            Some(Some(_)) => return Err(nest(&format!("{at}.prefix"), "expected a string")),
            Some(None) => return Err(nest(&at, "missing field `prefix`")),
            None => return Err(nest(&at, "expected a map")),
        };
        if let Err(e) = switchboard_namer_core::rewrite::PathMatcher::new(&prefix) {
            return Err(nest(&format!("{at}.prefix"), &e.to_string()));
        }
        let p = params(c).map_err(|e| nest(&at, &e))?;
        out.push((prefix, p));
    }
    Ok(PerPrefix::Static(out))
}

pub struct Clients;
impl Family for Clients {
    type Out = PerPrefix<ClientParams>;
    const NAME: &'static str = "client";
    fn default_kind() -> Option<&'static str> {
        Some("io.l5d.global")
    }
    fn kinds() -> &'static [(&'static str, Entry<Self::Out>)] {
        &[
            ("io.l5d.global", Entry::Supported(|v| per_prefix(v, false))),
            ("io.l5d.static", Entry::Supported(|v| per_prefix(v, true))),
        ]
    }
}

pub struct Services;
impl Family for Services {
    type Out = PerPrefix<ServiceParams>;
    const NAME: &'static str = "service";
    fn default_kind() -> Option<&'static str> {
        Some("io.l5d.global")
    }
    fn kinds() -> &'static [(&'static str, Entry<Self::Out>)] {
        &[
            ("io.l5d.global", Entry::Supported(|v| per_prefix(v, false))),
            ("io.l5d.static", Entry::Supported(|v| per_prefix(v, true))),
        ]
    }
}

/// Keys common to every namer, split off before the kind's own parameters are decoded.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamerCommon {
    pub prefix: Option<String>,
    pub experimental: Option<bool>,
    #[serde(default)]
    pub transformers: Vec<Plugin<Transformers>>,
}

/// Keys that sit on a namer beside its kind's own parameters.
pub const NAMER_COMMON_KEYS: [&str; 3] = ["prefix", "experimental", "transformers"];
