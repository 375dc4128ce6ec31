//! `switchboard namerd`: builds a checked namerd config into a running namerd: the namers (as
//! a linker builds them), the dtab store, the namespaces on top of it, an HTTP controller per
//! `io.l5d.httpController` interface, a gRPC server per `io.l5d.mesh` one, and the admin pages. It binds every socket before it
//! serves anything; it does not route requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use switchboard_namer_core::DefaultInterpreter;
use switchboard_namerd::controller::{self, Controller};
use switchboard_namerd::namespaces::Namespaces;
use switchboard_namerd::net::Acceptor;
use switchboard_namerd::store::{self, Store};
use tokio::net::TcpListener;

use crate::build;
use crate::config::model::{ServerTls, DEFAULT_IP};
use crate::config::namerd::{
    NamerdConfig, StorageKind, DEFAULT_ETCD_HOST, DEFAULT_ETCD_PORT, DEFAULT_NAMERD_ADMIN_PORT,
};
use crate::config::plugins::{TelemeterKind, DEFAULT_ZK_PORT};

/// One interface namerd serves.
#[derive(Debug, Clone, Copy)]
pub struct Served {
    pub kind: &'static str,
    pub addr: SocketAddr,
    pub tls: bool,
}

impl Served {
    /// `http://` or `https://` and the address.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
}

/// A started namerd.
pub struct RunningNamerd {
    pub interfaces: Vec<Served>,
    pub admin: Served,
    pub controller: Arc<Controller>,
    tasks: tokio::task::JoinSet<()>,
}

impl RunningNamerd {
    /// Serves until the process is stopped.
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// The store `kind` describes (its watch starts now).
pub fn build_store(kind: &StorageKind, metrics: &crate::metrics::Metrics) -> anyhow::Result<Store> {
    Ok(match kind {
        StorageKind::InMemory(m) => Store::Memory(store::memory::MemoryStore::new(m.clone())),
        StorageKind::Zk(p) => {
            let addrs: Vec<(String, u16)> = p
                .zk_addrs
                .iter()
                .map(|a| (a.host.clone(), a.port.unwrap_or(DEFAULT_ZK_PORT)))
                .collect();
            Store::Zk(store::zk::ZkStore::new(store::zk::ZkConfig {
                connect: switchboard_namer_zk::connect_string(&addrs),
                prefix: p
                    .path_prefix
                    .clone()
                    .unwrap_or_else(|| store::zk::DEFAULT_PATH_PREFIX.into()),
                session_timeout: Duration::from_millis(
                    p.session_timeout_ms
                        .unwrap_or(store::zk::DEFAULT_SESSION_TIMEOUT_MS),
                ),
                auth: p
                    .auth_info
                    .as_ref()
                    .map(|a| (a.scheme.clone(), a.auth.clone().into_bytes())),
                acls: p
                    .acls
                    .iter()
                    .map(|a| store::zk::AclSpec {
                        scheme: a.scheme.clone(),
                        id: a.id.clone(),
                        perms: a.perms.clone(),
                    })
                    .collect(),
            }))
        }
        StorageKind::Etcd(p) => {
            let mut opts = switchboard_namer_etcd::client::ConnectOptions::default();
            let scheme = match &p.tls {
                Some(t) => {
                    opts.tls = Some(
                        build::etcd_tls(t)
                            .map_err(|e| anyhow::anyhow!("storage (io.l5d.etcd).tls: {e}"))?,
                    );
                    "https"
                }
                None => "http",
            };
            let endpoint = format!(
                "{scheme}://{}:{}",
                p.host.as_deref().unwrap_or(DEFAULT_ETCD_HOST),
                p.port.unwrap_or(DEFAULT_ETCD_PORT)
            );
            Store::Etcd(store::etcd::EtcdStore::new(
                vec![endpoint],
                p.path_prefix
                    .clone()
                    .unwrap_or_else(|| store::etcd::DEFAULT_PATH_PREFIX.into()),
                opts,
            ))
        }
        StorageKind::Consul(p) => Store::Consul(
            build::consul_kv(
                build::ConsulKv {
                    host: p.host.as_deref(),
                    port: p.port,
                    path_prefix: p.path_prefix.as_deref(),
                    token: p.token.as_deref(),
                    datacenter: p.datacenter.as_deref(),
                    read: p.read_consistency_mode.as_deref(),
                    write: p.write_consistency_mode.as_deref(),
                    tls: p.tls.as_ref(),
                },
                &metrics.scope("namerd").scope("storage"),
            )
            .map_err(|e| anyhow::anyhow!("storage: {e}"))?,
        ),
    })
}

/// The binary's metrics (TLS reload counters) on namerd's admin pages.
struct NamerdMetrics(crate::metrics::Metrics);

impl controller::ExtraMetrics for NamerdMetrics {
    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        match self.0.flat_json() {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }
    fn prometheus(&self, prefix: &str) -> String {
        self.0.prometheus(prefix)
    }
}

/// Starts everything `cfg` describes.
pub async fn start(cfg: NamerdConfig) -> anyhow::Result<RunningNamerd> {
    let metrics = crate::metrics::Metrics::new();
    let namers = cfg
        .namers
        .iter()
        .map(build::namer)
        .collect::<Result<Vec<_>, _>>()?;
    let interp = DefaultInterpreter::new(namers);
    let store = Arc::new(build_store(&cfg.storage, &metrics)?);
    tracing::info!(store = %store.describe(), "namerd storage");
    let namespaces = Namespaces::new(store);
    let c = Controller::new(namespaces, interp);
    // TLS is built (its files read) before any socket is bound. Its reload counters are under
    // `namerd/interface/<index in interfaces>/tls/...` and `namerd/admin/tls/...` on the admin
    // pages.
    let scope = metrics.scope("namerd");
    let acceptor =
        |tls: &Option<ServerTls>, alpn: &[u8], at: crate::metrics::Scope, what: &str| match tls {
            Some(t) => crate::transport::tls::ServerTls::build(t, &[alpn], &at)
                .map(|s| Acceptor::tls(s.acceptor().clone()))
                .with_context(|| format!("{what}: tls")),
            None => Ok(Acceptor::plain()),
        };
    let mut accept = Vec::new();
    for (n, i) in cfg.interfaces.iter().enumerate() {
        let alpn = match i.kind {
            "io.l5d.mesh" => crate::transport::ALPN_H2,
            _ => crate::transport::ALPN_HTTP11,
        };
        let at = scope.scope("interface").scope(&n.to_string());
        accept.push(acceptor(
            &i.tls,
            alpn,
            at,
            &format!("interface {}", i.kind),
        )?);
    }
    let admin_accept = acceptor(
        &cfg.admin.tls.clone().filter(|t| t.enabled != Some(false)),
        crate::transport::ALPN_HTTP11,
        scope.scope("admin"),
        "admin",
    )?;
    let extra: Arc<dyn controller::ExtraMetrics> = Arc::new(NamerdMetrics(metrics.clone()));
    let mut listeners = Vec::new();
    for (i, a) in cfg.interfaces.iter().zip(accept) {
        let l = TcpListener::bind(i.addr)
            .await
            .with_context(|| format!("interface {}: binding {}", i.kind, i.addr))?;
        listeners.push((i.kind, l, a));
    }
    let admin_ip = cfg.admin.ip.clone().unwrap_or_else(|| DEFAULT_IP.into());
    let admin_port = cfg.admin.port.unwrap_or(DEFAULT_NAMERD_ADMIN_PORT);
    let admin_addr = tokio::net::lookup_host((admin_ip.as_str(), admin_port))
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| anyhow::anyhow!("admin ip `{admin_ip}` does not resolve"))?;
    let admin = TcpListener::bind(admin_addr)
        .await
        .with_context(|| format!("admin: binding {admin_addr}"))?;
    let mut tasks = tokio::task::JoinSet::new();
    let mut interfaces = Vec::new();
    for (kind, l, a) in listeners {
        let addr = l.local_addr()?;
        tracing::info!(interface = kind, %addr, tls = a.is_tls(), "namerd serving");
        interfaces.push(Served {
            kind,
            addr,
            tls: a.is_tls(),
        });
        let c = Arc::clone(&c);
        match kind {
            "io.l5d.mesh" => {
                tasks.spawn(switchboard_namerd::mesh::server::serve(l, a, c));
            }
            _ => {
                tasks.spawn(controller::serve(l, a, move |req, peer| {
                    controller::handle(Arc::clone(&c), req, peer)
                }));
            }
        }
    }
    let admin_served = Served {
        kind: "admin",
        addr: admin.local_addr()?,
        tls: admin_accept.is_tls(),
    };
    {
        let c = Arc::clone(&c);
        let prometheus: Arc<Vec<(String, String)>> = Arc::new(
            cfg.telemetry
                .iter()
                .filter_map(|t| match &t.value {
                    TelemeterKind::Prometheus { path, prefix } => {
                        Some((path.clone(), prefix.clone()))
                    }
                    _ => None,
                })
                .collect(),
        );
        tasks.spawn(controller::serve(admin, admin_accept, move |req, _peer| {
            controller::admin(
                Arc::clone(&c),
                req,
                Arc::clone(&prometheus),
                Arc::clone(&extra),
            )
        }));
    }
    Ok(RunningNamerd {
        interfaces,
        admin: admin_served,
        controller: c,
        tasks,
    })
}
