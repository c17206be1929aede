//! Consumes the table's stream (new messages, settled group changes): recipients'
//! conversations, events, real-time pushes.
//! Behaviour: `chat21::ops::deliver`; batch handling: `chat21::lambda::handle_stream`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::lambda::Error> {
    chat21::lambda::serve_deliver().await
}
