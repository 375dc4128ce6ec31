//! The `http` router's request path: context headers and loop detection, per-request dtab
//! overrides, identification, binding (waiting while a name is Pending, up to
//! `bindingTimeoutMs`), the weighted choice of a leaf, the `l5d-dst-*` headers, service
//! policies (total timeout, retries within a budget for bodyless requests, response
//! classification), and the error responses of section 1.19. Sockets live in `server`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use switchboard_namer_core::delegate::DelegateTree;
use switchboard_namer_core::{Addr, Bound, Dtab, Path, State};

use super::binder::{choose, Binder, PathEntry, Resolved, RouteLeaf};
use super::body::{read_ahead, ClientBody, Ending, OnEnd, ReqBody, RespBody, Tee};
use super::client::AddrState;
use super::error::RouteError;
use super::guard::{self, RequestLimits};
use super::identify::identify;
use super::policy::{service_params, ServicePolicy, MAX_RETRIES_PER_REQUEST};
use super::session::Protocol;
use crate::config::model::{PerPrefix, ServiceParams};
use crate::config::plugins::IdentifierKind;

pub use super::guard::{L5D_CTX_DTAB, L5D_DTAB};
pub const L5D_DST_SERVICE: HeaderName = HeaderName::from_static("l5d-dst-service");
pub const L5D_DST_CLIENT: HeaderName = HeaderName::from_static("l5d-dst-client");
pub const L5D_DST_RESIDUAL: HeaderName = HeaderName::from_static("l5d-dst-residual");
pub const L5D_REQID: HeaderName = HeaderName::from_static("l5d-reqid");
pub use super::policy::L5D_RETRYABLE;
/// What Switchboard appends to `Via` (Linkerd's token, so mixed meshes count hops alike).
pub const VIA_TOKEN_11: &str = "1.1 linkerd";
const VIA_TOKEN_10: &str = "1.0 linkerd";
/// Default `maxCallDepth` of an http server.
pub const DEFAULT_MAX_CALL_DEPTH: u32 = 1000;

/// Hop-by-hop headers a proxy must not forward (RFC 9110 section 7.6.1).
/// (`Trailer` is end to end: it declares the trailer fields hyper then forwards.)
const HOP_BY_HOP: [HeaderName; 6] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::TE,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

/// A running `http` router (the part shared by its servers).
pub struct Router {
    pub label: String,
    identifiers: Vec<IdentifierKind>,
    dst_prefix: Path,
    pub binder: Arc<Binder>,
    binding_timeout: Duration,
    pub limits: RequestLimits,
    pub max_err_kb: u32,
    service_cfg: PerPrefix<ServiceParams>,
    /// The total timeout of a service whose config sets none (`None` when every server of
    /// the router sets its own `timeoutMs`).
    pub default_total_timeout: Option<Duration>,
    /// What the router's clients speak to endpoints.
    pub protocol: Protocol,
}

/// Default bound on a request's time to its response head, for a service with no
/// `totalTimeoutMs` on a router whose servers set no `timeoutMs`.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 60_000;

impl Router {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        label: String,
        identifiers: Vec<IdentifierKind>,
        dst_prefix: Path,
        binder: Arc<Binder>,
        binding_timeout: Duration,
        limits: RequestLimits,
        max_err_kb: u32,
        service_cfg: PerPrefix<ServiceParams>,
    ) -> Router {
        Router {
            label,
            identifiers,
            dst_prefix,
            binder,
            binding_timeout,
            limits,
            max_err_kb,
            service_cfg,
            default_total_timeout: Some(Duration::from_millis(DEFAULT_REQUEST_TIMEOUT_MS)),
            protocol: Protocol::Http1,
        }
    }

    fn policy<'a>(&self, entry: &'a PathEntry) -> &'a Arc<ServicePolicy> {
        entry.policy.get_or_init(|| {
            Arc::new(ServicePolicy::new(
                &service_params(&self.service_cfg, &entry.path),
                &entry.stats,
                self.default_total_timeout,
            ))
        })
    }

    /// The answer to a request Switchboard could not route: Linkerd's `l5d-err` response, or
    /// on a gRPC call a gRPC status (HTTP 200, trailers-only).
    pub fn error_response(&self, e: &RouteError, grpc: bool) -> Response<RespBody> {
        if grpc {
            return e.grpc_response(self.limits.max_headers_kb);
        }
        e.response(self.limits.max_headers_kb, self.max_err_kb)
    }

    /// Routes one request end to end. `max_call_depth` and `clear_context` are the server's.
    pub async fn route(
        &self,
        req: Request<ClientBody>,
        max_call_depth: u32,
        clear_context: bool,
        conn: &Arc<super::conn::Conn>,
    ) -> Result<Response<RespBody>, RouteError> {
        let (mut head, body) = req.into_parts();
        let seen = guard::check(&mut head, &self.limits)?;
        let mut req = Request::from_parts(head, body);
        if clear_context {
            strip_context(req.headers_mut());
        }
        let depth = via_entries(req.headers());
        if depth > max_call_depth as usize {
            return Err(RouteError::CallDepth(max_call_depth));
        }
        if seen.dtab_bytes > self.limits.max_local_dtab_bytes && !clear_context {
            return Err(guard::dtab_too_large(seen.dtab_bytes, &self.limits));
        }
        let local = if seen.dtab_bytes > 0 {
            local_dtab(req.headers())?
        } else {
            Dtab::empty()
        };
        if local.len() > self.limits.max_local_dentries {
            return Err(RouteError::BadDtab(format!(
                "the request's dtab has {} dentries; the limit is {}",
                local.len(),
                self.limits.max_local_dentries
            )));
        }
        let id = identify(&self.identifiers, &self.dst_prefix, &req)
            .map_err(RouteError::Unidentified)?;
        let entry = self.binder.entry(&id.path, &local);
        let deadline = Instant::now() + self.binding_timeout;
        let tree = match entry.resolved(self.binding_timeout).await {
            Resolved::Ok(t) => t,
            Resolved::Pending => {
                return Err(RouteError::BindingTimeout(
                    twitter_duration(self.binding_timeout),
                    id.path.show(),
                ))
            }
            Resolved::Failed(e) => return Err(RouteError::NamingFailed(e)),
            Resolved::Limit(e) => return Err(RouteError::BindLimit(e)),
        };
        let policy = Arc::clone(self.policy(&entry));
        let start = Instant::now();

        // Requests without a body can be sent again; the others stream once.
        // hyper knows the framing: a request whose body has already ended (HTTP/2 END_STREAM on
        // its headers, HTTP/1 no body or `Content-Length: 0`). HTTP/2 clients (gRPC) send
        // bodies without `Content-Length`, so the headers alone cannot tell.
        let retryable_req = http_body::Body::is_end_stream(req.body())
            || (req.version() < http::Version::HTTP_2 && !has_body(&req));
        let upgrade = is_upgrade(&req);
        let client_upgrade = upgrade.then(|| ClientSide::of(&mut req));
        let (mut parts, body) = req.into_parts();
        // The client's version, before the request is made an HTTP/1.1 one for the endpoint.
        let version = parts.version;
        prepare_request(
            self.protocol,
            &mut parts,
            &local,
            id.rewrite_uri.as_deref(),
            upgrade,
            seen.dtab_bytes > 0,
        );
        let method = parts.method.clone();
        let mut body = ReqBody::stream(body, self.limits.body_read_timeout);
        // h2: a request with a body keeps a copy of it (up to `retryBufferSize.requestBytes`)
        // while it streams, so a unary call can be sent again.
        let tee = if !retryable_req && self.protocol == Protocol::H2 && policy.request_buffer > 0 {
            let (b, t) = Tee::wrap(body, policy.request_buffer);
            body = b;
            Some(t)
        } else {
            None
        };
        // A request that can be sent again keeps a copy of its head: any 5XX may come back
        // marked `l5d-retryable`, whatever the classifier.
        let keep = retryable_req || tee.is_some();
        let mut parts = Some(parts);
        let mut body = Some(body);
        // gRPC's own deadline bounds the call too.
        let grpc_deadline = if self.protocol == Protocol::H2 {
            grpc_timeout(&parts.as_ref().map(|p| &p.headers))
        } else {
            None
        };
        policy.deposit();

        let attempt_loop = async {
            let mut retries = 0u32;
            loop {
                let Some(leaf) = choose(&tree) else {
                    return Err(self.no_brokers(&id.path, &local).await);
                };
                let client = Arc::clone(&leaf.client);
                if client.addr_state() == AddrState::Pending {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if !client.ready(left).await {
                        return Err(RouteError::BindingTimeout(
                            twitter_duration(self.binding_timeout),
                            id.path.show(),
                        ));
                    }
                }
                if let Some(code) = switchboard_namer_core::system::status_code(&client.id) {
                    let mut r = Response::new(RespBody::empty());
                    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
                    let failure = r.status().is_server_error();
                    return Ok((r, failure));
                }
                if client.endpoints().is_empty() {
                    return Err(self.no_brokers(&id.path, &local).await);
                }
                let head = match (keep, parts.as_ref()) {
                    (true, Some(p)) => clone_parts(p),
                    _ => match parts.take() {
                        Some(p) => p,
                        None => return Err(RouteError::Upstream("request already sent".into())),
                    },
                };
                let mut out = Request::from_parts(head, body.take().unwrap_or_else(ReqBody::empty));
                set_dst_headers(out.headers_mut(), &entry.header, leaf);
                let sent = Instant::now();
                // gRPC: failure accrual hears the outcome from here, once it is known.
                let grpc = policy.is_grpc();
                let result = client.send(out, grpc).await;
                let lat = sent.elapsed().as_millis() as u64;
                match result {
                    Ok((mut resp, ep)) => {
                        let (mut failure, mut retry) =
                            policy.classify(&method, resp.status(), resp.headers());
                        let mut known = true;
                        if policy.needs_trailers(resp.status(), resp.headers()) {
                            // Read the answer ahead, briefly and boundedly: a unary call's
                            // status is in its trailers.
                            let (parts, b) = resp.into_parts();
                            let (b, trailers) = read_ahead(
                                b,
                                policy.response_buffer,
                                policy.classification_timeout,
                            )
                            .await;
                            resp = Response::from_parts(parts, b);
                            match trailers {
                                Some(t) => {
                                    (failure, retry) = policy.classify_trailers(&method, &t);
                                }
                                None => known = false,
                            }
                        }
                        if grpc && !resp.status().is_server_error() {
                            if known {
                                client.observe(&ep, !failure);
                            } else {
                                // A longer stream: its trailers decide, when they come.
                                let (c, p, m, e) = (
                                    Arc::clone(&client),
                                    Arc::clone(&policy),
                                    method.clone(),
                                    Arc::clone(&ep),
                                );
                                let watched =
                                    resp.body_mut().set_on_end(OnEnd(Box::new(move |end| {
                                        let ok = match end {
                                            Ending::Trailers(t) => !p.classify_trailers(&m, t).0,
                                            Ending::Eos => true,
                                            Ending::Error => false,
                                        };
                                        c.observe(&e, ok);
                                    })));
                                // Not an endpoint body any more: it failed while read ahead.
                                if !watched {
                                    client.observe(&ep, false);
                                }
                            }
                        }
                        client
                            .stats
                            .record(Some(resp.status().as_u16()), lat, !failure);
                        let again = if retryable_req {
                            Some(None)
                        } else {
                            tee.as_ref().and_then(|t| t.replay()).map(Some)
                        };
                        if retry
                            && again.is_some()
                            && retries < MAX_RETRIES_PER_REQUEST
                            && policy.may_retry()
                        {
                            retries += 1;
                            drop(resp);
                            if let Some(Some(b)) = again {
                                body = Some(b);
                            }
                            policy.backoff(retries).await;
                            continue;
                        }
                        policy.per_request.add(retries as u64);
                        return Ok((resp, failure));
                    }
                    Err(e) => {
                        // Connection failures were already requeued by the client; other
                        // errors are not retried (Linkerd's `ClassifiedRetries.Default`),
                        // except an attempt that timed out, when the classifier would retry
                        // a 503 to this request (an endpoint that stopped answering, a cut
                        // link). A broken upload is the client's fault, not the destination's.
                        if !matches!(e, RouteError::BadUpload(_)) {
                            client.stats.record(None, lat, false);
                        }
                        if let RouteError::AttemptTimeout(_) = e {
                            let retry = policy
                                .classify(
                                    &method,
                                    StatusCode::SERVICE_UNAVAILABLE,
                                    &HeaderMap::new(),
                                )
                                .1;
                            if retry
                                && retryable_req
                                && retries < MAX_RETRIES_PER_REQUEST
                                && policy.may_retry()
                            {
                                retries += 1;
                                policy.backoff(retries).await;
                                continue;
                            }
                        }
                        policy.per_request.add(retries as u64);
                        return Err(e);
                    }
                }
            }
        };
        // Pinned where it is: wrapping the future by value would copy it.
        tokio::pin!(attempt_loop);
        let limit = match (policy.total_timeout, grpc_deadline) {
            (Some(t), Some(g)) if g < t => Some((g, true)),
            (Some(t), _) => Some((t, false)),
            (None, g) => g.map(|g| (g, true)),
        };
        let result = match limit {
            Some((t, grpc)) => match tokio::time::timeout(t, attempt_loop.as_mut()).await {
                Ok(r) => r,
                Err(_) if grpc => Err(RouteError::Timeout(format!(
                    "exceeded the call's grpc-timeout ({}) for {}",
                    twitter_duration(t),
                    id.path.show()
                ))),
                Err(_) => Err(RouteError::Timeout(format!(
                    "exceeded {} total timeout for {}",
                    twitter_duration(t),
                    id.path.show()
                ))),
            },
            None => attempt_loop.await,
        };
        let lat = start.elapsed().as_millis() as u64;
        match result {
            Ok((mut resp, failure)) => {
                let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
                if switching && client_upgrade.is_none() {
                    entry.stats.record(None, lat, false);
                    return Err(RouteError::Upstream(
                        "the endpoint switched protocols on a request that asked for no upgrade"
                            .into(),
                    ));
                }
                entry
                    .stats
                    .record(Some(resp.status().as_u16()), lat, !failure);
                if switching {
                    if let Some(on_client) = client_upgrade {
                        // The tunnel keeps a hold on the server's connection count.
                        let endpoint = resp
                            .extensions_mut()
                            .remove::<super::http1::client::ClientUpgrade>()
                            .and_then(|u| u.take());
                        tunnel(on_client, endpoint, Arc::clone(conn));
                    }
                } else {
                    // hyper decoded any chunking; a Content-Length sent beside it is wrong now.
                    if resp.headers().contains_key(http::header::TRANSFER_ENCODING) {
                        resp.headers_mut().remove(http::header::CONTENT_LENGTH);
                    }
                    strip_hop_by_hop(resp.headers_mut());
                    // Answer in the client's HTTP version, whatever the endpoint spoke.
                    *resp.version_mut() = version;
                }
                append_via(resp.headers_mut(), version);
                Ok(resp)
            }
            Err(e) => {
                entry.stats.record(None, lat, false);
                Err(e)
            }
        }
    }

    /// Linkerd's `RichNoBrokersAvailableException` text.
    async fn no_brokers(&self, path: &Path, local: &Dtab) -> RouteError {
        let dtab = self.binder.explain_dtab().concat(local);
        let (tree, _) = self
            .binder
            .interpreter()
            .delegate_settled(&dtab, path, Duration::from_millis(500))
            .await;
        let resolutions = match tree {
            State::Ok(t) => {
                let mut v = Vec::new();
                resolutions(&t, &mut v);
                v
            }
            _ => vec!["unknown".to_string()],
        };
        RouteError::NoBrokers(rich_no_brokers(
            path,
            &resolutions,
            self.binder.base_dtab(),
            local,
        ))
    }
}

fn resolutions(t: &DelegateTree<Bound>, out: &mut Vec<String>) {
    use DelegateTree as D;
    match t {
        D::Leaf { path, value, .. } => out.push(match value.addr.sample() {
            Addr::Bound { .. } => format!("{} (bound)", path.show()),
            Addr::Failed(e) => format!("{} (exception: {e}", path.show()),
            Addr::Neg => format!("{} (neg)", path.show()),
            Addr::Pending => format!("{} (pending)", path.show()),
        }),
        D::Exception { path, message, .. } => {
            out.push(format!("{} (exception: {message}", path.show()))
        }
        D::Empty { path, .. } => out.push(format!("{} (empty)", path.show())),
        D::Fail { path, .. } => out.push(format!("{} (fail)", path.show())),
        D::Neg { path, .. } => out.push(format!("{} (neg)", path.show())),
        D::Delegate { tree, .. } => resolutions(tree, out),
        D::Alt { trees, .. } => trees.iter().for_each(|t| resolutions(t, out)),
        D::Union { trees, .. } => trees.iter().for_each(|(_, t)| resolutions(t, out)),
        D::Transformation { tree, .. } => resolutions(tree, out),
    }
}

fn format_dtab(d: &Dtab) -> String {
    d.dentries
        .iter()
        .map(|e| format!("  {} => {}", e.prefix, e.dst.show()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The message of Linkerd's `RichNoBrokersAvailableException`.
pub fn rich_no_brokers(path: &Path, resolutions: &[String], base: &Dtab, local: &Dtab) -> String {
    let res: Vec<String> = resolutions.iter().map(|r| format!("  {r}")).collect();
    format!(
        "Unable to route request!\n\nservice name: {}\nresolutions considered:\n{}\ndtab:\n{}\nbase dtab:\n{}\noverride dtab:\n{}\n",
        path.show(),
        res.join("\n"),
        format_dtab(&Dtab::empty()),
        format_dtab(base),
        format_dtab(local)
    )
}

/// A duration as Twitter's `Duration.toString` prints it (`10.seconds`, `250.milliseconds`).
pub fn twitter_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}.seconds", ms / 1000)
    } else {
        format!("{ms}.milliseconds")
    }
}

/// gRPC's `grpc-timeout` (RFC: up to 8 digits and a unit, `H M S m u n`); `None` if absent
/// or malformed.
fn grpc_timeout(h: &Option<&HeaderMap>) -> Option<Duration> {
    const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
    let v = h.as_ref()?.get(GRPC_TIMEOUT)?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (n, unit) = v.split_at(v.len() - 1);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn has_body<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    if h.contains_key(http::header::TRANSFER_ENCODING) {
        return true;
    }
    match h.get(http::header::CONTENT_LENGTH) {
        Some(v) => v.as_bytes() != b"0",
        None => false,
    }
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.headers().contains_key(http::header::UPGRADE)
        && req
            .headers()
            .get_all(http::header::CONNECTION)
            .iter()
            .any(|v| {
                v.to_str()
                    .map(|s| {
                        s.split(',')
                            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
                    })
                    .unwrap_or(false)
            })
}

/// The client's side of an upgrade: from the project's HTTP/1 server, or from hyper's (the h2
/// router's HTTP/1.1 fallback).
enum ClientSide {
    H1(super::http1::server::OnUpgrade),
    Hyper(hyper::upgrade::OnUpgrade),
}

impl ClientSide {
    fn of<B>(req: &mut Request<B>) -> ClientSide {
        match req
            .extensions_mut()
            .remove::<super::http1::server::OnUpgrade>()
        {
            Some(u) => ClientSide::H1(u),
            None => ClientSide::Hyper(hyper::upgrade::on(req)),
        }
    }
}

/// Joins the client's and the endpoint's upgraded connections (WebSocket and the like). The
/// tunnel counts as one of the server's open connections until it closes, and closes when the
/// server drains (`conn`).
fn tunnel(
    client: ClientSide,
    endpoint: Option<super::http1::wire::Upgraded>,
    conn: Arc<super::conn::Conn>,
) {
    tokio::spawn(async move {
        tokio::select! {
            _ = splice(client, endpoint) => {}
            _ = conn.drained() => tracing::debug!("server draining; tunnel closed"),
        }
    });
}

/// Copies bytes both ways between the two upgraded connections until either ends.
async fn splice(client: ClientSide, endpoint: Option<super::http1::wire::Upgraded>) {
    let Some(mut b) = endpoint else {
        tracing::debug!("upgrade failed: the endpoint's connection was not handed over");
        return;
    };
    let r = match client {
        ClientSide::H1(u) => match u.upgraded().await {
            Some(mut a) => tokio::io::copy_bidirectional(&mut a, &mut b).await,
            None => return tracing::debug!("upgrade failed: the client connection closed"),
        },
        ClientSide::Hyper(u) => match u.await {
            Ok(a) => {
                let mut a = hyper_util::rt::TokioIo::new(a);
                tokio::io::copy_bidirectional(&mut a, &mut b).await
            }
            Err(e) => return tracing::debug!(error = %e, "upgrade failed"),
        },
    };
    if let Err(e) = r {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
}

/// Counts the comma-separated entries of every `Via` header.
pub fn via_entries(h: &HeaderMap) -> usize {
    h.get_all(http::header::VIA)
        .iter()
        .map(|v| v.as_bytes().split(|b| *b == b',').count())
        .sum()
}

fn append_via(h: &mut HeaderMap, version: http::Version) {
    let token = if version == http::Version::HTTP_10 {
        VIA_TOKEN_10
    } else {
        VIA_TOKEN_11
    };
    // Every Via line counts toward loop detection: keep them all, in order, in one value.
    let prev: Vec<&str> = h
        .get_all(http::header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .collect();
    if prev.is_empty() {
        h.insert(http::header::VIA, HeaderValue::from_static(token));
    } else if let Ok(v) = HeaderValue::from_str(&format!("{}, {token}", prev.join(", "))) {
        h.insert(http::header::VIA, v);
    }
}

/// `l5d-ctx-dtab` then `l5d-dtab`, every value parsed and appended in order.
pub fn local_dtab(h: &HeaderMap) -> Result<Dtab, RouteError> {
    let mut d = Dtab::empty();
    for name in [L5D_CTX_DTAB, L5D_DTAB] {
        for v in h.get_all(&name) {
            let s = v
                .to_str()
                .map_err(|_| RouteError::BadDtab(format!("{name} is not text")))?;
            let parsed = Dtab::read(s).map_err(|e| RouteError::BadDtab(e.to_string()))?;
            d = d.concat(&parsed);
        }
    }
    Ok(d)
}

fn strip_context(h: &mut HeaderMap) {
    let names: Vec<HeaderName> = h
        .keys()
        .filter(|k| {
            let s = k.as_str();
            s.starts_with("l5d-ctx-") || s == L5D_DTAB.as_str() || s == "l5d-sample"
        })
        .cloned()
        .collect();
    for n in names {
        h.remove(n);
    }
}

/// Removes the hop-by-hop, proxy-only and `Connection`-listed headers. One pass finds what is
/// there; a typical message carries none of them, so nothing is hashed or removed.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let mut found: Vec<HeaderName> = Vec::new();
    for k in h.keys() {
        if *k == http::header::CONNECTION {
            for v in h.get_all(http::header::CONNECTION) {
                let Ok(s) = v.to_str() else { continue };
                for t in s.split(',') {
                    if let Ok(n) = HeaderName::from_bytes(t.trim().as_bytes()) {
                        if !guard::protected_from_connection(&n) {
                            found.push(n);
                        }
                    }
                }
            }
            found.push(k.clone());
        } else if HOP_BY_HOP.contains(k) || guard::PROXY_ONLY.contains(k) {
            found.push(k.clone());
        }
    }
    for n in found {
        h.remove(n);
    }
}

fn prepare_request(
    upstream: Protocol,
    parts: &mut http::request::Parts,
    local: &Dtab,
    rewrite_uri: Option<&str>,
    upgrade: bool,
    had_dtab: bool,
) {
    let h = &mut parts.headers;
    if had_dtab {
        h.remove(L5D_DTAB);
        if local.is_empty() {
            h.remove(L5D_CTX_DTAB);
        }
    }
    if !local.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&local.show()) {
            h.insert(L5D_CTX_DTAB, v);
        }
    }
    if upgrade {
        // Keep `Connection: upgrade` and `Upgrade`; drop the rest of the hop-by-hop set.
        for n in &HOP_BY_HOP[1..4] {
            h.remove(n);
        }
    } else if upstream == Protocol::H2 {
        // `TE: trailers` is the one hop-by-hop header HTTP/2 carries (gRPC needs it).
        let trailers = h
            .get(http::header::TE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
        strip_hop_by_hop(h);
        if trailers {
            h.insert(http::header::TE, HeaderValue::from_static("trailers"));
        }
    } else {
        let te = h.get(http::header::TRANSFER_ENCODING).cloned();
        strip_hop_by_hop(h);
        // hyper frames the body itself; keep chunked framing when the client used it.
        if let Some(te) = te {
            h.insert(http::header::TRANSFER_ENCODING, te);
        }
    }
    h.insert(L5D_REQID, request_id());
    append_via(h, parts.version);
    // The client's own target bytes go to HTTP/1 endpoints unless an identifier rewrote it.
    if rewrite_uri.is_some() || upstream == Protocol::H2 {
        parts.extensions.remove::<super::http1::head::RawTarget>();
    }
    if upstream == Protocol::H2 {
        // HTTP/2 to endpoints: the authority goes in `:authority` (from Host), not a header.
        parts.version = http::Version::HTTP_2;
        let host = h.remove(http::header::HOST);
        let pq = forwarded_target(&parts.uri, rewrite_uri);
        let authority = host
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()));
        let mut b = http::Uri::builder().scheme("http").path_and_query(pq);
        if let Some(a) = authority {
            b = b.authority(a);
        }
        if let Ok(u) = b.build() {
            parts.uri = u;
        }
        return;
    }
    // Endpoints are spoken to in HTTP/1.1 (pooled, keep-alive), whatever the client used.
    parts.version = http::Version::HTTP_11;
    // Forward in origin form; an absolute-form URI keeps its authority in Host.
    let pq = forwarded_target(&parts.uri, rewrite_uri);
    if let Some(auth) = parts.uri.authority().cloned() {
        if !h.contains_key(http::header::HOST) {
            if let Ok(v) = HeaderValue::from_str(auth.as_str()) {
                h.insert(http::header::HOST, v);
            }
        }
    }
    if let Ok(u) = pq.parse() {
        parts.uri = u;
    }
}

/// The path and query to forward: an identifier's rewrite, else the request's own.
fn forwarded_target(uri: &http::Uri, rewrite_uri: Option<&str>) -> String {
    match rewrite_uri {
        Some(u) => u.to_string(),
        None => uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into()),
    }
}

/// A random 64-bit request id in hex, formatted without allocating a `String`.
fn request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut v = fastrand::u64(..);
    let mut buf = [0u8; 16];
    for b in buf.iter_mut().rev() {
        *b = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

fn set_dst_headers(h: &mut HeaderMap, service: &HeaderValue, leaf: &RouteLeaf) {
    h.insert(L5D_DST_SERVICE, service.clone());
    h.insert(L5D_DST_CLIENT, leaf.client.header.clone());
    match &leaf.residual_header {
        Some(v) => {
            h.insert(L5D_DST_RESIDUAL, v.clone());
        }
        None => {
            h.remove(L5D_DST_RESIDUAL);
        }
    }
}

fn clone_parts(p: &http::request::Parts) -> http::request::Parts {
    let mut b = Request::builder()
        .method(p.method.clone())
        .uri(p.uri.clone())
        .version(p.version);
    if let Some(h) = b.headers_mut() {
        *h = p.headers.clone();
    }
    let (mut parts, ()) = match b.body(()) {
        Ok(r) => r.into_parts(),
        Err(_) => Request::new(()).into_parts(),
    };
    if let Some(t) = p.extensions.get::<super::http1::head::RawTarget>() {
        parts.extensions.insert(t.clone());
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtab_headers_append_in_order() {
        let mut h = HeaderMap::new();
        h.append(L5D_DTAB, HeaderValue::from_static("/c=>/d"));
        h.append(L5D_CTX_DTAB, HeaderValue::from_static("/a=>/b"));
        h.append(L5D_DTAB, HeaderValue::from_static("/e=>/f"));
        assert_eq!(local_dtab(&h).unwrap().show(), "/a=>/b;/c=>/d;/e=>/f");
        h.insert(L5D_DTAB, HeaderValue::from_static("/x=>"));
        assert!(matches!(local_dtab(&h), Err(RouteError::BadDtab(_))));
    }

    #[test]
    fn grpc_timeouts() {
        let check = |v: &str, want: Option<Duration>| {
            let mut h = HeaderMap::new();
            h.insert("grpc-timeout", HeaderValue::from_str(v).unwrap());
            assert_eq!(grpc_timeout(&Some(&h)), want, "{v}");
        };
        check("100m", Some(Duration::from_millis(100)));
        check("2S", Some(Duration::from_secs(2)));
        check("1H", Some(Duration::from_secs(3600)));
        check("5u", Some(Duration::from_micros(5)));
        check("99999999n", Some(Duration::from_nanos(99_999_999)));
        check("123456789S", None);
        check("10", None);
        check("m", None);
        check("-1S", None);
        assert_eq!(grpc_timeout(&Some(&HeaderMap::new())), None);
    }

    #[test]
    fn via_counts_entries() {
        let mut h = HeaderMap::new();
        assert_eq!(via_entries(&h), 0);
        h.append("via", HeaderValue::from_static("1.1 a, 1.1 b"));
        h.append("via", HeaderValue::from_static("1.1 c"));
        assert_eq!(via_entries(&h), 3);
        append_via(&mut h, http::Version::HTTP_11);
        assert_eq!(h["via"], "1.1 a, 1.1 b, 1.1 c, 1.1 linkerd");
        assert_eq!(via_entries(&h), 4);
    }

    #[test]
    fn rich_message_matches_linkerd() {
        let msg = rich_no_brokers(
            &Path::read("/svc/x").unwrap(),
            &["/#/io.l5d.fs/x (neg)".to_string()],
            &Dtab::read("/svc=>/#/io.l5d.fs").unwrap(),
            &Dtab::empty(),
        );
        assert_eq!(
            msg,
            "Unable to route request!\n\nservice name: /svc/x\nresolutions considered:\n  /#/io.l5d.fs/x (neg)\ndtab:\n\nbase dtab:\n  /svc => /#/io.l5d.fs\noverride dtab:\n\n"
        );
    }
}
