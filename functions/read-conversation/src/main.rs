//! `POST /api/{app_id}/{user_id}/conversations/{convers_with}/read`: mark read.
//! Behaviour: `chat21::ops::conversations::mark_read`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::entry::lambda::Error> {
    chat21::entry::lambda::serve_http(chat21::routes::Route::ReadConversation).await
}
