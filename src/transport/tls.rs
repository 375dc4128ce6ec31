//! TLS settings built from config, on rustls (ring provider): server certificates with optional
//! client authentication, client trust roots, server-name checks (`commonName`), client
//! certificates, protocol versions and cipher suites by their Linkerd (Java) names, and
//! certificates, keys and trust roots reloaded when their files change. A reload that fails
//! keeps the old ones, logs and counts it. It does no I/O on sockets; `transport` does.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use crate::config::model;
use crate::metrics::{Counter, Scope};

/// How often certificate and key files are checked for changes.
pub const CERT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// A TLS setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` holds no PEM certificate")]
    NoCert { path: PathBuf },
    #[error("`{path}`: {message}")]
    BadPem { path: PathBuf, message: String },
    #[error("`{path}` holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("the key `{key}` does not match the certificate `{cert}`: {message}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
    #[error("the certificate `{path}` {message}")]
    Validity { path: PathBuf, message: String },
    #[error("`{path}`: {message}")]
    Trust { path: PathBuf, message: String },
    #[error("{0}")]
    Setting(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file, in order.
pub fn load_certs(path: &FsPath) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.into(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            path: path.into(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert { path: path.into() });
    }
    Ok(certs)
}

/// The first private key of a PEM file.
pub fn load_key(path: &FsPath) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.into(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| TlsError::NoKey { path: path.into() })
}

/// Fails when the certificate is expired or not yet valid (`at`: now).
pub fn check_validity(
    path: &FsPath,
    cert: &CertificateDer<'_>,
    at: SystemTime,
) -> Result<(), TlsError> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| TlsError::BadPem {
            path: path.into(),
            message: format!("not an X.509 certificate: {e}"),
        })?;
    let now = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let v = parsed.validity();
    if now < v.not_before.timestamp() {
        return Err(TlsError::Validity {
            path: path.into(),
            message: format!("is not valid before {}", v.not_before),
        });
    }
    if now > v.not_after.timestamp() {
        return Err(TlsError::Validity {
            path: path.into(),
            message: format!("expired on {}", v.not_after),
        });
    }
    Ok(())
}

/// Where a certificate and its key come from.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub intermediates: Option<PathBuf>,
}

impl KeyFiles {
    /// Reads, checks (key matches, certificate valid now) and combines the files.
    pub fn load(&self) -> Result<CertifiedKey, TlsError> {
        let mut chain = load_certs(&self.cert)?;
        check_validity(&self.cert, &chain[0], SystemTime::now())?;
        if let Some(p) = &self.intermediates {
            chain.extend(load_certs(p)?);
        }
        let key = load_key(&self.key)?;
        CertifiedKey::from_der(chain, key, &provider()).map_err(|e| TlsError::Mismatch {
            cert: self.cert.clone(),
            key: self.key.clone(),
            message: e.to_string(),
        })
    }

    fn stamp(&self) -> Vec<Option<SystemTime>> {
        let m = |p: &FsPath| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mut v = vec![m(&self.cert), m(&self.key)];
        if let Some(p) = &self.intermediates {
            v.push(m(p));
        }
        v
    }
}

/// A certificate and key that follow their files: checked every `CERT_POLL_INTERVAL`; new
/// handshakes get the new pair, connections already open keep theirs, and a pair that does not
/// load keeps the old one (logged, counted in `tls/reload_failures`).
pub struct ReloadingKey {
    files: KeyFiles,
    current: RwLock<Arc<CertifiedKey>>,
    reloads: Counter,
    failures: Counter,
}

impl fmt::Debug for ReloadingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingKey")
            .field("cert", &self.files.cert)
            .finish()
    }
}

impl ReloadingKey {
    /// Loads the pair now (an error fails the caller's start); the watch starts when a tokio
    /// runtime is running and stops when the key is dropped.
    pub fn new(files: KeyFiles, scope: &Scope) -> Result<Arc<ReloadingKey>, TlsError> {
        let first = files.load()?;
        let stamp = files.stamp();
        let k = Arc::new(ReloadingKey {
            files,
            current: RwLock::new(Arc::new(first)),
            reloads: scope.counter("reloads"),
            failures: scope.counter("reload_failures"),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(watch(Arc::downgrade(&k), stamp));
        }
        Ok(k)
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }
}

async fn watch(key: Weak<ReloadingKey>, mut stamp: Vec<Option<SystemTime>>) {
    loop {
        tokio::time::sleep(CERT_POLL_INTERVAL).await;
        let Some(k) = key.upgrade() else { return };
        let now = k.files.stamp();
        if now == stamp {
            continue;
        }
        stamp = now;
        match k.files.load() {
            Ok(ck) => {
                *k.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ck);
                k.reloads.incr();
                tracing::info!(cert = %k.files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                k.failures.incr();
                tracing::warn!(error = %e, "TLS certificate not reloaded; keeping the previous one");
            }
        }
    }
}

impl rustls::server::ResolvesServerCert for ReloadingKey {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl rustls::client::ResolvesClientCert for ReloadingKey {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// Protocol versions by their Linkerd (Java) names; `None`: rustls's defaults (1.2 and 1.3).
fn versions(
    names: Option<&Vec<String>>,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, TlsError> {
    let Some(names) = names else {
        return Ok(rustls::ALL_VERSIONS.to_vec());
    };
    let mut out = Vec::new();
    for n in names {
        match n.as_str() {
            "TLSv1.2" => out.push(&rustls::version::TLS12),
            "TLSv1.3" => out.push(&rustls::version::TLS13),
            other => {
                return Err(TlsError::Setting(format!(
                    "protocol `{other}` is not supported (TLSv1.2 and TLSv1.3 are)"
                )))
            }
        }
    }
    if out.is_empty() {
        return Err(TlsError::Setting("`protocols` is empty".into()));
    }
    Ok(out)
}

/// Checks `protocols` names (for `check`).
pub fn check_protocols(names: &[String]) -> Result<(), TlsError> {
    versions(Some(&names.to_vec())).map(|_| ())
}

/// Checks `ciphers` names (for `check`).
pub fn check_ciphers(names: &[String]) -> Result<(), TlsError> {
    provider_with(Some(&names.to_vec())).map(|_| ())
}

/// The ring provider, limited to the named cipher suites (IANA names; TLS 1.3 suites also as
/// `TLS_AES_128_GCM_SHA256` and the like).
fn provider_with(ciphers: Option<&Vec<String>>) -> Result<Arc<CryptoProvider>, TlsError> {
    let mut p = rustls::crypto::ring::default_provider();
    if let Some(names) = ciphers {
        let all = p.cipher_suites.clone();
        let mut chosen = Vec::new();
        for n in names {
            let want = n
                .to_ascii_uppercase()
                .replace("TLS_AES_", "TLS13_AES_")
                .replace("TLS_CHACHA20_", "TLS13_CHACHA20_");
            match all
                .iter()
                .find(|s| s.suite().as_str().is_some_and(|x| x == want))
            {
                Some(s) => chosen.push(*s),
                None => {
                    let known: Vec<&str> = all.iter().filter_map(|s| s.suite().as_str()).collect();
                    return Err(TlsError::Setting(format!(
                        "cipher `{n}` is not supported; supported: {}",
                        known.join(", ")
                    )));
                }
            }
        }
        p.cipher_suites = chosen;
    }
    Ok(Arc::new(p))
}

fn roots(files: &[PathBuf]) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for f in files {
        for c in load_certs(f)? {
            store.add(c).map_err(|e| TlsError::Trust {
                path: f.clone(),
                message: e.to_string(),
            })?;
        }
    }
    Ok(store)
}

/// The system's trust store (`SSL_CERT_FILE`/`SSL_CERT_DIR`, else the platform's).
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "no certificates found".into());
        return Err(TlsError::Setting(format!(
            "no `trustCertsBundle` given and the system trust store is unusable: {why}"
        )));
    }
    Ok(store)
}

/// Something built from trust files that follows them: checked every `CERT_POLL_INTERVAL`,
/// rebuilt when one changes; a rebuild that fails keeps the previous one (logged, counted in
/// `reload_failures` of its scope).
pub struct Reloading<T: ?Sized + Send + Sync + 'static> {
    files: Vec<PathBuf>,
    make: Make<T>,
    current: RwLock<Arc<T>>,
    reloads: Counter,
    failures: Counter,
}

impl<T: ?Sized + Send + Sync + 'static> fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloading")
            .field("files", &self.files)
            .finish()
    }
}

type Make<T> = Box<dyn Fn(&[PathBuf]) -> Result<Arc<T>, TlsError> + Send + Sync>;

impl<T: ?Sized + Send + Sync + 'static> Reloading<T> {
    fn new(files: Vec<PathBuf>, make: Make<T>, scope: &Scope) -> Result<Arc<Self>, TlsError> {
        let first = make(&files)?;
        let stamp = stamps(&files);
        let r = Arc::new(Reloading {
            files,
            make,
            current: RwLock::new(first),
            reloads: scope.counter("reloads"),
            failures: scope.counter("reload_failures"),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(watch_roots(Arc::downgrade(&r), stamp));
        }
        Ok(r)
    }

    fn current(&self) -> Arc<T> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }
}

fn stamps(files: &[PathBuf]) -> Vec<Option<SystemTime>> {
    files
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

async fn watch_roots<T: ?Sized + Send + Sync + 'static>(
    r: Weak<Reloading<T>>,
    mut stamp: Vec<Option<SystemTime>>,
) {
    loop {
        tokio::time::sleep(CERT_POLL_INTERVAL).await;
        let Some(r) = r.upgrade() else { return };
        let now = stamps(&r.files);
        if now == stamp {
            continue;
        }
        stamp = now;
        match (r.make)(&r.files) {
            Ok(v) => {
                *r.current.write().unwrap_or_else(|p| p.into_inner()) = v;
                r.reloads.incr();
                tracing::info!(files = ?r.files, "TLS trust roots reloaded");
            }
            Err(e) => {
                r.failures.incr();
                tracing::warn!(error = %e, "TLS trust roots not reloaded; keeping the previous ones");
            }
        }
    }
}

/// The handshake-signature methods of a verifier wrapper, delegated to `self.0.current()`.
macro_rules! delegate_signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.current().verify_tls12_signature(message, cert, dss)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.current().verify_tls13_signature(message, cert, dss)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.current().supported_verify_schemes()
        }
    };
}

/// A server's client-certificate check that follows its CA file. It sends no CA hints (they
/// would have to outlive a reload); clients present the certificate they have.
#[derive(Debug)]
struct ClientVerifier(Arc<Reloading<dyn ClientCertVerifier>>);

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.0.current().offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.0.current().client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        self.0
            .current()
            .verify_client_cert(end_entity, intermediates, now)
    }
    delegate_signature_checks!();
}

/// A client's server-certificate check that follows its trust files.
#[derive(Debug)]
struct ServerVerifier(Arc<Reloading<dyn ServerCertVerifier>>);

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0
            .current()
            .verify_server_cert(end_entity, intermediates, name, ocsp, now)
    }
    delegate_signature_checks!();
}

/// A server's TLS: its certificate (reloading), optional client authentication, ALPN.
pub struct ServerTls {
    acceptor: tokio_rustls::TlsAcceptor,
    pub key: Arc<ReloadingKey>,
}

impl ServerTls {
    /// From a server's `tls` block; `alpn` in order of preference.
    pub fn build(
        cfg: &model::ServerTls,
        alpn: &[&[u8]],
        scope: &Scope,
    ) -> Result<ServerTls, TlsError> {
        let key = ReloadingKey::new(
            KeyFiles {
                cert: cfg.cert_path.clone(),
                key: cfg.key_path.clone(),
                intermediates: cfg.intermediate_certs_path.clone(),
            },
            &scope.scope("tls"),
        )?;
        let provider = provider_with(cfg.ciphers.as_ref())?;
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&versions(cfg.protocols.as_ref())?)
            .map_err(|e| TlsError::Setting(e.to_string()))?;
        let require = cfg.require_client_auth == Some(true);
        let builder = match &cfg.ca_cert_path {
            Some(ca) => {
                let files = vec![ca.clone()];
                let make =
                    move |files: &[PathBuf]| -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
                        let v = WebPkiClientVerifier::builder_with_provider(
                            Arc::new(roots(files)?),
                            Arc::clone(&provider),
                        );
                        let v = if require {
                            v
                        } else {
                            v.allow_unauthenticated()
                        };
                        v.build().map_err(|e| TlsError::Trust {
                            path: files[0].clone(),
                            message: e.to_string(),
                        })
                    };
                let v = Reloading::new(files, Box::new(make), &scope.scope("tls").scope("ca"))?;
                builder.with_client_cert_verifier(Arc::new(ClientVerifier(v)))
            }
            None if require => {
                return Err(TlsError::Setting(
                    "`requireClientAuth: true` needs `caCertPath` (the CA that signs client \
                     certificates)"
                        .into(),
                ))
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::clone(&key) as _);
        config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        Ok(ServerTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            key,
        })
    }

    pub fn acceptor(&self) -> &tokio_rustls::TlsAcceptor {
        &self.acceptor
    }
}

/// A client's TLS as configured (one per `tls` block): the rustls config (roots, client
/// certificate, ALPN) and the `commonName` template.
#[derive(Clone)]
pub struct ClientTlsConfig {
    config: Arc<rustls::ClientConfig>,
    connector: tokio_rustls::TlsConnector,
    common_name: Option<String>,
}

/// A client's TLS for one bound id: the config and the name its endpoints must present.
#[derive(Clone)]
pub struct ClientTls {
    connector: tokio_rustls::TlsConnector,
    name: Option<ServerName<'static>>,
}

impl ClientTlsConfig {
    /// From a client's `tls` block (files read and checked now).
    pub fn build(
        cfg: &model::ClientTls,
        alpn: &[&[u8]],
        scope: &Scope,
    ) -> Result<ClientTlsConfig, TlsError> {
        ClientTlsConfig::build_with(cfg, alpn, scope, true)
    }

    /// The same; `require_name: false` lets `commonName` default to the host connected to
    /// (discovery backends, reached by name).
    pub fn build_with(
        cfg: &model::ClientTls,
        alpn: &[&[u8]],
        scope: &Scope,
        require_name: bool,
    ) -> Result<ClientTlsConfig, TlsError> {
        let provider = provider_with(None)?;
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&versions(cfg.protocols.as_ref())?)
            .map_err(|e| TlsError::Setting(e.to_string()))?;
        let disabled = cfg.disable_validation == Some(true);
        let builder = if disabled {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoValidation(provider)))
        } else {
            let mut files: Vec<PathBuf> = cfg.trust_certs.clone().unwrap_or_default();
            files.extend(cfg.trust_certs_bundle.clone());
            if files.is_empty() {
                builder.with_root_certificates(system_roots()?)
            } else {
                let p = Arc::clone(&provider);
                let make =
                    move |files: &[PathBuf]| -> Result<Arc<dyn ServerCertVerifier>, TlsError> {
                        let v: Arc<dyn ServerCertVerifier> =
                            rustls::client::WebPkiServerVerifier::builder_with_provider(
                                Arc::new(roots(files)?),
                                Arc::clone(&p),
                            )
                            .build()
                            .map_err(|e| TlsError::Trust {
                                path: files[0].clone(),
                                message: e.to_string(),
                            })?;
                        Ok(v)
                    };
                let v = Reloading::new(files, Box::new(make), &scope.scope("tls").scope("trust"))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ServerVerifier(v)))
            }
        };
        let mut config = match &cfg.client_auth {
            Some(a) => {
                let key = ReloadingKey::new(
                    KeyFiles {
                        cert: a.cert_path.clone(),
                        key: a.key_path.clone(),
                        intermediates: a.intermediate_certs_path.clone(),
                    },
                    &scope.scope("tls").scope("client_auth"),
                )?;
                builder.with_client_cert_resolver(key)
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        if cfg.common_name.is_none() && !disabled && require_name {
            return Err(TlsError::Setting(
                "client `tls` needs `commonName` unless `disableValidation: true`".into(),
            ));
        }
        let config = Arc::new(config);
        let c = ClientTlsConfig {
            connector: tokio_rustls::TlsConnector::from(Arc::clone(&config)),
            config,
            common_name: cfg.common_name.clone(),
        };
        // The template must make a valid name once its variables are filled in.
        c.for_vars(&|_| Some("x".into()))?;
        Ok(c)
    }

    /// The rustls configuration, for clients that connect through another library.
    pub fn rustls_config(&self) -> Arc<rustls::ClientConfig> {
        Arc::clone(&self.config)
    }

    /// The TLS of one bound id: `commonName` with each `{var}` replaced by `var(name)`.
    pub fn for_vars(&self, var: &dyn Fn(&str) -> Option<String>) -> Result<ClientTls, TlsError> {
        let name = match &self.common_name {
            None => None,
            Some(t) => {
                let n = fill(t, var)?;
                Some(
                    ServerName::try_from(n.clone())
                        .map_err(|e| TlsError::Setting(format!("commonName `{n}`: {e}")))?,
                )
            }
        };
        Ok(ClientTls {
            connector: self.connector.clone(),
            name,
        })
    }
}

/// `{var}` replaced by its value; an unknown variable is an error.
fn fill(t: &str, var: &dyn Fn(&str) -> Option<String>) -> Result<String, TlsError> {
    let mut out = String::new();
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(j) = after.find('}') else {
            return Err(TlsError::Setting(format!(
                "commonName `{t}`: `{{` without `}}`"
            )));
        };
        let name = &after[..j];
        match var(name) {
            Some(v) => out.push_str(&v),
            None => {
                return Err(TlsError::Setting(format!(
                    "commonName `{t}`: no variable `{name}` in the client prefix"
                )))
            }
        }
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl ClientTls {
    pub fn connector(&self) -> &tokio_rustls::TlsConnector {
        &self.connector
    }

    /// The name sent (SNI) and checked: `commonName`, or the endpoint's IP address.
    pub fn server_name(&self, addr: SocketAddr) -> ServerName<'static> {
        self.name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()))
    }
}

/// `disableValidation: true`: any certificate is accepted (the handshake's signatures are still
/// checked, so the connection is encrypted to whoever holds that certificate's key).
#[derive(Debug)]
struct NoValidation(Arc<CryptoProvider>);

impl ServerCertVerifier for NoValidation {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A metric-friendly reason for a failed handshake.
pub fn failure_reason(e: &std::io::Error) -> &'static str {
    use rustls::{CertificateError as C, Error as E};
    let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<E>()) else {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "eof",
            std::io::ErrorKind::InvalidData => "not_tls",
            _ => "io",
        };
    };
    match inner {
        E::NoCertificatesPresented => "no_client_certificate",
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => "expired_certificate",
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "name_mismatch"
        }
        E::InvalidCertificate(C::UnknownIssuer) => "unknown_issuer",
        E::InvalidCertificate(_) => "bad_certificate",
        E::AlertReceived(_) => "alert_received",
        E::NoApplicationProtocol => "no_alpn_match",
        E::PeerIncompatible(_) => "incompatible",
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => "bad_message",
        _ => "other",
    }
}
