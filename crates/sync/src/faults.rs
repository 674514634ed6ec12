//! Named points in a delivery where tests can make the worker die, as a crashed process would:
//! it stops there, holding its leases, and commits nothing more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultPoint {
    /// The delivery is claimed (the intent is durable); nothing has been sent.
    BeforeSend,
    /// The EHR committed and answered; our completion is not yet committed.
    AfterEhrCommitted,
}

/// Armed fault points. Empty in production; each arming fires a given number of times.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan(Arc<Mutex<HashMap<FaultPoint, u32>>>);

impl FaultPlan {
    pub fn arm(&self, point: FaultPoint, times: u32) {
        if let Ok(mut armed) = self.0.lock() {
            *armed.entry(point).or_default() += times;
        }
    }

    /// True when the point is armed; consumes one firing.
    pub fn fires(&self, point: FaultPoint) -> bool {
        let Ok(mut armed) = self.0.lock() else { return false };
        match armed.get_mut(&point) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}
