//! What every listener of the local server shares (HTTP, MQTT over TCP, MQTT over WebSocket):
//! an accept loop that never stops on an accept error, a cap on the connections a port holds
//! at once, and the time a new connection has to say who it is.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chat21::config;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tracing::{debug, warn};

/// The first wait after a failed accept(); it doubles with each failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// The longest wait between two accept() attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The bounds of every listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a new connection may take to send its HTTP request headers, finish its
    /// WebSocket upgrade, or send its MQTT CONNECT (`HANDSHAKE_TIMEOUT_SECS`).
    pub handshake_timeout: Duration,
    /// Connections each port holds at once (`MAX_CONNECTIONS`); one more is refused at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            max_connections: 10_000,
        }
    }
}

/// A whole number from the environment within `range`, or `default` when unset.
pub fn bounded(
    lookup: impl Fn(&str) -> Option<String>,
    name: &str,
    range: std::ops::RangeInclusive<u64>,
    default: u64,
) -> Result<u64, String> {
    let Some(raw) = lookup(name) else {
        return Ok(default);
    };
    raw.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            format!(
                "{name} must be a whole number from {} to {}, not {raw:?}",
                range.start(),
                range.end()
            )
        })
}

impl Limits {
    /// `HANDSHAKE_TIMEOUT_SECS` (1–300, default 10) and `MAX_CONNECTIONS` (1–1,000,000,
    /// default 10,000).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Limits, String> {
        let defaults = Limits::default();
        let secs = bounded(
            &lookup,
            "HANDSHAKE_TIMEOUT_SECS",
            1..=300,
            defaults.handshake_timeout.as_secs(),
        )?;
        let max = bounded(
            &lookup,
            "MAX_CONNECTIONS",
            1..=1_000_000,
            defaults.max_connections as u64,
        )?;
        Ok(Limits {
            handshake_timeout: Duration::from_secs(secs),
            max_connections: max as usize,
        })
    }

    /// From the process environment.
    pub fn from_env() -> Result<Limits, String> {
        Limits::from_lookup(config::env)
    }
}

/// Resolves once `stop` turns true (never if its sender is gone without: nobody can stop it).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stopping| *stopping).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A stop that never comes.
pub fn never() -> watch::Receiver<bool> {
    let (sender, receiver) = watch::channel(false);
    // Kept for the life of the process: the receiver then simply never sees a change.
    std::mem::forget(sender);
    receiver
}

/// Accepts connections until `stop` turns true, then waits for the connections under way to
/// end (each `serve` is told by its own copy of `stop`). Each one within the cap is handed to
/// `serve` (in its own task, holding its place until that ends); one beyond it goes to
/// `refuse` and is closed. A failed accept() (descriptors used up, say) is logged and retried
/// after a short wait, growing from 10 ms to 1 s while failures last: connections that wait
/// meanwhile are taken as soon as it succeeds again.
pub async fn accept_loop<R, S, F>(
    listener: TcpListener,
    name: &'static str,
    max_connections: usize,
    mut stop: watch::Receiver<bool>,
    refuse: R,
    serve: S,
) where
    R: Fn(TcpStream),
    S: Fn(TcpStream, SocketAddr) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let places = Arc::new(Semaphore::new(max_connections));
    let mut backoff = FIRST_BACKOFF;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = FIRST_BACKOFF;
                accepted
            }
            Err(e) => {
                warn!(listener = name, error = %e, retry_in = ?backoff, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        match places.clone().try_acquire_owned() {
            Ok(place) => {
                let connection = serve(stream, peer);
                tokio::spawn(hold(place, connection));
            }
            Err(_) => {
                debug!(listener = name, %peer, max_connections, "connection refused: the port is full");
                refuse(stream);
            }
        }
    }
    drop(listener);
    // Every place back: every connection has ended.
    let _ = places.acquire_many(max_connections as u32).await;
}

async fn hold(place: OwnedSemaphorePermit, connection: impl Future<Output = ()>) {
    connection.await;
    drop(place);
}

/// Refuses by closing at once.
pub fn close(stream: TcpStream) {
    drop(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn limits_from_the_environment() {
        assert_eq!(Limits::from_lookup(lookup(&[])).unwrap(), Limits::default());
        let set = Limits::from_lookup(lookup(&[
            ("HANDSHAKE_TIMEOUT_SECS", " 3 "),
            ("MAX_CONNECTIONS", "7"),
        ]))
        .unwrap();
        assert_eq!(set.handshake_timeout, Duration::from_secs(3));
        assert_eq!(set.max_connections, 7);
        for (name, bad) in [
            ("HANDSHAKE_TIMEOUT_SECS", "0"),
            ("HANDSHAKE_TIMEOUT_SECS", "301"),
            ("HANDSHAKE_TIMEOUT_SECS", "ten"),
            ("MAX_CONNECTIONS", "0"),
            ("MAX_CONNECTIONS", "-1"),
            ("MAX_CONNECTIONS", "1000001"),
        ] {
            let e = Limits::from_lookup(lookup(&[(name, bad)])).unwrap_err();
            assert!(e.contains(name), "{e}");
        }
    }
}
