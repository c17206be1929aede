//! The one retry loop of the adapters, for what the AWS SDK does not retry by itself: items a
//! batch left unprocessed, transactions cancelled by a conflict, batch entries that failed.
//! Throttled and failed requests are the SDK's to retry (its standard retry mode), never ours,
//! so one call never multiplies the SDK's attempts.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};

/// Attempts before giving up with a 503.
pub const ATTEMPTS: u32 = 8;

/// What one attempt left: done, or a (smaller) rest to try again.
pub enum Attempt<T, S> {
    Done(T),
    Again(S),
}

impl<S> Attempt<(), Vec<S>> {
    /// Done when nothing is left, else another attempt with what is.
    pub fn unless_left(left: Vec<S>) -> Self {
        if left.is_empty() {
            Attempt::Done(())
        } else {
            Attempt::Again(left)
        }
    }
}

/// Exponential backoff: 20 ms, 40 ms, … capped at 1.28 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(10u64 << attempt.clamp(1, 7))
}

/// Runs `step` on `state`, then on what each attempt left, backing off in between, until it
/// is done; after [`ATTEMPTS`] the call fails as unavailable with `gave_up`.
pub async fn retry<S, T, F, Fut>(gave_up: &str, mut state: S, mut step: F) -> Result<T>
where
    F: FnMut(S) -> Fut,
    Fut: Future<Output = Result<Attempt<T, S>>>,
{
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(backoff(attempt)).await;
        }
        match step(state).await? {
            Attempt::Done(done) => return Ok(done),
            Attempt::Again(rest) => state = rest,
        }
    }
    Err(Error::unavailable(format!("{gave_up}; retry")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_what_is_left_then_gives_up() {
        let done = retry("never", 3u32, |left| async move {
            Ok(match left {
                0 => Attempt::Done("done"),
                n => Attempt::Again(n - 1),
            })
        })
        .await;
        assert_eq!(done.unwrap(), "done");

        let mut calls = 0;
        let failed: Result<()> = retry("the store kept refusing", (), |()| {
            calls += 1;
            async { Ok(Attempt::Again(())) }
        })
        .await;
        assert_eq!(calls, ATTEMPTS);
        let e = failed.unwrap_err();
        assert_eq!(e.status(), 503);
        assert!(e.to_string().contains("the store kept refusing"));
    }

    #[tokio::test]
    async fn errors_are_not_retried() {
        let mut calls = 0;
        let failed: Result<()> = retry("x", (), |()| {
            calls += 1;
            async { Err(Error::internal("bug")) }
        })
        .await;
        assert_eq!(failed.unwrap_err().status(), 500);
        assert_eq!(calls, 1);
    }
}
