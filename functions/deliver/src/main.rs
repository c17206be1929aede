//! Consumes the table's stream (new messages, settled group changes): recipients'
//! conversations, events, real-time pushes.
//! Behaviour: `chat21::ops::deliver`; batch handling: `chat21::entry::stream::handle_stream`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::entry::lambda::Error> {
    chat21::entry::stream::serve_deliver().await
}
