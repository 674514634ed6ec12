//! Exponential backoff with jitter for the durable retry schedule (the delay is stored as the
//! delivery's next attempt time, so it survives restarts).

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay before attempt `attempts + 1`: "full jitter", a uniform draw from zero to
    /// `base · 2^(attempts-1)` capped at `max`, so that retries of many deliveries failed by one
    /// outage spread over the whole window instead of returning together (the least total work
    /// of the usual schemes). An EHR's `Retry-After` is a floor the worker applies on top.
    pub fn delay(&self, attempts: u32, unit_random: f64) -> Duration {
        let exponent = attempts.saturating_sub(1).min(30);
        let window = self.base.saturating_mul(1_u32 << exponent).min(self.max);
        window.mul_f64(unit_random.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_grows_exponentially_and_caps_and_the_draw_spans_it() {
        let b = Backoff { base: Duration::from_secs(1), max: Duration::from_secs(60) };
        assert_eq!(b.delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(b.delay(1, 0.0), Duration::ZERO);
        assert_eq!(b.delay(4, 1.0), Duration::from_secs(8));
        assert_eq!(b.delay(4, 0.25), Duration::from_secs(2));
        assert_eq!(b.delay(20, 1.0), Duration::from_secs(60));
        assert_eq!(b.delay(u32::MAX, 0.5), Duration::from_secs(30));
        assert_eq!(b.delay(3, 7.0), Duration::from_secs(4), "the draw is clamped to [0, 1]");
    }
}
