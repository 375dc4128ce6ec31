//! Load balancing over one client's endpoints: `p2c` (least loaded of two random picks),
//! `ewma` (peak-EWMA latency × load), `roundRobin`, `heap` (least loaded of all) and `aperture`
//! (p2c within a window that grows and shrinks with load), each weighting endpoints by their
//! address weight; plus failure accrual, which takes an endpoint out of rotation after failures
//! and probes it again after a backoff. The endpoint set itself is owned by the client and
//! swapped in place on churn; nothing here allocates per request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use super::session::Session;
use crate::config::plugins::{BackoffKind, FailureAccrualKind, LoadBalancerKind};

/// Nanoseconds on a process-wide monotonic clock.
pub fn now_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

/// Linkerd's default failure accrual: 5 consecutive failures, equal-jittered backoff 5 s..300 s.
pub const DEFAULT_ACCRUAL_FAILURES: u32 = 5;
const DEFAULT_BACKOFF_MIN_MS: u64 = 5_000;
const DEFAULT_BACKOFF_MAX_MS: u64 = 300_000;

/// When an endpoint is taken out of rotation.
#[derive(Debug, Clone)]
pub enum AccrualPolicy {
    None,
    Consecutive {
        failures: u32,
        backoff: Backoff,
    },
    /// Success rate (an EWMA over about `requests` responses) below `rate`.
    SuccessRate {
        rate: f64,
        requests: u32,
        backoff: Backoff,
    },
}

#[derive(Debug, Clone)]
pub enum Backoff {
    Constant(u64),
    /// Equal-jittered exponential (Linkerd's default).
    EqualJittered {
        min_ms: u64,
        max_ms: u64,
    },
    /// Decorrelated jitter between `min_ms` and `max_ms` (the `jittered` kind).
    Jittered {
        min_ms: u64,
        max_ms: u64,
    },
}

impl Backoff {
    fn from_config(b: Option<&BackoffKind>) -> Backoff {
        match b {
            None => Backoff::EqualJittered {
                min_ms: DEFAULT_BACKOFF_MIN_MS,
                max_ms: DEFAULT_BACKOFF_MAX_MS,
            },
            Some(BackoffKind::Constant { ms }) => Backoff::Constant(*ms),
            Some(BackoffKind::Jittered { min_ms, max_ms }) => Backoff::Jittered {
                min_ms: *min_ms,
                max_ms: *max_ms,
            },
        }
    }

    /// The `n`th wait (n from 0), in milliseconds.
    pub fn nth_ms(&self, n: u32) -> u64 {
        match *self {
            Backoff::Constant(ms) => ms,
            Backoff::EqualJittered { min_ms, max_ms } => {
                let base = min_ms.saturating_mul(1u64 << n.min(30)).min(max_ms).max(1);
                base / 2 + fastrand::u64(0..=base / 2)
            }
            Backoff::Jittered { min_ms, max_ms } => {
                let hi = min_ms
                    .saturating_mul(3u64.saturating_pow(n.min(30)))
                    .min(max_ms);
                fastrand::u64(min_ms..=hi.max(min_ms))
            }
        }
    }
}

impl AccrualPolicy {
    pub fn from_config(c: Option<&FailureAccrualKind>) -> AccrualPolicy {
        match c {
            None => AccrualPolicy::Consecutive {
                failures: DEFAULT_ACCRUAL_FAILURES,
                backoff: Backoff::from_config(None),
            },
            Some(FailureAccrualKind::None) => AccrualPolicy::None,
            Some(FailureAccrualKind::ConsecutiveFailures { failures, backoff }) => {
                AccrualPolicy::Consecutive {
                    failures: (*failures).max(1),
                    backoff: Backoff::from_config(backoff.as_ref()),
                }
            }
            Some(FailureAccrualKind::SuccessRate {
                success_rate,
                requests,
                backoff,
            }) => AccrualPolicy::SuccessRate {
                rate: *success_rate,
                requests: (*requests).max(1),
                backoff: Backoff::from_config(backoff.as_ref()),
            },
            Some(FailureAccrualKind::SuccessRateWindowed {
                success_rate,
                window_secs,
                backoff,
            }) => AccrualPolicy::SuccessRate {
                rate: *success_rate,
                // Approximates a time window by a response count of the same order.
                requests: (*window_secs as u32).clamp(1, 10_000),
                backoff: Backoff::from_config(backoff.as_ref()),
            },
        }
    }
}

/// An endpoint of a client: its address, weight, load, latency estimate, health and session.
pub struct Endpoint {
    pub addr: SocketAddr,
    /// The Host to send, from the address metadata `authority` (Consul's `setHost`).
    pub authority: Option<http::HeaderValue>,
    weight: AtomicU64,
    /// Requests in flight.
    pub load: AtomicUsize,
    ewma_ns: AtomicU64,
    ewma_stamp: AtomicU64,
    failures: AtomicU32,
    deaths: AtomicU32,
    success_ewma: AtomicU64,
    dead_until: AtomicU64,
    pub session: Session,
}

impl Endpoint {
    pub fn new(addr: SocketAddr, weight: f64, session: Session) -> Endpoint {
        Endpoint {
            addr,
            authority: None,
            weight: AtomicU64::new(weight.to_bits()),
            load: AtomicUsize::new(0),
            ewma_ns: AtomicU64::new(0),
            ewma_stamp: AtomicU64::new(now_ns()),
            failures: AtomicU32::new(0),
            deaths: AtomicU32::new(0),
            success_ewma: AtomicU64::new(1f64.to_bits()),
            dead_until: AtomicU64::new(0),
            session,
        }
    }

    pub fn weight(&self) -> f64 {
        f64::from_bits(self.weight.load(Relaxed))
    }

    pub fn set_weight(&self, w: f64) {
        self.weight.store(w.to_bits(), Relaxed);
    }

    /// Whether failure accrual lets it take requests now (a dead endpoint whose backoff has
    /// passed takes a probe).
    pub fn available(&self, now: u64) -> bool {
        let d = self.dead_until.load(Relaxed);
        d == 0 || now >= d
    }

    fn load_per_weight(&self) -> f64 {
        let w = self.weight();
        let l = self.load.load(Relaxed) as f64 + 1.0;
        if w > 0.0 {
            l / w
        } else {
            f64::INFINITY
        }
    }

    /// p2c's cost: requests in flight (weights act through how candidates are drawn); an
    /// endpoint of weight 0 always loses.
    fn load_cost(&self) -> f64 {
        if self.weight() > 0.0 {
            self.load.load(Relaxed) as f64
        } else {
            f64::INFINITY
        }
    }

    fn ewma_cost(&self, now: u64, decay_ns: f64) -> f64 {
        let last = self.ewma_stamp.load(Relaxed);
        let ewma = f64::from_bits(self.ewma_ns.load(Relaxed));
        let elapsed = now.saturating_sub(last) as f64;
        let decayed = ewma * (-elapsed / decay_ns).exp();
        if self.weight() > 0.0 {
            decayed.max(1.0) * (self.load.load(Relaxed) as f64 + 1.0)
        } else {
            f64::INFINITY
        }
    }

    /// Records a response latency for `ewma` (peak-sensitive: a slower sample replaces the
    /// estimate, a faster one decays into it).
    pub fn observe_latency(&self, rtt_ns: u64, decay_ns: f64) {
        let now = now_ns();
        let last = self.ewma_stamp.swap(now, Relaxed);
        let prev = f64::from_bits(self.ewma_ns.load(Relaxed));
        let rtt = rtt_ns as f64;
        let next = if rtt > prev {
            rtt
        } else {
            let w = (-(now.saturating_sub(last) as f64) / decay_ns).exp();
            prev * w + rtt * (1.0 - w)
        };
        self.ewma_ns.store(next.to_bits(), Relaxed);
    }

    /// Records an outcome for failure accrual; returns true if this marked the endpoint dead.
    pub fn observe_outcome(&self, success: bool, policy: &AccrualPolicy) -> bool {
        let now = now_ns();
        if success {
            self.failures.store(0, Relaxed);
            if self.dead_until.load(Relaxed) != 0 {
                self.dead_until.store(0, Relaxed);
                self.deaths.store(0, Relaxed);
            }
        }
        let (dead, backoff) = match policy {
            AccrualPolicy::None => return false,
            AccrualPolicy::Consecutive { failures, backoff } => {
                if success {
                    return false;
                }
                let n = self.failures.fetch_add(1, Relaxed) + 1;
                (n >= *failures, backoff)
            }
            AccrualPolicy::SuccessRate {
                rate,
                requests,
                backoff,
            } => {
                let alpha = 2.0 / (*requests as f64 + 1.0);
                let prev = f64::from_bits(self.success_ewma.load(Relaxed));
                let x = if success { 1.0 } else { 0.0 };
                let next = prev + alpha * (x - prev);
                self.success_ewma.store(next.to_bits(), Relaxed);
                (!success && next < *rate, backoff)
            }
        };
        if dead {
            let k = self.deaths.fetch_add(1, Relaxed);
            let wait = Duration::from_millis(backoff.nth_ms(k)).as_nanos() as u64;
            self.dead_until.store(now + wait.max(1), Relaxed);
            if let AccrualPolicy::SuccessRate { .. } = policy {
                // Start the probe from a neutral estimate.
                self.success_ewma.store(1f64.to_bits(), Relaxed);
            }
        }
        dead
    }
}

/// A balancing algorithm with its state.
pub struct Balancer {
    kind: Kind,
    next: AtomicUsize,
    aperture: AtomicUsize,
    order_seed: u64,
}

enum Kind {
    P2c {
        max_effort: u32,
    },
    Ewma {
        max_effort: u32,
        decay_ns: f64,
    },
    RoundRobin,
    Heap,
    Aperture {
        max_effort: u32,
        low: f64,
        high: f64,
        min: usize,
    },
}

impl Balancer {
    pub fn new(cfg: Option<&LoadBalancerKind>) -> Balancer {
        let kind = match cfg {
            None => Kind::P2c {
                max_effort: crate::config::plugins::DEFAULT_MAX_EFFORT,
            },
            Some(LoadBalancerKind::P2c { max_effort }) => Kind::P2c {
                max_effort: *max_effort,
            },
            Some(LoadBalancerKind::Ewma {
                max_effort,
                decay_time_ms,
            }) => Kind::Ewma {
                max_effort: *max_effort,
                decay_ns: (*decay_time_ms as f64 * 1e6).max(1.0),
            },
            Some(LoadBalancerKind::RoundRobin { .. }) => Kind::RoundRobin,
            Some(LoadBalancerKind::Heap) => Kind::Heap,
            Some(LoadBalancerKind::Aperture(a)) => Kind::Aperture {
                max_effort: a.max_effort,
                low: a.low_load,
                high: a.high_load,
                min: a.min_aperture.max(1) as usize,
            },
        };
        Balancer {
            kind,
            next: AtomicUsize::new(fastrand::usize(..1024)),
            aperture: AtomicUsize::new(1),
            order_seed: fastrand::u64(..),
        }
    }

    /// The EWMA decay, if this balancer tracks latency.
    pub fn ewma_decay_ns(&self) -> Option<f64> {
        match self.kind {
            Kind::Ewma { decay_ns, .. } => Some(decay_ns),
            _ => None,
        }
    }

    pub fn algorithm(&self) -> &'static str {
        match self.kind {
            Kind::P2c { .. } => "p2c",
            Kind::Ewma { .. } => "ewma",
            Kind::RoundRobin => "roundRobin",
            Kind::Heap => "heap",
            Kind::Aperture { .. } => "aperture",
        }
    }

    /// Picks an endpoint. Endpoints out of rotation are skipped unless all are (then any
    /// endpoint is better than none, as in Finagle).
    pub fn pick<'a>(&self, eps: &'a [Arc<Endpoint>]) -> Option<&'a Arc<Endpoint>> {
        let n = eps.len();
        if n == 0 {
            return None;
        }
        if n == 1 {
            return eps.first();
        }
        let now = now_ns();
        match self.kind {
            Kind::P2c { max_effort } => p2c(eps, 0, n, max_effort, now, |e| e.load_cost()),
            Kind::Ewma {
                max_effort,
                decay_ns,
            } => p2c(eps, 0, n, max_effort, now, |e| e.ewma_cost(now, decay_ns)),
            Kind::RoundRobin => {
                for _ in 0..n {
                    let i = self.next.fetch_add(1, Relaxed) % n;
                    let e = &eps[i];
                    if e.available(now) && e.weight() > 0.0 {
                        return Some(e);
                    }
                }
                eps.get(self.next.fetch_add(1, Relaxed) % n)
            }
            Kind::Heap => eps
                .iter()
                .filter(|e| e.available(now))
                .min_by(|a, b| a.load_per_weight().total_cmp(&b.load_per_weight()))
                .or_else(|| eps.first()),
            Kind::Aperture {
                max_effort,
                low,
                high,
                min,
            } => {
                let mut ap = self.aperture.load(Relaxed).clamp(min.min(n), n);
                // Rotate the window start by a per-client seed so clients spread over endpoints.
                let start = (self.order_seed as usize) % n;
                let load: usize = (0..ap)
                    .map(|i| eps[(start + i) % n].load.load(Relaxed))
                    .sum();
                let avg = load as f64 / ap as f64;
                if avg > high && ap < n {
                    ap += 1;
                } else if avg < low && ap > min.min(n) {
                    ap -= 1;
                }
                self.aperture.store(ap, Relaxed);
                if ap == 1 {
                    let e = &eps[start];
                    return Some(e);
                }
                p2c(eps, start, ap, max_effort, now, |e| e.load_cost())
            }
        }
    }
}

/// Power of two choices over the window `eps[start..start+len]` (wrapping).
fn p2c(
    eps: &[Arc<Endpoint>],
    start: usize,
    len: usize,
    max_effort: u32,
    now: u64,
    cost: impl Fn(&Endpoint) -> f64,
) -> Option<&Arc<Endpoint>> {
    let n = eps.len();
    let at = |i: usize| &eps[(start + i) % n];
    // Candidates are drawn in proportion to their weights (as Finagle's TrafficDistributor
    // splits traffic by weight), then the less loaded of the two wins: an idle service
    // splits by weight, a busy one also by load.
    let weights: Option<Vec<f64>> = {
        let first = at(0).weight();
        let uneven = (1..len).any(|i| at(i).weight() != first);
        uneven.then(|| (0..len).map(|i| at(i).weight().max(0.0)).collect())
    };
    let total: f64 = weights.as_ref().map_or(0.0, |w| w.iter().sum());
    let draw = |skip: Option<usize>| -> usize {
        match &weights {
            Some(w) if total > 0.0 => {
                let left = total - skip.map_or(0.0, |s| w[s]);
                if left <= 0.0 {
                    return uniform(len, skip);
                }
                let mut x = fastrand::f64() * left;
                for (i, wi) in w.iter().enumerate() {
                    if Some(i) == skip {
                        continue;
                    }
                    if x < *wi {
                        return i;
                    }
                    x -= wi;
                }
                // Rounding left x at the end: the last candidate that is not skipped.
                (0..len).rev().find(|i| Some(*i) != skip).unwrap_or(0)
            }
            _ => uniform(len, skip),
        }
    };
    for _ in 0..max_effort.max(1) {
        let a = draw(None);
        let b = draw(Some(a));
        let (ea, eb) = (at(a), at(b));
        match (ea.available(now), eb.available(now)) {
            (true, true) => return Some(if cost(eb) < cost(ea) { eb } else { ea }),
            (true, false) => return Some(ea),
            (false, true) => return Some(eb),
            (false, false) => continue,
        }
    }
    // Every pick was out of rotation: any available endpoint, else any endpoint.
    (0..len)
        .map(at)
        .find(|e| e.available(now))
        .or_else(|| Some(at(fastrand::usize(..len))))
}

/// A uniformly random index below `len`, other than `skip`.
fn uniform(len: usize, skip: Option<usize>) -> usize {
    match skip {
        None => fastrand::usize(..len),
        Some(s) => {
            let mut b = fastrand::usize(..len - 1);
            if b >= s {
                b += 1;
            }
            b
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::session::http1::{Pool, PoolConfig};
    use crate::proxy::session::PoolStats;
    use crate::transport::Connector;

    fn eps(n: u16) -> Vec<Arc<Endpoint>> {
        (0..n)
            .map(|i| {
                let a: SocketAddr = ([127, 0, 0, 1], 10_000 + i).into();
                Arc::new(Endpoint::new(
                    a,
                    1.0,
                    Session::Http1(Pool::new(
                        a,
                        PoolConfig::default(),
                        Connector::plain(None),
                        PoolStats::default(),
                    )),
                ))
            })
            .collect()
    }

    fn counts(b: &Balancer, eps: &[Arc<Endpoint>], picks: usize) -> Vec<usize> {
        let mut c = vec![0; eps.len()];
        for _ in 0..picks {
            let e = b.pick(eps).unwrap();
            c[eps.iter().position(|x| Arc::ptr_eq(x, e)).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn p2c_avoids_the_loaded_endpoint() {
        let e = eps(3);
        e[0].load.store(100, Relaxed);
        let c = counts(&Balancer::new(None), &e, 3000);
        assert_eq!(c[0], 0, "{c:?}");
        assert!(c[1] > 1000 && c[2] > 1000, "{c:?}");
    }

    #[test]
    fn weights_shift_p2c_traffic() {
        let e = eps(2);
        e[1].set_weight(0.0);
        let c = counts(&Balancer::new(None), &e, 1000);
        assert_eq!(c[1], 0, "{c:?}");
    }

    #[test]
    fn idle_traffic_splits_in_proportion_to_weights() {
        // Weights 1, 3 and 6 of 10: with no load, each gets its share (within 3 points).
        let e = eps(3);
        e[1].set_weight(3.0);
        e[2].set_weight(6.0);
        for b in [
            Balancer::new(None),
            Balancer::new(Some(&LoadBalancerKind::Ewma {
                max_effort: 5,
                decay_time_ms: 10_000,
            })),
        ] {
            let c = counts(&b, &e, 20_000);
            let share: Vec<f64> = c.iter().map(|n| *n as f64 / 20_000.0).collect();
            for (got, want) in share.iter().zip([0.1, 0.3, 0.6]) {
                assert!((got - want).abs() < 0.03, "{share:?}");
            }
        }
        // Under load the less loaded candidate still wins.
        e[2].load.store(100, Relaxed);
        let c = counts(&Balancer::new(None), &e, 10_000);
        assert!(c[2] < c[1], "{c:?}");
    }

    #[test]
    fn round_robin_cycles() {
        let e = eps(4);
        let b = Balancer::new(Some(&LoadBalancerKind::RoundRobin { max_effort: 5 }));
        assert_eq!(counts(&b, &e, 400), vec![100; 4]);
    }

    #[test]
    fn heap_takes_the_least_loaded() {
        let e = eps(3);
        e[0].load.store(2, Relaxed);
        e[1].load.store(1, Relaxed);
        e[2].load.store(3, Relaxed);
        let b = Balancer::new(Some(&LoadBalancerKind::Heap));
        assert_eq!(counts(&b, &e, 10), vec![0, 10, 0]);
    }

    #[test]
    fn ewma_prefers_the_fast_endpoint() {
        let e = eps(2);
        let decay = 10e9;
        e[0].observe_latency(50_000_000, decay);
        e[1].observe_latency(1_000_000, decay);
        let b = Balancer::new(Some(&LoadBalancerKind::Ewma {
            max_effort: 5,
            decay_time_ms: 10_000,
        }));
        assert_eq!(counts(&b, &e, 200), vec![0, 200]);
    }

    #[test]
    fn consecutive_failures_take_an_endpoint_out_then_probe() {
        let e = eps(2);
        let policy = AccrualPolicy::Consecutive {
            failures: 3,
            backoff: Backoff::Constant(60_000),
        };
        assert!(!e[0].observe_outcome(false, &policy));
        assert!(!e[0].observe_outcome(false, &policy));
        assert!(e[0].observe_outcome(false, &policy));
        assert!(!e[0].available(now_ns()));
        let c = counts(&Balancer::new(None), &e, 500);
        assert_eq!(c, vec![0, 500]);
        // A success (a probe after the backoff) revives it.
        e[0].observe_outcome(true, &policy);
        assert!(e[0].available(now_ns()));
        // All out of rotation: still answers with an endpoint.
        let policy1 = AccrualPolicy::Consecutive {
            failures: 1,
            backoff: Backoff::Constant(60_000),
        };
        e[0].observe_outcome(false, &policy1);
        e[1].observe_outcome(false, &policy1);
        assert!(Balancer::new(None).pick(&e).is_some());
    }

    #[test]
    fn backoffs_stay_in_range() {
        let eq = Backoff::EqualJittered {
            min_ms: 5_000,
            max_ms: 300_000,
        };
        for n in 0..40 {
            let v = eq.nth_ms(n);
            assert!((2_500..=300_000).contains(&v), "{n}: {v}");
        }
        let j = Backoff::Jittered {
            min_ms: 10,
            max_ms: 100,
        };
        for n in 0..40 {
            let v = j.nth_ms(n);
            assert!((10..=100).contains(&v), "{n}: {v}");
        }
    }
}
