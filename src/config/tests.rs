//! Table-driven checks of config decoding and validation: one `check` helper, many rows. Each
//! expected finding is matched as a substring of `location: message`, and the number of
//! findings must match too, so a row fails on a missing or an extra error.

use super::*;

enum Want<'a> {
    /// Valid; these warnings (and no others).
    Ok(&'a [&'a str]),
    /// Invalid with exactly these errors.
    Err(&'a [&'a str]),
}

fn check(text: &str, want: Want<'_>) {
    let (got, wanted, kind) = match (load(text), want) {
        (Ok((_, warnings)), Want::Ok(w)) => (warnings, w, "warnings"),
        (Err(inv), Want::Err(e)) => (inv.diags.errors, e, "errors"),
        (Ok(_), Want::Err(e)) => panic!("valid, wanted errors {e:?}:\n{text}"),
        (Err(inv), Want::Ok(_)) => panic!("invalid:\n{inv}\n---\n{text}"),
    };
    let got: Vec<String> = got.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        got.len(),
        wanted.len(),
        "{kind}: got {got:#?}, want {wanted:#?}\n---\n{text}"
    );
    for (g, w) in got.iter().zip(wanted) {
        assert!(g.contains(w), "{kind}: {g:?} lacks {w:?}\n---\n{text}");
    }
}

const MIN: &str = "routers:\n- protocol: http\n";

#[test]
fn top_level_rows() {
    use Want::*;
    check(MIN, Ok(&[]));
    check(r#"{"routers": [{"protocol": "http"}]}"#, Ok(&[]));
    check("", Err(&["(top level): expected a map"]));
    check("[]", Err(&["(top level): expected a map"]));
    check(
        "admin: {port: 9990}\n",
        Err(&["routers: At least one router must be specified"]),
    );
    check(
        "routers: []\n",
        Err(&["routers: At least one router must be specified"]),
    );
    check(
        "routers: {}\n",
        Err(&["routers: expected a list, found a map"]),
    );
    check(
        "routers:\n- protocol: http\nrouter: []\n",
        Err(&["router: unknown top-level key `router`; expected one of admin, routers, namers, telemetry, usage"]),
    );
    check(
        "storage: {kind: io.l5d.inMemory}\ninterfaces: []\nnamers: []\n",
        Err(&["(top level): this is a namerd config (it has `interfaces`, `storage`): run it with `switchboard namerd CONFIG`"]),
    );
    check(
        "routers:\n- protocol: http\nrouters: []\n",
        Err(&["(top level): invalid YAML syntax: duplicate key `routers` (lines 1 and 3)"]),
    );
    check(
        r#"{"routers": [{"protocol": "http", "label": "a", "label": "b"}]}"#,
        Err(&["invalid JSON syntax: duplicate key `label` at line 1"]),
    );
    check("routers: [\n", Err(&["(top level): invalid YAML syntax"]));
    check(
        &format!("{MIN}usage: {{orgId: acme, enabled: false}}\n"),
        Ok(&[
            "usage.orgId: has no effect in Switchboard",
            "usage.enabled: has no effect in Switchboard",
        ]),
    );
    check(
        &format!("{MIN}usage: {{orgid: acme}}\n"),
        Err(&["usage.orgid: unknown field `orgid`"]),
    );
    check(
        &format!("{MIN}admin: {{port: 9991, ip: 0.0.0.0, shutdownGraceMs: 5000}}\n"),
        Ok(&[]),
    );
    check(
        &format!("{MIN}admin: {{port: x}}\n"),
        Err(&["admin.port: invalid type: string \"x\", expected u16"]),
    );
    check(
        &format!("{MIN}admin:\n  security:\n    pathBlacklist: ['(']\n"),
        Err(&["admin.security.pathBlacklist[0]: regex parse error"]),
    );
    check(
        &format!("{MIN}admin: {{ip: no-such-host.invalid}}\n"),
        Ok(&["admin.ip: host `no-such-host.invalid` does not resolve here"]),
    );
}

#[test]
fn router_rows() {
    use Want::*;
    check(
        "routers:\n- label: x\n",
        Err(&["routers[0]: missing `protocol`; known protocols: http, h2"]),
    );
    check("routers:\n- protocol: h2\n", Ok(&[]));
    // Keys of one protocol on a router of the other.
    check(
        "routers:\n- protocol: h2\n  maxHeadersKB: 16\n- protocol: http\n  h2AccessLog: a.log\n",
        Err(&[
            "routers[0].maxHeadersKB: `maxHeadersKB` is a key of `http` routers, not `h2` ones",
            "routers[1].h2AccessLog: `h2AccessLog` is a key of `h2` routers, not `http` ones",
        ]),
    );
    check(
        "routers:\n- protocol: http\n  servers: [{initialStreamWindowBytes: 1024}]\n",
        Err(&["routers[0].servers[0].initialStreamWindowBytes: `initialStreamWindowBytes` is a key of `h2` servers, not `http` ones"]),
    );
    check(
        "routers:\n- protocol: thrift\n- protocol: mux\n",
        Err(&[
            "routers[0].protocol: protocol `thrift` is not supported yet",
            "routers[1].protocol: protocol `mux` is not supported yet",
        ]),
    );
    check(
        "routers:\n- protocol: gopher\n",
        Err(&["routers[0].protocol: unknown protocol `gopher`; known protocols: http, h2 (not supported yet: thrift, thriftmux, mux)"]),
    );
    check(
        "routers:\n- protocol: http\n  baseDtab: /a=>/b\n",
        Err(&["routers[0].baseDtab: `baseDtab` is not supported: Linkerd 1.0 renamed it `dtab`"]),
    );
    check(
        "routers:\n- protocol: http\n  foo: 1\n",
        Err(&["routers[0].foo: unknown field `foo`, expected one of `protocol`"]),
    );
    check(
        "routers:\n- protocol: http\n  dtab: /a => /b; /c =>\n",
        Err(&["routers[0].dtab: simple expected but end of input found at '/a => /b; /c =>[]'"]),
    );
    check(
        "routers:\n- protocol: http\n  dtab: |\n    # comment\n    /a => /b | ~;\n    /c => 0.5 * /d & /e;\n",
        Ok(&[]),
    );
    check(
        "routers:\n- protocol: http\n  dstPrefix: svc\n",
        Err(&["routers[0].dstPrefix: '/' expected but 's' found at '[s]vc'"]),
    );
    check(
        "routers:\n- protocol: http\n  streamingEnabled: false\n  streamAfterContentLengthKB: 5\n",
        Err(&["routers[0]: Conflicting streaming options set. Can't disable streaming and set streamAfterContentLengthKB in http"]),
    );
    check(
        "routers:\n- protocol: http\n  maxHeadersKB: 16\n  maxInitialLineKB: 8\n  bindingCache: {paths: 10, idleTtlSecs: 5}\n",
        Ok(&[]),
    );
    check(
        "routers:\n- protocol: http\n  httpAccessLog: /no/such/dir/access.log\n",
        Ok(&["routers[0].httpAccessLog: the directory of `/no/such/dir/access.log` does not exist here"]),
    );
    // Labels: explicit, and the protocol as the default label.
    check(
        "routers:\n- protocol: http\n  servers: [{port: 1}]\n- protocol: http\n  servers: [{port: 2}]\n",
        Err(&["routers[1].label: Multiple routers with the label http (also routers[0])"]),
    );
    check(
        "routers:\n- protocol: http\n  label: a\n  servers: [{port: 1}]\n- protocol: http\n  label: b\n  servers: [{port: 2}]\n",
        Ok(&[]),
    );
    check(
        "routers:\n- protocol: http\n  label: a\n  servers: [{port: 1}]\n- protocol: h2\n  label: a\n",
        Err(&[
            "routers[1].label: Multiple routers with the label a (also routers[0])",
        ]),
    );
}

#[test]
fn server_rows() {
    use Want::*;
    let two = |a: &str, b: &str| {
        format!("routers:\n- protocol: http\n  label: a\n  servers: [{a}]\n- protocol: http\n  label: b\n  servers: [{b}]\n")
    };
    check(&two("{port: 4140}", "{port: 4141}"), Ok(&[]));
    check(
        &two("{port: 4140}", "{port: 4140}"),
        Err(&["routers[1].servers[0]: Server conflict on port 4140 (also routers[0].servers[0])"]),
    );
    // The default server: loopback, port 4140.
    check(
        &two("{port: 4140}", "{ip: 127.0.0.1}"),
        Err(&["routers[1].servers[0]: Server conflict on port 4140"]),
    );
    check(
        &two("{port: 4140, ip: 127.0.0.1}", "{port: 4140, ip: 127.0.0.2}"),
        Ok(&[]),
    );
    check(
        &two("{port: 4140, ip: 0.0.0.0}", "{port: 4140, ip: 127.0.0.2}"),
        Err(&["routers[1].servers[0]: Server conflict on port 4140"]),
    );
    check(
        "routers:\n- protocol: http\n  servers:\n  - port: 5000\n  - port: 5000\n",
        Err(&["routers[0].servers[1]: Server conflict on port 5000 (also routers[0].servers[0])"]),
    );
    check(
        "routers:\n- protocol: http\n  servers: [{port: 70000}]\n",
        Err(&["routers[0].servers[0].port: invalid value: integer `70000`, expected u16"]),
    );
    check(
        "routers:\n- protocol: http\n  servers: [{port: 1, maxConcurrentRequests: 10, clearContext: true, addForwardedHeader: {by: {kind: ip}, for: {kind: static, label: me}}}]\n",
        Ok(&["routers[0].servers[0].addForwardedHeader: has no effect in Switchboard"]),
    );
    check(
        "routers:\n- protocol: http\n  servers: [{addForwardedHeader: {by: {kind: ipv6}}}]\n",
        Err(&["routers[0].servers[0].addForwardedHeader.by (ipv6): unknown forwarded-header labeler kind `ipv6`"]),
    );
    check(
        "routers:\n- protocol: http\n  servers:\n  - tls: {certPath: /no/cert.pem, keyPath: /no/key.pem, serverCaChainPath: /no/chain.pem}\n",
        // Files missing here are warnings (they may exist where the proxy runs).
        Ok(&[
            "routers[0].servers[0].tls.certPath: file `/no/cert.pem` does not exist here",
            "routers[0].servers[0].tls.keyPath: file `/no/key.pem` does not exist here",
            "routers[0].servers[0].tls.intermediateCertsPath: file `/no/chain.pem` does not exist here",
        ]),
    );
    check(
        "routers:\n- protocol: http\n  servers:\n  - tls: {certPath: /no/c.pem, keyPath: /no/k.pem, requireClientAuth: true}\n",
        Err(&["routers[0].servers[0].tls.requireClientAuth: `requireClientAuth: true` needs `caCertPath`"]),
    );
    check(
        "admin:\n  tls: {certPath: /no/cert.pem, keyPath: /no/key.pem}\nrouters:\n- protocol: http\n",
        Ok(&[
            "admin.tls.certPath: file `/no/cert.pem` does not exist here",
            "admin.tls.keyPath: file `/no/key.pem` does not exist here",
        ]),
    );
    check(
        "routers:\n- protocol: http\n  client:\n    kind: io.l5d.static\n    configs:\n    - prefix: /#/io.l5d.fs/web\n      tls: {commonName: web}\n",
        Ok(&[]),
    );
    check(
        "routers:\n- protocol: http\n  client:\n    kind: io.l5d.static\n    configs:\n    - prefix: /#/io.l5d.fs/web\n      tls: {trustCertsBundle: /no/ca.pem}\n",
        Err(&["routers[0].client (io.l5d.static).configs[0].tls: client `tls` needs `commonName` unless `disableValidation: true`"]),
    );
    check(
        "routers:\n- protocol: http\n  servers:\n  - tls: {certPath: /no/cert.pem}\n",
        Err(&["routers[0].servers[0].tls: missing field `keyPath`"]),
    );
    // A dtab routing to the admin port is a warning (any client could reach shutdown).
    check(
        "routers:\n- protocol: http\n  dtab: /svc/admin => /$/inet/127.0.0.1/9990\n",
        Ok(&["routers[0].dtab: `/svc/admin=>/$/inet/127.0.0.1/9990` sends requests to port 9990"]),
    );
    check(
        "admin: {port: 9991}\nrouters:\n- protocol: http\n  dtab: /svc/admin => /$/inet/127.0.0.1/9990\n",
        Ok(&[]),
    );
}

#[test]
fn plugin_rows() {
    use Want::*;
    let id = |body: &str| format!("routers:\n- protocol: http\n  identifier: {body}\n");
    check(
        &id("{kind: io.l5d.path, segments: 2, consume: true}"),
        Ok(&[]),
    );
    check(
        &id("{kind: io.l5d.path, segmentz: 2}"),
        Err(&["routers[0].identifier (io.l5d.path).segmentz: unknown field `segmentz`, expected `segments` or `consume`"]),
    );
    check(
        &id("{kind: io.l5d.path, segments: 0}"),
        Err(&["routers[0].identifier (io.l5d.path): `segments` must be at least 1"]),
    );
    check(
        &id("[{kind: io.l5d.header.token}, {kind: io.l5d.static, path: nope}]"),
        Err(&[
            "routers[0].identifier[1] (io.l5d.static).path: '/' expected but 'n' found at '[n]ope'",
        ]),
    );
    check(
        &id("{kind: io.l5d.nope}"),
        Err(&["routers[0].identifier (io.l5d.nope): unknown identifier kind `io.l5d.nope`; known identifier kinds: io.l5d.header.token, io.l5d.header, io.l5d.methodAndHost, io.l5d.path, io.l5d.static, io.l5d.header.path, io.l5d.headerPath (Linkerd 1 kinds not supported yet: io.l5d.ingress"]),
    );
    check(
        &id("{kind: com.example.Mine}"),
        Err(&["unknown identifier kind `com.example.Mine` (third-party plugin kinds are not supported)"]),
    );
    check(
        &id("{header: Host}"),
        Err(&[
            "routers[0].identifier: missing `kind`; known identifier kinds: io.l5d.header.token",
        ]),
    );
    check(
        &id("{kind: io.l5d.ingress}"),
        Err(&["routers[0].identifier (io.l5d.ingress): identifier kind `io.l5d.ingress` is not supported yet"]),
    );
    let client = |body: &str| format!("routers:\n- protocol: http\n  client:\n{body}");
    check(
        &client("    loadBalancer: {kind: ewma, decayTimeMs: 5000}\n    failureAccrual:\n      kind: io.l5d.successRate\n      successRate: 0.9\n      requests: 20\n      backoff: {kind: jittered, minMs: 10, maxMs: 100}\n    hostConnectionPool: {maxSize: 10, idleTimeMs: 1000}\n    requeueBudget: {percentCanRetry: 0.5}\n"),
        Ok(&["routers[0].client.requeueBudget: has no effect in Switchboard"]),
    );
    check(
        &client("    failureAccrual:\n      kind: io.l5d.consecutiveFailures\n      failures: 5\n      backoff: {kind: jittered, minMs: 10, maxMs: 1}\n"),
        Err(&["routers[0].client (io.l5d.global).failureAccrual (io.l5d.consecutiveFailures).backoff (jittered): `minMs` (10) is greater than `maxMs` (1)"]),
    );
    check(
        &client("    failureAccrual: {kind: io.l5d.successRate, successRate: 2, requests: 5}\n"),
        Err(&[
            "failureAccrual (io.l5d.successRate): `successRate` must be between 0 and 1, found 2",
        ]),
    );
    check(
        &client("    kind: io.l5d.static\n    configs:\n    - prefix: /$/inet/*\n      failFast: true\n    - prefix: /#/io.l5d.fs/{svc}\n      loadBalancer: {kind: ewma, decayTimeMs: x}\n"),
        Err(&["routers[0].client (io.l5d.static).configs[1].loadBalancer (ewma).decayTimeMs: invalid type: string \"x\", expected u64"]),
    );
    check(
        &client("    kind: io.l5d.static\n    configs:\n    - loadBalancer: {kind: p2c}\n"),
        Err(&["routers[0].client (io.l5d.static).configs[0]: missing field `prefix`"]),
    );
    check(
        &client("    tls: {disableValidation: true, clientAuth: {certPath: a, keyPath: b}}\n"),
        Err(&[
            "routers[0].client.tls: `disableValidation: true` is incompatible with `clientAuth`",
        ]),
    );
    let svc = |body: &str| format!("routers:\n- protocol: http\n  service:\n{body}");
    check(
        &svc("    totalTimeoutMs: 1000\n    retries:\n      budget: {minRetriesPerSec: 5, percentCanRetry: 0.1, ttlSecs: 10}\n      backoff: {kind: constant, ms: 10}\n    responseClassifier: {kind: io.l5d.http.retryableRead5XX}\n"),
        Ok(&[]),
    );
    check(
        &svc("    responseClassifier: {kind: io.l5d.h2.grpc.default}\n"),
        Err(&["routers[0].service (io.l5d.global).responseClassifier (io.l5d.h2.grpc.default): `io.l5d.h2.grpc.default` classifies the other protocol's responses; a `http` router takes `io.l5d.http.*` classifiers"]),
    );
    // HTTP/2 size bounds, on servers and clients.
    check(
        "routers:\n- protocol: h2\n  servers: [{maxFrameBytes: 8192, initialStreamWindowBytes: 4294967295}]\n",
        Err(&[
            "routers[0].servers[0].maxFrameBytes: 8192 is outside HTTP/2's frame size range (16384 to 16777215)",
            "routers[0].servers[0].initialStreamWindowBytes: 4294967295 is over HTTP/2's largest window (2147483647)",
        ]),
    );
    check(
        "routers:\n- protocol: h2\n  client: {maxFrameBytes: 16777216}\n",
        Err(&["routers[0].client.maxFrameBytes: 16777216 is outside HTTP/2's frame size range (16384 to 16777215)"]),
    );
    let h2svc = |body: &str| format!("routers:\n- protocol: h2\n  service:\n{body}");
    check(
        &h2svc("    responseClassifier: {kind: io.l5d.h2.grpc.retryableStatusCodes, retryableStatusCodes: [14, 100]}\n"),
        Ok(&[]),
    );
    check(
        &h2svc("    responseClassifier: {kind: io.l5d.h2.grpc.retryableStatusCodes, retryableStatusCodes: [14, 300]}\n"),
        Err(&["routers[0].service (io.l5d.global).responseClassifier (io.l5d.h2.grpc.retryableStatusCodes).retryableStatusCodes[1]: 300 is over 127"]),
    );
    check(
        &h2svc("    kind: io.l5d.static\n    configs:\n    - prefix: /svc\n      responseClassifier: {kind: io.l5d.http.retryableRead5XX}\n"),
        Err(&["routers[0].service (io.l5d.static).configs[0].responseClassifier (io.l5d.http.retryableRead5XX): `io.l5d.http.retryableRead5XX` classifies the other protocol's responses; a `h2` router takes `io.l5d.h2.*` classifiers"]),
    );
    check(
        "routers:\n- protocol: http\n  interpreter: {kind: io.l5d.namerd, dst: /$/inet/127.1/4100}\n",
        Err(&["routers[0].interpreter (io.l5d.namerd): interpreter kind `io.l5d.namerd` is not supported yet"]),
    );
    check(
        "routers:\n- protocol: http\n  interpreter:\n    kind: default\n    transformers: [{kind: io.l5d.port, port: 4141}]\n",
        Ok(&[]),
    );
    // TLS to namerd: the client rules, located under the interpreter.
    let namerd_tls = |kind: &str, tls: &str| {
        let extra = if kind == "io.l5d.mesh" {
            ""
        } else {
            ", experimental: true"
        };
        format!("routers:\n- protocol: http\n  interpreter: {{kind: {kind}, dst: /$/inet/127.1/4180{extra}, tls: {tls}}}\n")
    };
    check(
        &namerd_tls("io.l5d.namerd.http", "{trustCertsBundle: /etc/hostname}"),
        Err(&["routers[0].interpreter.tls: client `tls` needs `commonName` unless `disableValidation: true`"]),
    );
    check(
        &namerd_tls("io.l5d.mesh", "{commonName: namerd, disableValidation: true, clientAuth: {certPath: /nonexistent/c.pem, keyPath: /nonexistent/k.pem}}"),
        Err(&["routers[0].interpreter.tls: `disableValidation: true` is incompatible with `clientAuth`"]),
    );
    check(
        &namerd_tls("io.l5d.mesh", "{commonName: '{service}'}"),
        Err(&["routers[0].interpreter (io.l5d.mesh).tls.commonName: `{service}`: this commonName names one server and takes no variables"]),
    );
    check(
        &namerd_tls(
            "io.l5d.namerd.http",
            "{commonName: namerd, protocols: [SSLv3]}",
        ),
        Err(&["routers[0].interpreter.tls.protocols:"]),
    );
    check(
        &namerd_tls("io.l5d.namerd.http", "{commonName: namerd}"),
        Ok(&[]),
    );
    check(
        &namerd_tls("io.l5d.mesh", "{disableValidation: true}"),
        Err(&["routers[0].interpreter (io.l5d.mesh).tls: `127.1` (the `dst` host) is not a DNS name or IP address to name namerd by: set `commonName`"]),
    );
    let tr = |t: &str| {
        format!("routers:\n- protocol: http\n  interpreter:\n    kind: default\n    transformers: [{t}]\n")
    };
    for (t, want) in [
        (
            "{kind: io.l5d.port, port: 0}",
            "(io.l5d.port).port: must be 1 to 65535",
        ),
        (
            "{kind: io.l5d.specificHost}",
            "(io.l5d.specificHost): missing field `host`",
        ),
        (
            "{kind: io.l5d.localhost, prefix: nope}",
            "(io.l5d.localhost).prefix: ",
        ),
        (
            "{kind: io.l5d.replace}",
            "(io.l5d.replace): missing field `path`",
        ),
        (
            "{kind: io.l5d.k8s.daemonset}",
            "(io.l5d.k8s.daemonset): transformer kind `io.l5d.k8s.daemonset` is not supported yet",
        ),
    ] {
        let e = crate::config::load(&tr(t))
            .err()
            .unwrap_or_else(|| panic!("{t} accepted"))
            .to_string();
        assert!(
            e.contains(&format!(
                "routers[0].interpreter (default).transformers[0] {want}"
            )),
            "{t}: {e}"
        );
    }
    check(
        &format!("{MIN}telemetry:\n- kind: io.l5d.prometheus\n- kind: io.l5d.zipkin\n"),
        Err(&["telemetry[1] (io.l5d.zipkin): telemeter kind `io.l5d.zipkin` is not supported yet"]),
    );
    check(
        &format!("{MIN}telemetry:\n- kind: io.l5d.prometheus\n  path: metrics\n"),
        Err(&["telemetry[0] (io.l5d.prometheus): path: `metrics` must start with `/`"]),
    );
}

#[test]
fn namer_rows() {
    use Want::*;
    let n = |body: &str| format!("{MIN}namers:\n{body}");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    check(
        &n(&format!("- kind: io.l5d.fs\n  rootDir: {root}\n")),
        Ok(&[]),
    );
    check(
        &n("- kind: io.l5d.fs\n  rootDir: /no/such/disco\n"),
        Ok(&["namers[0] (io.l5d.fs).rootDir: `/no/such/disco` is not a directory here"]),
    );
    check(
        &n("- kind: io.l5d.fs\n"),
        Err(&["namers[0] (io.l5d.fs): missing field `rootDir`"]),
    );
    check(
        &n(&format!(
            "- kind: io.l5d.fs\n  rootDir: {root}\n  rootdir: x\n"
        )),
        Err(&["namers[0] (io.l5d.fs).rootdir: unknown field `rootdir`, expected `rootDir`"]),
    );
    check(
        &n(&format!(
            "- kind: io.l5d.fs\n  rootDir: {root}\n  prefix: disco\n"
        )),
        Err(&["namers[0] (io.l5d.fs).prefix: '/' expected but 'd' found at '[d]isco'"]),
    );
    check(
        &n("- kind: io.l5d.rewrite\n  pattern: /{a}\n  name: /b/{a}\n"),
        Err(&["namers[0] (io.l5d.rewrite): The 'prefix' property is required for the io.l5d.rewrite namer."]),
    );
    check(
        &n("- kind: io.l5d.rewrite\n  prefix: /rw\n  pattern: /{a}\n  name: /b/{a}\n"),
        Ok(&[]),
    );
    check(
        &n("- kind: io.l5d.k8s\n  host: 127.0.0.1\n"),
        Err(&["namers[0] (io.l5d.k8s): namer kind `io.l5d.k8s` is not supported yet"]),
    );
    check(
        &n("- kind: io.l5d.consul\n  host: 127.0.0.1\n  includeTag: true\n  useHealthCheck: true\n  healthStatuses: [passing, warning]\n  weights: [{tag: canary, weight: 0.1}]\n  consistencyMode: stale\n"),
        Ok(&[]),
    );
    check(
        &n("- kind: io.l5d.consul\n  consistencyMode: eventual\n"),
        Err(&["namers[0] (io.l5d.consul).consistencyMode: `eventual`: expected default, stale or consistent"]),
    );
    check(
        &n("- kind: io.l5d.consul\n  healthStatuses: [ok]\n"),
        Err(&["namers[0] (io.l5d.consul).healthStatuses[0]: `ok`: expected passing, warning, critical or maintenance"]),
    );
    check(
        &n("- kind: io.l5d.consul\n  tls: {disableValidation: true}\n"),
        Ok(&[]),
    );
    check(
        &n("- kind: io.l5d.etcd\n  endpoints: [\"http://127.0.0.1:2379\"]\n  tls: {trustCertsBundle: /no/ca.pem}\n"),
        Err(&["namers[0] (io.l5d.etcd).endpoints: `http://127.0.0.1:2379` is plaintext but `tls` is set"]),
    );
    check(
        &n("- kind: io.l5d.consul\n  tls: {commonName: \"{service}.consul\"}\n"),
        Err(&["namers[0] (io.l5d.consul).tls.commonName: `{service}.consul`: this commonName names one server and takes no variables"]),
    );
    check(
        &n("- kind: io.l5d.etcd\n  tls: {commonName: etcd.test}\n"),
        Err(&["namers[0] (io.l5d.etcd).tls: TLS to etcd needs `trustCertsBundle`"]),
    );
    check(
        &n("- kind: io.l5d.etcd\n  endpoints: [127.0.0.1:2379]\n  pathPrefix: services\n"),
        Err(&["namers[0] (io.l5d.etcd).pathPrefix: `services` must start with `/`"]),
    );
    check(
        &n("- kind: io.l5d.dnssrv\n  dnsHosts: [127.0.0.1:53, 'dns.example']\n"),
        Err(&[
            "namers[0] (io.l5d.dnssrv).dnsHosts[1]: `dns.example` is not an IP address or IP:port",
        ]),
    );
    check(
        &n("- kind: io.l5d.serversets\n  zkAddrs: []\n"),
        Err(&["namers[0] (io.l5d.serversets).zkAddrs: at least one ZooKeeper address is required"]),
    );
    check(
        &n("- kind: io.l5d.zkLeader\n  zkAddrs: [{host: zk1}]\n"),
        Ok(&[]),
    );
    check(
        &n("- rootDir: /tmp\n"),
        Err(&["namers[0]: missing `kind`; known namer kinds: io.l5d.fs, io.l5d.rewrite"]),
    );
    check(
        &n(&format!(
            "- kind: io.l5d.fs\n  rootDir: {root}\n  transformers: [{{kind: io.l5d.localhost}}]\n"
        )),
        Ok(&[]),
    );
}

#[test]
fn dtab_references_to_missing_namers_are_warnings() {
    use Want::*;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    check(
        &format!("namers:\n- kind: io.l5d.fs\n  rootDir: {root}\nrouters:\n- protocol: http\n  dtab: /svc => /#/io.l5d.fs | /#/io.l5d.consul/dc1 | /$/inet/127.1/80;\n"),
        Ok(&["routers[0].dtab: `/#/io.l5d.consul` names no configured namer, so names sent there are Neg (configured: /#/io.l5d.fs)"]),
    );
    check(
        &format!("namers:\n- kind: io.l5d.fs\n  prefix: /disco\n  rootDir: {root}\nrouters:\n- protocol: http\n  dtab: /svc => /#/disco;\n"),
        Ok(&[]),
    );
    check(
        "routers:\n- protocol: http\n  dtab: /svc => /#/io.l5d.fs;\n",
        Ok(&["`/#/io.l5d.fs` names no configured namer, so names sent there are Neg (configured: none)"]),
    );
}

#[test]
fn checked_values_carry_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "namers:\n- kind: io.l5d.fs\n  rootDir: {}\n- kind: io.l5d.fs\n  prefix: /disco\n  rootDir: {0}\nrouters:\n- protocol: http\n  dtab: /svc => /#/io.l5d.fs\n",
        dir.path().display()
    );
    let (cfg, _) = load(&text).unwrap();
    let r = &cfg.routers[0];
    assert_eq!(r.label, "http");
    assert_eq!(r.dst_prefix.show(), "/svc");
    assert_eq!(r.dtab.show(), "/svc=>/#/io.l5d.fs");
    assert_eq!(r.servers.len(), 1);
    assert_eq!(r.servers[0].addr.to_string(), "127.0.0.1:4140");
    let prefixes: Vec<String> = cfg.namers.iter().map(|n| n.prefix.show()).collect();
    assert_eq!(prefixes, ["/#/io.l5d.fs", "/#/disco"]);
}
