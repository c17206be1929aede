//! The small types and traits every family of ports shares: paging, the event bus, the clock
//! and the id source.

use async_trait::async_trait;

use crate::error::Result;
use crate::events::Event;
use crate::keys::Position;

/// A page request: at most `limit` items after `after` (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    pub after: Option<Position>,
}

impl PageRequest {
    pub fn first(limit: usize) -> PageRequest {
        PageRequest { limit, after: None }
    }

    /// The page this request asks for out of items already ordered newest first (each with
    /// its order key): those strictly before `after`, at most `limit`, and where to continue.
    pub fn page_of<T>(&self, newest_first: impl IntoIterator<Item = (String, T)>) -> Page<T> {
        let after = self.after.as_ref().map(|p| p.order.as_str());
        let mut items: Vec<(String, T)> = newest_first
            .into_iter()
            .filter(|(order, _)| after.is_none_or(|a| order.as_str() < a))
            .take(self.limit + 1)
            .collect();
        let next = if items.len() > self.limit {
            items.truncate(self.limit);
            items.last().map(|(order, _)| order.clone())
        } else {
            None
        };
        Page {
            items: items.into_iter().map(|(_, item)| item).collect(),
            next,
        }
    }
}

/// One page, and the `order` key to continue from while more remain.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes all events or fails; publishing an event twice is allowed (consumers are
    /// idempotent), losing one is not.
    async fn publish(&self, events: &[Event]) -> Result<()>;
}

pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

pub trait IdSource: Send + Sync {
    fn new_id(&self) -> String;
}
