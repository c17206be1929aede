//! The production clock and id source.

use crate::ports::{Clock, IdSource};

/// Milliseconds since the Unix epoch, from the system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock stopped at one instant: an operation run "as of" a moment that a retry must see
/// again (IoT Core's receipt time of a client's publish), so that the events and timestamps it
/// makes are the same however often it is handed over.
pub struct FixedClock(pub u64);

impl Clock for FixedClock {
    fn now_ms(&self) -> u64 {
        self.0
    }
}

/// Time-ordered UUIDs (v7), monotonic within the process: messages sent in the same
/// millisecond still sort (their order key ends with the id) in the order they were sent.
pub struct UuidIds;

impl IdSource for UuidIds {
    fn new_id(&self) -> String {
        uuid::Uuid::now_v7().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_in_the_order_they_were_made() {
        let ids: Vec<String> = (0..10_000).map(|_| UuidIds.new_id()).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "not strictly increasing"
        );
    }
}
