//! Starting and stopping Switchboard: a checked config becomes namers, routers with their
//! servers, and the admin server. Every socket is bound before anything serves, so a config
//! that cannot start changes nothing. `Running::shutdown` stops accepting and drains in-flight
//! requests up to `shutdownGraceMs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use switchboard_namer_core::DefaultInterpreter;

use crate::admin::{Admin, AdminRouter};
use crate::build;
use crate::config::model::{
    DEFAULT_ADMIN_PORT, DEFAULT_BINDING_TIMEOUT_MS, DEFAULT_IP, DEFAULT_SHUTDOWN_GRACE_MS,
};
use crate::config::plugins::TelemeterKind;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::binder::{Binder, DEFAULT_CACHE_CAPACITY, DEFAULT_IDLE_TTL_SECS};
use crate::proxy::error::DEFAULT_MAX_ERR_RESPONSE_KB;
use crate::proxy::router::{Router, DEFAULT_MAX_CALL_DEPTH};
use crate::proxy::server::{BoundServer, ServerSettings, Shutdown};

/// A started Switchboard.
pub struct Running {
    /// `(router label, server address)` for every server, in config order.
    pub servers: Vec<(String, SocketAddr)>,
    pub admin: SocketAddr,
    pub metrics: Metrics,
    shutdown: Shutdown,
    tasks: tokio::task::JoinSet<()>,
}

impl Running {
    /// A handle that stops everything when triggered.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Waits until shutdown is triggered and every server has drained.
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Starts everything `cfg` describes. `raw` is the config as JSON, for `/config.json`.
pub async fn start(cfg: Config, raw: serde_json::Value) -> anyhow::Result<Running> {
    let metrics = Metrics::new();
    let interp: Arc<DefaultInterpreter> = build::interpreter(&cfg)?;
    let grace = Duration::from_millis(
        cfg.admin
            .shutdown_grace_ms
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE_MS),
    );
    let recent = cfg.telemetry.iter().find_map(|t| match &t.value {
        TelemeterKind::RecentRequests {
            sample_rate,
            capacity,
        } => Some(crate::proxy::recent::RecentRequests::new(
            *sample_rate,
            *capacity,
        )),
        _ => None,
    });
    let mut bound = Vec::new();
    let mut admin_routers = Vec::new();
    for r in &cfg.routers {
        let scope = metrics.scope("rt").scope(&r.label);
        let cache = r.http.binding_cache.clone().unwrap_or_default();
        // A router's `interpreter.transformers` apply to what it binds.
        let transformers = r.interpreter.transformers();
        let router_interp = if transformers.is_empty() {
            Arc::clone(&interp)
        } else {
            interp.with_transformers(
                build::transformers(transformers, Some(&interp))
                    .map_err(|e| anyhow::anyhow!("router {}: interpreter: {e}", r.label))?,
            )
        };
        let mode = build::interpretation(&r.interpreter, &r.label, &scope)
            .map_err(|e| anyhow::anyhow!("router {}: interpreter: {e}", r.label))?;
        let binder = Binder::new(
            router_interp,
            mode,
            r.dtab.clone(),
            crate::proxy::client::ClientSettings::build(r.client.clone(), r.protocol, &scope)
                .with_context(|| format!("router {}: client tls", r.label))?,
            scope.clone(),
            cache.paths.unwrap_or(DEFAULT_CACHE_CAPACITY),
            cache.clients.unwrap_or(DEFAULT_CACHE_CAPACITY),
            Duration::from_secs(cache.idle_ttl_secs.unwrap_or(DEFAULT_IDLE_TTL_SECS)),
        );
        if r.http.originator == Some(true) {
            scope.gauge("originator").set(1);
        }
        let identifiers = if r.identifiers.is_empty() {
            vec![crate::config::plugins::IdentifierKind::HeaderToken {
                header: crate::config::plugins::DEFAULT_TOKEN_HEADER.into(),
            }]
        } else {
            r.identifiers.iter().map(|p| p.value.clone()).collect()
        };
        let service_cfg = r
            .http
            .service
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or(crate::config::model::PerPrefix::Global(Default::default()));
        let mut router = Router::new(
            r.label.clone(),
            identifiers,
            r.dst_prefix.clone(),
            Arc::clone(&binder),
            Duration::from_millis(
                r.http
                    .binding_timeout_ms
                    .unwrap_or(DEFAULT_BINDING_TIMEOUT_MS),
            ),
            crate::proxy::guard::RequestLimits::from_config(&r.http),
            r.http
                .max_err_response_kb
                .unwrap_or(DEFAULT_MAX_ERR_RESPONSE_KB),
            service_cfg,
        );
        // A backend that never answers must not hold a request forever: services without a
        // `totalTimeoutMs` get a default one, unless every server bounds requests itself.
        if r.servers.iter().all(|s| s.config.timeout_ms.is_some()) {
            router.default_total_timeout = None;
        }
        router.protocol = r.protocol;
        if r.protocol == crate::config::model::Protocol::H2 {
            // HTTP/2 bounds its header list itself (`maxHeaderListBytes`, hyper's 16 KB by
            // default); the router's own check uses the same bound.
            let list = r
                .servers
                .iter()
                .filter_map(|s| s.config.max_header_list_bytes)
                .max()
                .unwrap_or(crate::proxy::server::DEFAULT_H2_MAX_HEADER_LIST_BYTES);
            router.limits.max_headers_kb = list.div_ceil(1024);
        }
        let router = Arc::new(router);
        admin_routers.push(AdminRouter {
            label: r.label.clone(),
            dtab: r.dtab.clone(),
            binder: Arc::clone(&binder),
        });
        let (log_path, log_append) = match r.protocol {
            crate::config::model::Protocol::Http1 => {
                (&r.http.http_access_log, r.http.http_access_log_append)
            }
            crate::config::model::Protocol::H2 => {
                (&r.http.h2_access_log, r.http.h2_access_log_append)
            }
        };
        let access_log = match log_path {
            Some(path) => Some(
                crate::proxy::access_log::AccessLog::open(
                    path,
                    log_append.unwrap_or(true),
                    scope.scope("access_log").counter("dropped"),
                )
                .await
                .with_context(|| format!("router {}: access log {}", r.label, path.display()))?,
            ),
            None => None,
        };
        for s in &r.servers {
            let alpn: &[&[u8]] = match r.protocol {
                crate::config::model::Protocol::Http1 => &[crate::transport::ALPN_HTTP11],
                // HTTP/1.1 clients of an h2 router are served too (the server detects which).
                crate::config::model::Protocol::H2 => {
                    &[crate::transport::ALPN_H2, crate::transport::ALPN_HTTP11]
                }
            };
            let tls = match &s.config.tls {
                Some(t) if t.enabled != Some(false) => Some(Arc::new(
                    crate::transport::tls::ServerTls::build(t, alpn, &scope)
                        .with_context(|| format!("router {}: server {} tls", r.label, s.addr))?,
                )),
                _ => None,
            };
            let settings = ServerSettings {
                protocol: r.protocol,
                h2: crate::proxy::server::H2ServerSettings {
                    max_concurrent_streams: s.config.max_concurrent_streams_per_connection,
                    initial_stream_window: s.config.initial_stream_window_bytes,
                    max_frame_size: s.config.max_frame_bytes,
                    max_header_list_size: s.config.max_header_list_bytes,
                },
                tls,
                access_log: access_log.clone(),
                recent: recent.clone(),
                max_concurrent: s.config.max_concurrent_requests,
                max_call_depth: s.config.max_call_depth.unwrap_or(DEFAULT_MAX_CALL_DEPTH),
                clear_context: s.config.clear_context.unwrap_or(false),
                timeout: s.config.timeout_ms.map(Duration::from_millis),
                header_read_timeout: Duration::from_millis(
                    s.config
                        .header_read_timeout_ms
                        .unwrap_or(crate::proxy::server::DEFAULT_HEADER_READ_TIMEOUT_MS),
                ),
                max_connections: s
                    .config
                    .max_connections
                    .unwrap_or(crate::proxy::server::DEFAULT_MAX_CONNECTIONS),
                max_buf_size: crate::proxy::server::buf_size_for(
                    router.limits.max_headers_kb,
                    router.limits.max_initial_line_kb,
                ),
            };
            let srv = BoundServer::bind(s.addr, Arc::clone(&router), settings, &scope)
                .await
                .with_context(|| format!("router {}: binding {}", r.label, s.addr))?;
            bound.push((r.label.clone(), srv));
        }
    }
    let admin_ip = cfg.admin.ip.clone().unwrap_or_else(|| DEFAULT_IP.into());
    let admin_addr: SocketAddr = format!(
        "{admin_ip}:{}",
        cfg.admin.port.unwrap_or(DEFAULT_ADMIN_PORT)
    )
    .parse()
    .or_else(|_| {
        use std::net::ToSocketAddrs;
        (
            admin_ip.as_str(),
            cfg.admin.port.unwrap_or(DEFAULT_ADMIN_PORT),
        )
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| anyhow::anyhow!("admin ip `{admin_ip}` does not resolve"))
    })?;
    let prometheus = cfg.telemetry.iter().filter_map(|t| match &t.value {
        TelemeterKind::Prometheus { path, prefix } => Some((path.clone(), prefix.clone())),
        TelemeterKind::RecentRequests { .. } => None,
    });
    let shutdown = Shutdown::new();
    let admin_tls = match &cfg.admin.tls {
        Some(t) if t.enabled != Some(false) => Some(Arc::new(
            crate::transport::tls::ServerTls::build(
                t,
                &[crate::transport::ALPN_HTTP11],
                &metrics.scope("admin"),
            )
            .context("admin: tls")?,
        )),
        _ => None,
    };
    let admin = Admin::bind(
        admin_addr,
        crate::admin::AdminParts {
            metrics: metrics.clone(),
            interp: Arc::clone(&interp),
            routers: admin_routers,
            config: raw,
            prometheus: prometheus.collect(),
            recent,
            shutdown: shutdown.clone(),
            security: crate::admin::Security::from_config(cfg.admin.security.as_ref()),
        },
        admin_tls,
    )
    .await
    .with_context(|| format!("admin: binding {admin_addr}"))?;
    let admin_addr = admin.addr();

    let mut tasks = tokio::task::JoinSet::new();
    let mut servers = Vec::new();
    for (label, srv) in bound {
        tracing::info!(router = %label, addr = %srv.addr, "serving");
        servers.push((label, srv.addr));
        tasks.spawn(srv.serve(shutdown.clone(), grace));
    }
    tracing::info!(addr = %admin_addr, "admin serving");
    tasks.spawn(admin.serve(shutdown.clone()));
    Ok(Running {
        servers,
        admin: admin_addr,
        metrics,
        shutdown,
        tasks,
    })
}
