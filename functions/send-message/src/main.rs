//! `POST /api/{app_id}/messages`: send a direct or group message.
//! Behaviour: `chat21::ops::messages`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::entry::lambda::Error> {
    chat21::entry::lambda::serve_http(chat21::routes::Route::SendMessage).await
}
