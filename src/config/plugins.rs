//! The plugin families and their kinds: parameters, defaults (named constants, Linkerd 1's
//! values) and which Linkerd 1 kinds are not supported yet. Decoding only: building the running
//! objects from these happens where each concern lives (namers in `build`, routers later).

use std::path::PathBuf;

use serde::Deserialize;

use super::registry::{nest, params, Entry, Family, Plugin};

const NEEDS_K8S: &str = "Kubernetes discovery is not part of Switchboard yet";
const NEEDS_THRIFT_NAMERD: &str = "namerd's Thrift interface is not supported: use \
     `io.l5d.namerd.http` (namerd's io.l5d.httpController), or configure the namers in Switchboard itself";
const NO_TRACING: &str = "tracing export is not built yet";

// ---------------------------------------------------------------------------------------------
// Namers

/// A configured namer's kind-specific part.
#[derive(Debug, Clone, PartialEq)]
pub enum NamerKind {
    Fs(FsNamerParams),
    Rewrite(RewriteNamerParams),
    DnsSrv(DnsSrvNamerParams),
    Etcd(EtcdNamerParams),
    Consul(ConsulNamerParams),
    Serversets(ZkNamerParams),
    ZkLeader(ZkNamerParams),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZkAddr {
    pub host: String,
    /// ZooKeeper's default client port when absent.
    pub port: Option<u16>,
}

/// Default ZooKeeper client port.
pub const DEFAULT_ZK_PORT: u16 = 2181;

/// `io.l5d.serversets` and `io.l5d.zkLeader`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ZkNamerParams {
    pub zk_addrs: Vec<ZkAddr>,
}

fn zk_params(v: serde_json::Value) -> Result<ZkNamerParams, String> {
    let p = params::<ZkNamerParams>(v)?;
    if p.zk_addrs.is_empty() {
        return Err(nest(
            "zkAddrs",
            "at least one ZooKeeper address is required",
        ));
    }
    Ok(p)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsulWeight {
    pub tag: String,
    pub weight: f64,
}

/// `io.l5d.consul` (section 1.9). `failFast`, `fixedLengthStreamedAfterKB` and
/// `transferMetadata` are accepted for compatibility and have no effect.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsulNamerParams {
    pub host: Option<String>,
    pub port: Option<u16>,
    #[serde(default)]
    pub include_tag: bool,
    #[serde(default)]
    pub use_health_check: bool,
    pub health_statuses: Option<Vec<String>>,
    pub token: Option<String>,
    #[serde(default)]
    pub set_host: bool,
    pub consistency_mode: Option<String>,
    pub fail_fast: Option<bool>,
    pub prefer_service_address: Option<bool>,
    #[serde(default)]
    pub weights: Vec<ConsulWeight>,
    #[serde(rename = "fixedLengthStreamedAfterKB")]
    pub fixed_length_streamed_after_kb: Option<u32>,
    pub tls: Option<crate::config::model::ClientTls>,
    pub transfer_metadata: Option<bool>,
}

/// A namer's or an interpreter's TLS names one server: its `commonName` takes no `{var}`.
pub(crate) fn no_template(key: &str, name: Option<&str>) -> Result<(), String> {
    match name {
        Some(n) if n.contains('{') || n.contains('}') => Err(nest(
            key,
            &format!("`{n}`: this commonName names one server and takes no variables"),
        )),
        Some(n) if rustls::pki_types::ServerName::try_from(n).is_err() => {
            Err(nest(key, &format!("`{n}` is not a DNS name or IP address")))
        }
        _ => Ok(()),
    }
}

/// What TLS to namerd takes: one `commonName` without variables; without one (validation off),
/// the `dst` host is the name sent, so it must be a DNS name or an IP address.
fn namerd_tls_rules(t: &crate::config::model::ClientTls, dst: &str) -> Result<(), String> {
    no_template("tls.commonName", t.common_name.as_deref())?;
    // Without `commonName` and with validation on, the client rules refuse the block.
    if t.common_name.is_none() && t.disable_validation == Some(true) {
        let authority = switchboard_namerd::client::authority_of_dst(dst).unwrap_or_default();
        let host = authority
            .rsplit_once(':')
            .map_or(authority.as_str(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        if rustls::pki_types::ServerName::try_from(host).is_err() {
            return Err(nest(
                "tls",
                &format!(
                    "`{host}` (the `dst` host) is not a DNS name or IP address to name namerd by: set `commonName`"
                ),
            ));
        }
    }
    Ok(())
}

/// What TLS to etcd takes (the etcd namer's and namerd's etcd storage): a CA to trust, and a
/// `commonName` without variables.
pub(crate) fn etcd_tls_rules(t: &crate::config::model::ClientTls) -> Result<(), String> {
    no_template("tls.commonName", t.common_name.as_deref())?;
    if t.disable_validation == Some(true) {
        return Err(nest(
            "tls",
            "`disableValidation` is not supported for etcd: give its CA in `trustCertsBundle`",
        ));
    }
    if t.trust_certs_bundle.is_none() && t.trust_certs.as_ref().is_none_or(|v| v.is_empty()) {
        return Err(nest(
            "tls",
            "TLS to etcd needs `trustCertsBundle` (the CA that signs etcd's certificate)",
        ));
    }
    Ok(())
}

/// Linkerd's default `refreshIntervalSeconds` of `io.l5d.dnssrv`.
pub const DEFAULT_DNSSRV_REFRESH_SECS: u64 = 5;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DnsSrvNamerParams {
    pub refresh_interval_seconds: Option<u64>,
    /// `ip` or `ip:port`; the system resolver when absent.
    #[serde(default)]
    pub dns_hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EtcdNamerParams {
    /// `host:port` of the etcd members (default `127.0.0.1:2379`).
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// The key prefix services live under (default `/services`).
    pub path_prefix: Option<String>,
    /// TLS to etcd: `trustCertsBundle` (required), `commonName`, `clientAuth`.
    pub tls: Option<crate::config::model::ClientTls>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FsNamerParams {
    pub root_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RewriteNamerParams {
    pub pattern: String,
    pub name: String,
}

pub struct Namers;
impl Family for Namers {
    type Out = NamerKind;
    const NAME: &'static str = "namer";
    fn kinds() -> &'static [(&'static str, Entry<NamerKind>)] {
        &[
            (
                "io.l5d.fs",
                Entry::Supported(|v| params(v).map(NamerKind::Fs)),
            ),
            (
                "io.l5d.rewrite",
                Entry::Supported(|v| params(v).map(NamerKind::Rewrite)),
            ),
            (
                "io.l5d.consul",
                Entry::Supported(|v| {
                    let p = params::<ConsulNamerParams>(v)?;
                    if let Some(t) = &p.tls {
                        no_template("tls.commonName", t.common_name.as_deref())?;
                    }
                    if let Some(m) = &p.consistency_mode {
                        if !matches!(m.as_str(), "default" | "stale" | "consistent") {
                            return Err(nest(
                                "consistencyMode",
                                &format!("`{m}`: expected default, stale or consistent"),
                            ));
                        }
                    }
                    for (i, s) in p.health_statuses.iter().flatten().enumerate() {
                        if !matches!(
                            s.as_str(),
                            "passing" | "warning" | "critical" | "maintenance"
                        ) {
                            return Err(nest(
                                &format!("healthStatuses[{i}]"),
                                &format!(
                                    "`{s}`: expected passing, warning, critical or maintenance"
                                ),
                            ));
                        }
                    }
                    Ok(NamerKind::Consul(p))
                }),
            ),
            (
                "io.l5d.serversets",
                Entry::Supported(|v| zk_params(v).map(NamerKind::Serversets)),
            ),
            (
                "io.l5d.zkLeader",
                Entry::Supported(|v| zk_params(v).map(NamerKind::ZkLeader)),
            ),
            (
                "io.l5d.dnssrv",
                Entry::Supported(|v| {
                    let p = params::<DnsSrvNamerParams>(v)?;
                    for (i, h) in p.dns_hosts.iter().enumerate() {
                        switchboard_namer_dnssrv::parse_dns_host(h)
                            .map_err(|e| nest(&format!("dnsHosts[{i}]"), &e))?;
                    }
                    if p.refresh_interval_seconds == Some(0) {
                        return Err(nest("refreshIntervalSeconds", "must be at least 1"));
                    }
                    Ok(NamerKind::DnsSrv(p))
                }),
            ),
            (
                "io.l5d.etcd",
                Entry::Supported(|v| {
                    let p = params::<EtcdNamerParams>(v)?;
                    if let Some(pp) = &p.path_prefix {
                        if !pp.starts_with('/') {
                            return Err(nest("pathPrefix", &format!("`{pp}` must start with `/`")));
                        }
                    }
                    if let Some(t) = &p.tls {
                        if t.enabled != Some(false) {
                            if let Some(e) = p.endpoints.iter().find(|e| e.starts_with("http://")) {
                                return Err(nest(
                                    "endpoints",
                                    &format!("`{e}` is plaintext but `tls` is set: write it `https://` or as host:port"),
                                ));
                            }
                        }
                        etcd_tls_rules(t)?;
                    }
                    Ok(NamerKind::Etcd(p))
                }),
            ),
            ("io.l5d.k8s", Entry::NotYet(NEEDS_K8S)),
            ("io.l5d.k8s.ns", Entry::NotYet(NEEDS_K8S)),
            ("io.l5d.k8s.external", Entry::NotYet(NEEDS_K8S)),
            ("io.l5d.k8s.istio", Entry::NotYet(NEEDS_K8S)),
            (
                "io.l5d.marathon",
                Entry::NotYet("Marathon discovery is not part of Switchboard yet"),
            ),
            (
                "io.l5d.curator",
                Entry::NotYet("Curator discovery is not part of Switchboard yet"),
            ),
            (
                "io.l5d.rancher",
                Entry::NotYet("Rancher discovery is not part of Switchboard yet"),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Transformers

/// A name-tree transformer (section 1.11), with the prefix its ids get (after `/%`).
#[derive(Debug, Clone, PartialEq)]
pub struct TransformerKind {
    pub prefix: String,
    pub kind: TransformerParams,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TransformerParams {
    /// `io.l5d.port`: every address gets `port`.
    Port(u16),
    /// `io.l5d.localhost`: only this host's own addresses (its interfaces').
    Localhost,
    /// `io.l5d.specificHost`: only the addresses of `host`.
    SpecificHost(String),
    /// `io.l5d.replace`: every leaf replaced by `path`, bound (interpreter only).
    Replace(String),
    /// `io.l5d.const`: the tree replaced by `path`, bound (interpreter only).
    Const(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathTransformerParams {
    path: String,
    prefix: Option<String>,
}

fn path_transformer(
    v: serde_json::Value,
    default: &str,
    mk: fn(String) -> TransformerParams,
) -> Result<TransformerKind, String> {
    let p = params::<PathTransformerParams>(v)?;
    switchboard_namer_core::Path::read(&p.path).map_err(|e| nest("path", &e.to_string()))?;
    Ok(TransformerKind {
        prefix: transformer_prefix(p.prefix, default.into())?,
        kind: mk(p.path),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PortTransformerParams {
    port: u16,
    prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrefixOnlyParams {
    prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecificHostParams {
    host: String,
    prefix: Option<String>,
}

/// A transformer's `prefix`, checked as a path, or its default.
fn transformer_prefix(p: Option<String>, default: String) -> Result<String, String> {
    let p = p.unwrap_or(default);
    switchboard_namer_core::Path::read(&p).map_err(|e| nest("prefix", &e.to_string()))?;
    Ok(p)
}

pub struct Transformers;
impl Family for Transformers {
    type Out = TransformerKind;
    const NAME: &'static str = "transformer";
    fn kinds() -> &'static [(&'static str, Entry<TransformerKind>)] {
        &[
            (
                "io.l5d.localhost",
                Entry::Supported(|v| {
                    let p = params::<PrefixOnlyParams>(v)?;
                    Ok(TransformerKind {
                        prefix: transformer_prefix(p.prefix, "/io.l5d.localhost".into())?,
                        kind: TransformerParams::Localhost,
                    })
                }),
            ),
            (
                "io.l5d.specificHost",
                Entry::Supported(|v| {
                    let p = params::<SpecificHostParams>(v)?;
                    if p.host.is_empty() {
                        return Err(nest("host", "must not be empty"));
                    }
                    Ok(TransformerKind {
                        prefix: transformer_prefix(p.prefix, "/io.l5d.specificHost".into())?,
                        kind: TransformerParams::SpecificHost(p.host),
                    })
                }),
            ),
            (
                "io.l5d.port",
                Entry::Supported(|v| {
                    let p = params::<PortTransformerParams>(v)?;
                    if p.port == 0 {
                        return Err(nest("port", "must be 1 to 65535"));
                    }
                    Ok(TransformerKind {
                        prefix: transformer_prefix(p.prefix, format!("/io.l5d.port/{}", p.port))?,
                        kind: TransformerParams::Port(p.port),
                    })
                }),
            ),
            (
                "io.l5d.replace",
                Entry::Supported(|v| {
                    path_transformer(v, "/io.l5d.replace", TransformerParams::Replace)
                }),
            ),
            (
                "io.l5d.const",
                Entry::Supported(|v| {
                    path_transformer(v, "/io.l5d.const", TransformerParams::Const)
                }),
            ),
            ("io.l5d.k8s.daemonset", Entry::NotYet(NEEDS_K8S)),
            ("io.l5d.k8s.localnode", Entry::NotYet(NEEDS_K8S)),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Interpreters

#[derive(Debug, Clone)]
pub enum InterpreterKind {
    Default(DefaultInterpreterParams),
    /// `io.l5d.fs`: a watched dtab file, then the router's dtab, then the namers.
    Fs(FsInterpreterParams),
    /// `io.l5d.namerd.http`: namerd binds, over its HTTP API.
    NamerdHttp(NamerdHttpParams),
    /// `io.l5d.mesh`: namerd binds, over its gRPC mesh API.
    Mesh(MeshParams),
    /// `io.l5d.consul.interpreter`: a namespace's dtab read from Consul KV (as namerd stores
    /// it), then as `default`.
    ConsulDtab(ConsulInterpreterParams),
}

impl InterpreterKind {
    /// `interpreter.transformers`.
    pub fn transformers(&self) -> &[Plugin<Transformers>] {
        match self {
            InterpreterKind::Default(p) => &p.transformers,
            InterpreterKind::Fs(p) => &p.transformers,
            InterpreterKind::NamerdHttp(p) => &p.transformers,
            InterpreterKind::Mesh(p) => &p.transformers,
            InterpreterKind::ConsulDtab(p) => &p.transformers,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FsInterpreterParams {
    pub dtab_file: PathBuf,
    #[serde(default)]
    pub transformers: Vec<Plugin<Transformers>>,
}

/// `retry` of the namerd interpreters: jittered exponential backoff bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamerdRetry {
    pub base_seconds: Option<u64>,
    pub max_seconds: Option<u64>,
}

/// Linkerd's default namerd namespace.
pub const DEFAULT_NAMERD_NAMESPACE: &str = "default";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamerdHttpParams {
    /// Linkerd required `experimental: true`; accepted either way.
    pub experimental: Option<bool>,
    pub dst: String,
    pub namespace: Option<String>,
    pub retry: Option<NamerdRetry>,
    /// TLS to namerd (the client `tls` block; `commonName` names namerd's certificate).
    pub tls: Option<crate::config::model::ClientTls>,
    #[serde(default)]
    pub transformers: Vec<Plugin<Transformers>>,
}

fn namerd_http_params(v: serde_json::Value) -> Result<InterpreterKind, String> {
    let p = params::<NamerdHttpParams>(v)?;
    if let Err(e) = switchboard_namerd::client::authority_of_dst(&p.dst) {
        return Err(nest("dst", &e));
    }
    if let Some(ns) = &p.namespace {
        if let Err(e) = switchboard_namerd::store::check_namespace(ns) {
            return Err(nest("namespace", &e));
        }
    }
    check_retry(&p.retry)?;
    if let Some(t) = &p.tls {
        namerd_tls_rules(t, &p.dst)?;
    }
    Ok(InterpreterKind::NamerdHttp(p))
}

/// `io.l5d.consul.interpreter` (section 1.8): Consul's KV as namerd's `io.l5d.consul` storage
/// keeps it. `failFast` and `backoff` are accepted for compatibility (the store always keeps
/// its last dtab and retries with its own backoff).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsulInterpreterParams {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path_prefix: Option<String>,
    pub namespace: Option<String>,
    pub token: Option<String>,
    pub datacenter: Option<String>,
    pub read_consistency_mode: Option<String>,
    pub write_consistency_mode: Option<String>,
    pub fail_fast: Option<bool>,
    pub backoff: Option<serde_json::Value>,
    /// TLS to Consul (`commonName` defaults to `host`).
    pub tls: Option<crate::config::model::ClientTls>,
    #[serde(default)]
    pub transformers: Vec<Plugin<Transformers>>,
}

fn consul_interpreter_params(v: serde_json::Value) -> Result<InterpreterKind, String> {
    let p = params::<ConsulInterpreterParams>(v)?;
    if let Some(ns) = &p.namespace {
        if let Err(e) = switchboard_namerd::store::check_namespace(ns) {
            return Err(nest("namespace", &e));
        }
    }
    if let Some(pp) = &p.path_prefix {
        if !pp.starts_with('/') || pp.len() < 2 {
            return Err(nest("pathPrefix", &format!("`{pp}` is not a key prefix")));
        }
    }
    consistency_modes(&p.read_consistency_mode, &p.write_consistency_mode)?;
    if let Some(t) = &p.tls {
        no_template("tls.commonName", t.common_name.as_deref())?;
    }
    Ok(InterpreterKind::ConsulDtab(p))
}

/// `readConsistencyMode` and `writeConsistencyMode` of the Consul KV kinds.
pub(crate) fn consistency_modes(
    read: &Option<String>,
    write: &Option<String>,
) -> Result<(), String> {
    for (key, m) in [
        ("readConsistencyMode", read),
        ("writeConsistencyMode", write),
    ] {
        if let Some(m) = m {
            if switchboard_namerd::store::consul::Consistency::parse(m).is_none() {
                return Err(nest(
                    key,
                    &format!("`{m}`: expected one of default, stale, consistent"),
                ));
            }
        }
    }
    Ok(())
}

fn check_retry(r: &Option<NamerdRetry>) -> Result<(), String> {
    if let Some(r) = r {
        if r.base_seconds == Some(0) {
            return Err(nest("retry.baseSeconds", "must be at least 1"));
        }
        if let (Some(b), Some(m)) = (r.base_seconds, r.max_seconds) {
            if m < b {
                return Err(nest("retry.maxSeconds", "must not be below baseSeconds"));
            }
        }
    }
    Ok(())
}

/// `failureThreshold` of `io.l5d.mesh`: how the HTTP/2 connection to namerd is probed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MeshFailureThreshold {
    /// Ping interval (Linkerd's default 5000).
    pub min_period_ms: Option<u64>,
    /// How long an unanswered ping may wait before the connection is closed (4000).
    pub close_timeout_ms: Option<u64>,
}

/// Linkerd's defaults of the mesh interpreter's failure detector.
pub const DEFAULT_MESH_MIN_PERIOD_MS: u64 = 5000;
pub const DEFAULT_MESH_CLOSE_TIMEOUT_MS: u64 = 4000;
/// Linkerd's default mesh root (the namespace `default`).
pub const DEFAULT_MESH_ROOT: &str = "/default";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MeshParams {
    /// Accepted either way, as for `io.l5d.namerd.http`.
    pub experimental: Option<bool>,
    pub dst: String,
    pub root: Option<String>,
    pub retry: Option<NamerdRetry>,
    /// TLS to namerd (the client `tls` block; `commonName` names namerd's certificate).
    pub tls: Option<crate::config::model::ClientTls>,
    pub failure_threshold: Option<MeshFailureThreshold>,
    #[serde(rename = "initialStreamWindowSizeKB")]
    pub initial_stream_window_size_kb: Option<u32>,
    #[serde(default)]
    pub transformers: Vec<Plugin<Transformers>>,
}

impl MeshParams {
    /// The namespace `root` names (checked when the config is loaded).
    pub fn namespace(&self) -> String {
        self.root
            .as_deref()
            .unwrap_or(DEFAULT_MESH_ROOT)
            .trim_start_matches('/')
            .to_string()
    }
}

fn mesh_params(v: serde_json::Value) -> Result<InterpreterKind, String> {
    let p = params::<MeshParams>(v)?;
    if let Err(e) = switchboard_namerd::client::authority_of_dst(&p.dst) {
        return Err(nest("dst", &e));
    }
    let root = p.root.as_deref().unwrap_or(DEFAULT_MESH_ROOT);
    match switchboard_namer_core::Path::read(root) {
        Ok(r) if r.len() == 1 => {
            if let Err(e) = switchboard_namerd::store::check_namespace(&p.namespace()) {
                return Err(nest("root", &e));
            }
        }
        _ => {
            return Err(nest(
                "root",
                &format!("`{root}`: the root is one path element, the namespace (e.g. /default)"),
            ))
        }
    }
    check_retry(&p.retry)?;
    if p.initial_stream_window_size_kb == Some(0) {
        return Err(nest("initialStreamWindowSizeKB", "must be above 0"));
    }
    if let Some(t) = &p.tls {
        namerd_tls_rules(t, &p.dst)?;
    }
    Ok(InterpreterKind::Mesh(p))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DefaultInterpreterParams {
    #[serde(default)]
    pub transformers: Vec<Plugin<Transformers>>,
}

pub struct Interpreters;
impl Family for Interpreters {
    type Out = InterpreterKind;
    const NAME: &'static str = "interpreter";
    fn default_kind() -> Option<&'static str> {
        Some("default")
    }
    fn kinds() -> &'static [(&'static str, Entry<InterpreterKind>)] {
        &[
            (
                "default",
                Entry::Supported(|v| params(v).map(InterpreterKind::Default)),
            ),
            (
                "io.l5d.fs",
                Entry::Supported(|v| params(v).map(InterpreterKind::Fs)),
            ),
            ("io.l5d.namerd", Entry::NotYet(NEEDS_THRIFT_NAMERD)),
            ("io.l5d.namerd.http", Entry::Supported(namerd_http_params)),
            ("io.l5d.mesh", Entry::Supported(mesh_params)),
            (
                "io.l5d.consul.interpreter",
                Entry::Supported(consul_interpreter_params),
            ),
            ("io.l5d.k8s.configMap", Entry::NotYet(NEEDS_K8S)),
            ("io.l5d.k8s.istio", Entry::NotYet(NEEDS_K8S)),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Identifiers (http)

/// Default header of `io.l5d.header.token`.
pub const DEFAULT_TOKEN_HEADER: &str = "Host";
/// Default header of `io.l5d.header`.
pub const DEFAULT_PATH_HEADER: &str = "l5d-name";
/// Default `segments` of `io.l5d.path`.
pub const DEFAULT_PATH_SEGMENTS: usize = 1;

#[derive(Debug, Clone, PartialEq)]
pub enum IdentifierKind {
    HeaderToken {
        header: String,
    },
    Header {
        header: String,
    },
    MethodAndHost {
        http_uri_in_dst: bool,
    },
    Path {
        segments: usize,
        consume: bool,
    },
    Static {
        path: String,
    },
    /// h2's `io.l5d.header.path`: the path segments of a header (`:path` by default), all of
    /// them or the first `segments`.
    HeaderPath {
        header: String,
        segments: Option<usize>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderPathParams {
    header: Option<String>,
    segments: Option<usize>,
}

/// Default header of `io.l5d.header.path`.
pub const DEFAULT_HEADER_PATH_HEADER: &str = ":path";

fn header_path(v: serde_json::Value) -> Result<IdentifierKind, String> {
    let p = params::<HeaderPathParams>(v)?;
    if p.segments == Some(0) {
        return Err("`segments` must be at least 1".into());
    }
    Ok(IdentifierKind::HeaderPath {
        header: p
            .header
            .unwrap_or_else(|| DEFAULT_HEADER_PATH_HEADER.into()),
        segments: p.segments,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderParams {
    header: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MethodAndHostParams {
    #[serde(default)]
    http_uri_in_dst: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathIdParams {
    segments: Option<usize>,
    #[serde(default)]
    consume: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticIdParams {
    path: String,
}

pub struct Identifiers;
impl Family for Identifiers {
    type Out = IdentifierKind;
    const NAME: &'static str = "identifier";
    fn kinds() -> &'static [(&'static str, Entry<IdentifierKind>)] {
        &[
            (
                "io.l5d.header.token",
                Entry::Supported(|v| {
                    params::<HeaderParams>(v).map(|p| IdentifierKind::HeaderToken {
                        header: p.header.unwrap_or_else(|| DEFAULT_TOKEN_HEADER.into()),
                    })
                }),
            ),
            (
                "io.l5d.header",
                Entry::Supported(|v| {
                    params::<HeaderParams>(v).map(|p| IdentifierKind::Header {
                        header: p.header.unwrap_or_else(|| DEFAULT_PATH_HEADER.into()),
                    })
                }),
            ),
            (
                "io.l5d.methodAndHost",
                Entry::Supported(|v| {
                    params::<MethodAndHostParams>(v).map(|p| IdentifierKind::MethodAndHost {
                        http_uri_in_dst: p.http_uri_in_dst,
                    })
                }),
            ),
            (
                "io.l5d.path",
                Entry::Supported(|v| {
                    let p = params::<PathIdParams>(v)?;
                    let segments = p.segments.unwrap_or(DEFAULT_PATH_SEGMENTS);
                    if segments == 0 {
                        return Err("`segments` must be at least 1".into());
                    }
                    Ok(IdentifierKind::Path {
                        segments,
                        consume: p.consume,
                    })
                }),
            ),
            (
                "io.l5d.static",
                Entry::Supported(|v| {
                    let p = params::<StaticIdParams>(v)?;
                    switchboard_namer_core::Path::read(&p.path)
                        .map_err(|e| nest("path", &e.to_string()))?;
                    Ok(IdentifierKind::Static { path: p.path })
                }),
            ),
            ("io.l5d.ingress", Entry::NotYet(NEEDS_K8S)),
            ("io.l5d.k8s.istio", Entry::NotYet(NEEDS_K8S)),
            ("io.l5d.k8s.istio-ingress", Entry::NotYet(NEEDS_K8S)),
            ("io.l5d.header.path", Entry::Supported(header_path)),
            // The pre-1.0 name of io.l5d.header.path.
            ("io.l5d.headerPath", Entry::Supported(header_path)),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Load balancers

/// Default `maxEffort` of every balancer.
pub const DEFAULT_MAX_EFFORT: u32 = 5;
/// Default `decayTimeMs` of `ewma`.
pub const DEFAULT_EWMA_DECAY_MS: u64 = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub enum LoadBalancerKind {
    P2c { max_effort: u32 },
    Ewma { max_effort: u32, decay_time_ms: u64 },
    Aperture(ApertureParams),
    Heap,
    RoundRobin { max_effort: u32 },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EffortParams {
    max_effort: Option<u32>,
    #[serde(default)]
    #[allow(dead_code)]
    enable_probation: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EwmaParams {
    max_effort: Option<u32>,
    decay_time_ms: Option<u64>,
    #[serde(default)]
    #[allow(dead_code)]
    enable_probation: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApertureParams {
    #[serde(default = "ApertureParams::max_effort")]
    pub max_effort: u32,
    #[serde(default = "ApertureParams::smooth_window_ms")]
    pub smooth_window_ms: u64,
    #[serde(default = "ApertureParams::low_load")]
    pub low_load: f64,
    #[serde(default = "ApertureParams::high_load")]
    pub high_load: f64,
    #[serde(default = "ApertureParams::min_aperture")]
    pub min_aperture: u32,
    #[serde(default)]
    pub enable_probation: bool,
}

impl ApertureParams {
    fn max_effort() -> u32 {
        DEFAULT_MAX_EFFORT
    }
    fn smooth_window_ms() -> u64 {
        5_000
    }
    fn low_load() -> f64 {
        0.5
    }
    fn high_load() -> f64 {
        2.0
    }
    fn min_aperture() -> u32 {
        1
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ProbationOnly {
    #[serde(default)]
    #[allow(dead_code)]
    enable_probation: bool,
}

pub struct LoadBalancers;
impl Family for LoadBalancers {
    type Out = LoadBalancerKind;
    const NAME: &'static str = "loadBalancer";
    fn kinds() -> &'static [(&'static str, Entry<LoadBalancerKind>)] {
        &[
            (
                "p2c",
                Entry::Supported(|v| {
                    params::<EffortParams>(v).map(|p| LoadBalancerKind::P2c {
                        max_effort: p.max_effort.unwrap_or(DEFAULT_MAX_EFFORT),
                    })
                }),
            ),
            (
                "ewma",
                Entry::Supported(|v| {
                    params::<EwmaParams>(v).map(|p| LoadBalancerKind::Ewma {
                        max_effort: p.max_effort.unwrap_or(DEFAULT_MAX_EFFORT),
                        decay_time_ms: p.decay_time_ms.unwrap_or(DEFAULT_EWMA_DECAY_MS),
                    })
                }),
            ),
            (
                "aperture",
                Entry::Supported(|v| params(v).map(LoadBalancerKind::Aperture)),
            ),
            (
                "heap",
                Entry::Supported(|v| params::<ProbationOnly>(v).map(|_| LoadBalancerKind::Heap)),
            ),
            (
                "roundRobin",
                Entry::Supported(|v| {
                    params::<EffortParams>(v).map(|p| LoadBalancerKind::RoundRobin {
                        max_effort: p.max_effort.unwrap_or(DEFAULT_MAX_EFFORT),
                    })
                }),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Backoffs

#[derive(Debug, Clone, PartialEq)]
pub enum BackoffKind {
    Constant { ms: u64 },
    Jittered { min_ms: u64, max_ms: u64 },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConstantBackoff {
    ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct JitteredBackoff {
    min_ms: u64,
    max_ms: u64,
}

pub struct Backoffs;
impl Family for Backoffs {
    type Out = BackoffKind;
    const NAME: &'static str = "backoff";
    fn kinds() -> &'static [(&'static str, Entry<BackoffKind>)] {
        &[
            (
                "constant",
                Entry::Supported(|v| {
                    params::<ConstantBackoff>(v).map(|p| BackoffKind::Constant { ms: p.ms })
                }),
            ),
            (
                "jittered",
                Entry::Supported(|v| {
                    let p = params::<JitteredBackoff>(v)?;
                    if p.min_ms > p.max_ms {
                        return Err(format!(
                            "`minMs` ({}) is greater than `maxMs` ({})",
                            p.min_ms, p.max_ms
                        ));
                    }
                    Ok(BackoffKind::Jittered {
                        min_ms: p.min_ms,
                        max_ms: p.max_ms,
                    })
                }),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Failure accrual

#[derive(Debug, Clone, PartialEq)]
pub enum FailureAccrualKind {
    ConsecutiveFailures {
        failures: u32,
        backoff: Option<BackoffKind>,
    },
    SuccessRate {
        success_rate: f64,
        requests: u32,
        backoff: Option<BackoffKind>,
    },
    SuccessRateWindowed {
        success_rate: f64,
        window_secs: u64,
        backoff: Option<BackoffKind>,
    },
    None,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsecutiveParams {
    failures: u32,
    backoff: Option<Plugin<Backoffs>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SuccessRateParams {
    success_rate: f64,
    requests: u32,
    backoff: Option<Plugin<Backoffs>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SuccessRateWindowedParams {
    success_rate: f64,
    window: u64,
    backoff: Option<Plugin<Backoffs>>,
}

/// The parameters of a kind that takes none.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoParams {}

fn check_rate(r: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&r) {
        Ok(r)
    } else {
        Err(format!("`successRate` must be between 0 and 1, found {r}"))
    }
}

pub struct FailureAccruals;
impl Family for FailureAccruals {
    type Out = FailureAccrualKind;
    const NAME: &'static str = "failureAccrual";
    fn kinds() -> &'static [(&'static str, Entry<FailureAccrualKind>)] {
        &[
            (
                "io.l5d.consecutiveFailures",
                Entry::Supported(|v| {
                    params::<ConsecutiveParams>(v).map(|p| {
                        FailureAccrualKind::ConsecutiveFailures {
                            failures: p.failures,
                            backoff: p.backoff.map(|b| b.value),
                        }
                    })
                }),
            ),
            (
                "io.l5d.successRate",
                Entry::Supported(|v| {
                    let p = params::<SuccessRateParams>(v)?;
                    Ok(FailureAccrualKind::SuccessRate {
                        success_rate: check_rate(p.success_rate)?,
                        requests: p.requests,
                        backoff: p.backoff.map(|b| b.value),
                    })
                }),
            ),
            (
                "io.l5d.successRateWindowed",
                Entry::Supported(|v| {
                    let p = params::<SuccessRateWindowedParams>(v)?;
                    Ok(FailureAccrualKind::SuccessRateWindowed {
                        success_rate: check_rate(p.success_rate)?,
                        window_secs: p.window,
                        backoff: p.backoff.map(|b| b.value),
                    })
                }),
            ),
            (
                "none",
                Entry::Supported(|v| params::<NoParams>(v).map(|_| FailureAccrualKind::None)),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Response classifiers (http)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseClassifierKind {
    NonRetryable5XX,
    RetryableRead5XX,
    RetryableIdempotent5XX,
    RetryableAll5XX,
    AllSuccessful,
    /// gRPC: a `grpc-status` other than 0 (and not in `success`) is a failure; `retryable`
    /// holds the statuses that may be retried; `http_retryable` adds HTTP 429, 502, 503 and
    /// 504 (`compliant`). Status sets are bit masks over codes 0..=127.
    Grpc {
        success: u128,
        retryable: u128,
        http_retryable: bool,
    },
}

/// gRPC UNAVAILABLE.
const GRPC_UNAVAILABLE: u32 = 14;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GrpcParams {
    success_status_codes: Option<Vec<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GrpcCodesParams {
    success_status_codes: Option<Vec<u32>>,
    retryable_status_codes: Vec<u32>,
}

/// The largest status code a classifier can name (gRPC's own go to 16; Linkerd accepted any
/// integer, and its docs list 100).
const MAX_GRPC_CODE: u32 = 127;

fn grpc_mask(key: &str, codes: &[u32]) -> Result<u128, String> {
    let mut m = 0u128;
    for (i, c) in codes.iter().enumerate() {
        if *c > MAX_GRPC_CODE {
            return Err(nest(
                &format!("{key}[{i}]"),
                &format!("{c} is over {MAX_GRPC_CODE}"),
            ));
        }
        m |= 1 << c;
    }
    Ok(m)
}

fn grpc(
    v: serde_json::Value,
    retryable: Option<u128>,
    http_retryable: bool,
) -> Result<ResponseClassifierKind, String> {
    let (success, retryable) = match retryable {
        Some(r) => {
            let p = params::<GrpcParams>(v)?;
            let s = grpc_mask(
                "successStatusCodes",
                p.success_status_codes.as_deref().unwrap_or(&[]),
            )?;
            (s, r)
        }
        None => {
            let p = params::<GrpcCodesParams>(v)?;
            let s = grpc_mask(
                "successStatusCodes",
                p.success_status_codes.as_deref().unwrap_or(&[]),
            )?;
            (
                s,
                grpc_mask("retryableStatusCodes", &p.retryable_status_codes)?,
            )
        }
    };
    Ok(ResponseClassifierKind::Grpc {
        success,
        retryable,
        http_retryable,
    })
}

pub struct ResponseClassifiers;
impl Family for ResponseClassifiers {
    type Out = ResponseClassifierKind;
    const NAME: &'static str = "responseClassifier";
    fn kinds() -> &'static [(&'static str, Entry<ResponseClassifierKind>)] {
        use ResponseClassifierKind as R;
        &[
            (
                "io.l5d.http.nonRetryable5XX",
                Entry::Supported(|v| params::<NoParams>(v).map(|_| R::NonRetryable5XX)),
            ),
            (
                "io.l5d.http.retryableRead5XX",
                Entry::Supported(|v| params::<NoParams>(v).map(|_| R::RetryableRead5XX)),
            ),
            (
                "io.l5d.http.retryableIdempotent5XX",
                Entry::Supported(|v| params::<NoParams>(v).map(|_| R::RetryableIdempotent5XX)),
            ),
            (
                "io.l5d.http.retryableAll5XX",
                Entry::Supported(|v| params::<NoParams>(v).map(|_| R::RetryableAll5XX)),
            ),
            (
                "io.l5d.http.allSuccessful",
                Entry::Supported(|v| params::<NoParams>(v).map(|_| R::AllSuccessful)),
            ),
            (
                "io.l5d.h2.nonRetryable5XX",
                Entry::Supported(|v| params::<NoParams>(v).map(|_| R::NonRetryable5XX)),
            ),
            (
                "io.l5d.h2.retryableRead5XX",
                Entry::Supported(|v| params::<NoParams>(v).map(|_| R::RetryableRead5XX)),
            ),
            (
                "io.l5d.h2.retryableIdempotent5XX",
                Entry::Supported(|v| params::<NoParams>(v).map(|_| R::RetryableIdempotent5XX)),
            ),
            (
                "io.l5d.h2.retryableAll5XX",
                Entry::Supported(|v| params::<NoParams>(v).map(|_| R::RetryableAll5XX)),
            ),
            (
                "io.l5d.h2.allSuccessful",
                Entry::Supported(|v| params::<NoParams>(v).map(|_| R::AllSuccessful)),
            ),
            (
                "io.l5d.h2.grpc.default",
                Entry::Supported(|v| grpc(v, Some(1 << GRPC_UNAVAILABLE), false)),
            ),
            (
                "io.l5d.h2.grpc.compliant",
                Entry::Supported(|v| grpc(v, Some(1 << GRPC_UNAVAILABLE), true)),
            ),
            (
                "io.l5d.h2.grpc.alwaysRetryable",
                Entry::Supported(|v| grpc(v, Some(u128::MAX), false)),
            ),
            (
                "io.l5d.h2.grpc.neverRetryable",
                Entry::Supported(|v| grpc(v, Some(0), false)),
            ),
            (
                "io.l5d.h2.grpc.retryableStatusCodes",
                Entry::Supported(|v| grpc(v, None, false)),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Telemeters

/// Default path of the Prometheus exposition.
pub const DEFAULT_PROMETHEUS_PATH: &str = "/admin/metrics/prometheus";

#[derive(Debug, Clone, PartialEq)]
pub enum TelemeterKind {
    Prometheus { path: String, prefix: String },
    RecentRequests { sample_rate: f64, capacity: usize },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RecentRequestsParams {
    sample_rate: f64,
    capacity: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrometheusParams {
    path: Option<String>,
    #[serde(default)]
    prefix: String,
}

pub struct Telemeters;
impl Family for Telemeters {
    type Out = TelemeterKind;
    const NAME: &'static str = "telemeter";
    fn kinds() -> &'static [(&'static str, Entry<TelemeterKind>)] {
        &[
            (
                "io.l5d.prometheus",
                Entry::Supported(|v| {
                    let p = params::<PrometheusParams>(v)?;
                    let path = p.path.unwrap_or_else(|| DEFAULT_PROMETHEUS_PATH.into());
                    if !path.starts_with('/') {
                        return Err(format!("path: `{path}` must start with `/`"));
                    }
                    Ok(TelemeterKind::Prometheus {
                        path,
                        prefix: p.prefix,
                    })
                }),
            ),
            (
                "io.l5d.recentRequests",
                Entry::Supported(|v| {
                    let p = params::<RecentRequestsParams>(v)?;
                    if !(0.0..=1.0).contains(&p.sample_rate) {
                        return Err(nest(
                            "sampleRate",
                            &format!("must be between 0 and 1, found {}", p.sample_rate),
                        ));
                    }
                    Ok(TelemeterKind::RecentRequests {
                        sample_rate: p.sample_rate,
                        capacity: p.capacity.unwrap_or(crate::proxy::recent::DEFAULT_CAPACITY),
                    })
                }),
            ),
            ("io.l5d.zipkin", Entry::NotYet(NO_TRACING)),
            ("io.l5d.tracelog", Entry::NotYet(NO_TRACING)),
            (
                "io.l5d.influxdb",
                Entry::NotYet("the InfluxDB exposition is not built yet"),
            ),
            (
                "io.l5d.statsd",
                Entry::NotYet("statsd export is not built yet (Linkerd 1 marked it unsupported)"),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Trace propagators, announcers

#[derive(Debug, Clone, PartialEq)]
pub enum TracePropagatorKind {
    Default,
}

pub struct TracePropagators;
impl Family for TracePropagators {
    type Out = TracePropagatorKind;
    const NAME: &'static str = "tracePropagator";
    fn kinds() -> &'static [(&'static str, Entry<TracePropagatorKind>)] {
        &[
            (
                "io.l5d.default",
                Entry::Supported(|v| params::<NoParams>(v).map(|_| TracePropagatorKind::Default)),
            ),
            ("io.l5d.zipkin", Entry::NotYet(NO_TRACING)),
        ]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum AnnouncerKind {}

pub struct Announcers;
impl Family for Announcers {
    type Out = AnnouncerKind;
    const NAME: &'static str = "announcer";
    fn kinds() -> &'static [(&'static str, Entry<AnnouncerKind>)] {
        &[(
            "io.l5d.serversets",
            Entry::NotYet("announcing servers is not built yet"),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn unique<F: Family>() {
        let mut seen = HashSet::new();
        for (k, _) in F::kinds() {
            assert!(seen.insert(*k), "{} lists `{k}` twice", F::NAME);
        }
    }

    #[test]
    fn each_kind_is_listed_once_per_family() {
        unique::<Namers>();
        unique::<Transformers>();
        unique::<Interpreters>();
        unique::<Identifiers>();
        unique::<LoadBalancers>();
        unique::<Backoffs>();
        unique::<FailureAccruals>();
        unique::<ResponseClassifiers>();
        unique::<Telemeters>();
        unique::<TracePropagators>();
        unique::<Announcers>();
    }
}
