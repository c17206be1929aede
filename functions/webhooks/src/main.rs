//! Consumes the webhooks queue (the topic's events, and retries): POSTs each event, signed,
//! to every endpoint that wants it, retrying each endpoint on its own.
//! Behaviour: `chat21::ops::webhooks::delivery`; batch handling:
//! `chat21::entry::webhooks::handle_webhooks`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::entry::lambda::Error> {
    chat21::entry::webhooks::serve_webhooks().await
}
