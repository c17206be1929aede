//! A client's publish, mapped to the operation it means (REALTIME.md "What clients publish").
//! The operations are the HTTP routes' own: a send over MQTT is `POST /messages`, with the
//! sender from the topic.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::events::{Event, Presence, PresenceState};
use crate::ids::Id;
use crate::input::Fields;
use crate::model::Caller;
use crate::ops::messages::SendMessage;
use crate::ops::{Deps, conversations, messages};
use crate::realtime::topics::{self, ClientTopic};

/// Runs what `caller`'s publish on `topic` means. Anything refused or invalid is an error (the
/// broker logs and drops it: MQTT has no reply channel), and changes nothing.
pub async fn handle(deps: &Deps, caller: &Caller, topic: &str, payload: &[u8]) -> Result<()> {
    handle_publish(deps, caller, topic, payload, None).await
}

/// [`handle`], with the `message_id` a send without one gets: a publish that is handed over
/// again (IoT Core's rules invoke a function that may be retried) then sends it only once.
pub async fn handle_publish(
    deps: &Deps,
    caller: &Caller,
    topic: &str,
    payload: &[u8],
    message_id: Option<Id>,
) -> Result<()> {
    let kind = ClientTopic::parse(topic, caller)
        .ok_or_else(|| Error::forbidden(format!("no client may publish to {topic}")))?;
    match kind {
        ClientTopic::Outgoing { to } => {
            let mut input = SendMessage::from_publish(&Fields::parse(payload)?, to)?;
            if input.message_id.is_none() {
                input.message_id = message_id;
            }
            messages::send_message(deps, caller, input)
                .await
                .map(|_| ())
        }
        ClientTopic::MessageUpdate { with, message_id } => {
            if Fields::parse(payload)?.get("status") != Some(&Value::from(200)) {
                return Ok(());
            }
            conversations::read_message(deps, caller, &with, &message_id).await
        }
        ClientTopic::ConversationUpdate { with } => {
            if Fields::parse(payload)?.get("is_new") != Some(&Value::Bool(false)) {
                return Ok(());
            }
            conversations::mark_read(deps, caller, caller.user_id.clone(), &with).await
        }
        ClientTopic::Archive { with } => conversations::archive(deps, caller, None, &with).await,
        ClientTopic::Presence { client_id } => presence(deps, caller, client_id, payload).await,
    }
}

/// `{"connected": true}` or `{"disconnected": true}` (Chat21's will, retained): a
/// `presence-change` event. A disconnect also clears the topic's retained message (the will),
/// which IoT Core would otherwise keep for years: one per unclean disconnect, each under a new
/// random client id. An empty payload is such a clear (ours, seen again through the topic
/// rule, or a client's own): nothing to do.
async fn presence(deps: &Deps, caller: &Caller, client_id: Id, payload: &[u8]) -> Result<()> {
    if payload.is_empty() {
        return Ok(());
    }
    let fields = Fields::parse(payload)?;
    let presence = if fields.get("connected") == Some(&Value::Bool(true)) {
        PresenceState::Online
    } else if fields.get("disconnected") == Some(&Value::Bool(true)) {
        PresenceState::Offline
    } else {
        return Ok(());
    };
    if presence == PresenceState::Offline {
        // First, so that a failure fails the whole publish and its retry (which clears
        // again: idempotent) also sends the event.
        let topic = topics::presence(&caller.app_id, &caller.user_id, &client_id);
        deps.realtime.clear_retained(&topic).await?;
    }
    let presence = Presence {
        user_id: caller.user_id.clone(),
        client_id,
        presence,
    };
    let event = Event::presence_change(&caller.app_id, presence, deps.now());
    deps.events.publish(&[event]).await
}
