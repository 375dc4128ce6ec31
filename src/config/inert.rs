//! Keys Linkerd 1 has that Switchboard parses but does not act on (yet). Each one present in a
//! config is a located warning, so a config never silently means less than it says; keys whose
//! being ignored would weaken security (every `tls` block) are refused as errors elsewhere, not
//! listed here. `tests/config_keys.rs` checks that every key the config model parses is either
//! acted on, refused, or listed here.

use serde_json::Value;

use super::diag::{Diags, Loc};

/// Where a key sits in a config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Admin,
    Usage,
    Router,
    BindingCache,
    Server,
    SocketOptions,
    Session,
    Client,
    HostConnectionPool,
    Aperture,
    ConsulNamer,
}

/// `(place, key, why it has no effect)`.
pub const NO_EFFECT: &[(Place, &str, &str)] = &[
    (
        Place::Admin,
        "httpIdentifierPort",
        "the identifier debug server is not built",
    ),
    (
        Place::Admin,
        "workerThreads",
        "the admin server runs on the proxy's runtime",
    ),
    (
        Place::Usage,
        "orgId",
        "Switchboard sends no usage data",
    ),
    (
        Place::Usage,
        "enabled",
        "Switchboard sends no usage data",
    ),
    (
        Place::Router,
        "httpAccessLogRollPolicy",
        "the access log is not rotated (rotate it with a tool that sends no signal, e.g. copytruncate)",
    ),
    (
        Place::Router,
        "httpAccessLogRotateCount",
        "the access log is not rotated",
    ),
    (
        Place::Router,
        "h2AccessLogRollPolicy",
        "the access log is not rotated (rotate it with a tool that sends no signal, e.g. copytruncate)",
    ),
    (
        Place::Router,
        "h2AccessLogRotateCount",
        "the access log is not rotated",
    ),
    (
        Place::Server,
        "windowUpdateRatio",
        "hyper sends WINDOW_UPDATE by its own rule",
    ),
    (
        Place::Server,
        "headerTableBytes",
        "hyper's h2 server does not set its HPACK table size",
    ),
    (
        Place::Client,
        "windowUpdateRatio",
        "hyper sends WINDOW_UPDATE by its own rule",
    ),
    (
        Place::Router,
        "streamAfterContentLengthKB",
        "request and response bodies always stream",
    ),
    (
        Place::Router,
        "streamingEnabled",
        "request and response bodies always stream",
    ),
    (
        Place::Router,
        "compressionLevel",
        "responses are not compressed",
    ),
    (
        Place::Router,
        "tracePropagator",
        "trace context headers are forwarded as they are, not joined or sampled",
    ),
    (
        Place::BindingCache,
        "trees",
        "only the path and client caches exist; their capacities apply",
    ),
    (
        Place::BindingCache,
        "bounds",
        "only the path and client caches exist; their capacities apply",
    ),
    (
        Place::Router,
        "experimental",
        "nothing is gated behind it",
    ),
    (
        Place::Server,
        "label",
        "servers are named by address in metrics",
    ),
    (
        Place::Server,
        "announce",
        "announcers are not built",
    ),
    (
        Place::Server,
        "addForwardedHeader",
        "no Forwarded header is added",
    ),
    (
        Place::Server,
        "timestampHeader",
        "no timestamp header is added",
    ),
    (
        Place::SocketOptions,
        "noDelay",
        "TCP_NODELAY is always set",
    ),
    (
        Place::SocketOptions,
        "reuseAddr",
        "listeners always set SO_REUSEADDR",
    ),
    (
        Place::SocketOptions,
        "reusePort",
        "SO_REUSEPORT is not set",
    ),
    (
        Place::SocketOptions,
        "readTimeoutMs",
        "socket read timeouts are not set; servers have headerReadTimeoutMs and bodyReadTimeoutMs",
    ),
    (
        Place::SocketOptions,
        "writeTimeoutMs",
        "socket write timeouts are not set",
    ),
    (
        Place::SocketOptions,
        "keepAlive",
        "TCP keep-alive is not set",
    ),
    (
        Place::SocketOptions,
        "backlog",
        "the operating system's default backlog is used",
    ),
    (
        Place::Session,
        "idleTimeMs",
        "sessions are not timed; idle server connections close after headerReadTimeoutMs, idle pooled ones after hostConnectionPool.idleTimeMs",
    ),
    (
        Place::Session,
        "lifeTimeMs",
        "connections have no maximum lifetime",
    ),
    (
        Place::Client,
        "failFast",
        "fail-fast is not built; failure accrual takes failing endpoints out",
    ),
    (
        Place::Client,
        "requeueBudget",
        "connection failures are requeued up to a fixed count per request",
    ),
    (
        Place::Client,
        "forwardClientCert",
        "there is no TLS to take a client certificate from",
    ),
    (
        Place::HostConnectionPool,
        "minSize",
        "connections are not opened ahead of requests",
    ),
    (
        Place::Aperture,
        "smoothWindowMs",
        "the aperture follows the current load, unsmoothed",
    ),
    (
        Place::Aperture,
        "enableProbation",
        "endpoints are not put on probation",
    ),
    (
        Place::ConsulNamer,
        "fixedLengthStreamedAfterKB",
        "Consul answers are read whole",
    ),
    (
        Place::ConsulNamer,
        "failFast",
        "the namer keeps its last good state while Consul is down instead",
    ),
    (
        Place::ConsulNamer,
        "transferMetadata",
        "endpoint metadata is not forwarded in headers",
    ),
];

fn check(d: &mut Diags, loc: &Loc, v: &Value, place: Place) {
    let Value::Object(m) = v else { return };
    for (p, key, why) in NO_EFFECT {
        if *p == place && m.contains_key(*key) {
            d.warn(
                &loc.key(key),
                format!("has no effect in Switchboard: {why}"),
            );
        }
    }
}

fn items<'a>(v: Option<&'a Value>, loc: &Loc) -> Vec<(Loc, &'a Value)> {
    match v {
        Some(Value::Array(a)) => a.iter().enumerate().map(|(i, x)| (loc.idx(i), x)).collect(),
        _ => Vec::new(),
    }
}

fn client_params(d: &mut Diags, loc: &Loc, v: &Value) {
    check(d, loc, v, Place::Client);
    if let Some(s) = v.get("socketOptions") {
        check(d, &loc.key("socketOptions"), s, Place::SocketOptions);
    }
    if let Some(s) = v.get("clientSession") {
        check(d, &loc.key("clientSession"), s, Place::Session);
    }
    if let Some(s) = v.get("hostConnectionPool") {
        check(
            d,
            &loc.key("hostConnectionPool"),
            s,
            Place::HostConnectionPool,
        );
    }
    if let Some(lb) = v.get("loadBalancer") {
        if lb.get("kind").and_then(Value::as_str) == Some("aperture") {
            check(
                d,
                &loc.key("loadBalancer").kind("aperture"),
                lb,
                Place::Aperture,
            );
        }
    }
}

/// Warns about every no-effect key present in the raw config `top`.
pub fn warn(top: &serde_json::Map<String, Value>, d: &mut Diags) {
    let root = Loc::root();
    if let Some(a) = top.get("admin") {
        let loc = root.key("admin");
        check(d, &loc, a, Place::Admin);
        if let Some(s) = a.get("socketOptions") {
            check(d, &loc.key("socketOptions"), s, Place::SocketOptions);
        }
    }
    if let Some(u) = top.get("usage") {
        check(d, &root.key("usage"), u, Place::Usage);
    }
    for (loc, n) in items(top.get("namers"), &root.key("namers")) {
        if n.get("kind").and_then(Value::as_str) == Some("io.l5d.consul") {
            check(d, &loc.kind("io.l5d.consul"), n, Place::ConsulNamer);
        }
    }
    for (loc, r) in items(top.get("routers"), &root.key("routers")) {
        check(d, &loc, r, Place::Router);
        if let Some(b) = r.get("bindingCache") {
            check(d, &loc.key("bindingCache"), b, Place::BindingCache);
        }
        for (sloc, s) in items(r.get("servers"), &loc.key("servers")) {
            check(d, &sloc, s, Place::Server);
            if let Some(o) = s.get("socketOptions") {
                check(d, &sloc.key("socketOptions"), o, Place::SocketOptions);
            }
            if let Some(o) = s.get("serverSession") {
                check(d, &sloc.key("serverSession"), o, Place::Session);
            }
        }
        if let Some(c) = r.get("client") {
            let cloc = loc.key("client");
            if c.get("kind").and_then(Value::as_str) == Some("io.l5d.static") {
                let sloc = cloc.kind("io.l5d.static").key("configs");
                for (l, p) in items(c.get("configs"), &sloc) {
                    client_params(d, &l, p);
                }
            } else {
                client_params(d, &cloc, c);
            }
        }
    }
}
