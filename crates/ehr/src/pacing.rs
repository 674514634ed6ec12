//! How hard one EHR connection is driven: requests in flight adapt to the EHR's answers (AIMD:
//! one more per window of successes, cut by 30 % on a "slow down"), a `Retry-After` pauses the
//! whole connection, and a freed slot goes to the highest-priority lane waiting.
//!
//! Most EHRs publish no limit (Epic, Oracle); where one is published it is a token bucket on top
//! of this (see `FhirClient::with_quota`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Which work a request is for, highest priority first: what closes a chart now, then reading
/// the EHR's schedule, then catching up history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Lane {
    #[default]
    Clinical,
    Inbound,
    Backfill,
}

impl Lane {
    pub const ALL: [Lane; 3] = [Lane::Clinical, Lane::Inbound, Lane::Backfill];

    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Clinical => "clinical",
            Lane::Inbound => "inbound",
            Lane::Backfill => "backfill",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::str::FromStr for Lane {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Lane::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| format!("unknown lane {s:?}: clinical, inbound or backfill"))
    }
}

/// The multiplicative cut on a "slow down" (as CUBIC's β): gentler than halving, so one 429
/// costs less throughput while the cut still compounds under a storm.
const DECREASE: f64 = 0.7;
/// The longest pause a `Retry-After` imposes on the whole connection (a delivery's own retry
/// still waits the full time).
const MAX_PAUSE: Duration = Duration::from_secs(60);

/// Shared by every clone of a connection's client.
#[derive(Debug)]
pub struct Pacing {
    state: Mutex<State>,
    max: usize,
}

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: usize,
    /// Bumped on every cut: a throttle seen by a request sent before the last cut was caused by
    /// the load that cut already answered, and does not cut again.
    epoch: u64,
    paused_until: Option<Instant>,
    waiting: [VecDeque<oneshot::Sender<Slot>>; 3],
    throttles: u64,
}

/// What a request's answer says about the EHR's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// It was handled (whatever the outcome): the EHR keeps up.
    Handled,
    /// "Slow down" (429, or a vendor's own words for it), with how long to wait if it said.
    SlowDown(Option<Duration>),
    /// Says nothing about load (a transport error, a cancelled request).
    Neutral,
}

/// One request slot; given back on drop.
#[derive(Debug)]
pub struct Slot {
    pacing: Arc<Pacing>,
    epoch: u64,
    answer: Answer,
}

impl Slot {
    pub fn answer(&mut self, answer: Answer) {
        self.answer = answer;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pacing.release(self.epoch, self.answer);
    }
}

impl Pacing {
    /// At most `max` requests in flight, starting there: the first "slow down" brings it to what
    /// the EHR actually took.
    pub fn new(max: usize) -> Arc<Pacing> {
        let max = max.max(1);
        Arc::new(Pacing {
            state: Mutex::new(State {
                limit: max as f64,
                in_flight: 0,
                epoch: 0,
                paused_until: None,
                waiting: Default::default(),
                throttles: 0,
            }),
            max,
        })
    }

    /// Waits for a slot in `lane`; a slot freed goes to the clinical lane first.
    pub async fn acquire(self: &Arc<Self>, lane: Lane) -> Slot {
        let (slot, pause) = loop {
            let receiver = {
                let Ok(mut state) = self.state.lock() else {
                    // A poisoned lock means a panic elsewhere; pacing is advisory, so carry on.
                    return Slot { pacing: self.clone(), epoch: u64::MAX, answer: Answer::Neutral };
                };
                let ahead = state.waiting[..=lane.index()].iter().any(|q| !q.is_empty());
                if !ahead && (state.in_flight as f64) < state.limit.floor().max(1.0) {
                    state.in_flight += 1;
                    let slot = Slot { pacing: self.clone(), epoch: state.epoch, answer: Answer::Neutral };
                    break (slot, state.paused_until);
                }
                let (tx, rx) = oneshot::channel();
                state.waiting[lane.index()].push_back(tx);
                rx
            };
            // The slot is handed over by `release`; a dropped sender (never, in practice) retries.
            if let Ok(slot) = receiver.await {
                let pause = self.state.lock().ok().and_then(|s| s.paused_until);
                break (slot, pause);
            }
        };
        if let Some(until) = pause {
            tokio::time::sleep_until(until.into()).await;
        }
        slot
    }

    fn release(self: &Arc<Self>, epoch: u64, answer: Answer) {
        if epoch == u64::MAX {
            return;
        }
        let Ok(mut state) = self.state.lock() else { return };
        match answer {
            Answer::Handled => {
                // Additive increase: about one more slot per window of `limit` successes.
                state.limit = (state.limit + 1.0 / state.limit).min(self.max as f64);
            }
            Answer::SlowDown(retry_after) => {
                state.throttles += 1;
                if epoch == state.epoch {
                    let basis = state.limit.min(state.in_flight as f64);
                    state.limit = (basis * DECREASE).max(1.0);
                    state.epoch += 1;
                }
                if let Some(wait) = retry_after {
                    let until = Instant::now() + wait.min(MAX_PAUSE);
                    state.paused_until = Some(state.paused_until.map_or(until, |p| p.max(until)));
                }
            }
            Answer::Neutral => {}
        }
        state.in_flight = state.in_flight.saturating_sub(1);
        // Hand freed slots to waiters, highest lane first; a waiter that gave up is skipped
        // (its slot comes straight back through this function when the handed slot drops).
        while (state.in_flight as f64) < state.limit.floor().max(1.0) {
            let Some(next) = state.waiting.iter_mut().find_map(|q| q.pop_front()) else { break };
            state.in_flight += 1;
            let slot = Slot { pacing: self.clone(), epoch: state.epoch, answer: Answer::Neutral };
            if let Err(mut slot) = next.send(slot) {
                // Nobody is listening: the slot is taken back here, so its drop must not
                // re-enter this lock.
                slot.epoch = u64::MAX;
                state.in_flight -= 1;
            }
        }
    }

    /// The current limit on requests in flight (for metrics and the bench).
    pub fn limit(&self) -> f64 {
        self.state.lock().map(|s| s.limit).unwrap_or(0.0)
    }

    /// "Slow down" answers seen so far.
    pub fn throttles(&self) -> u64 {
        self.state.lock().map(|s| s.throttles).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_down_cuts_the_limit_once_per_window_and_successes_raise_it_slowly() {
        let pacing = Pacing::new(10);
        let mut slots = Vec::new();
        for _ in 0..10 {
            slots.push(pacing.acquire(Lane::Clinical).await);
        }
        // Three requests sent under the same limit are all throttled: one cut, not three.
        for mut slot in slots.drain(..3) {
            slot.answer(Answer::SlowDown(None));
        }
        assert!((pacing.limit() - 7.0).abs() < 1e-9, "{}", pacing.limit());
        assert_eq!(pacing.throttles(), 3);
        drop(slots);
        // A request sent after the cut that is throttled again cuts again.
        let mut slot = pacing.acquire(Lane::Clinical).await;
        slot.answer(Answer::SlowDown(None));
        drop(slot);
        assert!((pacing.limit() - 1.0).abs() < 1e-9, "cut to what was in flight: {}", pacing.limit());
        // Additive increase: one success per slot of the limit adds about one slot.
        for _ in 0..20 {
            let mut slot = pacing.acquire(Lane::Clinical).await;
            slot.answer(Answer::Handled);
        }
        let limit = pacing.limit();
        assert!(limit > 5.0 && limit < 7.0, "{limit}");
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_clinical_lane_first() {
        let pacing = Pacing::new(1);
        let held = pacing.acquire(Lane::Clinical).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = tokio::task::JoinSet::new();
        for lane in [Lane::Backfill, Lane::Inbound, Lane::Backfill, Lane::Clinical] {
            let (pacing, order) = (pacing.clone(), order.clone());
            tasks.spawn(async move {
                let slot = pacing.acquire(lane).await;
                order.lock().unwrap().push(lane);
                tokio::task::yield_now().await;
                drop(slot);
            });
            // Queued in this order.
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(held);
        while tasks.join_next().await.is_some() {}
        assert_eq!(*order.lock().unwrap(), [Lane::Clinical, Lane::Inbound, Lane::Backfill, Lane::Backfill]);
    }

    #[tokio::test]
    async fn a_retry_after_pauses_the_connection() {
        let pacing = Pacing::new(4);
        let mut slot = pacing.acquire(Lane::Clinical).await;
        slot.answer(Answer::SlowDown(Some(Duration::from_millis(150))));
        drop(slot);
        let started = Instant::now();
        let _next = pacing.acquire(Lane::Clinical).await;
        assert!(started.elapsed() >= Duration::from_millis(140), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_loses_no_slot() {
        let pacing = Pacing::new(1);
        let held = pacing.acquire(Lane::Clinical).await;
        let gave_up = tokio::time::timeout(Duration::from_millis(10), pacing.acquire(Lane::Backfill)).await;
        assert!(gave_up.is_err());
        drop(held);
        let again = tokio::time::timeout(Duration::from_millis(100), pacing.acquire(Lane::Backfill)).await;
        assert!(again.is_ok(), "the slot came back");
    }
}
