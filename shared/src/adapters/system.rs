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

/// Random UUIDs (v4).
pub struct UuidIds;

impl IdSource for UuidIds {
    fn new_id(&self) -> String {
        uuid::Uuid::new_v4().to_string()
    }
}
