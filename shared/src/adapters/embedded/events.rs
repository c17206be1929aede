//! The in-process event bus.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::mpsc::UnboundedSender;

use crate::error::{Error, Result};
use crate::events::Event;
use crate::ports::EventPublisher;

/// The in-process event bus: records what was published, optionally forwards it to a
/// consumer (the local server's deliver task), and can be told to fail (tests).
/// Built with [`EmbeddedEvents::new`] (records) or [`EmbeddedEvents::with_sink`] (forwards).
#[derive(Default)]
pub struct EmbeddedEvents {
    published: Mutex<Vec<Event>>,
    /// Keeps what is published (tests read it); off for the long-running local server.
    record: bool,
    failures: AtomicUsize,
    sink: Option<UnboundedSender<Event>>,
}

impl EmbeddedEvents {
    pub fn new() -> EmbeddedEvents {
        EmbeddedEvents {
            record: true,
            ..EmbeddedEvents::default()
        }
    }

    /// Forwards every published event to `sink` instead of keeping it.
    pub fn with_sink(sink: UnboundedSender<Event>) -> EmbeddedEvents {
        EmbeddedEvents {
            sink: Some(sink),
            ..EmbeddedEvents::default()
        }
    }

    /// Makes the next `n` publish calls fail as an unreachable SNS would.
    pub fn fail_next(&self, n: usize) {
        self.failures.store(n, Ordering::SeqCst);
    }

    /// Everything published so far, and forgets it.
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.lock())
    }

    /// Everything published so far.
    pub fn published(&self) -> Vec<Event> {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Event>> {
        self.published.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl EventPublisher for EmbeddedEvents {
    async fn publish(&self, events: &[Event]) -> Result<()> {
        let failing = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(Error::unavailable(
                "event bus unavailable (injected failure)",
            ));
        }
        if self.record {
            self.lock().extend(events.iter().cloned());
        }
        if let Some(sink) = &self.sink {
            for event in events {
                // The receiver only goes away when the process is shutting down.
                let _ = sink.send(event.clone());
            }
        }
        Ok(())
    }
}
