//! Every key the config model parses is acted on, refused, or reported: a key Switchboard
//! accepted and then silently ignored would make a config mean less than it says. The field
//! lists come from the model itself (serde names every field it knows when it meets an unknown
//! one), so a new key fails this test until it is classified here.

use serde::de::DeserializeOwned;
use switchboard::config::inert::{Place, NO_EFFECT};
use switchboard::config::{model, plugins};

/// Every field name `T` accepts, as serde spells them.
fn fields<T: DeserializeOwned>() -> Vec<String> {
    let err = match serde_json::from_value::<T>(serde_json::json!({"__probe__": 0})) {
        Ok(_) => panic!("the probe key was accepted"),
        Err(e) => e.to_string(),
    };
    if err.contains("there are no fields") {
        return Vec::new();
    }
    let list = err
        .split("expected one of ")
        .nth(1)
        .or_else(|| err.split("expected ").nth(1))
        .unwrap_or_else(|| panic!("no field list in {err:?}"));
    let list = list.split(" at line").next().unwrap_or(list);
    list.replace("` or `", "`, `")
        .split(", ")
        .map(|f| f.trim().trim_matches('`').to_string())
        .collect()
}

/// How a key is treated.
#[derive(Debug, PartialEq)]
enum Status {
    /// The running proxy (or `check`) uses it.
    Acted,
    /// A config that has it is refused with a located "not supported" error.
    Refused,
    /// Listed in `config::inert::NO_EFFECT`: a located warning.
    Warned,
}

/// Keys acted on, per struct (everything not here must be refused or warned).
const ACTED: &[(&str, &[&str])] = &[
    (
        "AdminConfig",
        &[
            "ip",
            "port",
            "shutdownGraceMs",
            "security",
            "socketOptions",
            "tls",
        ],
    ),
    (
        "AdminSecurity",
        &[
            "uiEnabled",
            "controlEnabled",
            "diagnosticsEnabled",
            "pathWhitelist",
            "pathBlacklist",
        ],
    ),
    ("Usage", &[]),
    (
        "ServerConfig",
        &[
            "port",
            "ip",
            "socketOptions",
            "maxConcurrentRequests",
            "timeoutMs",
            "clearContext",
            "serverSession",
            "maxCallDepth",
            "headerReadTimeoutMs",
            "maxConnections",
            "tls",
            "initialStreamWindowBytes",
            "maxConcurrentStreamsPerConnection",
            "maxFrameBytes",
            "maxHeaderListBytes",
        ],
    ),
    (
        "HttpRouterConfig",
        &[
            "protocol",
            "label",
            "dtab",
            "dstPrefix",
            "bindingTimeoutMs",
            "bindingCache",
            "client",
            "service",
            "interpreter",
            "originator",
            "identifier",
            "servers",
            "httpAccessLog",
            "httpAccessLogAppend",
            "h2AccessLog",
            "h2AccessLogAppend",
            "maxHeadersKB",
            "maxInitialLineKB",
            "maxErrResponseKB",
            "bodyReadTimeoutMs",
        ],
    ),
    ("BindingCache", &["paths", "clients", "idleTtlSecs"]),
    (
        "ClientParams",
        &[
            "loadBalancer",
            "failureAccrual",
            "requestAttemptTimeoutMs",
            "hostConnectionPool",
            "clientSession",
            "socketOptions",
            "tls",
            "headerTableBytes",
            "initialStreamWindowBytes",
            "maxFrameBytes",
            "maxHeaderListBytes",
        ],
    ),
    (
        "HostConnectionPool",
        &["maxSize", "idleTimeMs", "maxWaiters"],
    ),
    (
        "ServiceParams",
        &[
            "totalTimeoutMs",
            "retries",
            "responseClassifier",
            "classificationTimeoutMs",
            "retryBufferSize",
        ],
    ),
    ("Retries", &["budget", "backoff"]),
    (
        "RetryBudget",
        &["minRetriesPerSec", "percentCanRetry", "ttlSecs"],
    ),
    ("SocketOptions", &[]),
    ("Session", &[]),
    (
        "ApertureParams",
        &["maxEffort", "lowLoad", "highLoad", "minAperture"],
    ),
    (
        "ConsulNamerParams",
        &[
            "host",
            "port",
            "includeTag",
            "useHealthCheck",
            "healthStatuses",
            "token",
            "setHost",
            "consistencyMode",
            "preferServiceAddress",
            "weights",
            "tls",
        ],
    ),
];

/// Keys whose presence refuses the config (TLS where it is not built; announcers' kinds).
const REFUSED: &[(&str, &[&str])] = &[("HttpRouterConfig", &["announcers"])];

fn place(name: &str) -> Option<Place> {
    Some(match name {
        "AdminConfig" => Place::Admin,
        "Usage" => Place::Usage,
        "HttpRouterConfig" => Place::Router,
        "BindingCache" => Place::BindingCache,
        "ServerConfig" => Place::Server,
        "SocketOptions" => Place::SocketOptions,
        "Session" => Place::Session,
        "ClientParams" => Place::Client,
        "HostConnectionPool" => Place::HostConnectionPool,
        "ApertureParams" => Place::Aperture,
        "ConsulNamerParams" => Place::ConsulNamer,
        _ => return None,
    })
}

fn status(name: &str, key: &str) -> Option<Status> {
    let listed = |t: &[(&str, &[&str])]| t.iter().any(|(n, ks)| *n == name && ks.contains(&key));
    let warned =
        place(name).is_some_and(|p| NO_EFFECT.iter().any(|(q, k, _)| *q == p && *k == key));
    match (listed(ACTED), listed(REFUSED), warned) {
        (true, false, false) => Some(Status::Acted),
        (false, true, false) => Some(Status::Refused),
        (false, false, true) => Some(Status::Warned),
        (false, false, false) => None,
        other => panic!("{name}.{key} is classified twice: {other:?}"),
    }
}

#[test]
fn every_parsed_key_is_acted_on_refused_or_reported() {
    let structs: Vec<(&str, Vec<String>)> = vec![
        ("AdminConfig", fields::<model::AdminConfig>()),
        ("AdminSecurity", fields::<model::AdminSecurity>()),
        ("Usage", fields::<model::Usage>()),
        ("ServerConfig", fields::<model::ServerConfig>()),
        ("HttpRouterConfig", fields::<model::HttpRouterConfig>()),
        ("BindingCache", fields::<model::BindingCache>()),
        ("ClientParams", fields::<model::ClientParams>()),
        ("HostConnectionPool", fields::<model::HostConnectionPool>()),
        ("ServiceParams", fields::<model::ServiceParams>()),
        ("Retries", fields::<model::Retries>()),
        ("RetryBudget", fields::<model::RetryBudget>()),
        ("SocketOptions", fields::<model::SocketOptions>()),
        ("Session", fields::<model::Session>()),
        ("ApertureParams", fields::<plugins::ApertureParams>()),
        ("ConsulNamerParams", fields::<plugins::ConsulNamerParams>()),
    ];
    let mut missing = Vec::new();
    for (name, keys) in &structs {
        assert!(
            !keys.is_empty() || *name == "none",
            "{name}: no fields found"
        );
        for k in keys {
            if status(name, k).is_none() {
                missing.push(format!("{name}.{k}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys parsed but neither acted on, refused nor reported: {missing:?}"
    );
    // Every table entry names a real key.
    for (t, what) in [(ACTED, "ACTED"), (REFUSED, "REFUSED")] {
        for (name, ks) in t {
            let real = &structs.iter().find(|(n, _)| n == name).unwrap().1;
            for k in *ks {
                assert!(real.iter().any(|r| r == k), "{what}: {name}.{k} is no key");
            }
        }
    }
    for (p, k, _) in NO_EFFECT {
        let (name, real) = structs.iter().find(|(n, _)| place(n) == Some(*p)).unwrap();
        assert!(
            real.iter().any(|r| r == k),
            "NO_EFFECT: {name}.{k} is no key"
        );
    }
}

/// A value of the right type for a no-effect key.
fn sample(key: &str) -> &'static str {
    match key {
        "orgId"
        | "httpAccessLogRollPolicy"
        | "h2AccessLogRollPolicy"
        | "timestampHeader"
        | "label" => "x",
        "enabled" | "experimental" | "streamingEnabled" | "noDelay" | "reuseAddr" | "reusePort"
        | "keepAlive" | "failFast" | "forwardClientCert" | "enableProbation"
        | "transferMetadata" => "true",
        "tracePropagator" => "{kind: io.l5d.default}",
        "announce" => "[]",
        "addForwardedHeader" => "{}",
        "requeueBudget" => "{ttlSecs: 10}",
        _ => "1",
    }
}

/// A config with `key: value` at `place`, and the location the warning names.
fn placed(p: Place, key: &str, v: &str) -> (String, String) {
    // Keys of h2 routers and servers are placed in an h2 router.
    let h2_only = key.starts_with("h2")
        || matches!(key, "windowUpdateRatio" | "headerTableBytes") && matches!(p, Place::Server);
    let r = if h2_only {
        "routers:\n- protocol: h2\n"
    } else {
        "routers:\n- protocol: http\n"
    };
    match p {
        Place::Admin => (format!("admin:\n  {key}: {v}\n{r}"), format!("admin.{key}")),
        Place::Usage => (format!("usage:\n  {key}: {v}\n{r}"), format!("usage.{key}")),
        Place::Router => (format!("{r}  {key}: {v}\n"), format!("routers[0].{key}")),
        Place::BindingCache => (
            format!("{r}  bindingCache:\n    {key}: {v}\n"),
            format!("routers[0].bindingCache.{key}"),
        ),
        Place::Server => (
            format!("{r}  servers:\n  - port: 4140\n    {key}: {v}\n"),
            format!("routers[0].servers[0].{key}"),
        ),
        Place::SocketOptions => (
            format!("{r}  servers:\n  - port: 4140\n    socketOptions:\n      {key}: {v}\n"),
            format!("routers[0].servers[0].socketOptions.{key}"),
        ),
        Place::Session => (
            format!("{r}  client:\n    clientSession:\n      {key}: {v}\n"),
            format!("routers[0].client.clientSession.{key}"),
        ),
        Place::Client => (
            format!("{r}  client:\n    {key}: {v}\n"),
            format!("routers[0].client.{key}"),
        ),
        Place::HostConnectionPool => (
            format!("{r}  client:\n    hostConnectionPool:\n      {key}: {v}\n"),
            format!("routers[0].client.hostConnectionPool.{key}"),
        ),
        Place::Aperture => (
            format!("{r}  client:\n    loadBalancer:\n      kind: aperture\n      {key}: {v}\n"),
            format!("routers[0].client.loadBalancer (aperture).{key}"),
        ),
        Place::ConsulNamer => (
            format!("namers:\n- kind: io.l5d.consul\n  {key}: {v}\n{r}"),
            format!("namers[0] (io.l5d.consul).{key}"),
        ),
    }
}

#[test]
fn each_no_effect_key_is_a_located_warning() {
    for (p, key, why) in NO_EFFECT {
        let (yaml, loc) = placed(*p, key, sample(key));
        let (_, warnings) = switchboard::config::load(&yaml)
            .unwrap_or_else(|e| panic!("{key}: invalid:\n{e}\n---\n{yaml}"));
        let want = format!("{loc}: has no effect in Switchboard: {why}");
        assert!(
            warnings.iter().any(|w| w.to_string() == want),
            "{key}: want {want:?}, got {warnings:#?}\n---\n{yaml}"
        );
    }
}

#[test]
fn each_refused_key_is_a_located_not_supported_error() {
    let rows = [(
        "routers:\n- protocol: http\n  announcers:\n  - kind: io.l5d.serversets\n",
        "routers[0].announcers",
    )];
    for (yaml, loc) in rows {
        let e = switchboard::config::load(yaml)
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{yaml}"));
        let text = e.to_string();
        assert!(
            text.lines()
                .any(|l| l.starts_with(loc) && l.contains("not supported")),
            "{loc}: {text}"
        );
    }
}
