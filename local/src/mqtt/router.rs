//! Who is connected, what they subscribed to, and the retained messages; and the routing of a
//! publish to the matching subscriptions.
//!
//! Every subscription lies inside its user's own tree (`apps/{app}/users/{me}/…`), so a topic
//! is routed by its owner (app and user) first: only that user's connections are looked at,
//! whatever the number of connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use bytestring::ByteString;
use chat21::realtime::topics;
use rmqtt_codec::types::QoS;
use tokio::sync::{Notify, mpsc};
use tracing::warn;

use super::retained::Retained;

/// Subscriptions one connection may hold (IoT Core's limit); beyond, SUBACK 0x80.
pub const MAX_SUBSCRIPTIONS: usize = 50;

/// A publish on its way to one connection.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
}

/// One connection, as the router sees it.
pub struct Connection {
    pub id: u64,
    pub app: String,
    pub user: String,
    pub client_id: String,
    subscriptions: Mutex<Vec<(String, QoS)>>,
    queue: mpsc::Sender<Delivery>,
    /// Set when the router or a newer connection wants this one closed.
    kicked: AtomicBool,
    wake: Notify,
}

impl Connection {
    fn lock(&self) -> MutexGuard<'_, Vec<(String, QoS)>> {
        self.subscriptions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes (a filter subscribed again is replaced). False, and nothing changes, when
    /// the connection already holds [`MAX_SUBSCRIPTIONS`] others.
    pub fn subscribe(&self, filter: &str, qos: QoS) -> bool {
        let mut subscriptions = self.lock();
        if let Some(held) = subscriptions.iter_mut().find(|(f, _)| f == filter) {
            held.1 = qos;
            return true;
        }
        if subscriptions.len() >= MAX_SUBSCRIPTIONS {
            return false;
        }
        subscriptions.push((filter.to_string(), qos));
        true
    }

    pub fn unsubscribe(&self, filter: &str) {
        self.lock().retain(|(f, _)| f != filter);
    }

    /// The QoS this connection gets `topic` at, if it subscribed to it.
    fn granted(&self, topic: &str) -> Option<QoS> {
        self.lock()
            .iter()
            .filter(|(filter, _)| topics::matches(filter, topic))
            .map(|(_, qos)| *qos)
            .max_by_key(|qos| *qos as u8)
    }

    /// Asks the connection's task to close it. Returns whether it was not asked before.
    pub fn kick(&self) -> bool {
        let first = !self.kicked.swap(true, Ordering::SeqCst);
        self.wake.notify_one();
        first
    }

    pub fn is_kicked(&self) -> bool {
        self.kicked.load(Ordering::SeqCst)
    }

    /// Resolves when the connection is asked to close.
    pub async fn kicked(&self) {
        while !self.is_kicked() {
            self.wake.notified().await;
        }
    }
}

#[derive(Default)]
struct State {
    by_user: HashMap<(String, String), Vec<Arc<Connection>>>,
    by_client: HashMap<(String, String, String), Arc<Connection>>,
    retained: Retained,
}

/// The broker's routing table.
pub struct Router {
    state: Mutex<State>,
    next_id: AtomicU64,
    /// Publishes a connection may have waiting; beyond that it is too slow and is closed.
    queue_len: usize,
}

impl Router {
    pub fn new(queue_len: usize) -> Router {
        Router {
            state: Mutex::new(State::default()),
            next_id: AtomicU64::new(1),
            queue_len,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection and its outgoing queue. A connection of the same user with
    /// the same client id is replaced (closed), as MQTT requires.
    pub fn connect(
        &self,
        app: &str,
        user: &str,
        client_id: &str,
    ) -> (Arc<Connection>, mpsc::Receiver<Delivery>) {
        let (queue, receiver) = mpsc::channel(self.queue_len);
        let connection = Arc::new(Connection {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            app: app.to_string(),
            user: user.to_string(),
            client_id: client_id.to_string(),
            subscriptions: Mutex::new(Vec::new()),
            queue,
            kicked: AtomicBool::new(false),
            wake: Notify::new(),
        });
        let mut state = self.lock();
        let client = (app.to_string(), user.to_string(), client_id.to_string());
        if let Some(previous) = state.by_client.insert(client, connection.clone()) {
            let _ = previous.kick();
        }
        state
            .by_user
            .entry((app.to_string(), user.to_string()))
            .or_default()
            .push(connection.clone());
        (connection, receiver)
    }

    /// Asks every connection to close (shutting down): each session closes its transport (a
    /// WebSocket close frame, a TCP shutdown) and, as the client did not say DISCONNECT, its
    /// will goes out. Returns how many were asked.
    pub fn close_all(&self) -> usize {
        let connections: Vec<Arc<Connection>> =
            self.lock().by_user.values().flatten().cloned().collect();
        connections.iter().filter(|c| c.kick()).count()
    }

    /// Forgets a closed connection.
    pub fn disconnect(&self, connection: &Connection) {
        let mut state = self.lock();
        let user = (connection.app.clone(), connection.user.clone());
        if let Some(list) = state.by_user.get_mut(&user) {
            list.retain(|c| c.id != connection.id);
            if list.is_empty() {
                state.by_user.remove(&user);
            }
        }
        let client = (
            connection.app.clone(),
            connection.user.clone(),
            connection.client_id.clone(),
        );
        if state
            .by_client
            .get(&client)
            .is_some_and(|c| c.id == connection.id)
        {
            state.by_client.remove(&client);
        }
    }

    /// Routes a publish to every connection subscribed to `topic` (at the lower of the publish's
    /// and the subscription's QoS). A connection whose queue is full is closed rather than
    /// waited for: one slow client never stalls the others.
    pub fn publish(&self, topic: &str, payload: Bytes, qos: QoS) {
        let Some((app, user)) = topics::owner_of(topic) else {
            return;
        };
        let connections = match self
            .lock()
            .by_user
            .get(&(app.to_string(), user.to_string()))
        {
            Some(list) => list.clone(),
            None => return,
        };
        let topic = ByteString::from(topic);
        for connection in connections {
            let Some(granted) = connection.granted(&topic) else {
                continue;
            };
            let delivery = Delivery {
                topic: topic.clone(),
                payload: payload.clone(),
                qos: if (granted as u8) < (qos as u8) {
                    granted
                } else {
                    qos
                },
                retain: false,
            };
            if connection.queue.try_send(delivery).is_err() && connection.kick() {
                warn!(
                    client = %connection.client_id,
                    user = %connection.user,
                    "a client is not reading its messages: closing its connection"
                );
            }
        }
    }

    /// Keeps (or with an empty payload, forgets) the retained message of `topic`, within its
    /// user's bounds (see [`Retained`]).
    pub fn retain(&self, topic: &str, payload: Bytes) {
        let Some((app, user)) = topics::owner_of(topic) else {
            return;
        };
        self.lock().retained.set(app, user, topic, payload);
    }

    /// The retained messages one SUBSCRIBE of `connection` to `filters` (as granted) replays.
    pub fn retained_for(
        &self,
        connection: &Connection,
        filters: &[(String, QoS)],
    ) -> Vec<Delivery> {
        self.lock()
            .retained
            .replay(&connection.app, &connection.user, filters)
    }

    /// A number no other call returns: names for clients that gave no id.
    pub fn fresh_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Connections currently open.
    pub fn connections(&self) -> usize {
        self.lock().by_user.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_to_the_owners_matching_subscriptions_only() {
        let router = Router::new(4);
        let (a, mut a_rx) = router.connect("app", "u1", "c1");
        let (b, mut b_rx) = router.connect("app", "u2", "c2");
        a.subscribe("apps/app/users/u1/#", QoS::AtMostOnce);
        b.subscribe("apps/app/users/u2/messages/+/clientadded", QoS::AtLeastOnce);
        router.publish(
            "apps/app/users/u1/messages/u2/clientadded",
            Bytes::from("x"),
            QoS::AtLeastOnce,
        );
        router.publish(
            "apps/app/users/u2/groups/g/clientupdated",
            Bytes::from("y"),
            QoS::AtLeastOnce,
        );
        router.publish(
            "apps/app/users/u2/messages/u1/clientadded",
            Bytes::from("z"),
            QoS::AtLeastOnce,
        );
        let got = a_rx.try_recv().unwrap();
        assert_eq!(got.payload, "x");
        assert_eq!(got.qos, QoS::AtMostOnce, "the subscription's lower QoS");
        assert!(a_rx.try_recv().is_err());
        assert_eq!(b_rx.try_recv().unwrap().payload, "z");
        assert!(b_rx.try_recv().is_err());
    }

    #[test]
    fn a_full_queue_closes_the_slow_connection_only() {
        let router = Router::new(2);
        let (slow, _slow_rx) = router.connect("app", "u1", "slow");
        let (fast, mut fast_rx) = router.connect("app", "u1", "fast");
        slow.subscribe("apps/app/users/u1/#", QoS::AtLeastOnce);
        fast.subscribe("apps/app/users/u1/#", QoS::AtLeastOnce);
        for i in 0..3 {
            router.publish(
                "apps/app/users/u1/x",
                Bytes::from(format!("{i}")),
                QoS::AtLeastOnce,
            );
            assert!(fast_rx.try_recv().is_ok());
        }
        assert!(slow.is_kicked());
        assert!(!fast.is_kicked());
    }

    #[test]
    fn the_same_client_id_replaces_the_connection() {
        let router = Router::new(2);
        let (first, _rx1) = router.connect("app", "u1", "c");
        let (second, _rx2) = router.connect("app", "u1", "c");
        assert!(first.is_kicked());
        router.disconnect(&first);
        assert!(!second.is_kicked());
        assert_eq!(router.connections(), 1);
        // Another user's connection with the same client id is left alone.
        let (other, _rx3) = router.connect("app", "u2", "c");
        assert!(!second.is_kicked() && !other.is_kicked());
    }

    #[test]
    fn retained_messages_per_users_tree() {
        let router = Router::new(2);
        let (c, _rx) = router.connect("app", "u1", "c");
        router.retain("apps/app/users/u1/presence/c", Bytes::from("{}"));
        router.retain("apps/app/users/u2/presence/d", Bytes::from("{}"));
        let tree = [("apps/app/users/u1/#".to_string(), QoS::AtLeastOnce)];
        assert_eq!(router.retained_for(&c, &tree).len(), 1);
        router.retain("apps/app/users/u1/presence/c", Bytes::new());
        assert!(router.retained_for(&c, &tree).is_empty());
    }

    #[test]
    fn at_most_50_subscriptions_a_filter_again_replaces() {
        let router = Router::new(2);
        let (c, _rx) = router.connect("app", "u1", "c");
        for i in 0..MAX_SUBSCRIPTIONS {
            assert!(c.subscribe(&format!("apps/app/users/u1/f{i}"), QoS::AtMostOnce));
        }
        assert!(!c.subscribe("apps/app/users/u1/one-more", QoS::AtLeastOnce));
        assert!(c.subscribe("apps/app/users/u1/f7", QoS::AtLeastOnce));
        assert_eq!(c.granted("apps/app/users/u1/f7"), Some(QoS::AtLeastOnce));
        assert_eq!(c.granted("apps/app/users/u1/one-more"), None);
        c.unsubscribe("apps/app/users/u1/f0");
        assert!(c.subscribe("apps/app/users/u1/one-more", QoS::AtLeastOnce));
    }
}
