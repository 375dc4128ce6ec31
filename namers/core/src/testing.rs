//! Helpers for namers' tests (and benchmarks): wait for a watched value to satisfy a predicate
//! within a bound, and read an address set as sorted `(port, weight)` pairs. Not used by the
//! naming code itself.

use std::fmt::Debug;
use std::time::Duration;

use crate::addr::Addr;
use crate::var::Var;

/// Waits until `v` satisfies `pred`, for at most `within` (a safety bound, not a measurement);
/// panics with the last value otherwise.
pub async fn until<T: Clone + Debug>(
    v: &mut Var<T>,
    within: Duration,
    pred: impl Fn(&T) -> bool,
) -> T {
    let r = tokio::time::timeout(within, async {
        loop {
            let x = v.get();
            if pred(&x) {
                return x;
            }
            assert!(v.changed().await, "the watch ended while waiting");
        }
    })
    .await;
    match r {
        Ok(x) => x,
        Err(_) => panic!("no matching value within {within:?}; last {:?}", v.sample()),
    }
}

/// The endpoints of a bound address set as sorted `(port, weight)`; empty otherwise.
pub fn ports(a: &Addr) -> Vec<(u16, f64)> {
    match a {
        Addr::Bound { endpoints, .. } => {
            let mut v: Vec<(u16, f64)> = endpoints
                .iter()
                .map(|e| (e.addr.port(), e.weight))
                .collect();
            v.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)));
            v
        }
        _ => Vec::new(),
    }
}

/// Waits until the first endpoint of `addr` has `port` (the discovery benchmarks' probe).
pub async fn until_first_port(addr: &mut Var<Addr>, port: u16) {
    until(addr, Duration::from_secs(5), |a| {
        ports(a).first().map(|p| p.0) == Some(port)
    })
    .await;
}

/// `p50 .. p99 .. max` of latency samples, as the discovery benchmarks print them.
pub fn latency_summary(lat: &mut [Duration]) -> String {
    if lat.is_empty() {
        return "no samples".into();
    }
    lat.sort();
    let p = |q: usize| lat[(lat.len() * q / 100).min(lat.len() - 1)];
    format!(
        "p50 {:?}  p99 {:?}  max {:?}",
        p(50),
        p(99),
        lat[lat.len() - 1]
    )
}
