//! Exponential backoff with jitter for the durable retry schedule (the delay is stored as the
//! delivery's next attempt time, so it survives restarts).

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay before attempt `attempts + 1`: `base · 2^(attempts-1)`, capped at `max`, then
    /// "equal jitter" (a uniform draw from the upper half) so that retries of many deliveries
    /// failed by one outage spread out instead of returning together.
    pub fn delay(&self, attempts: u32, unit_random: f64) -> Duration {
        let exponent = attempts.saturating_sub(1).min(30);
        let raw = self.base.saturating_mul(1_u32 << exponent).min(self.max);
        let jitter = unit_random.clamp(0.0, 1.0);
        raw.mul_f64(0.5 + 0.5 * jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_caps() {
        let b = Backoff { base: Duration::from_secs(1), max: Duration::from_secs(60) };
        assert_eq!(b.delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(500));
        assert_eq!(b.delay(4, 1.0), Duration::from_secs(8));
        assert_eq!(b.delay(20, 1.0), Duration::from_secs(60));
        assert_eq!(b.delay(u32::MAX, 0.0), Duration::from_secs(30));
    }
}
