//! Consumes the webhooks queue (the topic's events, and retries): POSTs each event, signed,
//! to every endpoint that wants it, retrying each endpoint on its own.
//! Behaviour: `chat21::ops::webhooks::delivery`; batch handling: `chat21::lambda::handle_webhooks`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::lambda::Error> {
    chat21::lambda::serve_webhooks().await
}
