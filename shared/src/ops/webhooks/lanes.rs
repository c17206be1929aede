//! One lane per endpoint: each endpoint has its own POSTs in flight ([`LANE_IN_FLIGHT`]) and
//! its own queue of POSTs waiting for them ([`LANE_WAITING`]), so an endpoint that hangs
//! delays only its own POSTs, never another endpoint's or another tenant's. A POST that finds
//! its lane full is not attempted: it is retried later like a failed one. Over every endpoint,
//! [`ALL_IN_FLIGHT`] bounds the POSTs (sockets) open at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

use crate::ports::Target;

/// POSTs one endpoint has in flight at once: at least the webhooks function's SQS batch
/// (`BatchSize: 10` in `template.yaml`), so that on AWS every record of a batch reaches every
/// endpoint at once, and an endpoint that hangs costs its batch one POST timeout, not one per
/// record.
pub const LANE_IN_FLIGHT: usize = 10;
/// POSTs that may wait for one endpoint's lane besides those in flight (`chat21-local`, where
/// events arrive faster than a slow endpoint answers); beyond, a POST is retried later.
pub const LANE_WAITING: usize = 1_000;
/// POSTs in flight at once over every endpoint: each holds a socket. A tenant's endpoints
/// (at most 20) hold at most 200 of them.
pub const ALL_IN_FLIGHT: usize = 512;

/// The lanes of one consumer.
pub struct Lanes {
    lanes: Mutex<HashMap<Target, Lane>>,
    all: Semaphore,
}

struct Lane {
    in_flight: Arc<Semaphore>,
    /// POSTs in the lane: in flight and waiting.
    holders: usize,
}

/// A POST's place in its lane, and in the overall bound; given back when dropped.
pub struct Slot<'a> {
    _all: Option<SemaphorePermit<'a>>,
    _lane: OwnedSemaphorePermit,
    _left: Leave<'a>,
}

/// Leaves the lane when dropped (also when a POST waiting for its turn is cancelled).
struct Leave<'a> {
    lanes: &'a Lanes,
    target: Target,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let mut lanes = self.lanes.lock();
        if let Some(lane) = lanes.get_mut(&self.target) {
            lane.holders -= 1;
            if lane.holders == 0 {
                lanes.remove(&self.target);
            }
        }
    }
}

impl Default for Lanes {
    fn default() -> Lanes {
        Lanes {
            lanes: Mutex::new(HashMap::new()),
            all: Semaphore::new(ALL_IN_FLIGHT),
        }
    }
}

impl Lanes {
    fn lock(&self) -> MutexGuard<'_, HashMap<Target, Lane>> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one POST to `target`, once its lane (and the overall bound) has room for
    /// one more in flight; `None` at once, and nothing held, when [`LANE_WAITING`] POSTs
    /// already wait in that lane.
    pub async fn enter(&self, target: &Target) -> Option<Slot<'_>> {
        let in_flight = {
            let mut lanes = self.lock();
            let lane = lanes.entry(target.clone()).or_insert_with(|| Lane {
                in_flight: Arc::new(Semaphore::new(LANE_IN_FLIGHT)),
                holders: 0,
            });
            if lane.holders >= LANE_IN_FLIGHT + LANE_WAITING {
                return None;
            }
            lane.holders += 1;
            lane.in_flight.clone()
        };
        let left = Leave {
            lanes: self,
            target: target.clone(),
        };
        // Neither semaphore is ever closed.
        let lane = in_flight.acquire_owned().await.ok()?;
        let all = self.all.acquire().await.ok();
        Some(Slot {
            _all: all,
            _lane: lane,
            _left: left,
        })
    }

    /// POSTs in `target`'s lane (in flight and waiting).
    pub fn holding(&self, target: &Target) -> usize {
        self.lock().get(target).map_or(0, |lane| lane.holders)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn endpoint(name: &str) -> Target {
        Target::Global {
            url: format!("https://{name}.example/hook"),
        }
    }

    #[tokio::test]
    async fn a_full_lane_holds_up_only_its_own_endpoint() {
        let lanes = Lanes::default();
        let (slow, other) = (endpoint("slow"), endpoint("other"));
        let mut held = Vec::new();
        for _ in 0..LANE_IN_FLIGHT {
            held.push(lanes.enter(&slow).await.unwrap());
        }
        // The slow endpoint's next POST waits; another endpoint's goes at once.
        let waiting = lanes.enter(&slow);
        tokio::pin!(waiting);
        let short = Duration::from_millis(20);
        assert!(tokio::time::timeout(short, &mut waiting).await.is_err());
        assert!(
            tokio::time::timeout(short, lanes.enter(&other))
                .await
                .is_ok()
        );
        // One of the slow endpoint's POSTs ends: the waiting one goes.
        held.pop();
        assert!(tokio::time::timeout(short, &mut waiting).await.is_ok());
    }

    #[tokio::test]
    async fn beyond_the_waiting_bound_a_post_is_refused_at_once_and_lanes_are_forgotten() {
        let lanes = Arc::new(Lanes::default());
        let slow = endpoint("slow");
        let mut held = Vec::new();
        for _ in 0..LANE_IN_FLIGHT {
            held.push(lanes.enter(&slow).await.unwrap());
        }
        let mut waiters = Vec::new();
        for _ in 0..LANE_WAITING {
            let (lanes, slow) = (lanes.clone(), slow.clone());
            waiters.push(tokio::spawn(
                async move { lanes.enter(&slow).await.is_some() },
            ));
        }
        while lanes.holding(&slow) < LANE_IN_FLIGHT + LANE_WAITING {
            tokio::task::yield_now().await;
        }
        assert!(lanes.enter(&slow).await.is_none(), "the lane is full");
        assert_eq!(lanes.holding(&slow), LANE_IN_FLIGHT + LANE_WAITING);
        // A waiting POST given up leaves its place.
        waiters.pop().unwrap().abort();
        while lanes.holding(&slow) == LANE_IN_FLIGHT + LANE_WAITING {
            tokio::task::yield_now().await;
        }
        held.clear();
        for waiter in waiters {
            assert!(waiter.await.unwrap());
        }
        assert_eq!(lanes.holding(&slow), 0);
        assert!(lanes.lock().is_empty(), "an idle lane is forgotten");
    }
}
