//! Errors of the data path and the responses Linkerd's `ErrorResponder` gives for them
//! (section 1.19): the status, an `l5d-err` header with the URL-encoded message (cut to
//! `maxHeadersKB`), and the message as a text body (cut to `maxErrResponseKB`).

use http::{HeaderValue, Response, StatusCode};

use super::body::RespBody;

/// Why a request could not be routed or answered by an endpoint.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RouteError {
    /// No identifier named the request (`UnknownDst`).
    #[error("Unknown destination: {0}")]
    Unidentified(String),
    #[error("Invalid dtab: {0}")]
    BadDtab(String),
    /// The request line is over `maxInitialLineKB`.
    #[error("request line longer than maxInitialLineKB ({0} KB)")]
    UriTooLong(u32),
    /// The header block is over `maxHeadersKB`.
    #[error("request headers larger than maxHeadersKB ({0} KB)")]
    HeadersTooLarge(u32),
    /// A malformed request head (duplicate Host, bad authority, ...).
    #[error("Bad request: {0}")]
    BadRequest(String),
    /// Binding the request's name (with its local dtab) reached a work limit.
    #[error("{0}")]
    BindLimit(String),
    /// The client's request body broke off or was malformed; not the endpoint's fault.
    #[error("Bad request body: {0}")]
    BadUpload(String),
    #[error("Maximum number of calls ({0}) has been exceeded. Please check for proxy loops.")]
    CallDepth(u32),
    /// The rich "Unable to route request!" text, naming the service and the dtabs.
    #[error("{0}")]
    NoBrokers(String),
    #[error("Exceeded {0} binding timeout while resolving name: {1}")]
    BindingTimeout(String, String),
    /// Naming failed with no good state to fall back on.
    #[error("{0}")]
    NamingFailed(String),
    /// The request never reached the endpoint (connection refused, reset before sending).
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    Timeout(String),
    /// One attempt took longer than `requestAttemptTimeoutMs` (another may be tried).
    #[error("{0}")]
    AttemptTimeout(String),
    /// Anything else between Switchboard and the endpoint.
    #[error("{0}")]
    Upstream(String),
    /// An endpoint's pool is at `maxSize` with `maxWaiters` already waiting.
    #[error("{0}")]
    PoolExhausted(String),
    /// `maxConcurrentRequests` reached.
    #[error("Too many concurrent requests (maxConcurrentRequests {0})")]
    Overloaded(u32),
}

/// Linkerd's `l5d-err` header.
pub const L5D_ERR: http::HeaderName = http::HeaderName::from_static("l5d-err");
/// Marks a failure that is safe to retry (the request never reached the destination).
pub const L5D_RETRYABLE: http::HeaderName = http::HeaderName::from_static("l5d-retryable");
/// Default `maxHeadersKB` of an http router.
pub const DEFAULT_MAX_HEADERS_KB: u32 = 8;
/// Default `maxErrResponseKB` of an http router.
pub const DEFAULT_MAX_ERR_RESPONSE_KB: u32 = 5120;

impl RouteError {
    pub fn status(&self) -> StatusCode {
        match self {
            RouteError::Unidentified(_)
            | RouteError::BadDtab(_)
            | RouteError::CallDepth(_)
            | RouteError::BadRequest(_)
            | RouteError::BindLimit(_)
            | RouteError::BadUpload(_) => StatusCode::BAD_REQUEST,
            RouteError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            RouteError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            RouteError::Timeout(_) | RouteError::AttemptTimeout(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            RouteError::Overloaded(_) | RouteError::PoolExhausted(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            RouteError::NoBrokers(_)
            | RouteError::BindingTimeout(..)
            | RouteError::NamingFailed(_)
            | RouteError::Connect(_)
            | RouteError::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// Whether the request is known not to have reached an endpoint.
    pub fn retryable(&self) -> bool {
        matches!(self, RouteError::Connect(_))
    }

    pub fn response(&self, max_headers_kb: u32, max_err_kb: u32) -> Response<RespBody> {
        let msg = self.to_string();
        let mut body = msg.clone();
        truncate(&mut body, max_err_kb as usize * 1024);
        let mut r = Response::new(RespBody::text(body));
        *r.status_mut() = self.status();
        let h = r.headers_mut();
        set_l5d_err(h, &msg, max_headers_kb);
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self.retryable() {
            h.insert(L5D_RETRYABLE, HeaderValue::from_static("true"));
        }
        r
    }
}

/// gRPC status codes Switchboard answers with.
pub mod grpc {
    pub const INVALID_ARGUMENT: u16 = 3;
    pub const DEADLINE_EXCEEDED: u16 = 4;
    pub const RESOURCE_EXHAUSTED: u16 = 8;
    pub const INTERNAL: u16 = 13;
    pub const UNAVAILABLE: u16 = 14;
}

pub const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
pub const GRPC_MESSAGE: http::HeaderName = http::HeaderName::from_static("grpc-message");

impl RouteError {
    /// The gRPC status of this error on a gRPC call.
    pub fn grpc_status(&self) -> u16 {
        match self {
            RouteError::Unidentified(_)
            | RouteError::BadDtab(_)
            | RouteError::CallDepth(_)
            | RouteError::BadRequest(_)
            | RouteError::BindLimit(_)
            | RouteError::UriTooLong(_)
            | RouteError::HeadersTooLarge(_) => grpc::INVALID_ARGUMENT,
            RouteError::BadUpload(_) => grpc::INTERNAL,
            RouteError::Timeout(_) | RouteError::AttemptTimeout(_) => grpc::DEADLINE_EXCEEDED,
            RouteError::Overloaded(_) | RouteError::PoolExhausted(_) => grpc::RESOURCE_EXHAUSTED,
            RouteError::NoBrokers(_)
            | RouteError::BindingTimeout(..)
            | RouteError::NamingFailed(_)
            | RouteError::Connect(_)
            | RouteError::Upstream(_) => grpc::UNAVAILABLE,
        }
    }

    /// The error as a gRPC call's answer: HTTP 200, trailers-only (`grpc-status`,
    /// `grpc-message` percent-encoded and cut to `maxHeadersKB`), and `l5d-err`.
    pub fn grpc_response(&self, max_headers_kb: u32) -> Response<RespBody> {
        let msg = self.to_string();
        let mut gm = grpc_encode(&msg);
        truncate(&mut gm, max_headers_kb as usize * 1024);
        let mut r = Response::new(RespBody::empty());
        let h = r.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert(GRPC_STATUS, HeaderValue::from(self.grpc_status()));
        if let Ok(v) = HeaderValue::from_str(&gm) {
            h.insert(GRPC_MESSAGE, v);
        }
        set_l5d_err(h, &msg, max_headers_kb);
        r
    }
}

/// `l5d-err`: the message URL-encoded, cut to `maxHeadersKB`.
fn set_l5d_err(h: &mut http::HeaderMap, msg: &str, max_headers_kb: u32) {
    let mut enc = urlencode(msg);
    truncate(&mut enc, max_headers_kb as usize * 1024);
    if let Ok(v) = HeaderValue::from_str(&enc) {
        h.insert(L5D_ERR, v);
    }
}

/// gRPC's `grpc-message` encoding: bytes outside printable ASCII, and `%`, percent-encoded.
fn grpc_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut i = max;
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        s.truncate(i);
    }
}

/// `application/x-www-form-urlencoded` encoding, as Java's `URLEncoder` produces.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_headers() {
        let check = |e: RouteError, status: u16, err: &str| {
            let r = e.response(8, 5120);
            assert_eq!(r.status().as_u16(), status, "{e:?}");
            assert_eq!(r.headers()[L5D_ERR].to_str().unwrap(), err, "{e:?}");
        };
        check(
            RouteError::Unidentified("no host".into()),
            400,
            "Unknown+destination%3A+no+host",
        );
        check(
            RouteError::CallDepth(10),
            400,
            "Maximum+number+of+calls+%2810%29+has+been+exceeded.+Please+check+for+proxy+loops.",
        );
        check(RouteError::Timeout("timeout".into()), 503, "timeout");
        check(RouteError::Connect("refused".into()), 502, "refused");
        assert_eq!(
            RouteError::Connect("x".into()).response(8, 1).headers()[L5D_RETRYABLE],
            "true"
        );
        let g = RouteError::Timeout("late\n100%".into()).grpc_response(8);
        assert_eq!(g.status(), 200);
        assert_eq!(g.headers()[GRPC_STATUS], "4");
        assert_eq!(g.headers()[GRPC_MESSAGE], "late%0A100%25");
        assert_eq!(
            RouteError::NoBrokers("x".into()).grpc_response(8).headers()[GRPC_STATUS],
            "14"
        );
        let long = RouteError::Upstream("x".repeat(5000));
        assert_eq!(long.response(1, 5120).headers()[L5D_ERR].len(), 1024);
    }
}
