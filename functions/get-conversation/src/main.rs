//! `GET /api/{app_id}/{user_id}/conversations/{convers_with}` and `.../archived_conversations/{convers_with}`.
//! Behaviour: `chat21::ops::conversations::detail`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::entry::lambda::Error> {
    chat21::entry::lambda::serve_http(chat21::routes::Route::GetConversation).await
}
