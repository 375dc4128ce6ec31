//! TLS and mutual TLS between two Switchboards, certificates made here with rcgen: an
//! "outgoing" router (client `tls` with `commonName` from the client prefix, `clientAuth`) in
//! front of an "incoming" router (server `tls` with `requireClientAuth`) in front of a plain
//! backend. HTTP/1.1, HTTP/2 and gRPC cross it; clients without a certificate, or with one from
//! another CA, are refused; certificates rotate under load with no failed request; `check`
//! reports bad certificates where they are named.

#[path = "support/h2.rs"]
mod h2s;
#[path = "support/pki.rs"]
mod pki;
mod support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pki::*;
use support::*;

/// The incoming router: TLS with client auth, then plain HTTP (or h2) to the backend.
fn incoming_config(pki: &Pki, protocol: &str) -> String {
    format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nnamers:\n- kind: io.l5d.fs\n  rootDir: {{disco}}\nrouters:\n- protocol: {protocol}\n  label: incoming\n  dtab: /svc => /#/io.l5d.fs;\n  servers:\n  - ip: 127.0.0.1\n    port: 0\n    tls:\n      certPath: {}\n      keyPath: {}\n      caCertPath: {}\n      requireClientAuth: true\n",
        pki.path("incoming.pem").display(),
        pki.path("incoming.key").display(),
        pki.path("ca.pem").display(),
    )
}

/// The outgoing router: every service is sent to the incoming router (`incoming` in disco),
/// over TLS with `commonName` `{service}.test` from the client prefix.
fn outgoing_config(pki: &Pki, protocol: &str, client_cert: &str) -> String {
    format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nnamers:\n- kind: io.l5d.fs\n  rootDir: {{disco}}\nrouters:\n- protocol: {protocol}\n  label: outgoing\n  dtab: /svc => /#/io.l5d.fs/incoming;\n  servers: [{{ip: 127.0.0.1, port: 0}}]\n  client:\n    kind: io.l5d.static\n    configs:\n    - prefix: /#/io.l5d.fs/{{service}}\n      tls:\n        commonName: \"{{service}}.test\"\n        trustCertsBundle: {}\n        clientAuth:\n          certPath: {}\n          keyPath: {}\n",
        pki.path("ca.pem").display(),
        pki.path(&format!("{client_cert}.pem")).display(),
        pki.path(&format!("{client_cert}.key")).display(),
    )
}

struct Mesh {
    outgoing: Proxy,
    incoming: Proxy,
    _disco_in: Disco,
    _disco_out: Disco,
}

async fn mesh(pki: &Pki, protocol: &str, backend_addr: std::net::SocketAddr) -> Mesh {
    let disco_in = Disco::new();
    disco_in.set("web", &[format!("127.0.0.1 {}", backend_addr.port())]);
    let incoming = proxy(&incoming_config(pki, protocol), &disco_in.path()).await;
    let disco_out = Disco::new();
    disco_out.set("incoming", &[format!("127.0.0.1 {}", incoming.addr.port())]);
    let outgoing = proxy(
        &outgoing_config(pki, protocol, "outgoing"),
        &disco_out.path(),
    )
    .await;
    Mesh {
        outgoing,
        incoming,
        _disco_in: disco_in,
        _disco_out: disco_out,
    }
}

fn standard_pki() -> Pki {
    let pki = Pki::new();
    pki.issue("incoming", &["incoming.test"], None);
    pki.issue("outgoing", &["outgoing.test"], None);
    pki
}

#[tokio::test]
async fn http1_crosses_mutual_tls() {
    let pki = standard_pki();
    let web = backend("web").await;
    let m = mesh(&pki, "http", web.addr).await;
    let r = get(m.outgoing.addr, "web", "/echo", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["backend"], "web");
    // Both hops add their Via.
    assert_eq!(v["headers"]["via"], "1.1 linkerd, 1.1 linkerd");
    let out = metrics(m.outgoing.admin).await;
    let c = "rt/outgoing/client/#/io.l5d.fs/incoming";
    assert_eq!(out[format!("{c}/tls/handshakes")], 1);
    assert_eq!(out[format!("{c}/tls/alpn/http/1.1")], 1);
    let inc = metrics(m.incoming.admin).await;
    let s = format!("rt/incoming/server/127.0.0.1/{}", m.incoming.addr.port());
    assert_eq!(inc[format!("{s}/tls/handshakes")], 1);
}

#[tokio::test]
async fn h2_and_grpc_cross_mutual_tls() {
    let pki = standard_pki();
    let backend = h2s::h2_backend().await;
    let m = mesh(&pki, "h2", backend).await;
    let mut c = h2s::h2_client(m.outgoing.addr).await;
    let r = c
        .send_request(h2s::grpc_req(
            "web",
            "/echo.Echo/Unary",
            h2s::full("over mtls"),
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (body, trailers) = h2s::read_all(r).await;
    assert_eq!(body, "over mtls");
    assert_eq!(trailers.unwrap()["grpc-status"], "0");
    let out = metrics(m.outgoing.admin).await;
    assert_eq!(
        out["rt/outgoing/client/#/io.l5d.fs/incoming/tls/alpn/h2"],
        1
    );
}

/// A rustls client trusting `pki`'s CA, with `client_cert` if given.
fn client_config(pki: &Pki, client_cert: Option<(&Path, &Path)>) -> rustls::ClientConfig {
    use switchboard::transport::tls::{load_certs, load_key};
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(&pki.path("ca.pem")).unwrap() {
        roots.add(c).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    match client_cert {
        Some((c, k)) => b
            .with_client_auth_cert(load_certs(c).unwrap(), load_key(k).unwrap())
            .unwrap(),
        None => b.with_no_client_auth(),
    }
}

/// A TLS handshake with `addr` as `incoming.test`.
async fn handshake(
    addr: std::net::SocketAddr,
    cfg: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("incoming.test").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
}

/// A TLS client straight to the incoming router; `Ok(status)` if it answered.
async fn direct(
    addr: std::net::SocketAddr,
    pki: &Pki,
    client_cert: Option<(&Path, &Path)>,
) -> Result<u16, String> {
    direct_get(addr, pki, client_cert, "web", "/").await
}

async fn direct_get(
    addr: std::net::SocketAddr,
    pki: &Pki,
    client_cert: Option<(&Path, &Path)>,
    host: &str,
    path: &str,
) -> Result<u16, String> {
    let tls = handshake(addr, client_config(pki, client_cert))
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri(path)
        .header("host", host)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), send.send_request(req))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(r.status().as_u16())
}

#[tokio::test]
async fn clients_without_a_certificate_or_from_another_ca_are_refused() {
    let pki = standard_pki();
    let web = backend("web").await;
    let m = mesh(&pki, "http", web.addr).await;
    let addr = m.incoming.addr;
    // With the right certificate it answers (the check below could fail).
    let ok = direct(
        addr,
        &pki,
        Some((&pki.path("outgoing.pem"), &pki.path("outgoing.key"))),
    )
    .await;
    assert_eq!(ok, Ok(200));
    // No client certificate.
    assert!(direct(addr, &pki, None).await.is_err());
    // A certificate from another CA.
    let other = Pki::named("another CA");
    other.issue("rogue", &["outgoing.test"], None);
    assert!(direct(
        addr,
        &pki,
        Some((&other.path("rogue.pem"), &other.path("rogue.key")))
    )
    .await
    .is_err());
    let inc = metrics(m.incoming.admin).await;
    let s = format!("rt/incoming/server/127.0.0.1/{}/tls", addr.port());
    assert_eq!(
        inc[format!("{s}/handshake_failures/no_client_certificate")],
        1
    );
    assert_eq!(inc[format!("{s}/handshake_failures/unknown_issuer")], 1);
    // The backend saw only the authenticated request and the one through the mesh (none).
    assert_eq!(inc["rt/incoming/client/#/io.l5d.fs/web/requests"], 1);
}

#[tokio::test]
async fn a_server_name_other_than_common_name_is_refused() {
    let pki = Pki::new();
    // The incoming router presents a certificate for another name.
    pki.issue("incoming", &["elsewhere.test"], None);
    pki.issue("outgoing", &["outgoing.test"], None);
    let web = backend("web").await;
    let m = mesh(&pki, "http", web.addr).await;
    let r = get(m.outgoing.addr, "web", "/", &[]).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(
        r.body.contains("TLS handshake"),
        "the error says what failed: {}",
        r.body
    );
    let out = metrics(m.outgoing.admin).await;
    let c = "rt/outgoing/client/#/io.l5d.fs/incoming/tls/handshake_failures";
    assert!(out[format!("{c}/name_mismatch")].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn certificates_rotate_under_load_without_a_failed_request() {
    let pki = standard_pki();
    let web = backend("web").await;
    let m = mesh(&pki, "http", web.addr).await;
    let addr = m.outgoing.addr;
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (failures, sent, stop) = (failures.clone(), sent.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // A new connection each time, so handshakes happen throughout.
                let r = get(addr, "web", "/", &[("connection", "close")]).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if r.status != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Rotate both sides' certificates while requests flow.
    tokio::time::sleep(Duration::from_millis(300)).await;
    pki.issue("incoming", &["incoming.test"], None);
    pki.issue("outgoing", &["outgoing.test"], None);
    let reloads = "rt/incoming/tls/reloads";
    until_metric(m.incoming.admin, reloads, |v| v.as_u64().unwrap_or(0) >= 1).await;
    // New outgoing connections are needed for the rotated client certificate to be used;
    // keep the load on until the outgoing side has reloaded too.
    until_metric(
        m.outgoing.admin,
        "rt/outgoing/tls/client_auth/reloads",
        |v| v.as_u64().unwrap_or(0) >= 1,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    assert!(sent.load(Ordering::Relaxed) > 10);
    assert_eq!(failures.load(Ordering::Relaxed), 0);

    // A new handshake gets the new certificate.
    let served = served_cert(m.incoming.addr, &pki).await;
    let on_disk = switchboard::transport::tls::load_certs(&pki.path("incoming.pem")).unwrap();
    assert_eq!(served, on_disk[0].as_ref());

    // A bad new file keeps the old certificate, and says so.
    write_atomic(&pki.path("incoming.pem"), "not a certificate");
    until_metric(m.incoming.admin, "rt/incoming/tls/reload_failures", |v| {
        v.as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert_eq!(
        served_cert(m.incoming.addr, &pki).await,
        on_disk[0].as_ref()
    );
    assert_eq!(get(m.outgoing.addr, "web", "/", &[]).await.status, 200);
}

/// The certificate the server presents to a new handshake.
async fn served_cert(addr: std::net::SocketAddr, pki: &Pki) -> Vec<u8> {
    let cert = (pki.path("outgoing.pem"), pki.path("outgoing.key"));
    let tls = handshake(addr, client_config(pki, Some((&cert.0, &cert.1))))
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .as_ref()
        .to_vec()
}

#[test]
fn check_reports_bad_certificates_where_they_are_named() {
    let pki = Pki::new();
    pki.issue("expired", &["x.test"], Some(((2020, 1, 1), (2021, 1, 1))));
    pki.issue("future", &["x.test"], Some(((2090, 1, 1), (2091, 1, 1))));
    pki.issue("good", &["x.test"], None);
    pki.issue("other", &["x.test"], None);
    let server = |cert: &str, key: &str| {
        format!(
            "routers:\n- protocol: http\n  servers:\n  - port: 1\n    tls: {{certPath: {}, keyPath: {}}}\n",
            pki.path(cert).display(),
            pki.path(key).display()
        )
    };
    let errors = |text: String| -> Vec<String> {
        match switchboard::config::load_with_source(&text) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .to_string()
                .lines()
                .map(|l| l.to_string())
                .filter(|l| l.contains("tls"))
                .collect(),
        }
    };
    assert_eq!(errors(server("good.pem", "good.key")), Vec::<String>::new());
    let e = errors(server("expired.pem", "expired.key"));
    assert!(
        e.len() == 1
            && e[0].contains("routers[0].servers[0].tls.certPath")
            && e[0].contains("expired on"),
        "{e:?}"
    );
    let e = errors(server("future.pem", "future.key"));
    assert!(
        e.len() == 1 && e[0].contains("tls.certPath") && e[0].contains("is not valid before"),
        "{e:?}"
    );
    let e = errors(server("good.pem", "other.key"));
    assert!(
        e.len() == 1 && e[0].contains("tls.keyPath") && e[0].contains("does not match"),
        "{e:?}"
    );
    std::fs::write(pki.path("garbage.pem"), "hello").unwrap();
    let e = errors(server("garbage.pem", "good.key"));
    assert!(
        e.len() == 1 && e[0].contains("tls.certPath") && e[0].contains("no PEM certificate"),
        "{e:?}"
    );
    // Client TLS: commonName is required unless validation is disabled.
    let client =
        "routers:\n- protocol: http\n  client:\n    tls: {trustCertsBundle: /no/such.pem}\n";
    let e = errors(client.to_string());
    assert!(
        e.iter()
            .any(|l| l.contains("routers[0].client.tls") && l.contains("needs `commonName`")),
        "{e:?}"
    );
}

#[tokio::test]
async fn the_admin_server_serves_over_tls() {
    let pki = standard_pki();
    let cfg = format!(
        "admin:\n  ip: 127.0.0.1\n  port: 0\n  tls: {{certPath: {}, keyPath: {}}}\nrouters:\n- protocol: http\n  servers: [{{ip: 127.0.0.1, port: 0}}]\n",
        pki.path("incoming.pem").display(),
        pki.path("incoming.key").display()
    );
    let disco = Disco::new();
    let p = proxy(&cfg, &disco.path()).await;
    // HTTPS answers.
    assert_eq!(
        direct_get(p.admin, &pki, None, "127.0.0.1", "/admin/ping").await,
        Ok(200)
    );
    // Plain HTTP gets no answer.
    let plain = tokio::time::timeout(
        Duration::from_secs(5),
        support::send(
            p.admin,
            http::Request::builder()
                .uri("/admin/ping")
                .header("host", "127.0.0.1")
                .body(support::body(""))
                .unwrap(),
        ),
    );
    let r = tokio::spawn(plain).await;
    assert!(
        !matches!(r, Ok(Ok(ref resp)) if resp.status == 200),
        "plaintext must not be served: {r:?}"
    );
}

#[tokio::test]
async fn the_shipped_mesh_example_routes_over_mutual_tls() {
    // config/mesh-tls.yaml as shipped (its example certificates), on free ports and a local
    // backend: outgoing -> TLS -> incoming -> backend.
    let web = backend("web").await;
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let incoming_port = free.local_addr().unwrap().port();
    drop(free);
    let mesh = Disco::new();
    mesh.set("web", &[format!("127.0.0.1 {incoming_port}")]);
    let local = Disco::new();
    local.set_backends("web", &[&web]);
    let text = std::fs::read_to_string("config/mesh-tls.yaml")
        .unwrap()
        .replace("port: 4240", "port: 0")
        .replace("port: 9991", "port: 0")
        .replace("port: 4241", &format!("port: {incoming_port}"))
        .replace(
            "rootDir: config/disco-mesh",
            &format!("rootDir: {}", mesh.path().display()),
        )
        .replace(
            "rootDir: config/disco\n",
            &format!("rootDir: {}\n", local.path().display()),
        );
    let p = proxy(&text, &local.path()).await;
    let outgoing = p.servers.iter().find(|(l, _)| l == "outgoing").unwrap().1;
    let r = get(outgoing, "web", "/echo", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["backend"], "web");
    let m = metrics(p.admin).await;
    assert_eq!(m["rt/outgoing/client/#/mesh/web/tls/handshakes"], 1);
    assert_eq!(
        m[format!("rt/incoming/server/127.0.0.1/{incoming_port}/tls/handshakes")],
        1
    );
}

#[tokio::test]
async fn protocols_ciphers_and_optional_client_auth_take_effect() {
    let pki = standard_pki();
    let web = backend("web").await;
    let disco = Disco::new();
    disco.set_backends("web", &[&web]);
    let cfg = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\nnamers:\n- kind: io.l5d.fs\n  rootDir: {{disco}}\nrouters:\n- protocol: http\n  dtab: /svc => /#/io.l5d.fs;\n  servers:\n  - ip: 127.0.0.1\n    port: 0\n    tls:\n      certPath: {}\n      keyPath: {}\n      caCertPath: {}\n      protocols: [TLSv1.2]\n      ciphers: [TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256]\n",
        pki.path("incoming.pem").display(),
        pki.path("incoming.key").display(),
        pki.path("ca.pem").display(),
    );
    let p = proxy(&cfg, &disco.path()).await;
    // No client certificate: accepted (caCertPath without requireClientAuth makes it optional).
    let tls = handshake(p.addr, client_config(&pki, None)).await.unwrap();
    let conn = tls.get_ref().1;
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(
        conn.negotiated_cipher_suite().unwrap().suite().as_str(),
        Some("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256")
    );
    assert_eq!(
        direct_get(p.addr, &pki, None, "web", "/").await,
        Ok(200),
        "an optional client certificate was required"
    );
    // Unknown names are located errors.
    let bad = format!(
        "routers:\n- protocol: http\n  servers:\n  - port: 1\n    tls: {{certPath: {}, keyPath: {}, protocols: [SSLv3], ciphers: [RC4]}}\n",
        pki.path("incoming.pem").display(),
        pki.path("incoming.key").display()
    );
    let e = switchboard::config::load(&bad).err().unwrap().to_string();
    assert!(
        e.contains("routers[0].servers[0].tls.protocols: protocol `SSLv3` is not supported")
            && e.contains("routers[0].servers[0].tls.ciphers: cipher `RC4` is not supported"),
        "{e}"
    );
}

#[tokio::test]
async fn trust_roots_reload_when_their_file_changes() {
    let pki = standard_pki();
    let web = backend("web").await;
    let m = mesh(&pki, "http", web.addr).await;
    // A client certificate from a second CA is refused...
    let other = Pki::named("second CA");
    other.issue("client2", &["outgoing.test"], None);
    let cert = (other.path("client2.pem"), other.path("client2.key"));
    assert!(direct(m.incoming.addr, &pki, Some((&cert.0, &cert.1)))
        .await
        .is_err());
    // ...until the incoming router's CA file also holds that CA.
    let bundle = std::fs::read_to_string(pki.path("ca.pem")).unwrap()
        + &std::fs::read_to_string(other.path("ca.pem")).unwrap();
    write_atomic(&pki.path("ca.pem"), &bundle);
    until_metric(m.incoming.admin, "rt/incoming/tls/ca/reloads", |v| {
        v.as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert_eq!(
        direct(m.incoming.addr, &pki, Some((&cert.0, &cert.1))).await,
        Ok(200)
    );
    // The outgoing side followed the same file (its trustCertsBundle) and still connects.
    until_metric(m.outgoing.admin, "rt/outgoing/tls/trust/reloads", |v| {
        v.as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert_eq!(get(m.outgoing.addr, "web", "/", &[]).await.status, 200);
}
