//! Builds running naming objects from a checked config: one namer per `namers:` entry and the
//! default interpreter over them. Call it inside a tokio runtime (the fs namer starts its file
//! watch there). It never binds a socket.

use std::sync::Arc;
use std::time::Duration;

use switchboard_namer_core::interpreter::{ConfiguredNamer, DefaultInterpreter};
use switchboard_namer_core::rewrite::RewritingNamer;
use switchboard_namer_core::Namer;
use switchboard_namer_fs::FsNamer;

use crate::config::plugins::NamerKind;
use crate::config::{Config, NamerConfig};

/// A namer could not be built from its (checked) config.
#[derive(Debug, thiserror::Error)]
#[error("namer {prefix} ({kind}): {message}")]
pub struct BuildError {
    pub kind: &'static str,
    pub prefix: String,
    pub message: String,
}

fn zk_addrs(p: &crate::config::plugins::ZkNamerParams) -> Vec<(String, u16)> {
    p.zk_addrs
        .iter()
        .map(|a| {
            (
                a.host.clone(),
                a.port.unwrap_or(crate::config::plugins::DEFAULT_ZK_PORT),
            )
        })
        .collect()
}

fn read(p: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("cannot read `{}`: {e}", p.display()))
}

/// TLS to etcd from a client `tls` block: the trust files as one PEM bundle, the client
/// certificate, and `commonName` as the name to expect.
pub(crate) fn etcd_tls(
    t: &crate::config::model::ClientTls,
) -> Result<switchboard_namer_etcd::client::Tls, String> {
    let mut ca_pem = Vec::new();
    for f in t
        .trust_certs
        .iter()
        .flatten()
        .chain(t.trust_certs_bundle.iter())
    {
        // Checked like any other certificate file, so a bad one is named.
        crate::transport::tls::load_certs(f).map_err(|e| e.to_string())?;
        ca_pem.extend(read(f)?);
        ca_pem.push(b'\n');
    }
    let identity = match &t.client_auth {
        Some(a) => {
            crate::transport::tls::KeyFiles {
                cert: a.cert_path.clone(),
                key: a.key_path.clone(),
                intermediates: a.intermediate_certs_path.clone(),
            }
            .load()
            .map_err(|e| e.to_string())?;
            Some((read(&a.cert_path)?, read(&a.key_path)?))
        }
        None => None,
    };
    Ok(switchboard_namer_etcd::client::Tls {
        ca_pem,
        identity,
        domain: t.common_name.clone(),
    })
}

/// Builds one configured namer.
pub fn namer(n: &NamerConfig) -> Result<ConfiguredNamer, BuildError> {
    let fail = |message: String| BuildError {
        kind: n.kind,
        prefix: n.prefix.show(),
        message,
    };
    let namer: Arc<dyn Namer> = match &n.params {
        NamerKind::Fs(p) => Arc::new(FsNamer::new(p.root_dir.clone(), n.prefix.clone())),
        NamerKind::Rewrite(p) => {
            Arc::new(RewritingNamer::new(&p.pattern, &p.name).map_err(|e| fail(e.to_string()))?)
        }
        NamerKind::DnsSrv(p) => {
            let hosts = p
                .dns_hosts
                .iter()
                .map(|h| switchboard_namer_dnssrv::parse_dns_host(h))
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)?;
            let refresh = Duration::from_secs(
                p.refresh_interval_seconds
                    .unwrap_or(crate::config::plugins::DEFAULT_DNSSRV_REFRESH_SECS),
            );
            Arc::new(
                switchboard_namer_dnssrv::DnsSrvNamer::new(hosts, refresh, n.prefix.clone())
                    .map_err(fail)?,
            )
        }
        NamerKind::Consul(p) => {
            use switchboard_namer_consul::{Consistency, ConsulConfig, ConsulNamer};
            let d = ConsulConfig::default();
            let cfg = ConsulConfig {
                host: p.host.clone().unwrap_or(d.host),
                port: p.port.unwrap_or(d.port),
                include_tag: p.include_tag,
                use_health_check: p.use_health_check,
                health_statuses: p.health_statuses.clone().unwrap_or(d.health_statuses),
                token: p.token.clone(),
                set_host: p.set_host,
                consistency: match p.consistency_mode.as_deref() {
                    Some("stale") => Consistency::Stale,
                    Some("consistent") => Consistency::Consistent,
                    _ => Consistency::Default,
                },
                prefer_service_address: p.prefer_service_address.unwrap_or(true),
                weights: p
                    .weights
                    .iter()
                    .map(|w| (w.tag.clone(), w.weight))
                    .collect(),
                tls: match p.tls.as_ref().filter(|t| t.enabled != Some(false)) {
                    Some(t) => {
                        // Reload counters of a client certificate here have no router to live
                        // under; the namer's own scope is not exposed.
                        let scope = crate::metrics::Metrics::new().scope("namer");
                        let built = crate::transport::tls::ClientTlsConfig::build_with(
                            t,
                            &[crate::transport::ALPN_HTTP11],
                            &scope,
                            false,
                        )
                        .map_err(|e| fail(e.to_string()))?;
                        Some(switchboard_namer_consul::ConsulTls {
                            config: built.rustls_config(),
                            server_name: t.common_name.clone(),
                        })
                    }
                    None => None,
                },
            };
            Arc::new(ConsulNamer::new(cfg, n.prefix.clone()))
        }
        NamerKind::Serversets(p) => {
            switchboard_namer_zk::ServersetsNamer::new(zk_addrs(p), n.prefix.clone())
        }
        NamerKind::ZkLeader(p) => {
            switchboard_namer_zk::ZkLeaderNamer::new(zk_addrs(p), n.prefix.clone())
        }
        NamerKind::Etcd(p) => {
            let mut opts = switchboard_namer_etcd::client::ConnectOptions::default();
            if let Some(t) = p.tls.as_ref().filter(|t| t.enabled != Some(false)) {
                opts.tls = Some(etcd_tls(t).map_err(fail)?);
            }
            Arc::new(switchboard_namer_etcd::EtcdNamer::with_options(
                p.endpoints.clone(),
                p.path_prefix
                    .as_deref()
                    .unwrap_or(switchboard_namer_etcd::DEFAULT_PATH_PREFIX),
                n.prefix.clone(),
                opts,
            ))
        }
    };
    let namer: Arc<dyn Namer> = if n.transformers.is_empty() {
        namer
    } else {
        let ts = transformers(&n.transformers, None).map_err(fail)?;
        Arc::new(switchboard_namer_core::transform::TransformingNamer::new(
            namer, ts,
        ))
    };
    Ok(ConfiguredNamer {
        prefix: n.prefix.clone(),
        namer,
    })
}

/// Builds transformers from config: `io.l5d.localhost` reads this host's interface addresses
/// (once, as Linkerd does), `io.l5d.specificHost` resolves its host once.
///
/// `io.l5d.replace` and `io.l5d.const` bind their path through `interp` (the interpreter over
/// every configured namer, without transformers); where there is none (a namer's
/// transformers) they are refused.
pub fn transformers(
    list: &[crate::config::registry::Plugin<crate::config::plugins::Transformers>],
    interp: Option<&Arc<DefaultInterpreter>>,
) -> Result<Vec<switchboard_namer_core::transform::Transformer>, String> {
    use crate::config::plugins::TransformerParams as P;
    use switchboard_namer_core::transform::{Kind, Transformer};
    list.iter()
        .map(|t| {
            let prefix = switchboard_namer_core::Path::read(&t.value.prefix)
                .map_err(|e| format!("{}: prefix: {e}", t.kind))?;
            let kind = match &t.value.kind {
                P::Port(p) => Kind::Port(*p),
                P::Localhost => Kind::Only(local_ips().map_err(|e| format!("{}: {e}", t.kind))?),
                P::SpecificHost(h) => {
                    use std::net::ToSocketAddrs;
                    let ips: Vec<std::net::IpAddr> = match h.parse::<std::net::IpAddr>() {
                        Ok(ip) => vec![ip],
                        Err(_) => (h.as_str(), 0)
                            .to_socket_addrs()
                            .map_err(|e| format!("{}: host `{h}`: {e}", t.kind))?
                            .map(|a| a.ip())
                            .collect(),
                    };
                    Kind::Only(ips)
                }
                P::Replace(p) | P::Const(p) => {
                    let Some(i) = interp else {
                        return Err(format!(
                            "{} binds a path and applies to `interpreter.transformers` only",
                            t.kind
                        ));
                    };
                    let path = switchboard_namer_core::Path::read(p)
                        .map_err(|e| format!("{}: path: {e}", t.kind))?;
                    if matches!(t.value.kind, P::Replace(_)) {
                        Kind::Replace(path, Arc::clone(i))
                    } else {
                        Kind::Const(path, Arc::clone(i))
                    }
                }
            };
            Ok(Transformer::new(&prefix, kind))
        })
        .collect()
}

/// The addresses of this host's interfaces (as listed by the OS; an interface that is down
/// keeps its address in the list).
fn local_ips() -> Result<Vec<std::net::IpAddr>, String> {
    let ifs = if_addrs::get_if_addrs().map_err(|e| format!("listing interfaces: {e}"))?;
    Ok(ifs.into_iter().map(|i| i.ip()).collect())
}

/// The default interpreter over every configured namer, in declaration order.
pub fn interpreter(cfg: &Config) -> Result<Arc<DefaultInterpreter>, BuildError> {
    let namers = cfg
        .namers
        .iter()
        .map(namer)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DefaultInterpreter::new(namers))
}

/// TLS to namerd or to Consul KV from a `tls` block: its files read now, the name the server's
/// certificate must carry (`commonName`, else `host`: for Consul always allowed, for namerd
/// only when validation is off), and the protocol offered by ALPN.
pub(crate) fn tls_to(
    t: &crate::config::model::ClientTls,
    host: &str,
    alpn: &[u8],
    scope: &crate::metrics::Scope,
    require_name: bool,
) -> Result<Option<switchboard_namerd::net::ClientTls>, String> {
    if t.enabled == Some(false) {
        return Ok(None);
    }
    let built = crate::transport::tls::ClientTlsConfig::build_with(t, &[alpn], scope, require_name)
        .map_err(|e| format!("tls: {e}"))?;
    let host = t.common_name.clone().unwrap_or_else(|| {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()
    });
    let server_name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|e| format!("tls: `{host}` is not a DNS name or IP address: {e}"))?;
    Ok(Some(switchboard_namerd::net::ClientTls {
        config: built.rustls_config(),
        server_name,
    }))
}

/// `host` of `host:port` (brackets of an IPv6 address kept for `tls_to` to strip).
fn host_of(authority: &str) -> &str {
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// The keys Consul KV storage and the `io.l5d.consul.interpreter` share.
pub(crate) struct ConsulKv<'a> {
    pub host: Option<&'a str>,
    pub port: Option<u16>,
    pub path_prefix: Option<&'a str>,
    pub token: Option<&'a str>,
    pub datacenter: Option<&'a str>,
    pub read: Option<&'a str>,
    pub write: Option<&'a str>,
    pub tls: Option<&'a crate::config::model::ClientTls>,
}

/// A Consul KV store (its watch starts now), for namerd's storage or a linker's interpreter.
pub(crate) fn consul_kv(
    k: ConsulKv<'_>,
    scope: &crate::metrics::Scope,
) -> Result<switchboard_namerd::store::consul::ConsulStore, String> {
    use crate::config::namerd::{DEFAULT_CONSUL_HOST, DEFAULT_CONSUL_PORT};
    use switchboard_namerd::store::consul::{self, Consistency};
    let mode = |m: Option<&str>| {
        m.and_then(Consistency::parse)
            .unwrap_or(Consistency::Default)
    };
    let host = k.host.unwrap_or(DEFAULT_CONSUL_HOST).to_string();
    let tls = match k.tls {
        Some(t) => tls_to(t, &host, crate::transport::ALPN_HTTP11, scope, false)?,
        None => None,
    };
    Ok(consul::ConsulStore::new(consul::ConsulConfig {
        port: k.port.unwrap_or(DEFAULT_CONSUL_PORT),
        prefix: k
            .path_prefix
            .unwrap_or(consul::DEFAULT_PATH_PREFIX)
            .to_string(),
        token: k.token.map(str::to_string),
        datacenter: k.datacenter.map(str::to_string),
        read_consistency: mode(k.read),
        write_consistency: mode(k.write),
        host,
        tls,
    }))
}

/// How a router binds, from its `interpreter` (a dtab file is watched from now on).
pub fn interpretation(
    kind: &crate::config::plugins::InterpreterKind,
    router: &str,
    scope: &crate::metrics::Scope,
) -> Result<crate::proxy::binder::Interpretation, String> {
    use crate::config::plugins::{InterpreterKind, DEFAULT_NAMERD_NAMESPACE};
    use crate::proxy::binder::Interpretation;
    use switchboard_namerd::client::{self, NamerdHttp, NamerdHttpConfig};
    let scope = scope.scope("interpreter");
    Ok(match kind {
        InterpreterKind::Default(_) => Interpretation::Local,
        InterpreterKind::Fs(p) => Interpretation::WatchedDtab(
            switchboard_namer_fs::dtab_file::DtabFile::watch(&p.dtab_file).var(),
            None,
        ),
        InterpreterKind::ConsulDtab(p) => {
            use switchboard_namerd::store::Store;
            let store = Store::Consul(consul_kv(
                ConsulKv {
                    host: p.host.as_deref(),
                    port: p.port,
                    path_prefix: p.path_prefix.as_deref(),
                    token: p.token.as_deref(),
                    datacenter: p.datacenter.as_deref(),
                    read: p.read_consistency_mode.as_deref(),
                    write: p.write_consistency_mode.as_deref(),
                    tls: p.tls.as_ref(),
                },
                &scope,
            )?);
            let namespaces = switchboard_namerd::namespaces::Namespaces::new(Arc::new(store));
            let ns = p
                .namespace
                .clone()
                .unwrap_or_else(|| crate::config::plugins::DEFAULT_NAMERD_NAMESPACE.into());
            Interpretation::WatchedDtab(namespaces.dtab(&ns), Some(namespaces))
        }
        InterpreterKind::Mesh(p) => {
            use crate::config::plugins::{
                DEFAULT_MESH_CLOSE_TIMEOUT_MS, DEFAULT_MESH_MIN_PERIOD_MS,
            };
            use switchboard_namerd::mesh::client::{
                MeshConfig, MeshInterpreter, DEFAULT_RETRY_BASE, DEFAULT_WINDOW_KB,
            };
            let retry = p.retry.as_ref();
            let secs = |v: Option<u64>, d: std::time::Duration| {
                v.map(std::time::Duration::from_secs).unwrap_or(d)
            };
            let ft = p.failure_threshold.as_ref();
            let ms = |v: Option<u64>, d: u64| std::time::Duration::from_millis(v.unwrap_or(d));
            let authority = client::authority_of_dst(&p.dst).unwrap_or_default();
            let tls = match &p.tls {
                Some(t) => tls_to(
                    t,
                    host_of(&authority),
                    crate::transport::ALPN_H2,
                    &scope,
                    true,
                )?,
                None => None,
            };
            let cfg = MeshConfig {
                authority,
                namespace: p.namespace(),
                retry_base: secs(retry.and_then(|r| r.base_seconds), DEFAULT_RETRY_BASE),
                retry_max: secs(retry.and_then(|r| r.max_seconds), client::DEFAULT_RETRY_MAX),
                keep_alive: (
                    ms(ft.and_then(|f| f.min_period_ms), DEFAULT_MESH_MIN_PERIOD_MS),
                    ms(
                        ft.and_then(|f| f.close_timeout_ms),
                        DEFAULT_MESH_CLOSE_TIMEOUT_MS,
                    ),
                ),
                initial_stream_window_kb: p
                    .initial_stream_window_size_kb
                    .unwrap_or(DEFAULT_WINDOW_KB),
                tls,
            };
            Interpretation::Mesh(MeshInterpreter::new(cfg)?)
        }
        InterpreterKind::NamerdHttp(p) => {
            let retry = p.retry.as_ref();
            let secs = |v: Option<u64>, d: std::time::Duration| {
                v.map(std::time::Duration::from_secs).unwrap_or(d)
            };
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "switchboard".into());
            // Checked when the config was loaded.
            let authority = client::authority_of_dst(&p.dst).unwrap_or_default();
            let tls = match &p.tls {
                Some(t) => tls_to(
                    t,
                    host_of(&authority),
                    crate::transport::ALPN_HTTP11,
                    &scope,
                    true,
                )?,
                None => None,
            };
            Interpretation::Namerd(NamerdHttp::new(NamerdHttpConfig {
                authority,
                namespace: p
                    .namespace
                    .clone()
                    .unwrap_or_else(|| DEFAULT_NAMERD_NAMESPACE.into()),
                retry_base: secs(
                    retry.and_then(|r| r.base_seconds),
                    client::DEFAULT_RETRY_BASE,
                ),
                retry_max: secs(retry.and_then(|r| r.max_seconds), client::DEFAULT_RETRY_MAX),
                client_name: format!("{host}/{}/{router}", std::process::id()),
                tls,
            }))
        }
    })
}
