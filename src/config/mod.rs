//! Linkerd 1 linker configs: parse (YAML or JSON, strict), decode every section through typed
//! structs and the plugin registries, then validate across sections (router labels, server
//! ports, dtabs, prefixes, files). `load` collects every error and warning with its location;
//! only a config with no errors yields a `Config`. Nothing here binds a socket or starts a
//! watch: building running objects from a `Config` is the caller's step.
//!
//! Things a config names that may be absent where it is checked (files, directories,
//! certificates, host names) are warnings, not errors.

pub mod diag;
pub mod inert;
pub mod model;
pub mod namerd;
pub mod plugins;
pub mod registry;
pub mod source;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path as FsPath;

use serde_json::{Map, Value};
use switchboard_namer_core::rewrite::PathMatcher;
use switchboard_namer_core::{Dtab, Path};

pub use diag::{Diag, Diags, Loc};
use model::{
    AdminConfig, ClientParams, HttpRouterConfig, NamerCommon, PerPrefix, Protocol, ServerConfig,
    ServerTls, Usage, DEFAULT_DST_PREFIX, DEFAULT_H2_PORT, DEFAULT_HTTP_PORT, DEFAULT_IP,
    NAMER_COMMON_KEYS,
};
use plugins::{Identifiers, InterpreterKind, NamerKind, Namers, Telemeters, Transformers};
use registry::Plugin;

/// The top-level keys of a linker config.
pub const TOP_LEVEL_KEYS: [&str; 5] = ["admin", "routers", "namers", "telemetry", "usage"];
/// Router protocols Switchboard serves.
pub const SUPPORTED_PROTOCOLS: [&str; 2] = ["http", "h2"];
/// Linkerd 1 protocols Switchboard does not serve yet.
pub const NOT_YET_PROTOCOLS: [&str; 3] = ["thrift", "thriftmux", "mux"];

/// Router keys that belong to one protocol only: `(key, protocol)`.
const PROTOCOL_KEYS: &[(&str, &str)] = &[
    ("httpAccessLog", "http"),
    ("httpAccessLogRollPolicy", "http"),
    ("httpAccessLogAppend", "http"),
    ("httpAccessLogRotateCount", "http"),
    ("maxHeadersKB", "http"),
    ("maxInitialLineKB", "http"),
    ("maxErrResponseKB", "http"),
    ("streamAfterContentLengthKB", "http"),
    ("streamingEnabled", "http"),
    ("compressionLevel", "http"),
    ("h2AccessLog", "h2"),
    ("h2AccessLogRollPolicy", "h2"),
    ("h2AccessLogAppend", "h2"),
    ("h2AccessLogRotateCount", "h2"),
];
/// Linkerd's text when `routers` is missing or empty.
pub const NO_ROUTERS: &str = "At least one router must be specified in the configuration.";

/// A checked config.
#[derive(Debug, Clone)]
pub struct Config {
    pub admin: AdminConfig,
    pub routers: Vec<Router>,
    pub namers: Vec<NamerConfig>,
    pub telemetry: Vec<Plugin<Telemeters>>,
    pub usage: Usage,
}

/// A checked router.
#[derive(Debug, Clone)]
pub struct Router {
    pub label: String,
    pub protocol: Protocol,
    pub dtab: Dtab,
    pub dst_prefix: Path,
    pub servers: Vec<Server>,
    pub identifiers: Vec<Plugin<Identifiers>>,
    pub interpreter: InterpreterKind,
    pub client: PerPrefix<ClientParams>,
    /// Every key as written, for the parts not lifted out above.
    pub http: HttpRouterConfig,
}

/// A router's server: where it listens.
#[derive(Debug, Clone)]
pub struct Server {
    pub addr: SocketAddr,
    pub config: ServerConfig,
}

/// A configured namer, answering paths under `prefix` (`/#/io.l5d.fs`).
#[derive(Debug, Clone)]
pub struct NamerConfig {
    pub kind: &'static str,
    pub prefix: Path,
    pub params: NamerKind,
    pub transformers: Vec<Plugin<Transformers>>,
}

/// What `load` found wrong, with the warnings gathered on the way.
#[derive(Debug, Clone)]
pub struct Invalid {
    pub diags: Diags,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.diags.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

/// Parses and checks config text. On success, the config and its warnings.
pub fn load(text: &str) -> Result<(Config, Vec<Diag>), Invalid> {
    load_with_source(text).map(|(c, w, _)| (c, w))
}

/// `load`, also returning the config as JSON (what `/config.json` serves), parsed once.
pub fn load_with_source(text: &str) -> Result<(Config, Vec<Diag>, Value), Invalid> {
    let mut d = Diags::default();
    let value = match source::parse(text) {
        Ok(v) => v,
        Err(e) => {
            d.error(&Loc::root(), e.to_string());
            return Err(Invalid { diags: d });
        }
    };
    let cfg = decode(&value, &mut d);
    match cfg {
        Some(c) if d.errors.is_empty() => Ok((c, d.warnings, value)),
        _ => Err(Invalid { diags: d }),
    }
}

fn decode(v: &Value, d: &mut Diags) -> Option<Config> {
    let root = Loc::root();
    let Value::Object(top) = v else {
        d.error(
            &root,
            format!("expected a map of {}", TOP_LEVEL_KEYS.join(", ")),
        );
        return None;
    };
    let namerd: Vec<&str> = ["interfaces", "storage"]
        .into_iter()
        .filter(|k| top.contains_key(*k))
        .collect();
    if !namerd.is_empty() {
        d.error(
            &root,
            format!(
                "this is a namerd config (it has `{}`): run it with `switchboard namerd CONFIG`",
                namerd.join("`, `")
            ),
        );
        return None;
    }
    for k in top.keys() {
        if !TOP_LEVEL_KEYS.contains(&k.as_str()) {
            d.error(
                &root.key(k),
                format!(
                    "unknown top-level key `{k}`; expected one of {}",
                    TOP_LEVEL_KEYS.join(", ")
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
    let usage = match top.get("usage") {
        Some(v) => d.typed::<Usage>(v, &root.key("usage")),
        None => Some(Usage::default()),
    };
    let namers = list(top, "namers", d)
        .into_iter()
        .filter_map(|(loc, v)| decode_namer(v, &loc, d))
        .collect::<Vec<_>>();
    let telemetry = list(top, "telemetry", d)
        .into_iter()
        .filter_map(|(loc, v)| d.typed::<Plugin<Telemeters>>(v, &loc))
        .collect::<Vec<_>>();
    let raw_routers = list(top, "routers", d);
    if raw_routers.is_empty() && !matches!(top.get("routers"), Some(v) if !v.is_array()) {
        d.error(&root.key("routers"), NO_ROUTERS);
    }
    let routers: Vec<Option<Router>> = raw_routers
        .iter()
        .map(|(loc, v)| decode_router(v, loc, d))
        .collect();
    check_labels(&raw_routers, d);
    let ok_routers: Vec<Router> = routers.into_iter().flatten().collect();
    check_ports(&ok_routers, &raw_routers, d);
    check_namer_references(&ok_routers, &raw_routers, &namers, d);
    inert::warn(top, d);
    if let Some(a) = &admin {
        check_admin_routes(&ok_routers, &raw_routers, a, d);
    }
    Some(Config {
        admin: admin?,
        routers: ok_routers,
        namers,
        telemetry,
        usage: usage?,
    })
}

/// The elements of a top-level list, each with its location; an error if it is not a list.
fn list<'a>(top: &'a Map<String, Value>, key: &str, d: &mut Diags) -> Vec<(Loc, &'a Value)> {
    let loc = Loc::root().key(key);
    match top.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (loc.idx(i), v))
            .collect(),
        Some(other) => {
            d.error(
                &loc,
                format!("expected a list, found {}", diag::type_name(other)),
            );
            Vec::new()
        }
    }
}

fn decode_namer(v: &Value, loc: &Loc, d: &mut Diags) -> Option<NamerConfig> {
    let Value::Object(map) = v else {
        d.error(
            loc,
            format!(
                "expected a namer map with a `kind`, found {}",
                diag::type_name(v)
            ),
        );
        return None;
    };
    let (mut common_map, mut own) = (Map::new(), map.clone());
    for k in NAMER_COMMON_KEYS {
        if let Some(x) = own.remove(k) {
            common_map.insert(k.to_string(), x);
        }
    }
    let kind_loc = match map.get("kind") {
        Some(Value::String(k)) => loc.kind(k),
        _ => loc.clone(),
    };
    let common = d.typed::<NamerCommon>(&Value::Object(common_map), &kind_loc);
    let plugin = d.typed::<Plugin<Namers>>(&Value::Object(own), loc)?;
    let common = common?;
    let kind_loc = loc.kind(plugin.kind);
    let prefix_text = match (&common.prefix, &plugin.value) {
        (Some(p), _) => p.clone(),
        (None, NamerKind::Rewrite(_)) => {
            d.error(&kind_loc, switchboard_namer_core::rewrite::PREFIX_REQUIRED);
            return None;
        }
        (None, _) => format!("/{}", plugin.kind),
    };
    let prefix = match Path::read(&prefix_text) {
        Ok(p) => Path::read("/#").ok()?.concat(&p),
        Err(e) => {
            d.error(&kind_loc.key("prefix"), e.to_string());
            return None;
        }
    };
    match &plugin.value {
        NamerKind::Fs(p) => {
            if !p.root_dir.is_dir() {
                d.warn(
                    &kind_loc.key("rootDir"),
                    format!("`{}` is not a directory here", p.root_dir.display()),
                );
            }
        }
        NamerKind::Rewrite(r) => {
            if let Err(e) = PathMatcher::new(&r.pattern) {
                d.error(&kind_loc.key("pattern"), e.to_string());
                return None;
            }
        }
        // Servers a namer talks to may be absent where `check` runs; they are not contacted.
        NamerKind::DnsSrv(_)
        | NamerKind::Etcd(_)
        | NamerKind::Consul(_)
        | NamerKind::Serversets(_)
        | NamerKind::ZkLeader(_) => {}
    }
    let mut ok = true;
    for (i, t) in common.transformers.iter().enumerate() {
        use plugins::TransformerParams as P;
        if matches!(t.value.kind, P::Replace(_) | P::Const(_)) {
            d.error(
                &loc.kind(plugin.kind)
                    .key("transformers")
                    .idx(i)
                    .kind(t.kind),
                format!(
                    "`{}` binds a path through the interpreter: it applies to a router's \
                     `interpreter.transformers`, not to a namer",
                    t.kind
                ),
            );
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    Some(NamerConfig {
        kind: plugin.kind,
        prefix,
        params: plugin.value,
        transformers: common.transformers,
    })
}

fn decode_router(v: &Value, loc: &Loc, d: &mut Diags) -> Option<Router> {
    let Value::Object(map) = v else {
        d.error(
            loc,
            format!("expected a router map, found {}", diag::type_name(v)),
        );
        return None;
    };
    let protocol = match map.get("protocol") {
        Some(Value::String(p)) => p.clone(),
        Some(other) => {
            d.error(
                &loc.key("protocol"),
                format!("expected a string, found {}", diag::type_name(other)),
            );
            return None;
        }
        None => {
            d.error(
                loc,
                format!(
                    "missing `protocol`; known protocols: {}",
                    SUPPORTED_PROTOCOLS.join(", ")
                ),
            );
            return None;
        }
    };
    if NOT_YET_PROTOCOLS.contains(&protocol.as_str()) {
        d.error(
            &loc.key("protocol"),
            format!(
                "protocol `{protocol}` is not supported yet; supported: {}",
                SUPPORTED_PROTOCOLS.join(", ")
            ),
        );
        return None;
    }
    if !SUPPORTED_PROTOCOLS.contains(&protocol.as_str()) {
        d.error(
            &loc.key("protocol"),
            format!(
                "unknown protocol `{protocol}`; known protocols: {} (not supported yet: {})",
                SUPPORTED_PROTOCOLS.join(", "),
                NOT_YET_PROTOCOLS.join(", ")
            ),
        );
        return None;
    }
    if map.contains_key("baseDtab") {
        d.error(
            &loc.key("baseDtab"),
            "`baseDtab` is not supported: Linkerd 1.0 renamed it `dtab`",
        );
        return None;
    }
    let mut ok = true;
    for (key, only) in PROTOCOL_KEYS {
        if map.contains_key(*key) && *only != protocol {
            d.error(
                &loc.key(key),
                format!("`{key}` is a key of `{only}` routers, not `{protocol}` ones"),
            );
            ok = false;
        }
    }
    let http: HttpRouterConfig = d.typed(v, loc)?;
    let label = http.label.clone().unwrap_or_else(|| protocol.clone());
    let typed = if protocol == "h2" {
        Protocol::H2
    } else {
        Protocol::Http1
    };
    let dtab = match Dtab::read(http.dtab.as_deref().unwrap_or("")) {
        Ok(t) => t,
        Err(e) => {
            d.error(&loc.key("dtab"), e.to_string());
            ok = false;
            Dtab::empty()
        }
    };
    let dst_prefix = match Path::read(http.dst_prefix.as_deref().unwrap_or(DEFAULT_DST_PREFIX)) {
        Ok(p) => p,
        Err(e) => {
            d.error(&loc.key("dstPrefix"), e.to_string());
            ok = false;
            Path::empty()
        }
    };
    if http.streaming_enabled == Some(false) && http.stream_after_content_length_kb.is_some() {
        d.error(
            loc,
            format!(
                "Conflicting streaming options set. Can't disable streaming and set \
                 streamAfterContentLengthKB in {label}"
            ),
        );
        ok = false;
    }
    if let Some(p) = http
        .http_access_log
        .as_ref()
        .or(http.h2_access_log.as_ref())
    {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
        if dir.is_some_and(|dir| !dir.is_dir()) {
            d.warn(
                &loc.key("httpAccessLog"),
                format!("the directory of `{}` does not exist here", p.display()),
            );
        }
    }
    if let Some(svc) = &http.service {
        let own = match typed {
            Protocol::Http1 => "io.l5d.http.",
            Protocol::H2 => "io.l5d.h2.",
        };
        let entries: Vec<(Loc, &model::ServiceParams)> = match &svc.value {
            PerPrefix::Global(p) => vec![(loc.key("service").kind(svc.kind), p)],
            PerPrefix::Static(list) => list
                .iter()
                .enumerate()
                .map(|(i, (_, p))| (loc.key("service").kind(svc.kind).key("configs").idx(i), p))
                .collect(),
        };
        for (l, p) in entries {
            if let Some(c) = &p.response_classifier {
                if !c.kind.starts_with(own) {
                    d.error(
                        &l.key("responseClassifier").kind(c.kind),
                        format!(
                            "`{}` classifies the other protocol's responses; a `{protocol}` router takes `{own}*` classifiers",
                            c.kind
                        ),
                    );
                    ok = false;
                }
            }
        }
    }
    let client = match &http.client {
        Some(c) => c.value.clone(),
        None => PerPrefix::Global(ClientParams::default()),
    };
    ok &= check_client(&client, &loc.key("client"), d);
    let interpreter = match &http.interpreter {
        Some(i) => {
            let tls = match &i.value {
                InterpreterKind::NamerdHttp(p) => p.tls.as_ref().map(|t| (t, true)),
                InterpreterKind::Mesh(p) => p.tls.as_ref().map(|t| (t, true)),
                InterpreterKind::ConsulDtab(p) => p.tls.as_ref().map(|t| (t, false)),
                _ => None,
            };
            if let Some((t, require_name)) = tls {
                ok &= check_client_tls(t, &loc.key("interpreter").key("tls"), require_name, d);
            }
            i.value.clone()
        }
        None => InterpreterKind::Default(plugins::DefaultInterpreterParams {
            transformers: Vec::new(),
        }),
    };
    let raw_servers = http
        .servers
        .clone()
        .unwrap_or_else(|| vec![ServerConfig::default()]);
    let mut servers = Vec::new();
    for (i, s) in raw_servers.into_iter().enumerate() {
        let sloc = loc.key("servers").idx(i);
        if let Some(t) = &s.tls {
            ok &= check_server_tls(t, &sloc.key("tls"), d);
        }
        let ip = resolve_ip(s.ip.as_deref().unwrap_or(DEFAULT_IP), &sloc.key("ip"), d);
        let port = s.port.unwrap_or(match typed {
            Protocol::Http1 => DEFAULT_HTTP_PORT,
            Protocol::H2 => DEFAULT_H2_PORT,
        });
        ok &= check_h2_sizes(&sloc, s.max_frame_bytes, s.initial_stream_window_bytes, d);
        if typed == Protocol::Http1 {
            for (key, set) in [
                ("windowUpdateRatio", s.window_update_ratio.is_some()),
                ("headerTableBytes", s.header_table_bytes.is_some()),
                (
                    "initialStreamWindowBytes",
                    s.initial_stream_window_bytes.is_some(),
                ),
                (
                    "maxConcurrentStreamsPerConnection",
                    s.max_concurrent_streams_per_connection.is_some(),
                ),
                ("maxFrameBytes", s.max_frame_bytes.is_some()),
                ("maxHeaderListBytes", s.max_header_list_bytes.is_some()),
            ] {
                if set {
                    d.error(
                        &sloc.key(key),
                        format!("`{key}` is a key of `h2` servers, not `http` ones"),
                    );
                    ok = false;
                }
            }
        }
        servers.push(Server {
            addr: SocketAddr::new(ip, port),
            config: s,
        });
    }
    let identifiers = http
        .identifier
        .as_ref()
        .map(|l| l.0.clone())
        .unwrap_or_default();
    if !ok {
        return None;
    }
    Some(Router {
        label,
        protocol: typed,
        dtab,
        dst_prefix,
        servers,
        identifiers,
        interpreter,
        client,
        http,
    })
}

/// The IP a server binds. A host name that does not resolve here is a warning (it may resolve
/// where the proxy runs); the loopback address stands in for it.
fn resolve_ip(text: &str, loc: &Loc, d: &mut Diags) -> IpAddr {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return ip;
    }
    match (text, 0).to_socket_addrs().map(|mut it| it.next()) {
        Ok(Some(a)) => a.ip(),
        _ => {
            d.warn(loc, format!("host `{text}` does not resolve here"));
            IpAddr::from([127, 0, 0, 1])
        }
    }
}

fn warn_missing_file(p: &FsPath, loc: &Loc, d: &mut Diags) {
    if !p.is_file() {
        d.warn(loc, format!("file `{}` does not exist here", p.display()));
    }
}

/// A server `tls` block: files that exist here are read and checked (a certificate that is
/// unreadable, expired, not yet valid, or does not match its key is an error where it is
/// named); files missing here are warnings (they may exist where the proxy runs).
fn check_server_tls(t: &ServerTls, loc: &Loc, d: &mut Diags) -> bool {
    let mut ok = true;
    let present = [(&t.cert_path, "certPath"), (&t.key_path, "keyPath")]
        .into_iter()
        .chain(
            t.intermediate_certs_path
                .as_ref()
                .map(|p| (p, "intermediateCertsPath")),
        )
        .chain(t.ca_cert_path.as_ref().map(|p| (p, "caCertPath")))
        .fold(true, |all, (p, key)| {
            let here = p.is_file();
            if !here {
                warn_missing_file(p, &loc.key(key), d);
            }
            all && here
        });
    if let Some(p) = &t.protocols {
        if let Err(e) = crate::transport::tls::check_protocols(p) {
            d.error(&loc.key("protocols"), e.to_string());
            ok = false;
        }
    }
    if let Some(c) = &t.ciphers {
        if let Err(e) = crate::transport::tls::check_ciphers(c) {
            d.error(&loc.key("ciphers"), e.to_string());
            ok = false;
        }
    }
    if t.require_client_auth == Some(true) && t.ca_cert_path.is_none() {
        d.error(
            &loc.key("requireClientAuth"),
            "`requireClientAuth: true` needs `caCertPath` (the CA that signs client certificates)",
        );
        ok = false;
    }
    if present {
        let files = crate::transport::tls::KeyFiles {
            cert: t.cert_path.clone(),
            key: t.key_path.clone(),
            intermediates: t.intermediate_certs_path.clone(),
        };
        if let Err(e) = files.load() {
            d.error(&loc.key(tls_key_of(&e)), e.to_string());
            ok = false;
        }
        if let Some(ca) = &t.ca_cert_path {
            if let Err(e) = crate::transport::tls::load_certs(ca) {
                d.error(&loc.key("caCertPath"), e.to_string());
                ok = false;
            }
        }
    }
    ok
}

/// HTTP/2's bounds on frame and window sizes (RFC 9113 sections 6.5.2, 6.9.1).
fn check_h2_sizes(loc: &Loc, frame: Option<u32>, window: Option<u32>, d: &mut Diags) -> bool {
    let mut ok = true;
    if let Some(f) = frame {
        if !(16_384..=16_777_215).contains(&f) {
            d.error(
                &loc.key("maxFrameBytes"),
                format!("{f} is outside HTTP/2's frame size range (16384 to 16777215)"),
            );
            ok = false;
        }
    }
    if let Some(w) = window {
        if w > 2_147_483_647 {
            d.error(
                &loc.key("initialStreamWindowBytes"),
                format!("{w} is over HTTP/2's largest window (2147483647)"),
            );
            ok = false;
        }
    }
    ok
}

/// The key of a server or client-auth `tls` block a certificate error belongs to.
fn tls_key_of(e: &crate::transport::tls::TlsError) -> &'static str {
    use crate::transport::tls::TlsError as E;
    match e {
        E::NoKey { .. } | E::Mismatch { .. } => "keyPath",
        _ => "certPath",
    }
}

fn check_admin(a: &AdminConfig, loc: &Loc, d: &mut Diags) {
    if let Some(t) = &a.tls {
        check_server_tls(t, &loc.key("tls"), d);
    }
    if let Some(ip) = &a.ip {
        resolve_ip(ip, &loc.key("ip"), d);
    }
    if let Some(s) = &a.security {
        for (key, list) in [
            ("pathWhitelist", &s.path_whitelist),
            ("pathBlacklist", &s.path_blacklist),
        ] {
            for (i, re) in list.iter().flatten().enumerate() {
                if let Err(e) = regex::Regex::new(re) {
                    d.error(&loc.key("security").key(key).idx(i), e.to_string());
                }
            }
        }
    }
}

/// Client TLS rules (section 1.12); returns whether the client config is usable.
fn check_client(c: &PerPrefix<ClientParams>, loc: &Loc, d: &mut Diags) -> bool {
    let entries: Vec<(Loc, &ClientParams)> = match c {
        PerPrefix::Global(p) => vec![(loc.clone(), p)],
        PerPrefix::Static(list) => list
            .iter()
            .enumerate()
            .map(|(i, (_, p))| (loc.kind("io.l5d.static").key("configs").idx(i), p))
            .collect(),
    };
    let mut ok = true;
    for (l, p) in entries {
        ok &= check_h2_sizes(&l, p.max_frame_bytes, p.initial_stream_window_bytes, d);
        if let Some(t) = &p.tls {
            ok &= check_client_tls(t, &l.key("tls"), true, d);
        }
    }
    ok
}

/// A client `tls` block (a router's client, an interpreter's to namerd, namerd's to Consul):
/// `commonName` unless validation is off or `require_name` is false (the host connected to is
/// the name then), client certificates that load, and trust files that exist here.
fn check_client_tls(t: &model::ClientTls, tl: &Loc, require_name: bool, d: &mut Diags) -> bool {
    let mut ok = true;
    if let Some(p) = &t.protocols {
        if let Err(e) = crate::transport::tls::check_protocols(p) {
            d.error(&tl.key("protocols"), e.to_string());
            ok = false;
        }
    }
    let disabled = t.disable_validation == Some(true);
    if require_name && t.common_name.is_none() && !disabled && t.enabled != Some(false) {
        d.error(
            tl,
            "client `tls` needs `commonName` unless `disableValidation: true`",
        );
        ok = false;
    }

    if disabled && t.client_auth.is_some() {
        d.error(
            tl,
            "`disableValidation: true` is incompatible with `clientAuth`",
        );
        ok = false;
    }
    if let Some(ca) = &t.client_auth {
        let al = tl.key("clientAuth");
        warn_missing_file(&ca.cert_path, &al.key("certPath"), d);
        warn_missing_file(&ca.key_path, &al.key("keyPath"), d);
        if ca.cert_path.is_file() && ca.key_path.is_file() {
            let files = crate::transport::tls::KeyFiles {
                cert: ca.cert_path.clone(),
                key: ca.key_path.clone(),
                intermediates: ca.intermediate_certs_path.clone(),
            };
            if let Err(e) = files.load() {
                d.error(&al.key(tls_key_of(&e)), e.to_string());
                ok = false;
            }
        }
    }
    for (i, f) in t.trust_certs.iter().flatten().enumerate() {
        warn_missing_file(f, &tl.key("trustCerts").idx(i), d);
    }
    if let Some(f) = &t.trust_certs_bundle {
        warn_missing_file(f, &tl.key("trustCertsBundle"), d);
    }
    ok
}

/// Where the router labelled `label` sits in the raw config.
fn raw_loc<'a>(raw: &'a [(Loc, &Value)], label: &str) -> Option<&'a Loc> {
    raw.iter()
        .find(|(_, v)| raw_label(v).as_deref() == Some(label))
        .map(|(loc, _)| loc)
}

fn raw_label(v: &Value) -> Option<String> {
    match (v.get("label"), v.get("protocol")) {
        (Some(Value::String(l)), _) => Some(l.clone()),
        (None, Some(Value::String(p))) => Some(p.clone()),
        _ => None,
    }
}

/// A dtab that sends names to `/#/<prefix>` where no namer answers is legal (such names are
/// Neg), but almost always a typo or a forgotten namer: a warning.
fn check_namer_references(
    routers: &[Router],
    raw: &[(Loc, &Value)],
    namers: &[NamerConfig],
    d: &mut Diags,
) {
    let hash = Path::read("/#").ok();
    for r in routers {
        let Some(loc) = raw_loc(raw, &r.label) else {
            continue;
        };
        let mut seen = std::collections::BTreeSet::new();
        for dentry in &r.dtab.dentries {
            dentry.dst.for_each_leaf(&mut |p: &Path| {
                let under_hash = hash
                    .as_ref()
                    .is_some_and(|h| p.starts_with(h) && p.len() > 1);
                let known = namers
                    .iter()
                    .any(|n| p.starts_with(&n.prefix) || n.prefix.starts_with(p));
                if under_hash && !known {
                    seen.insert(p.take(2).show());
                }
            });
        }
        for p in seen {
            let configured: Vec<String> = namers.iter().map(|n| n.prefix.show()).collect();
            d.warn(
                &loc.key("dtab"),
                format!(
                    "`{p}` names no configured namer, so names sent there are Neg (configured: {})",
                    if configured.is_empty() {
                        "none".to_string()
                    } else {
                        configured.join(", ")
                    }
                ),
            );
        }
    }
}

/// A dtab entry that sends data-port traffic to the admin server's port (`/$/inet/<ip>/<port>`
/// and its kin) lets any client reach the admin endpoints, shutdown included: a warning.
fn check_admin_routes(
    routers: &[Router],
    raw: &[(Loc, &Value)],
    admin: &AdminConfig,
    d: &mut Diags,
) {
    let port = admin.port.unwrap_or(model::DEFAULT_ADMIN_PORT).to_string();
    for r in routers {
        let Some(loc) = raw_loc(raw, &r.label) else {
            continue;
        };
        for dentry in &r.dtab.dentries {
            let mut hit = false;
            dentry.dst.for_each_leaf(&mut |p: &Path| {
                let sys = matches!(p.elem_str(0), Some("$"))
                    && matches!(p.elem_str(1), Some("inet" | "fixedinet"));
                if sys && p.elem_str(3) == Some(port.as_str()) {
                    hit = true;
                }
            });
            if hit {
                d.warn(
                    &loc.key("dtab"),
                    format!(
                        "`{}` sends requests to port {port}, the admin server's: any client of \
                         this router could reach the admin endpoints (shutdown included)",
                        dentry.show()
                    ),
                );
            }
        }
    }
}

/// Two routers with one label (Linkerd's `ConflictingLabels`).
fn check_labels(routers: &[(Loc, &Value)], d: &mut Diags) {
    let mut seen: HashMap<String, Loc> = HashMap::new();
    for (loc, v) in routers {
        let Some(label) = raw_label(v) else { continue };
        match seen.get(&label) {
            Some(first) => d.error(
                &loc.key("label"),
                format!("Multiple routers with the label {label} (also {first})"),
            ),
            None => {
                seen.insert(label, loc.clone());
            }
        }
    }
}

/// Two servers on one socket (Linkerd's `ConflictingPorts`), including a wildcard address and a
/// specific one on the same port, which could not both bind.
fn check_ports(routers: &[Router], raw: &[(Loc, &Value)], d: &mut Diags) {
    let locs: HashMap<String, &Loc> = raw
        .iter()
        .filter_map(|(l, v)| raw_label(v).map(|lab| (lab, l)))
        .collect();
    let mut seen: Vec<(SocketAddr, Loc)> = Vec::new();
    for r in routers {
        let rloc = locs
            .get(r.label.as_str())
            .map(|l| (*l).clone())
            .unwrap_or_default();
        for (i, s) in r.servers.iter().enumerate() {
            let sloc = rloc.key("servers").idx(i);
            let clash = seen.iter().find(|(a, _)| {
                a.port() == s.addr.port()
                    && (a.ip() == s.addr.ip()
                        || a.ip().is_unspecified()
                        || s.addr.ip().is_unspecified())
            });
            if let Some((_, first)) = clash {
                d.error(
                    &sloc,
                    format!("Server conflict on port {} (also {first})", s.addr.port()),
                );
            }
            seen.push((s.addr, sloc));
        }
    }
}

#[cfg(test)]
mod tests;
