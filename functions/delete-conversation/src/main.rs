//! `DELETE /api/{app_id}/conversations/{recipient_id}[?delete=true]`: archive or delete.
//! Behaviour: `chat21::ops::conversations::{archive, delete}`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::entry::lambda::Error> {
    chat21::entry::lambda::serve_http(chat21::routes::Route::DeleteConversation).await
}
