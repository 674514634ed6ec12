//! Time is a parameter: everything that needs "now" asks a [`Clock`], so tests can move time
//! (lease expiry, backoff) without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

#[derive(Clone)]
pub struct Clock(Arc<ClockSource>);

enum ClockSource {
    System,
    Manual(AtomicI64),
}

impl Clock {
    pub fn system() -> Self {
        Clock(Arc::new(ClockSource::System))
    }

    /// A clock that only moves when told to; starts at `start`.
    pub fn manual(start: DateTime<Utc>) -> Self {
        Clock(Arc::new(ClockSource::Manual(AtomicI64::new(start.timestamp_millis()))))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &*self.0 {
            #[allow(clippy::disallowed_methods)] // the one place wall-clock time is read
            ClockSource::System => Utc::now(),
            ClockSource::Manual(ms) => DateTime::from_timestamp_millis(ms.load(Ordering::SeqCst)).unwrap_or_default(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }

    /// Moves a manual clock forward; a system clock ignores it.
    pub fn advance(&self, by: std::time::Duration) {
        if let ClockSource::Manual(ms) = &*self.0 {
            ms.fetch_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX), Ordering::SeqCst);
        }
    }

    pub fn is_manual(&self) -> bool {
        matches!(&*self.0, ClockSource::Manual(_))
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}
