//! `GET /api/{app_id}/{user_id}/conversations`: active conversations.
//! Behaviour: `chat21::ops::conversations::list`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::entry::lambda::Error> {
    chat21::entry::lambda::serve_http(chat21::routes::Route::ListConversations).await
}
