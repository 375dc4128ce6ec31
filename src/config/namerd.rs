//! namerd configs (reference section 1.24): `admin`, `interfaces`, `storage`, `namers`,
//! `telemetry`, decoded with the same strict, located checks as linker configs (the `namers`,
//! `admin` and `telemetry` sections are the linker's). The storage and interface kinds and their
//! defaults (Linkerd's) are declared here; building them is `crate::namerd`'s.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;
use serde_json::Value;
use switchboard_namer_core::Dtab;

use super::diag::{Diag, Diags, Loc};
use super::model::{AdminConfig, ClientTls, ServerTls, SocketOptions};
use super::plugins::{Telemeters, ZkAddr};
use super::registry::{nest, params, Entry, Family, Plugin};
use super::{check_admin, check_server_tls, decode_namer, list, resolve_ip, Invalid, NamerConfig};

/// The top-level keys of a namerd config.
pub const NAMERD_KEYS: [&str; 5] = ["admin", "interfaces", "storage", "namers", "telemetry"];
/// Linkerd's namerd admin port (its docs use 9991; the code's default is 9990).
pub const DEFAULT_NAMERD_ADMIN_PORT: u16 = 9990;
/// Default port of `io.l5d.httpController`.
pub const DEFAULT_HTTP_CONTROLLER_PORT: u16 = 4180;
/// Default port of `io.l5d.mesh`.
pub const DEFAULT_MESH_PORT: u16 = 4321;

/// Whether a parsed config is a namerd config (it has `interfaces` or `storage`).
pub fn is_namerd(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|m| m.contains_key("interfaces") || m.contains_key("storage"))
}

/// A checked namerd config.
#[derive(Debug, Clone)]
pub struct NamerdConfig {
    pub admin: AdminConfig,
    pub storage: StorageKind,
    pub interfaces: Vec<Interface>,
    pub namers: Vec<NamerConfig>,
    pub telemetry: Vec<Plugin<Telemeters>>,
}

/// One interface: where it listens, and its TLS.
#[derive(Debug, Clone)]
pub struct Interface {
    pub kind: &'static str,
    pub addr: SocketAddr,
    pub tls: Option<ServerTls>,
}

#[derive(Debug, Clone)]
pub enum StorageKind {
    InMemory(BTreeMap<String, Dtab>),
    Zk(ZkStorageParams),
    Etcd(EtcdStorageParams),
    Consul(ConsulStorageParams),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct InMemoryParams {
    /// A namespace written without a dtab (`default:`) holds the empty dtab.
    #[serde(default)]
    namespaces: BTreeMap<String, Option<String>>,
    /// Accepted as Linkerd did; it changes nothing.
    #[allow(dead_code)]
    experimental: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ZkAuthInfo {
    pub scheme: String,
    pub auth: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ZkAcl {
    pub scheme: String,
    pub id: String,
    pub perms: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ZkStorageParams {
    pub zk_addrs: Vec<ZkAddr>,
    pub path_prefix: Option<String>,
    pub session_timeout_ms: Option<u64>,
    pub auth_info: Option<ZkAuthInfo>,
    #[serde(default)]
    pub acls: Vec<ZkAcl>,
    pub experimental: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EtcdStorageParams {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path_prefix: Option<String>,
    pub tls: Option<ClientTls>,
    pub experimental: Option<bool>,
}

/// Linkerd's etcd default host and port.
pub const DEFAULT_ETCD_HOST: &str = "localhost";
pub const DEFAULT_ETCD_PORT: u16 = 2379;
/// Linkerd's Consul default host and port.
pub const DEFAULT_CONSUL_HOST: &str = "localhost";
pub const DEFAULT_CONSUL_PORT: u16 = 8500;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsulStorageParams {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path_prefix: Option<String>,
    pub token: Option<String>,
    pub datacenter: Option<String>,
    pub read_consistency_mode: Option<String>,
    pub write_consistency_mode: Option<String>,
    /// Accepted for compatibility; stores always keep their last good state.
    pub fail_fast: Option<bool>,
    pub backoff: Option<Value>,
    /// TLS to Consul (`commonName` defaults to `host`).
    pub tls: Option<ClientTls>,
    pub experimental: Option<bool>,
}

fn prefix_ok(key: &str, p: &Option<String>) -> Result<(), String> {
    match p {
        Some(p) if !p.starts_with('/') || p.len() < 2 || p.contains("//") => Err(nest(
            key,
            &format!("`{p}` is not a key prefix: it starts with `/` and names something"),
        )),
        _ => Ok(()),
    }
}

fn in_memory(v: Value) -> Result<StorageKind, String> {
    let p = params::<InMemoryParams>(v)?;
    let mut out = BTreeMap::new();
    for (ns, d) in p.namespaces {
        if let Err(e) = switchboard_namerd::store::check_namespace(&ns) {
            return Err(nest(&format!("namespaces.{ns}"), &e));
        }
        let dtab = Dtab::read(d.as_deref().unwrap_or(""))
            .map_err(|e| nest(&format!("namespaces.{ns}"), &e.to_string()))?;
        out.insert(ns, dtab);
    }
    Ok(StorageKind::InMemory(out))
}

fn zk(v: Value) -> Result<StorageKind, String> {
    let p = params::<ZkStorageParams>(v)?;
    if p.zk_addrs.is_empty() {
        return Err(nest(
            "zkAddrs",
            "at least one ZooKeeper address is required",
        ));
    }
    prefix_ok("pathPrefix", &p.path_prefix)?;
    for (i, a) in p.acls.iter().enumerate() {
        if let Err(c) = switchboard_namerd::store::zk::permission(&a.perms) {
            return Err(nest(
                &format!("acls[{i}].perms"),
                &format!(
                    "`{}`: {c:?} is not one of the permissions c, r, w, d, a",
                    a.perms
                ),
            ));
        }
    }
    if p.session_timeout_ms == Some(0) {
        return Err(nest("sessionTimeoutMs", "must be above 0"));
    }
    Ok(StorageKind::Zk(p))
}

fn etcd(v: Value) -> Result<StorageKind, String> {
    let mut p = params::<EtcdStorageParams>(v)?;
    prefix_ok("pathPrefix", &p.path_prefix)?;
    p.tls = p.tls.filter(|t| t.enabled != Some(false));
    if let Some(t) = &p.tls {
        super::plugins::etcd_tls_rules(t)?;
    }
    Ok(StorageKind::Etcd(p))
}

fn consul(v: Value) -> Result<StorageKind, String> {
    let mut p = params::<ConsulStorageParams>(v)?;
    prefix_ok("pathPrefix", &p.path_prefix)?;
    p.tls = p.tls.filter(|t| t.enabled != Some(false));
    super::plugins::consistency_modes(&p.read_consistency_mode, &p.write_consistency_mode)?;
    if let Some(t) = &p.tls {
        super::plugins::no_template("tls.commonName", t.common_name.as_deref())?;
    }
    Ok(StorageKind::Consul(p))
}

pub struct Storages;
impl Family for Storages {
    type Out = StorageKind;
    const NAME: &'static str = "storage";
    fn kinds() -> &'static [(&'static str, Entry<StorageKind>)] {
        &[
            ("io.l5d.inMemory", Entry::Supported(in_memory)),
            ("io.l5d.zk", Entry::Supported(zk)),
            ("io.l5d.etcd", Entry::Supported(etcd)),
            ("io.l5d.consul", Entry::Supported(consul)),
            (
                "io.l5d.k8s",
                Entry::NotYet("Kubernetes is not part of Switchboard yet: store dtabs in etcd, ZooKeeper or Consul"),
            ),
        ]
    }
}

/// Keys every interface takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InterfaceParams {
    pub ip: Option<String>,
    pub port: Option<u16>,
    pub socket_options: Option<SocketOptions>,
    /// A server `tls` block, as a linker server's (`certPath`, `keyPath`, `caCertPath`,
    /// `requireClientAuth`, ...).
    pub tls: Option<ServerTls>,
}

/// `io.l5d.httpController` and `io.l5d.mesh` take the common keys.
fn http_controller(v: Value) -> Result<InterfaceParams, String> {
    params::<InterfaceParams>(v)
}

pub struct Interfaces;
impl Family for Interfaces {
    type Out = InterfaceParams;
    const NAME: &'static str = "interface";
    fn kinds() -> &'static [(&'static str, Entry<InterfaceParams>)] {
        &[
            ("io.l5d.httpController", Entry::Supported(http_controller)),
            ("io.l5d.mesh", Entry::Supported(http_controller)),
            (
                "io.l5d.thriftNameInterpreter",
                Entry::NotYet(
                    "namerd's Thrift interface is not supported: linkers use io.l5d.namerd.http",
                ),
            ),
            (
                "io.l5d.destination",
                Entry::NotYet("the Linkerd 2 destination API is not supported"),
            ),
        ]
    }
}

/// Parses and checks namerd config text.
pub fn load(text: &str) -> Result<(NamerdConfig, Vec<Diag>), Invalid> {
    let mut d = Diags::default();
    let value = match super::source::parse(text) {
        Ok(v) => v,
        Err(e) => {
            d.error(&Loc::root(), e.to_string());
            return Err(Invalid { diags: d });
        }
    };
    match decode(&value, &mut d) {
        Some(c) if d.errors.is_empty() => Ok((c, d.warnings)),
        _ => Err(Invalid { diags: d }),
    }
}

fn decode(v: &Value, d: &mut Diags) -> Option<NamerdConfig> {
    let root = Loc::root();
    let Value::Object(top) = v else {
        d.error(
            &root,
            format!("expected a map of {}", NAMERD_KEYS.join(", ")),
        );
        return None;
    };
    for k in top.keys() {
        if !NAMERD_KEYS.contains(&k.as_str()) {
            let hint = if k == "routers" {
                " (a config with `routers` is a linker config; namerd's has `interfaces` and `storage`)"
            } else {
                ""
            };
            d.error(
                &root.key(k),
                format!(
                    "unknown top-level key `{k}` of a namerd config{hint}; expected one of {}",
                    NAMERD_KEYS.join(", ")
                ),
            );
        }
    }
    let admin = match top.get("admin") {
        Some(v) => d.typed::<AdminConfig>(v, &root.key("admin")),
        None => Some(AdminConfig::default()),
    };
    if let Some(a) = &admin {
        check_admin(a, &root.key("admin"), d);
    }
    let storage = match top.get("storage") {
        Some(v) => d
            .typed::<Plugin<Storages>>(v, &root.key("storage"))
            .map(|p| p.value),
        None => {
            d.error(&root.key("storage"), "a namerd config needs `storage`");
            None
        }
    };
    let storage_tls = match &storage {
        Some(StorageKind::Consul(p)) => p.tls.as_ref(),
        Some(StorageKind::Etcd(p)) => p.tls.as_ref(),
        _ => None,
    };
    if let Some(t) = storage_tls {
        super::check_client_tls(t, &root.key("storage").key("tls"), false, d);
    }
    let raw = list(top, "interfaces", d);
    if raw.is_empty() {
        d.error(
            &root.key("interfaces"),
            "a namerd config needs at least one interface",
        );
    }
    let mut interfaces = Vec::new();
    for (loc, v) in raw {
        let Some(p) = d.typed::<Plugin<Interfaces>>(v, &loc) else {
            continue;
        };
        let ip = match p.value.ip.as_deref() {
            None | Some("loopback") => std::net::IpAddr::from([127, 0, 0, 1]),
            Some(t) => resolve_ip(t, &loc.key("ip"), d),
        };
        let port = p.value.port.unwrap_or(match p.kind {
            "io.l5d.mesh" => DEFAULT_MESH_PORT,
            _ => DEFAULT_HTTP_CONTROLLER_PORT,
        });
        let addr = SocketAddr::new(ip, port);
        if interfaces
            .iter()
            .any(|i: &Interface| i.addr == addr && port != 0)
        {
            d.error(
                &loc.key("port"),
                format!("{addr} is used by another interface"),
            );
        }
        if p.value.socket_options.is_some() {
            d.warn(
                &loc.key("socketOptions"),
                "accepted, not acted on: namerd's interfaces use the system's socket defaults",
            );
        }
        let tls = p.value.tls.filter(|t| t.enabled != Some(false));
        if let Some(t) = &tls {
            check_server_tls(t, &loc.key("tls"), d);
        }
        interfaces.push(Interface {
            kind: p.kind,
            addr,
            tls,
        });
    }
    if let Some(a) = &admin {
        let admin_port = a.port.unwrap_or(DEFAULT_NAMERD_ADMIN_PORT);
        for (i, itf) in interfaces.iter().enumerate() {
            if itf.addr.port() == admin_port && admin_port != 0 {
                d.error(
                    &root.key("interfaces").idx(i).key("port"),
                    format!("port {admin_port} is the admin port"),
                );
            }
        }
    }
    let namers = list(top, "namers", d)
        .into_iter()
        .filter_map(|(loc, v)| decode_namer(v, &loc, d))
        .collect::<Vec<_>>();
    let telemetry = list(top, "telemetry", d)
        .into_iter()
        .filter_map(|(loc, v)| {
            let t = d.typed::<Plugin<Telemeters>>(v, &loc)?;
            if !matches!(t.value, super::plugins::TelemeterKind::Prometheus { .. }) {
                d.warn(
                    &loc,
                    format!(
                        "{} is not wired for namerd: accepted, not acted on (namerd serves \
                         io.l5d.prometheus and its admin /metrics.json)",
                        t.kind
                    ),
                );
            }
            Some(t)
        })
        .collect::<Vec<_>>();
    Some(NamerdConfig {
        admin: admin?,
        storage: storage?,
        interfaces,
        namers,
        telemetry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match load(text) {
            Ok(_) => Vec::new(),
            Err(e) => e.diags.errors.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn check() {
        let rows: &[(&str, &str)] = &[
            ("storage: {kind: io.l5d.inMemory}\ninterfaces: [{kind: io.l5d.httpController}]", ""),
            (
                "storage: {kind: io.l5d.inMemory, namespaces: {web: '/svc=>/#/io.l5d.fs'}}\ninterfaces: [{kind: io.l5d.httpController, port: 4181}]",
                "",
            ),
            ("interfaces: [{kind: io.l5d.httpController}]", "storage: a namerd config needs `storage`"),
            ("storage: {kind: io.l5d.inMemory}", "interfaces: a namerd config needs at least one interface"),
            (
                "storage: {kind: io.l5d.inMemory, namespaces: {web: '/svc=>'}}\ninterfaces: [{kind: io.l5d.httpController}]",
                "storage (io.l5d.inMemory).namespaces.web:",
            ),
            (
                "storage: {kind: io.l5d.inMemory, namespaces: {'a/b': '/svc=>/x'}}\ninterfaces: [{kind: io.l5d.httpController}]",
                "namespaces.a/b",
            ),
            (
                "storage: {kind: io.l5d.zk, zkAddrs: []}\ninterfaces: [{kind: io.l5d.httpController}]",
                "zkAddrs: at least one",
            ),
            (
                "storage: {kind: io.l5d.zk, zkAddrs: [{host: h}], acls: [{scheme: world, id: anyone, perms: rwx}]}\ninterfaces: [{kind: io.l5d.httpController}]",
                "acls[0].perms",
            ),
            (
                "storage: {kind: io.l5d.etcd, pathPrefix: dtabs}\ninterfaces: [{kind: io.l5d.httpController}]",
                "pathPrefix: `dtabs` is not a key prefix",
            ),
            (
                "storage: {kind: io.l5d.consul, readConsistencyMode: eventual}\ninterfaces: [{kind: io.l5d.httpController}]",
                "readConsistencyMode: `eventual`",
            ),
            (
                "storage: {kind: io.l5d.k8s}\ninterfaces: [{kind: io.l5d.httpController}]",
                "storage kind `io.l5d.k8s` is not supported yet",
            ),
            (
                "storage: {kind: io.l5d.inMemory}\ninterfaces: [{kind: io.l5d.thriftNameInterpreter}]",
                "interfaces[0] (io.l5d.thriftNameInterpreter): interface kind `io.l5d.thriftNameInterpreter` is not supported yet",
            ),
            (
                "storage: {kind: io.l5d.inMemory}\ninterfaces: [{kind: io.l5d.httpController, prot: 1}]",
                "unknown field `prot`",
            ),
            (
                "storage: {kind: io.l5d.inMemory}\ninterfaces: [{kind: io.l5d.mesh, tls: {certPath: /nonexistent/c.pem, keyPath: /nonexistent/k.pem, requireClientAuth: true}}]",
                "interfaces[0].tls.requireClientAuth: `requireClientAuth: true` needs `caCertPath`",
            ),
            (
                "storage: {kind: io.l5d.inMemory}\ninterfaces: [{kind: io.l5d.httpController, tls: {certPath: /etc/hostname, keyPath: /nonexistent/k.pem}}]",
                "",
            ),
            (
                "storage: {kind: io.l5d.inMemory}\ninterfaces: [{kind: io.l5d.httpController, tls: {certPath: /etc/hostname, keyPath: /etc/hostname}}]",
                "interfaces[0].tls.",
            ),
            (
                "storage: {kind: io.l5d.inMemory}\ninterfaces: [{kind: io.l5d.httpController, tls: {certPath: /etc/hostname, keyPath: /etc/hostname, ciphers: [NOPE]}}]",
                "interfaces[0].tls.ciphers:",
            ),
            (
                "storage: {kind: io.l5d.inMemory}\ninterfaces: [{kind: io.l5d.httpController}, {kind: io.l5d.httpController}]",
                "interfaces[1].port: 127.0.0.1:4180 is used by another interface",
            ),
            (
                "storage: {kind: io.l5d.inMemory}\ninterfaces: [{kind: io.l5d.httpController, port: 9990}]",
                "interfaces[0].port: port 9990 is the admin port",
            ),
            (
                "storage: {kind: io.l5d.inMemory}\ninterfaces: [{kind: io.l5d.httpController}]\nrouters: []",
                "routers: unknown top-level key `routers` of a namerd config (a config with `routers` is a linker config",
            ),
        ];
        for (input, want) in rows {
            let errs = errors(input);
            if want.is_empty() {
                assert!(errs.is_empty(), "{input}: {errs:?}");
            } else {
                assert!(
                    errs.iter().any(|e| e.contains(want)),
                    "{input}\nwant: {want}\ngot: {errs:#?}"
                );
            }
        }
    }
}
