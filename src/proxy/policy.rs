//! Request policy of a logical name (a service): its total timeout, retries within Finagle's
//! retry budget with backoff, and response classification (is a response a failure, may it be
//! retried). It decides; it sends nothing: the router runs the attempts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderMap, Method, StatusCode};
use switchboard_namer_core::rewrite::PathMatcher;
use switchboard_namer_core::Path;

use super::balancer::Backoff;
use crate::config::model::{PerPrefix, ServiceParams, DEFAULT_RETRY_BUFFER_BYTES};
use crate::config::plugins::ResponseClassifierKind;
use crate::metrics::{Counter, Histogram, RequestStats};

/// `l5d-retryable: true` on a response marks it retryable, whatever the classifier.
pub const L5D_RETRYABLE: http::HeaderName = http::HeaderName::from_static("l5d-retryable");

/// Per-logical-name policies.
pub struct ServicePolicy {
    pub(crate) total_timeout: Option<Duration>,
    classifier: ResponseClassifierKind,
    budget: RetryBudget,
    backoff: Backoff,
    retries_total: Counter,
    budget_exhausted: Counter,
    pub(crate) per_request: Arc<Histogram>,
    /// How long an h2 response is read ahead, to classify it by its trailers.
    pub(crate) classification_timeout: Duration,
    /// h2: bytes of a request kept to send it again, and of a response read ahead.
    pub(crate) request_buffer: u64,
    pub(crate) response_buffer: u64,
}

/// Default `classificationTimeoutMs` of an h2 service (Linkerd's).
pub const DEFAULT_CLASSIFICATION_TIMEOUT_MS: u64 = 100;

/// Finagle's retry budget: each request deposits `percentCanRetry` of a retry, and a reserve
/// of `minRetriesPerSec` over `ttlSecs` is always allowed.
struct RetryBudget {
    percent: f64,
    min_per_sec: f64,
    ttl: Duration,
    state: Mutex<(f64, Instant)>,
}

impl RetryBudget {
    fn reserve(&self) -> f64 {
        self.min_per_sec * self.ttl.as_secs_f64()
    }

    fn new(percent: f64, min_per_sec: f64, ttl: Duration) -> RetryBudget {
        let b = RetryBudget {
            percent,
            min_per_sec,
            ttl,
            state: Mutex::new((0.0, Instant::now())),
        };
        // Starts with the reserve, so a fresh service can retry at `minRetriesPerSec`.
        b.state.lock().unwrap_or_else(|p| p.into_inner()).0 = b.reserve();
        b
    }

    fn deposit(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // Deposits cover at most one ttl's worth of a 1000 rps service.
        let cap = self.reserve() + self.percent * 1000.0 * self.ttl.as_secs_f64();
        s.0 = (s.0 + self.percent).min(cap.max(1.0));
    }

    fn try_withdraw(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = s.1.elapsed().as_secs_f64();
        s.1 = Instant::now();
        let reserve = self.reserve();
        if s.0 < reserve {
            s.0 = (s.0 + self.min_per_sec * elapsed).min(reserve);
        }
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

pub fn service_params(cfg: &PerPrefix<ServiceParams>, path: &Path) -> ServiceParams {
    match cfg {
        PerPrefix::Global(p) => p.clone(),
        PerPrefix::Static(list) => {
            let mut out = ServiceParams::default();
            for (prefix, p) in list {
                let hit = PathMatcher::new(prefix)
                    .ok()
                    .and_then(|m| m.extract(path))
                    .is_some();
                if hit {
                    if p.total_timeout_ms.is_some() {
                        out.total_timeout_ms = p.total_timeout_ms;
                    }
                    if p.retries.is_some() {
                        out.retries = p.retries.clone();
                    }
                    if p.response_classifier.is_some() {
                        out.response_classifier = p.response_classifier.clone();
                    }
                    if p.classification_timeout_ms.is_some() {
                        out.classification_timeout_ms = p.classification_timeout_ms;
                    }
                    if p.retry_buffer_size.is_some() {
                        out.retry_buffer_size = p.retry_buffer_size.clone();
                    }
                }
            }
            out
        }
    }
}

/// A cap on retries of one request, beyond Linkerd (which retries while the budget lasts), so a
/// persistently failing service cannot spend the whole reserve on one request.
pub const MAX_RETRIES_PER_REQUEST: u32 = 25;

/// Default retry budget parameters (Linkerd's).
const DEFAULT_MIN_RETRIES_PER_SEC: f64 = 10.0;
const DEFAULT_PERCENT_CAN_RETRY: f64 = 0.2;
const DEFAULT_BUDGET_TTL_SECS: u64 = 10;

impl ServicePolicy {
    pub fn new(
        p: &ServiceParams,
        stats: &RequestStats,
        default_total: Option<Duration>,
    ) -> ServicePolicy {
        let classifier = p
            .response_classifier
            .as_ref()
            .map(|c| c.value)
            .unwrap_or(ResponseClassifierKind::NonRetryable5XX);
        let b = p
            .retries
            .as_ref()
            .and_then(|r| r.budget.clone())
            .unwrap_or_default();
        let budget = RetryBudget::new(
            b.percent_can_retry.unwrap_or(DEFAULT_PERCENT_CAN_RETRY),
            b.min_retries_per_sec
                .map(f64::from)
                .unwrap_or(DEFAULT_MIN_RETRIES_PER_SEC),
            Duration::from_secs(b.ttl_secs.unwrap_or(DEFAULT_BUDGET_TTL_SECS)),
        );
        let backoff = match p
            .retries
            .as_ref()
            .and_then(|r| r.backoff.as_ref())
            .map(|b| &b.value)
        {
            None => Backoff::Constant(0),
            Some(crate::config::plugins::BackoffKind::Constant { ms }) => Backoff::Constant(*ms),
            Some(crate::config::plugins::BackoffKind::Jittered { min_ms, max_ms }) => {
                Backoff::Jittered {
                    min_ms: *min_ms,
                    max_ms: *max_ms,
                }
            }
        };
        let r = stats.scope().scope("retries");
        ServicePolicy {
            total_timeout: p
                .total_timeout_ms
                .map(Duration::from_millis)
                .or(default_total),
            classifier,
            budget,
            backoff,
            retries_total: r.counter("total"),
            budget_exhausted: r.counter("budget_exhausted"),
            per_request: r.histogram("per_request"),
            classification_timeout: Duration::from_millis(
                p.classification_timeout_ms
                    .unwrap_or(DEFAULT_CLASSIFICATION_TIMEOUT_MS),
            ),
            request_buffer: p
                .retry_buffer_size
                .as_ref()
                .and_then(|b| b.request_bytes)
                .unwrap_or(DEFAULT_RETRY_BUFFER_BYTES),
            response_buffer: p
                .retry_buffer_size
                .as_ref()
                .and_then(|b| b.response_bytes)
                .unwrap_or(DEFAULT_RETRY_BUFFER_BYTES),
        }
    }

    /// Whether responses are classified by gRPC status (which may come in trailers).
    pub fn is_grpc(&self) -> bool {
        matches!(self.classifier, ResponseClassifierKind::Grpc { .. })
    }

    /// Whether this response's outcome is in trailers still to come: a gRPC classifier and
    /// a 200 without `grpc-status` in its head.
    pub fn needs_trailers(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        matches!(self.classifier, ResponseClassifierKind::Grpc { .. })
            && status == StatusCode::OK
            && !headers.contains_key(super::error::GRPC_STATUS)
    }

    /// Classifies a gRPC response by its trailers (`grpc-status` there, else success).
    pub fn classify_trailers(&self, method: &Method, trailers: &HeaderMap) -> (bool, bool) {
        self.classify(method, StatusCode::OK, trailers)
    }

    /// Whether a response is a failure, and whether it may be retried.
    pub fn classify(
        &self,
        method: &Method,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> (bool, bool) {
        use ResponseClassifierKind as R;
        let is_5xx = status.is_server_error();
        let failure = match self.classifier {
            R::AllSuccessful => false,
            _ => is_5xx,
        };
        let read = matches!(
            *method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        );
        let idempotent = read || matches!(*method, Method::PUT | Method::DELETE);
        if let R::Grpc {
            success,
            retryable,
            http_retryable,
        } = self.classifier
        {
            // A status in the head: a trailers-only answer (how gRPC servers fail a call
            // before any message). A status in the trailers is not seen here.
            let code = headers
                .get(super::error::GRPC_STATUS)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u32>().ok());
            let (failure, retry) = match code {
                Some(0) => (false, false),
                Some(c) if c < 128 && success & (1 << c) != 0 => (false, false),
                Some(c) => (true, c < 128 && retryable & (1 << c) != 0),
                None if status == StatusCode::OK => (false, false),
                None => (
                    true,
                    http_retryable && matches!(status.as_u16(), 429 | 502 | 503 | 504),
                ),
            };
            return (failure, retry);
        }
        let by_kind = is_5xx
            && match self.classifier {
                R::NonRetryable5XX | R::AllSuccessful => false,
                R::RetryableRead5XX => read,
                R::RetryableIdempotent5XX => idempotent,
                R::RetryableAll5XX => true,
                R::Grpc { .. } => false,
            };
        let by_header = headers
            .get(L5D_RETRYABLE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        (failure, failure && (by_kind || by_header))
    }

    /// Each request deposits its share of a retry.
    pub fn deposit(&self) {
        self.budget.deposit();
    }

    /// Takes a retry from the budget (counted in `retries/total`), or counts
    /// `retries/budget_exhausted`.
    pub fn may_retry(&self) -> bool {
        if self.budget.try_withdraw() {
            self.retries_total.incr();
            true
        } else {
            self.budget_exhausted.incr();
            false
        }
    }

    /// Waits before retry `n` (from 1).
    pub async fn backoff(&self, n: u32) {
        let ms = self.backoff.nth_ms(n.saturating_sub(1));
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}
