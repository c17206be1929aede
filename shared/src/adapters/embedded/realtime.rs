//! A recording stand-in for the MQTT broker: keeps every publish and every retained message
//! cleared (tests read them), and can be told to fail.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::ports::{Push, Realtime};

#[derive(Default)]
pub struct RecordingRealtime {
    published: Mutex<Vec<Push>>,
    /// The topics whose retained message was cleared, in order.
    cleared: Mutex<Vec<String>>,
    failures: AtomicUsize,
    /// The most pushes one `publish` call carried (what a caller held in memory at once).
    largest: AtomicUsize,
}

impl RecordingRealtime {
    pub fn new() -> RecordingRealtime {
        RecordingRealtime::default()
    }

    /// Makes the next `n` calls (publish or clear) fail as an unreachable broker would.
    pub fn fail_next(&self, n: usize) {
        self.failures.store(n, Ordering::SeqCst);
    }

    /// Everything published so far, and forgets it.
    pub fn take(&self) -> Vec<Push> {
        std::mem::take(&mut *self.lock())
    }

    /// The topics whose retained message was cleared so far, and forgets them.
    pub fn take_cleared(&self) -> Vec<String> {
        std::mem::take(&mut *self.cleared.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The most pushes a single `publish` call has carried so far.
    pub fn largest_publish(&self) -> usize {
        self.largest.load(Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Push>> {
        self.published.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failing(&self) -> Result<()> {
        let failing = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(Error::unavailable("broker unavailable (injected failure)"));
        }
        Ok(())
    }
}

#[async_trait]
impl Realtime for RecordingRealtime {
    async fn publish(&self, pushes: &[Push]) -> Result<()> {
        self.failing()?;
        self.largest.fetch_max(pushes.len(), Ordering::SeqCst);
        self.lock().extend(pushes.iter().cloned());
        Ok(())
    }

    async fn clear_retained(&self, topic: &str) -> Result<()> {
        self.failing()?;
        self.cleared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(topic.to_string());
        Ok(())
    }
}
