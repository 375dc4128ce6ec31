//! `io.l5d.recentRequests`: a sample (`sampleRate`) of the most recent requests (`capacity`
//! of them), for the admin server's `/requests` pages. Recording takes a short lock only for
//! sampled requests; unsampled ones cost one random number.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::{json, Value};

/// Linkerd's default `capacity`.
pub const DEFAULT_CAPACITY: usize = 10;

/// One sampled request.
#[derive(Debug, Clone)]
pub struct Record {
    pub at_ms: u64,
    pub router: String,
    pub remote: String,
    pub method: String,
    pub uri: String,
    pub host: Option<String>,
    pub status: u16,
    pub latency_ms: u64,
}

/// The shared ring of recent requests.
#[derive(Clone)]
pub struct RecentRequests {
    sample_rate: f64,
    capacity: usize,
    ring: Arc<Mutex<VecDeque<Record>>>,
}

impl RecentRequests {
    pub fn new(sample_rate: f64, capacity: usize) -> RecentRequests {
        RecentRequests {
            sample_rate: sample_rate.clamp(0.0, 1.0),
            capacity: capacity.max(1),
            ring: Arc::new(Mutex::new(VecDeque::new())),
        }
    }

    /// Whether to record the next request.
    pub fn sample(&self) -> bool {
        self.sample_rate >= 1.0 || (self.sample_rate > 0.0 && fastrand::f64() < self.sample_rate)
    }

    pub fn record(&self, mut r: Record) {
        r.at_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(r);
    }

    /// The recorded requests, newest first.
    pub fn json(&self) -> Value {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        Value::Array(
            ring.iter()
                .rev()
                .map(|r| {
                    json!({
                        "timestampMs": r.at_ms,
                        "router": r.router,
                        "remote": r.remote,
                        "method": r.method,
                        "uri": r.uri,
                        "host": r.host,
                        "status": r.status,
                        "latencyMs": r.latency_ms,
                    })
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(uri: &str) -> Record {
        Record {
            at_ms: 0,
            router: "r".into(),
            remote: "127.0.0.1:1".into(),
            method: "GET".into(),
            uri: uri.into(),
            host: None,
            status: 200,
            latency_ms: 1,
        }
    }

    #[test]
    fn keeps_the_newest_within_capacity() {
        let r = RecentRequests::new(1.0, 2);
        for u in ["/a", "/b", "/c"] {
            assert!(r.sample());
            r.record(rec(u));
        }
        let uris: Vec<String> = r
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["uri"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(uris, ["/c", "/b"]);
        assert!(!RecentRequests::new(0.0, 2).sample());
    }
}
