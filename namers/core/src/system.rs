//! The system namers under `/$/` (Finagle's `Namer.global` plus Linkerd's `io.buoyant.*`
//! rewriters): `/$/inet/<host>/<port>` (DNS re-resolved every 5 s), `/$/fixedinet` (resolved
//! once), `/$/fail`, `/$/nil`, `io.buoyant.rinet`, `hostportPfx`, `porthostPfx` and the
//! `io.buoyant.http.*` path rewriters. Any other `/$/<class>` fails with "Unknown namer".
//! Paths outside `/$/` are Neg here.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::addr::{Addr, Endpoint};
use crate::namer::{Bound, Name};
use crate::path::Path;
use crate::tree::NameTree;
use crate::var::{NamingError, State, Updater, Var};

/// How often `/$/inet` re-resolves a host name (Finagle's `InetResolver` poll interval).
pub const INET_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// The status code a bound id of `io.buoyant.http.status` answers with, if it is one
/// (`/$/io.buoyant.http.status/401`).
pub fn status_code(id: &Path) -> Option<u16> {
    if id.len() == 3
        && id.elem_str(0) == Some("$")
        && id.elem_str(1) == Some("io.buoyant.http.status")
    {
        id.elem_str(2)?
            .parse()
            .ok()
            .filter(|c| (100..600).contains(c))
    } else {
        None
    }
}

/// The error for an unknown `/$/<class>` (Linkerd's `UnknownNamer`).
pub fn unknown_namer(path: &Path, class: &str) -> NamingError {
    NamingError::new(format!("Unknown namer: {class} for path: {path}"))
}

fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

type InetKey = (String, u16, bool);

/// Shared, de-duplicated DNS watches for `/$/inet` and `/$/fixedinet`. Each watch lives as long
/// as some `Var` observes it; the registry itself holds only the producing side.
#[derive(Default)]
pub struct InetResolver {
    watches: Mutex<HashMap<InetKey, Arc<Updater<Addr>>>>,
}

impl InetResolver {
    /// A watched address set for `host:port`. IP literals need no resolution.
    pub fn resolve(self: &Arc<Self>, host: &str, port: u16, fixed: bool) -> Var<Addr> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Var::Const(Addr::bound(vec![Endpoint::new(SocketAddr::new(ip, port))]));
        }
        let host = if host.is_empty() { "localhost" } else { host };
        let key: InetKey = (host.to_string(), port, fixed);
        let mut watches = match self.watches.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(up) = watches.get(&key) {
            return up.var();
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // Outside a runtime: resolve once, synchronously.
            return Var::Const(lookup_blocking(host, port));
        };
        let (up, var) = Updater::new(Addr::Pending);
        let up = Arc::new(up);
        watches.insert(key.clone(), Arc::clone(&up));
        let me = Arc::clone(self);
        rt.spawn(async move {
            loop {
                let h = key.0.clone();
                let addr = tokio::task::spawn_blocking(move || lookup_blocking(&h, port))
                    .await
                    .unwrap_or_else(|e| Addr::Failed(e.to_string()));
                up.set(addr);
                if fixed {
                    // Resolved once and cached for as long as anyone observes it.
                    up.closed().await;
                } else {
                    tokio::select! {
                        _ = up.closed() => {}
                        _ = tokio::time::sleep(INET_POLL_INTERVAL) => {}
                    }
                }
                let mut watches = match me.watches.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                // Checked under the registry lock, so no new observer can slip in meanwhile.
                if up.observers() == 0 {
                    watches.remove(&key);
                    return;
                }
            }
        });
        var
    }
}

fn lookup_blocking(host: &str, port: u16) -> Addr {
    use std::net::ToSocketAddrs;
    match (host, port).to_socket_addrs() {
        Ok(it) => {
            let mut eps: Vec<Endpoint> = it.map(Endpoint::new).collect();
            eps.sort_by_key(|e| e.addr);
            eps.dedup_by_key(|e| e.addr);
            if eps.is_empty() {
                Addr::Neg
            } else {
                Addr::bound(eps)
            }
        }
        // An unknown host is Addr.Neg inside a Leaf, not a NameTree Neg: no dtab fallback.
        Err(_) => Addr::Neg,
    }
}

/// Finagle's `Namer.global` plus Linkerd's `io.buoyant.*` namers.
#[derive(Default)]
pub struct SystemNamer {
    inet: Arc<InetResolver>,
}

fn leaf_path(p: Path) -> NameTree<Name> {
    NameTree::Leaf(Name::Path(p))
}

impl SystemNamer {
    pub fn new() -> SystemNamer {
        SystemNamer::default()
    }

    /// Looks up a full path (starting with `/$`). Never changes once computed, except the
    /// address sets inside bound leaves.
    pub fn lookup(&self, path: &Path) -> State<NameTree<Name>> {
        if path.elem_str(0) != Some("$") || path.len() < 2 {
            return State::Ok(NameTree::Neg);
        }
        let Some(class) = path.elem_str(1) else {
            return State::Failed(unknown_namer(path, &path.take(2).drop(1).show()));
        };
        let rest = path.drop(2);
        match class {
            "inet" | "fixedinet" => match self.inet_bound(path, 2, class == "fixedinet") {
                Some(b) => State::Ok(NameTree::Leaf(Name::Bound(b))),
                None => State::Failed(unknown_namer(path, class)),
            },
            "fail" => State::Ok(NameTree::Fail),
            "nil" => State::Ok(NameTree::Empty),
            "io.buoyant.rinet" => {
                // /$/io.buoyant.rinet/<port>/<host>[/residual]
                match (rest.elem_str(0).and_then(parse_port), rest.elem_str(1)) {
                    (Some(port), Some(host)) if rest.len() >= 2 => {
                        let id = path.take(4);
                        let addr = self.inet.resolve(host, port, false);
                        State::Ok(NameTree::Leaf(Name::Bound(Bound::new(
                            id,
                            path.drop(4),
                            addr,
                        ))))
                    }
                    _ => State::Ok(NameTree::Neg),
                }
            }
            "io.buoyant.http.status" => {
                // Linkerd's status service namer: /$/io.buoyant.http.status/<code>/rest binds to
                // a client that answers every request with <code> (100..599), without endpoints.
                match rest.elem_str(0).and_then(|c| c.parse::<u16>().ok()) {
                    Some(code) if (100..600).contains(&code) => {
                        State::Ok(NameTree::Leaf(Name::Bound(Bound::new(
                            path.take(3),
                            path.drop(3),
                            Var::Const(Addr::bound(Vec::new())),
                        ))))
                    }
                    _ => State::Ok(NameTree::Neg),
                }
            }
            "io.buoyant.hostportPfx" => State::Ok(host_port(&rest, false)),
            "io.buoyant.porthostPfx" => State::Ok(host_port(&rest, true)),
            c if c.starts_with("io.buoyant.http.") => {
                match http_rewrite(&c["io.buoyant.http.".len()..], &rest) {
                    Some(t) => State::Ok(t),
                    None => State::Failed(unknown_namer(path, c)),
                }
            }
            c => State::Failed(unknown_namer(path, c)),
        }
    }

    /// `/$/inet/<host>/<port>/rest` or `/$/inet/<port>/rest`; `None` if neither shape fits.
    fn inet_bound(&self, path: &Path, at: usize, fixed: bool) -> Option<Bound> {
        let (host, port, consumed) = match (path.elem_str(at), path.elem_str(at + 1)) {
            (Some(h), Some(p)) if parse_port(p).is_some() => (h, parse_port(p)?, at + 2),
            (Some(p), _) if parse_port(p).is_some() => ("", parse_port(p)?, at + 1),
            _ => return None,
        };
        let addr = self.inet.resolve(host, port, fixed);
        Some(Bound::new(path.take(consumed), path.drop(consumed), addr))
    }
}

fn is_dns_label(s: &str) -> bool {
    // [a-z0-9][-a-z0-9]*[a-z0-9]? and at most 63 characters.
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// `hostportPfx`/`porthostPfx`: `/<pfx>/<host:port>/etc` → `/<pfx>/<host>/<port>/etc` (or with
/// port and host swapped).
fn host_port(rest: &Path, port_first: bool) -> NameTree<Name> {
    let (Some(_), Some(hp)) = (rest.elem_str(0), rest.elem_str(1)) else {
        return NameTree::Neg;
    };
    let mut parts = hp.split(':');
    let (Some(host), Some(port), None) = (parts.next(), parts.next(), parts.next()) else {
        return NameTree::Neg;
    };
    if host.is_empty() || !is_dns_label(port) {
        return NameTree::Neg;
    }
    let pair = if port_first {
        [port, host]
    } else {
        [host, port]
    };
    leaf_path(rest.take(1).concat(&Path::utf8(pair)).concat(&rest.drop(2)))
}

fn is_method(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase())
}

fn is_host(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'_' | b'-'))
}

/// Drops a `:port`, but only when the colon is not the first character (Linkerd's `dropPort`).
fn strip_port(host: &str) -> &str {
    match host.find(':') {
        Some(i) if i > 0 => &host[..i],
        _ => host,
    }
}

/// The `io.buoyant.http.*` rewriters; `None` for an unknown one. Non-matches are Neg.
fn http_rewrite(kind: &str, rest: &Path) -> Option<NameTree<Name>> {
    let e = |i: usize| rest.elem_str(i);
    let neg = NameTree::Neg;
    let t = match kind {
        "anyMethod" => match e(0) {
            Some(m) if is_method(m) => leaf_path(rest.drop(1)),
            _ => neg,
        },
        "anyMethodPfx" => match (e(0), e(1)) {
            (Some(_), Some(m)) if is_method(m) => leaf_path(rest.take(1).concat(&rest.drop(2))),
            _ => neg,
        },
        "anyHost" => match e(0) {
            Some(h) if is_host(h) => leaf_path(rest.drop(1)),
            _ => neg,
        },
        "anyHostPfx" => match (e(0), e(1)) {
            (Some(_), Some(h)) if is_host(h) => leaf_path(rest.take(1).concat(&rest.drop(2))),
            _ => neg,
        },
        "subdomainOf" => match (e(0), e(1)) {
            (Some(domain), Some(host)) => match subdomain(domain, host) {
                Some(sub) => leaf_path(Path::utf8([sub]).concat(&rest.drop(2))),
                None => neg,
            },
            _ => neg,
        },
        "subdomainOfPfx" => match (e(0), e(1), e(2)) {
            (Some(domain), Some(_), Some(host)) => match subdomain(domain, host) {
                Some(sub) => leaf_path(
                    rest.drop(1)
                        .take(1)
                        .concat(&Path::utf8([sub]))
                        .concat(&rest.drop(3)),
                ),
                None => neg,
            },
            _ => neg,
        },
        "domainToPath" => match e(0) {
            Some(host) => match domain_path(host) {
                Some(p) => leaf_path(p.concat(&rest.drop(1))),
                None => neg,
            },
            None => neg,
        },
        "domainToPathPfx" => match (e(0), e(1)) {
            (Some(_), Some(host)) => match domain_path(host) {
                Some(p) => leaf_path(rest.take(1).concat(&p).concat(&rest.drop(2))),
                None => neg,
            },
            _ => neg,
        },
        _ => return None,
    };
    Some(t)
}

/// Linkerd's `Match.subdomain`: both must look like hosts; a `:port` after the first
/// character of the host is dropped; the host must end with `.<domain>`.
fn subdomain<'a>(domain: &str, host: &'a str) -> Option<&'a str> {
    if !is_host(domain) || !is_host(host) {
        return None;
    }
    let host = strip_port(host);
    let sub = host.strip_suffix(domain)?.strip_suffix('.')?;
    (!sub.is_empty()).then_some(sub)
}

/// `a.b.c` → `/c/b/a`, split as Java's `String.split` does (trailing empty parts dropped); the
/// port, if any, stays on the last label, as in Linkerd.
fn domain_path(host: &str) -> Option<Path> {
    if !is_host(host) {
        return None;
    }
    let mut labels: Vec<&str> = host.split('.').collect();
    while labels.last() == Some(&"") {
        labels.pop();
    }
    (!labels.is_empty()).then(|| Path::utf8(labels.into_iter().rev()))
}
