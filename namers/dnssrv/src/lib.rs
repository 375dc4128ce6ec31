//! The `io.l5d.dnssrv` namer: `/<srv name>/rest` binds to the targets of the SRV record
//! `<srv name>` (e.g. `_http._tcp.web.service.consul`), re-resolved every
//! `refreshIntervalSeconds`. Only the best priority group whose targets resolve is used, each
//! endpoint weighted by its SRV weight. NXDOMAIN or no records is Neg (so a dtab falls back);
//! a timeout, SERVFAIL or refused query keeps the last good set, marked stale.
//!
//! It polls (DNS has no watch); one poller per name, shared by every lookup of it and stopped
//! once nobody observes the name. It only names; it does not route.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use serde_json::{json, Value};
use switchboard_namer_core::service::{NamerStats, ServiceCell, Services};
use switchboard_namer_core::{Activity, Endpoint, Name, NameTree, Namer, Path};

/// The namer's `kind` in config.
pub const KIND: &str = "io.l5d.dnssrv";
/// Linkerd's default refresh interval.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5);
/// The weight given to a weight-0 record beside non-zero ones (RFC 2782: "a very small chance").
const ZERO_WEIGHT: f64 = 0.01;

/// A DNS server the namer asks: `ip` (port 53) or `ip:port`.
pub fn parse_dns_host(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("`{s}` is not an IP address or IP:port"))
}

/// The `io.l5d.dnssrv` namer (cheap to clone).
#[derive(Clone)]
pub struct DnsSrvNamer {
    inner: Arc<Inner>,
}

struct Inner {
    resolver: TokioResolver,
    prefix: Path,
    refresh: Duration,
    dns_hosts: Vec<SocketAddr>,
    services: Services<String>,
    stats: NamerStats,
}

impl DnsSrvNamer {
    /// A namer asking `dns_hosts` (the system resolver when empty) every `refresh`.
    pub fn new(
        dns_hosts: Vec<SocketAddr>,
        refresh: Duration,
        prefix: Path,
    ) -> Result<DnsSrvNamer, String> {
        let mut opts = ResolverOpts::default();
        // The namer polls; a resolver cache would hide changes until their TTL ran out.
        opts.cache_size = 0;
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        let builder = if dns_hosts.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| e.to_string())?
        } else {
            let servers = dns_hosts
                .iter()
                .map(|a| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = a.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = a.port();
                    NameServerConfig::new(a.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], servers),
                TokioRuntimeProvider::default(),
            )
        };
        let resolver = builder
            .with_options(opts)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(DnsSrvNamer {
            inner: Arc::new(Inner {
                resolver,
                prefix,
                refresh: refresh.max(Duration::from_millis(10)),
                dns_hosts,
                services: Services::default(),
                stats: NamerStats::default(),
            }),
        })
    }
}

impl Inner {
    /// Resolves `name`: the endpoints of the best priority group that resolves; empty for
    /// NXDOMAIN or no records; an error for anything else.
    async fn resolve(&self, name: &str) -> Result<Vec<Endpoint>, String> {
        let lookup = match self.resolver.srv_lookup(name).await {
            Ok(l) => l,
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => return Ok(Vec::new()),
            Err(e) => return Err(e.to_string()),
        };
        let mut srvs: Vec<(u16, u16, u16, String)> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some((s.priority, s.weight, s.port, s.target.to_ascii())),
                _ => None,
            })
            .collect();
        if srvs.is_empty() {
            return Ok(Vec::new());
        }
        srvs.sort();
        let glue: Vec<(String, IpAddr)> = lookup
            .additionals()
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some((r.name.to_ascii(), IpAddr::V4(a.0))),
                RData::AAAA(a) => Some((r.name.to_ascii(), IpAddr::V6(a.0))),
                _ => None,
            })
            .collect();
        let mut priorities: Vec<u16> = srvs.iter().map(|s| s.0).collect();
        priorities.dedup();
        let mut last_err = None;
        for prio in priorities {
            let group: Vec<&(u16, u16, u16, String)> =
                srvs.iter().filter(|s| s.0 == prio).collect();
            let all_zero = group.iter().all(|s| s.1 == 0);
            let mut eps = Vec::new();
            for (_, weight, port, target) in group {
                let w = match (*weight, all_zero) {
                    (_, true) => 1.0,
                    (0, false) => ZERO_WEIGHT,
                    (w, false) => f64::from(w),
                };
                let mut ips: Vec<IpAddr> = glue
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(target))
                    .map(|(_, ip)| *ip)
                    .collect();
                if ips.is_empty() {
                    match self.resolver.lookup_ip(target.as_str()).await {
                        Ok(l) => ips.extend(l.iter()),
                        Err(e) => last_err = Some(format!("{target}: {e}")),
                    }
                }
                eps.extend(
                    ips.into_iter()
                        .map(|ip| Endpoint::new(SocketAddr::new(ip, *port)).with_weight(w)),
                );
            }
            if !eps.is_empty() {
                return Ok(eps);
            }
        }
        Err(last_err.unwrap_or_else(|| format!("no target of {name} resolves")))
    }

    async fn poll(self: Arc<Self>, name: String, cell: Arc<ServiceCell>) {
        self.stats.watch_opens.fetch_add(1, Relaxed);
        loop {
            match self.resolve(&name).await {
                Ok(eps) => {
                    let before = cell.addr();
                    cell.set_endpoints(eps);
                    if cell.addr() != before {
                        self.stats.updates.fetch_add(1, Relaxed);
                    }
                }
                Err(e) => {
                    self.stats.errors.fetch_add(1, Relaxed);
                    tracing::warn!(namer = KIND, %name, error = %e, "SRV lookup failed; keeping the last good set");
                    cell.set_error(e);
                }
            }
            tokio::time::sleep(self.refresh).await;
            if self.services.release_if_unobserved(&name) {
                self.stats.watch_closes.fetch_add(1, Relaxed);
                return;
            }
        }
    }
}

impl Namer for DnsSrvNamer {
    fn lookup(&self, path: &Path) -> Activity<NameTree<Name>> {
        let this = &self.inner;
        this.stats.lookups.fetch_add(1, Relaxed);
        let Some(name) = path.elem_str(0).filter(|n| !n.is_empty()) else {
            return switchboard_namer_core::Var::Const(switchboard_namer_core::State::Ok(
                NameTree::Neg,
            ));
        };
        let name = name.to_string();
        let me = Arc::clone(this);
        let cell = this.services.get_or_start(
            &name,
            || this.prefix.concat(&path.take(1)),
            |cell| {
                tokio::spawn(me.poll(name.clone(), cell));
            },
        );
        cell.tree(&path.drop(1))
    }

    fn state(&self) -> Value {
        let this = &self.inner;
        let services = this.services.states(String::clone);
        json!({
            "kind": KIND,
            "dnsHosts": this.dns_hosts.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "refreshIntervalMs": this.refresh.as_millis() as u64,
            "services": services,
            "stats": this.stats.json(),
        })
    }

    fn stats(&self) -> Vec<(String, i64)> {
        self.inner.services.stats_with(&self.inner.stats)
    }
}
