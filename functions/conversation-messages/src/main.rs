//! `GET /api/{app_id}/{user_id}/conversations/{convers_with}/messages`: one timeline.
//! Behaviour: `chat21::ops::conversations::messages`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::entry::lambda::Error> {
    chat21::entry::lambda::serve_http(chat21::routes::Route::ConversationMessages).await
}
