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
