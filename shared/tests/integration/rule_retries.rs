//! A client's publish handed to mqtt-inbound again (Lambda retries a rule's invocation) makes
//! the same events, byte for byte: the operation runs as of IoT Core's receipt of the publish
//! (`received_at`), not the clock of the attempt (API.md: an event has one identity).

use base64::Engine;
use chat21::entry::rule;
use chat21::model::EventType;
use serde_json::{Value, json};

use crate::common::{APP, Harness, user};

fn rule_event(topic: &str, user: &str, payload: &[u8], received_at: u64) -> Value {
    json!({
        "payload": base64::engine::general_purpose::STANDARD.encode(payload),
        "topic": topic,
        "app_id": APP,
        "user_id": user,
        "client_id": "client-1",
        "received_at": received_at,
        "publish_id": "7d3f0b5e-9a8c-4f1e-8b2d-1c0e5a6f7b8c",
    })
}

/// Runs `event` twice, with the harness's clock moving in between, and returns each run's
/// published events as JSON.
async fn twice(h: &Harness, event: &Value) -> (Vec<String>, Vec<String>) {
    let mut runs = Vec::new();
    for _ in 0..2 {
        h.events.take();
        rule::handle(&h.deps, event).await.unwrap();
        let events = h.deliver_all().await;
        runs.push(events.iter().map(|e| e.to_json()).collect());
    }
    let second = runs.pop().unwrap();
    (runs.pop().unwrap(), second)
}

#[tokio::test]
async fn a_retried_rule_invocation_publishes_the_same_events() {
    let h = Harness::sqlite();
    let at = 1_700_000_500_000;

    let presence = format!("apps/{APP}/users/u1/presence/client-1");
    for payload in [&br#"{"connected": true}"#[..], br#"{"disconnected": true}"#] {
        let (first, again) = twice(&h, &rule_event(&presence, "u1", payload, at)).await;
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(first[0].contains(r#""event_type":"presence-change""#));
        assert!(
            first[0].contains(&format!(r#""createdAt":{at}"#)),
            "{first:?}"
        );
        assert_eq!(
            first, again,
            "a presence-change republished with other bytes"
        );
    }

    // A conversation to archive: u2 writes to u1, then u1 archives it over MQTT, twice.
    h.send(&user("u2"), "u1", "hello").await.unwrap();
    h.deliver_all().await;
    let archive = format!("apps/{APP}/users/u1/conversations/u2/archive");
    let (first, again) = twice(&h, &rule_event(&archive, "u1", b"{}", at + 1)).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].contains(EventType::ConversationArchived.as_str()));
    assert_eq!(
        first, again,
        "a conversation-archived republished with other bytes"
    );

    // A send over MQTT: the same message (id and timestamp), so the same events.
    let outgoing = format!("apps/{APP}/outgoing/users/u1/messages/u3/outgoing");
    let body = br#"{"text": "over MQTT", "sender_fullname": "U1", "recipient_fullname": "U3"}"#;
    let (first, again) = twice(&h, &rule_event(&outgoing, "u1", body, at + 2)).await;
    assert!(
        first
            .iter()
            .any(|e| e.contains(r#""event_type":"message-sent""#)),
        "{first:?}"
    );
    assert!(
        first
            .iter()
            .any(|e| e.contains(&format!(r#""timestamp":{}"#, at + 2)))
    );
    // The retry stores nothing new, so nothing is delivered or published again.
    assert_eq!(again, Vec::<String>::new());
    let timeline = h.timeline("u3", "u1").await;
    assert_eq!(timeline.len(), 1);
    assert_eq!(
        timeline[0].timestamp,
        at + 2,
        "the message is dated by its receipt"
    );
}
