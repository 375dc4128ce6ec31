//! Retry delays for clients of discovery backends and of namerd: exponential from a minimum to
//! a maximum, each delay drawn uniformly from the upper half of its step, so that the retries
//! of many watches that failed together spread out. It only computes delays; sleeping is the
//! caller's.

use std::time::Duration;

/// Jittered exponential backoff.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// From `min` up to `max` (a `max` below `min` is taken as `min`).
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The next attempt waits `min` again (after one that succeeded).
    pub fn reset(&mut self) {
        self.next = self.min;
    }

    /// A delay in `[step/2, step]`; the step then doubles, up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = d.saturating_mul(2).min(self.max);
        d / 2 + d.mul_f64(fastrand::f64() / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_maximum_within_their_upper_half() {
        let (min, max) = (Duration::from_millis(100), Duration::from_millis(700));
        let mut b = Backoff::new(min, max);
        for step in [100u64, 200, 400, 700, 700] {
            let d = b.next_delay();
            let step = Duration::from_millis(step);
            assert!(
                d >= step / 2 && d <= step,
                "{d:?} outside [{:?}, {step:?}]",
                step / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= min);
        let mut inverted = Backoff::new(max, min);
        assert!(inverted.next_delay() <= max);
        assert!(inverted.next_delay() <= max);
    }
}
