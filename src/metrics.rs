//! Metrics: counters, gauges and latency histograms recorded with atomics (no lock on the
//! request path), registered under a tree of names (`rt/<router>/service/<svc>/requests`), and
//! rendered as Linkerd 1 renders them: the flat `/admin/metrics.json`, its `?tree=1` form, and
//! the Prometheus text of the `io.l5d.prometheus` telemeter (section 1.22). Registration takes a
//! lock and happens when a router, client or service scope is first used; recording never does.
//!
//! Histograms are cumulative since start (Linkerd snapshots them every minute); percentiles come
//! from log-linear buckets with under 1.6% relative error.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Map, Value};

/// Longest metric label made from a name a client chose (a service or client id); longer ones
/// are cut and suffixed with a hash of the whole, so they stay distinct but bounded.
pub const MAX_LABEL_BYTES: usize = 256;

/// A metric label for `name`, at most `MAX_LABEL_BYTES` (plus a 17-byte hash suffix) long.
pub fn label(name: &str) -> String {
    if name.len() <= MAX_LABEL_BYTES {
        return name.to_string();
    }
    let mut cut = MAX_LABEL_BYTES;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    // FNV-1a: stable across runs, so a name keeps its label.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    format!("{}#{h:016x}", &name[..cut])
}

/// A monotonically increasing count.
#[derive(Clone, Default, Debug)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn incr(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Default, Debug)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Relaxed);
    }
    pub fn add(&self, d: i64) {
        self.0.fetch_add(d, Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// Holds one unit of a gauge while alive (an open connection, say): added on creation, taken
/// away on drop, so every holder, however it ends, gives it back exactly once.
#[derive(Debug)]
pub struct GaugeHold(Gauge);

impl GaugeHold {
    pub fn new(g: &Gauge) -> GaugeHold {
        g.add(1);
        GaugeHold(g.clone())
    }
}

impl Drop for GaugeHold {
    fn drop(&mut self) {
        self.0.add(-1);
    }
}

/// Sub-buckets per power of two above the exact range.
const SUB: u64 = 64;
/// Values below this are counted exactly.
const EXACT: u64 = 2 * SUB;
/// Powers of two covered above `EXACT` (values up to 2^(7+50)).
const POWERS: usize = 50;
const BUCKETS: usize = EXACT as usize + POWERS * SUB as usize;

/// A lock-free histogram of non-negative integers (milliseconds, for latencies). The exact
/// range is allocated up front (1 KB); each power of two above it gets its 64 buckets when a
/// value first lands there, so a histogram costs about 2.5 KB until it sees long latencies
/// (a service name a client made up costs that, not the 26 KB of the full range).
#[derive(Debug)]
pub struct Histogram {
    exact: Box<[AtomicU64]>,
    powers: Box<[OnceLock<Box<[AtomicU64]>>]>,
    count: AtomicU64,
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
}

fn zeroes(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            exact: zeroes(EXACT as usize),
            powers: (0..POWERS).map(|_| OnceLock::new()).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// The count in bucket `i` (0 for a power never reached).
    fn bucket(&self, i: usize) -> u64 {
        if i < EXACT as usize {
            return self.exact[i].load(Relaxed);
        }
        let j = i - EXACT as usize;
        self.powers[j / SUB as usize]
            .get()
            .map_or(0, |p| p[j % SUB as usize].load(Relaxed))
    }
}

fn bucket_of(v: u64) -> usize {
    if v < EXACT {
        return v as usize;
    }
    let log = 63 - v.leading_zeros() as u64; // >= 7
    let shift = log - 6; // keep 7 significant bits: 64..127
    let sub = (v >> shift) - SUB;
    let i = EXACT + (log - 7) * SUB + sub;
    (i as usize).min(BUCKETS - 1)
}

/// The smallest value that falls in bucket `i`.
fn bucket_low(i: usize) -> u64 {
    let i = i as u64;
    if i < EXACT {
        return i;
    }
    let log = (i - EXACT) / SUB + 7;
    let sub = (i - EXACT) % SUB;
    (SUB + sub) << (log - 6)
}

/// Summary statistics of a histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub sum: u64,
    pub min: u64,
    pub max: u64,
    pub avg: f64,
    /// p50, p90, p95, p99, p99.9, p99.99.
    pub percentiles: [u64; 6],
}

/// The percentiles reported, as Linkerd names them in metrics.json.
pub const PERCENTILE_NAMES: [&str; 6] = ["p50", "p90", "p95", "p99", "p9990", "p9999"];
const PERCENTILES: [f64; 6] = [0.5, 0.9, 0.95, 0.99, 0.999, 0.9999];

impl Histogram {
    pub fn add(&self, v: u64) {
        let i = bucket_of(v);
        if i < EXACT as usize {
            self.exact[i].fetch_add(1, Relaxed);
        } else {
            let j = i - EXACT as usize;
            self.powers[j / SUB as usize].get_or_init(|| zeroes(SUB as usize))[j % SUB as usize]
                .fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum.fetch_add(v, Relaxed);
        self.min.fetch_min(v, Relaxed);
        self.max.fetch_max(v, Relaxed);
    }

    pub fn summary(&self) -> Summary {
        let counts: Vec<u64> = (0..BUCKETS).map(|i| self.bucket(i)).collect();
        let count: u64 = counts.iter().sum();
        let (min, max) = (self.min.load(Relaxed), self.max.load(Relaxed));
        let sum = self.sum.load(Relaxed);
        let mut percentiles = [0u64; 6];
        if count > 0 {
            for (slot, q) in percentiles.iter_mut().zip(PERCENTILES) {
                let rank = ((q * count as f64).ceil() as u64).max(1);
                let mut seen = 0;
                for (i, c) in counts.iter().enumerate() {
                    seen += c;
                    if seen >= rank {
                        *slot = bucket_low(i).clamp(min, max);
                        break;
                    }
                }
            }
        }
        Summary {
            count,
            sum,
            min: if count == 0 { 0 } else { min },
            max,
            avg: if count == 0 {
                0.0
            } else {
                sum as f64 / count as f64
            },
            percentiles,
        }
    }
}

/// One registered metric.
#[derive(Clone)]
enum Metric {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Arc<Histogram>),
}

/// The registry of every metric, by its name's segments.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<BTreeMap<Vec<String>, Metric>>>,
}

/// A place in the metrics tree, e.g. `rt/http/client/#/io.l5d.fs/web`.
#[derive(Clone)]
pub struct Scope {
    metrics: Metrics,
    path: Vec<String>,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    pub fn scope(&self, name: &str) -> Scope {
        Scope {
            metrics: self.clone(),
            path: vec![name.to_string()],
        }
    }

    fn get_or_insert(&self, path: Vec<String>, make: impl FnOnce() -> Metric) -> Metric {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(path).or_insert_with(make).clone()
    }

    /// Drops every metric under `prefix` (an expired client or service scope).
    pub fn remove_prefix(&self, prefix: &[String]) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Keys under a prefix sort together, right from the prefix itself.
        let doomed: Vec<Vec<String>> = m
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            m.remove(&k);
        }
    }

    fn snapshot(&self) -> Vec<(Vec<String>, Metric)> {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// `/admin/metrics.json`: flat keys joined with `/`.
    pub fn flat_json(&self) -> Value {
        let mut out = Map::new();
        for (k, m) in self.snapshot() {
            let key = k.join("/");
            match m {
                Metric::Counter(c) => {
                    out.insert(key, json!(c.get()));
                }
                Metric::Gauge(g) => {
                    out.insert(key, json!(g.get()));
                }
                Metric::Histogram(h) => {
                    for (stat, v) in histogram_stats(&h.summary()) {
                        out.insert(format!("{key}.{stat}"), v);
                    }
                }
            }
        }
        Value::Object(out)
    }

    /// `/admin/metrics.json?tree=1`: nested by name segment.
    pub fn tree_json(&self) -> Value {
        let mut root = Map::new();
        for (k, m) in self.snapshot() {
            let mut node = &mut root;
            for seg in &k[..k.len() - 1] {
                let child = node
                    .entry(seg.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !child.is_object() {
                    *child = json!({ "": child.clone() });
                }
                let Value::Object(c) = child else {
                    unreachable!("made an object just above")
                };
                node = c;
            }
            let leaf = k[k.len() - 1].clone();
            let v = match m {
                Metric::Counter(c) => json!(c.get()),
                Metric::Gauge(g) => json!(g.get()),
                Metric::Histogram(h) => {
                    Value::Object(histogram_stats(&h.summary()).into_iter().collect())
                }
            };
            node.insert(leaf, v);
        }
        Value::Object(root)
    }

    /// The Prometheus text exposition (Linkerd's `io.l5d.prometheus`).
    pub fn prometheus(&self, prefix: &str) -> String {
        let mut out = String::new();
        for (k, m) in self.snapshot() {
            let (name, labels) = prometheus_key(&k);
            let name = format!("{prefix}{name}");
            match m {
                Metric::Counter(c) => {
                    let _ = writeln!(out, "{name}{} {}", fmt_labels(&labels), c.get());
                }
                Metric::Gauge(g) => {
                    let _ = writeln!(out, "{name}{} {}", fmt_labels(&labels), g.get());
                }
                Metric::Histogram(h) => {
                    let s = h.summary();
                    let l = fmt_labels(&labels);
                    let _ = writeln!(out, "{name}_count{l} {}", s.count);
                    let _ = writeln!(out, "{name}_sum{l} {}", s.sum);
                    let _ = writeln!(out, "{name}_avg{l} {}", s.avg);
                    let qs = [
                        ("0", s.min),
                        ("0.5", s.percentiles[0]),
                        ("0.9", s.percentiles[1]),
                        ("0.95", s.percentiles[2]),
                        ("0.99", s.percentiles[3]),
                        ("0.999", s.percentiles[4]),
                        ("0.9999", s.percentiles[5]),
                        ("1", s.max),
                    ];
                    for (q, v) in qs {
                        let mut ls = labels.clone();
                        ls.push(("quantile".into(), q.into()));
                        let _ = writeln!(out, "{name}{} {v}", fmt_labels(&ls));
                    }
                }
            }
        }
        out
    }
}

fn histogram_stats(s: &Summary) -> Vec<(String, Value)> {
    let mut v = vec![("count".to_string(), json!(s.count))];
    if s.count > 0 {
        v.push(("max".into(), json!(s.max)));
        v.push(("min".into(), json!(s.min)));
        for (n, p) in PERCENTILE_NAMES.iter().zip(s.percentiles) {
            v.push(((*n).into(), json!(p)));
        }
        v.push(("sum".into(), json!(s.sum)));
        v.push(("avg".into(), json!(s.avg)));
    }
    v
}

/// Linkerd's prometheus key rules: `rt/<r>` → label `rt`, then `service|client|server/<id>`
/// → a label of that name, `client/<id>/service/<p>` → label `service`; the rest joined with
/// `:`, characters outside `[a-zA-Z0-9:]` replaced by `_`.
fn prometheus_key(k: &[String]) -> (String, Vec<(String, String)>) {
    let mut names: Vec<&str> = Vec::new();
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    while i < k.len() {
        let seg = k[i].as_str();
        let has = |l: &Vec<(String, String)>, n: &str| l.iter().any(|(k, _)| k == n);
        let rule = match (names.as_slice(), seg) {
            (["rt"], _) if !has(&labels, "rt") => Some("rt"),
            (["rt", "service"], _) if !has(&labels, "service") => Some("service"),
            (["rt", "client"], _) if !has(&labels, "client") => Some("client"),
            (["rt", "client", "service"], _) if !has(&labels, "service") => Some("service"),
            (["rt", "server"], _) if !has(&labels, "server") => Some("server"),
            _ => None,
        };
        match rule {
            Some(label) => labels.push((label.into(), seg.into())),
            None => names.push(seg),
        }
        i += 1;
    }
    let name: String = names
        .join(":")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    (name, labels)
}

fn fmt_labels(labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let k: String = k
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", parts.join(", "))
}

impl Scope {
    /// A child scope; `name` is one segment even if it contains `/` (a client id, a path).
    pub fn scope(&self, name: &str) -> Scope {
        let mut path = self.path.clone();
        path.push(name.to_string());
        Scope {
            metrics: self.metrics.clone(),
            path,
        }
    }

    pub fn path(&self) -> &[String] {
        &self.path
    }

    fn key(&self, name: &str) -> Vec<String> {
        let mut k = self.path.clone();
        k.push(name.to_string());
        k
    }

    pub fn counter(&self, name: &str) -> Counter {
        match self
            .metrics
            .get_or_insert(self.key(name), || Metric::Counter(Counter::default()))
        {
            Metric::Counter(c) => c,
            _ => Counter::default(),
        }
    }

    pub fn gauge(&self, name: &str) -> Gauge {
        match self
            .metrics
            .get_or_insert(self.key(name), || Metric::Gauge(Gauge::default()))
        {
            Metric::Gauge(g) => g,
            _ => Gauge::default(),
        }
    }

    pub fn histogram(&self, name: &str) -> Arc<Histogram> {
        match self.metrics.get_or_insert(self.key(name), || {
            Metric::Histogram(Arc::new(Histogram::default()))
        }) {
            Metric::Histogram(h) => h,
            _ => Arc::new(Histogram::default()),
        }
    }

    /// Removes this scope and everything under it from the registry.
    pub fn remove(&self) {
        self.metrics.remove_prefix(&self.path);
    }
}

/// The request statistics Linkerd keeps for a server, service or client scope.
pub struct RequestStats {
    scope: Scope,
    pub requests: Counter,
    pub success: Counter,
    pub failures: Counter,
    pub pending: Gauge,
    pub latency_ms: Arc<Histogram>,
    classes: [Counter; 5],
    codes: Box<[OnceLock<Counter>]>,
}

impl RequestStats {
    pub fn new(scope: Scope) -> RequestStats {
        let classes = ["1XX", "2XX", "3XX", "4XX", "5XX"].map(|c| scope.scope("status").counter(c));
        RequestStats {
            requests: scope.counter("requests"),
            success: scope.counter("success"),
            failures: scope.counter("failures"),
            pending: scope.gauge("pending"),
            latency_ms: scope.histogram("request_latency_ms"),
            classes,
            codes: (100..600).map(|_| OnceLock::new()).collect(),
            scope,
        }
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Records a finished request: its status (None when no response came back) and latency.
    pub fn record(&self, status: Option<u16>, latency_ms: u64, success: bool) {
        self.requests.incr();
        if success {
            self.success.incr();
        } else {
            self.failures.incr();
        }
        self.latency_ms.add(latency_ms);
        match status {
            Some(code @ 100..=599) => {
                self.classes[(code / 100 - 1) as usize].incr();
                let slot = &self.codes[(code - 100) as usize];
                slot.get_or_init(|| self.scope.scope("status").counter(&code.to_string()))
                    .incr();
            }
            _ => self.scope.scope("status").counter("error").incr(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded_and_distinct() {
        assert_eq!(label("svc/web"), "svc/web");
        let a = label(&"a".repeat(100_000));
        let b = label(&format!("{}b", "a".repeat(99_999)));
        assert!(a.len() <= MAX_LABEL_BYTES + 17, "{}", a.len());
        assert_ne!(a, b);
        // A cut inside a multi-byte character backs off to its start.
        assert!(label(&"é".repeat(200)).starts_with('é'));
    }

    #[test]
    fn bucket_bounds_hold_their_values() {
        for v in [0u64, 1, 127, 128, 129, 255, 256, 1000, 65_535, 1 << 40] {
            let i = bucket_of(v);
            assert!(bucket_low(i) <= v, "{v}: low {}", bucket_low(i));
            if i + 1 < BUCKETS {
                assert!(bucket_low(i + 1) > v, "{v}: next low {}", bucket_low(i + 1));
            }
        }
    }

    #[test]
    fn percentiles_are_within_bucket_error() {
        let h = Histogram::default();
        for v in 1..=10_000u64 {
            h.add(v);
        }
        let s = h.summary();
        assert_eq!((s.count, s.min, s.max), (10_000, 1, 10_000));
        let want = [5000.0, 9000.0, 9500.0, 9900.0, 9990.0, 9999.0];
        for (got, want) in s.percentiles.iter().zip(want) {
            let err = (*got as f64 - want).abs() / want;
            assert!(err < 0.016, "{got} vs {want}");
        }
    }

    #[test]
    fn renders_like_linkerd() {
        let m = Metrics::new();
        let rt = m.scope("rt").scope("incoming");
        rt.scope("service")
            .scope("svc/foo")
            .counter("requests")
            .add(1);
        rt.scope("client")
            .scope("$/inet/127.1/8080")
            .scope("service")
            .scope("svc/foo")
            .counter("requests")
            .add(2);
        rt.scope("server")
            .scope("127.0.0.1/4140")
            .histogram("request_latency_ms")
            .add(3);
        let prom = m.prometheus("");
        assert!(
            prom.contains("rt:service:requests{rt=\"incoming\", service=\"svc/foo\"} 1\n"),
            "{prom}"
        );
        assert!(prom.contains("rt:client:service:requests{rt=\"incoming\", client=\"$/inet/127.1/8080\", service=\"svc/foo\"} 2\n"), "{prom}");
        assert!(prom.contains("rt:server:request_latency_ms{rt=\"incoming\", server=\"127.0.0.1/4140\", quantile=\"0.5\"} 3\n"), "{prom}");
        assert!(prom.contains("rt:server:request_latency_ms_count{rt=\"incoming\", server=\"127.0.0.1/4140\"} 1\n"), "{prom}");
        let flat = m.flat_json();
        assert_eq!(flat["rt/incoming/service/svc/foo/requests"], 1);
        assert_eq!(
            flat["rt/incoming/server/127.0.0.1/4140/request_latency_ms.p99"],
            3
        );
        assert_eq!(
            m.tree_json()["rt"]["incoming"]["service"]["svc/foo"]["requests"],
            1
        );
    }
}
