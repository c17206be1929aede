//! Webhooks against a real HTTP receiver on loopback (hyper, started by each test), through the
//! real HTTP client: every POST's signature checked, endpoints that fail, hang, refuse; the
//! retries driven by a clock the test moves (a day of backoff takes no time), on the in-memory
//! retry queue; then the Lambda path on moto's SQS (partial batch failures, delays, the
//! dead-letter queue) and from the topic through a filtered subscription.
//!
//! Here: what the files share (the consumer on the in-memory queue, configurations, the
//! events' ids and counts). `receiver` is the endpoint; `in_memory`, `on_sqs` and
//! `isolation` the scenarios.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chat21::adapters::embedded::MemoryRetries;
use chat21::adapters::http::HttpClient;
use chat21::adapters::sqs::SqsRetries;
use chat21::entry::webhooks::handle_webhooks;
use chat21::events::Event;
use chat21::model::EventType;
use chat21::model::{Caller, Webhook};
use chat21::ops::webhooks::delivery::{BACKOFF_SECS, MAX_ATTEMPTS};
use chat21::ops::webhooks::records::Retry;
use chat21::ops::webhooks::{AllowedHosts, Secret, WebhookConfig, Webhooks};
use chat21::ops::{groups, messages};
use chat21::ports::Target;
use chat21::ports::{Clock, RetryQueue, WebhookStore};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::common::{APP, Harness, ManualClock, id, input, user};

/// The POST timeout of these tests' client (production: 10 s). Loopback answers take
/// milliseconds; only the endpoint told to hang reaches it.
const TIMEOUT: Duration = Duration::from_secs(5);
const GLOBAL_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TENANT_SECRET: &str = "a-tenants-own-plain-secret";
const START: u64 = 1_800_000_000_000;

mod in_memory;
mod isolation;
mod on_sqs;
mod receiver;

use receiver::{Arrival, Receiver, Script};

// ---------------------------------------------------------------------------------------------
// The consumer, on the in-memory queue and a clock the test moves

struct Consumer {
    webhooks: Arc<Webhooks>,
    retries: Arc<MemoryRetries>,
    clock: Arc<ManualClock>,
}

impl Consumer {
    fn new(store: Arc<dyn WebhookStore>, config: WebhookConfig) -> Consumer {
        let clock = ManualClock::at(START);
        let retries = Arc::new(MemoryRetries::new(clock.clone(), 10_000));
        let webhooks = Arc::new(Webhooks::new(
            store,
            Arc::new(HttpClient::new(TIMEOUT).unwrap()),
            retries.clone(),
            clock.clone(),
            config,
        ));
        Consumer {
            webhooks,
            retries,
            clock,
        }
    }

    /// The events, as the topic hands them over.
    async fn deliver(&self, events: &[Event]) {
        for event in events {
            self.webhooks.handle_record(&event.to_json()).await.unwrap();
        }
    }

    /// Moves the clock to each due time in turn and hands the due retries over, until none
    /// wait; returns how many queue messages came back (attempts and hops).
    async fn drain(&self) -> usize {
        let mut handled = 0;
        while let Some(due) = self.retries.next_due() {
            self.clock.set(due);
            for message in self.retries.take_due() {
                self.webhooks.handle_record(&message).await.unwrap();
                handled += 1;
            }
            assert!(handled < 100_000, "the retries never end");
        }
        handled
    }
}

fn config(receiver: &Receiver, paths: &[&str], events: &[EventType]) -> WebhookConfig {
    WebhookConfig {
        endpoints: paths.iter().map(|p| receiver.url(p)).collect(),
        events: events.to_vec(),
        secret: Some(Secret::parse("secret", GLOBAL_SECRET).unwrap()),
        allowed_hosts: AllowedHosts::any(),
    }
}

fn tenant_hook(app: &str, hook: &str, url: String, events: &[EventType]) -> Webhook {
    Webhook {
        id: hook.into(),
        app_id: app.into(),
        url,
        events: events.to_vec(),
        secret: TENANT_SECRET.into(),
        created_at: 1,
        updated_at: 1,
    }
}

fn ids(arrivals: &[Arrival]) -> Vec<String> {
    arrivals.iter().map(|a| a.id.clone()).collect()
}

fn counts(arrivals: &[Arrival]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for a in arrivals {
        *counts.entry(a.id.clone()).or_default() += 1;
    }
    counts
}

fn event_id(event: &Event) -> String {
    chat21::ops::webhooks::signing::webhook_id(&event.to_json())
}

/// An SQS event as Lambda hands it over.
fn sqs_event(records: &[(String, String)]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = records
        .iter()
        .map(|(id, body)| {
            let mut message = SqsMessage::default();
            message.message_id = Some(id.clone());
            message.body = Some(body.clone());
            message
        })
        .collect();
    event
}

fn message_sent(app: &str, to: &str, text: &str) -> Event {
    let message = chat21::model::Message {
        message_id: crate::common::unique("m"),
        sender: "u1".into(),
        sender_fullname: "One".into(),
        recipient: to.into(),
        recipient_fullname: "Two".into(),
        text: text.into(),
        kind: "text".into(),
        channel_type: chat21::model::ChannelType::Direct,
        attributes: None,
        metadata: None,
        timestamp: START,
        status: chat21::model::status::SENT,
        app_id: app.into(),
        timeline_of: "u1".into(),
        convers_with: to.into(),
    };
    Event::message_sent(&message, START)
}
