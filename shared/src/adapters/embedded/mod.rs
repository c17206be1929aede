//! In-process adapters: the event bus and the real-time publisher that record what they are
//! given (test doubles, and what the tests read), and an in-memory retry queue for the
//! webhooks consumer. The store itself is SQLite (`adapters::sqlite`), in memory for tests.

mod events;
mod realtime;
mod retries;

pub use events::EmbeddedEvents;
pub use realtime::RecordingRealtime;
pub use retries::{MemoryRetries, RetryBounds};
