//! Consumes the queue subscribed to the topic: writes recipients' copies and conversations.
//! Behaviour: `chat21::ops::deliver`; batch handling: `chat21::lambda::handle_sqs`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::lambda::Error> {
    chat21::lambda::serve_deliver().await
}
