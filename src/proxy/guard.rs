//! Checks and normalisations of a request head before it is identified and routed, as a
//! careful reverse proxy makes them (RFC 9110, RFC 9112): the request line and header block
//! within `maxInitialLineKB` and `maxHeadersKB` (414, 431), the local dtab headers within their
//! size and dentry caps, exactly one `Host`, an absolute-form target's authority replacing
//! `Host`, upgrades other than WebSocket dropped (so `h2c` cannot tunnel past routing), and the
//! proxy-only headers (`Proxy-Authorization`, `Proxy-Connection`) removed. It reads and edits
//! the head only; it does not touch bodies, route, or know the endpoint.

use http::header::{self, HeaderName, HeaderValue};
use http::HeaderMap;

use super::error::RouteError;

/// The request's local dtab headers (Linkerd's names); the guard counts their bytes.
pub const L5D_DTAB: HeaderName = HeaderName::from_static("l5d-dtab");
pub const L5D_CTX_DTAB: HeaderName = HeaderName::from_static("l5d-ctx-dtab");

/// Default `maxInitialLineKB` of an http router (Linkerd's default).
pub const DEFAULT_MAX_INITIAL_LINE_KB: u32 = 4;
/// Default cap on the bytes of all `l5d-dtab` and `l5d-ctx-dtab` values of one request.
pub const DEFAULT_MAX_LOCAL_DTAB_BYTES: usize = 4096;
/// Default cap on the dentries of one request's local dtab.
pub const DEFAULT_MAX_LOCAL_DENTRIES: usize = 64;

/// The size limits of one router's requests.
#[derive(Clone, Copy, Debug)]
pub struct RequestLimits {
    pub max_initial_line_kb: u32,
    pub max_headers_kb: u32,
    pub max_local_dtab_bytes: usize,
    pub max_local_dentries: usize,
    /// A request body with no data for this long fails (400, the client's fault).
    pub body_read_timeout: Option<std::time::Duration>,
}

/// Default `bodyReadTimeoutMs`: the longest pause allowed inside a request body.
pub const DEFAULT_BODY_READ_TIMEOUT_MS: u64 = 30_000;

impl RequestLimits {
    /// The limits an `http` router's config sets, defaults for the rest.
    pub fn from_config(c: &crate::config::model::HttpRouterConfig) -> RequestLimits {
        let d = RequestLimits::default();
        RequestLimits {
            max_headers_kb: c.max_headers_kb.unwrap_or(d.max_headers_kb),
            max_initial_line_kb: c.max_initial_line_kb.unwrap_or(d.max_initial_line_kb),
            body_read_timeout: match c.body_read_timeout_ms {
                Some(0) => None,
                Some(ms) => Some(std::time::Duration::from_millis(ms)),
                None => d.body_read_timeout,
            },
            ..d
        }
    }
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_initial_line_kb: DEFAULT_MAX_INITIAL_LINE_KB,
            max_headers_kb: super::error::DEFAULT_MAX_HEADERS_KB,
            max_local_dtab_bytes: DEFAULT_MAX_LOCAL_DTAB_BYTES,
            max_local_dentries: DEFAULT_MAX_LOCAL_DENTRIES,
            body_read_timeout: Some(std::time::Duration::from_millis(
                DEFAULT_BODY_READ_TIMEOUT_MS,
            )),
        }
    }
}

/// Upgrades a client may ask for; any other `Upgrade` (notably `h2c`) is dropped and the
/// request served as plain HTTP/1.1, as RFC 9110 section 7.8 allows a server to do.
const ALLOWED_UPGRADES: [&str; 1] = ["websocket"];

/// Headers meant for the proxy itself, never forwarded (RFC 9110 sections 11.7.1 and 11.7.2).
pub const PROXY_ONLY: [HeaderName; 3] = [
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    HeaderName::from_static("proxy-connection"),
];

/// What `check` saw of a head, for the router to use without looking again.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    /// Bytes of all `l5d-dtab` and `l5d-ctx-dtab` values (0: none present).
    pub dtab_bytes: usize,
}

/// Checks sizes and Host, and normalises the head in place, in one pass over the headers (no
/// header is hashed or removed unless it is there). `Err` is the client's fault.
pub fn check(parts: &mut http::request::Parts, limits: &RequestLimits) -> Result<Seen, RouteError> {
    // method SP target SP HTTP/x.y
    let line = parts.method.as_str().len() + 1 + target_len(&parts.uri) + 9;
    if line > limits.max_initial_line_kb as usize * 1024 {
        return Err(RouteError::UriTooLong(limits.max_initial_line_kb));
    }
    let (mut bytes, mut hosts, mut dtab_bytes) = (0usize, 0usize, 0usize);
    let (mut proxy_only, mut upgrade) = (false, false);
    for (n, v) in parts.headers.iter() {
        // name ": " value CRLF, as on the wire.
        bytes += n.as_str().len() + v.len() + 4;
        if *n == header::HOST {
            hosts += 1;
        } else if *n == L5D_DTAB || *n == L5D_CTX_DTAB {
            dtab_bytes += v.len();
        } else if *n == header::UPGRADE {
            upgrade = true;
        } else if PROXY_ONLY.contains(n) {
            proxy_only = true;
        }
    }
    if bytes > limits.max_headers_kb as usize * 1024 {
        return Err(RouteError::HeadersTooLarge(limits.max_headers_kb));
    }
    if hosts > 1 {
        return Err(RouteError::BadRequest("more than one Host header".into()));
    }
    // RFC 9112 section 3.2.2: an absolute-form target's authority replaces Host.
    if let Some(auth) = parts.uri.authority() {
        // Host is the authority without any userinfo (RFC 9112 3.2.2, RFC 9110 7.2).
        let host = match auth.port_u16() {
            Some(p) => format!("{}:{p}", auth.host()),
            None => auth.host().to_string(),
        };
        let v = HeaderValue::from_str(&host).map_err(|_| {
            RouteError::BadRequest("invalid authority in the request target".into())
        })?;
        parts.headers.insert(header::HOST, v);
    }
    if proxy_only {
        for n in &PROXY_ONLY {
            parts.headers.remove(n);
        }
    }
    if upgrade {
        drop_unknown_upgrade(&mut parts.headers);
    }
    Ok(Seen { dtab_bytes })
}

/// The error for a local dtab over `max_local_dtab_bytes`.
pub fn dtab_too_large(bytes: usize, limits: &RequestLimits) -> RouteError {
    RouteError::BadDtab(format!(
        "l5d-dtab and l5d-ctx-dtab hold {bytes} bytes; the limit is {}",
        limits.max_local_dtab_bytes
    ))
}

fn target_len(u: &http::Uri) -> usize {
    // The authority and scheme count when the client sent absolute form.
    let pq = u.path_and_query().map(|p| p.as_str().len()).unwrap_or(1);
    match (u.scheme_str(), u.authority()) {
        (Some(s), Some(a)) => s.len() + 3 + a.as_str().len() + pq,
        (None, Some(a)) => a.as_str().len(),
        _ => pq,
    }
}

/// Removes `Upgrade` (and its `Connection` token and `HTTP2-Settings`) unless it asks only for
/// an allowed protocol.
fn drop_unknown_upgrade(h: &mut HeaderMap) {
    let Some(up) = h.get(header::UPGRADE) else {
        return;
    };
    let allowed = up.to_str().is_ok_and(|s| {
        s.split(',').all(|p| {
            let name = p.trim().split('/').next().unwrap_or("");
            ALLOWED_UPGRADES
                .iter()
                .any(|a| a.eq_ignore_ascii_case(name))
        })
    });
    if allowed && h.get_all(header::UPGRADE).iter().count() == 1 {
        return;
    }
    h.remove(header::UPGRADE);
    h.remove(HeaderName::from_static("http2-settings"));
    let kept: Vec<String> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|t| {
            !t.is_empty()
                && !t.eq_ignore_ascii_case("upgrade")
                && !t.eq_ignore_ascii_case("http2-settings")
        })
        .map(String::from)
        .collect();
    h.remove(header::CONNECTION);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&kept.join(", ")) {
            h.insert(header::CONNECTION, v);
        }
    }
}

/// Headers that a `Connection` token must never remove: the destination and the framing.
pub fn protected_from_connection(n: &HeaderName) -> bool {
    n == header::HOST || n == header::CONTENT_LENGTH || n == header::TRANSFER_ENCODING
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(target: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().uri(target);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    /// (target, headers) → Ok(headers after, name: value sorted) or Err(status)
    fn check_row(target: &str, headers: &[(&str, &str)], want: Result<&[(&str, &str)], u16>) {
        let mut p = parts(target, headers);
        let limits = RequestLimits {
            max_initial_line_kb: 1,
            max_headers_kb: 1,
            ..Default::default()
        };
        let got = check(&mut p, &limits).map(|_| {
            let mut v: Vec<(String, String)> = p
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
                .collect();
            v.sort();
            v
        });
        match (got, want) {
            (Ok(got), Ok(w)) => {
                let w: Vec<(String, String)> = w
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect();
                assert_eq!(got, w, "{target} {headers:?}");
            }
            (Err(e), Err(s)) => assert_eq!(e.status().as_u16(), s, "{target} {headers:?}: {e}"),
            (got, w) => panic!("{target} {headers:?}: got {got:?}, want {w:?}"),
        }
    }

    #[test]
    fn rows() {
        let long = format!("/{}", "a".repeat(1100));
        let big = "v".repeat(1100);
        check_row("/", &[("host", "web")], Ok(&[("host", "web")]));
        check_row(&long, &[("host", "web")], Err(414));
        check_row("/", &[("host", "web"), ("x-big", &big)], Err(431));
        check_row("/", &[("host", "web"), ("host", "api")], Err(400));
        // Absolute form: the authority wins over Host.
        check_row("http://web/", &[("host", "api")], Ok(&[("host", "web")]));
        check_row("http://web:8080/x", &[], Ok(&[("host", "web:8080")]));
        // Userinfo never reaches Host.
        check_row(
            "http://user:pw@web/",
            &[("host", "api")],
            Ok(&[("host", "web")]),
        );
        // Proxy-only headers never cross.
        check_row(
            "/",
            &[
                ("host", "web"),
                ("proxy-authorization", "Basic eA=="),
                ("proxy-connection", "x"),
            ],
            Ok(&[("host", "web")]),
        );
        // h2c: dropped with its settings and its Connection tokens; keep-alive stays.
        check_row(
            "/",
            &[
                ("host", "web"),
                ("upgrade", "h2c"),
                ("http2-settings", "AAMAAABkAAQAAP__"),
                ("connection", "Upgrade, HTTP2-Settings, keep-alive"),
            ],
            Ok(&[("connection", "keep-alive"), ("host", "web")]),
        );
        check_row(
            "/",
            &[
                ("host", "web"),
                ("upgrade", "websocket, h2c"),
                ("connection", "upgrade"),
            ],
            Ok(&[("host", "web")]),
        );
        // WebSocket stays.
        check_row(
            "/",
            &[
                ("host", "web"),
                ("upgrade", "websocket"),
                ("connection", "Upgrade"),
            ],
            Ok(&[
                ("connection", "Upgrade"),
                ("host", "web"),
                ("upgrade", "websocket"),
            ]),
        );
    }

    #[test]
    fn local_dtab_bytes_are_counted() {
        let mut p = parts(
            "/",
            &[
                ("host", "web"),
                ("l5d-dtab", "/a=>/b"),
                ("l5d-ctx-dtab", "/c=>/d"),
            ],
        );
        let seen = check(&mut p, &RequestLimits::default()).unwrap();
        assert_eq!(seen.dtab_bytes, 12);
        let mut p = parts("/", &[("host", "web")]);
        assert_eq!(
            check(&mut p, &RequestLimits::default()).unwrap().dtab_bytes,
            0
        );
        assert_eq!(
            dtab_too_large(5000, &RequestLimits::default()).status(),
            400
        );
    }
}
