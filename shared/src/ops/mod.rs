//! The behaviour of API.md, written once against the ports. No AWS or Lambda types here.

pub mod conversations;
pub mod deliver;
pub mod groups;
pub mod messages;

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::ports::{Clock, EventPublisher, IdSource, PageRequest, Store};

/// What every operation runs against, built once per process (per cold start on Lambda).
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub events: Arc<dyn EventPublisher>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdSource>,
    pub settings: Settings,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Publish a `message-delivered` event per recipient copy.
    pub delivered_events: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            delivered_events: true,
        }
    }
}

impl Deps {
    pub fn now(&self) -> u64 {
        self.clock.now_ms()
    }
}

pub const DEFAULT_PAGE: usize = 200;
pub const MAX_PAGE: usize = 1000;

/// Reads `?limit=` (1..=1000, default 200).
pub fn page_limit(limit: Option<&str>) -> Result<usize> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(Error::bad_request(format!(
                "`limit` must be an integer from 1 to {MAX_PAGE}"
            ))),
        },
    }
}

/// Builds a page request from the raw query values, with `decode` reading the cursor.
pub fn page_request(
    limit: Option<&str>,
    cursor: Option<&str>,
    decode: impl Fn(&str) -> Result<crate::keys::Position>,
) -> Result<PageRequest> {
    Ok(PageRequest {
        limit: page_limit(limit)?,
        after: cursor.map(decode).transpose()?,
    })
}
