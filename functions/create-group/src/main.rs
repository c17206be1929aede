//! `POST /api/{app_id}/groups`: create a group.
//! Behaviour: `chat21::ops::groups::create`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::entry::lambda::Error> {
    chat21::entry::lambda::serve_http(chat21::routes::Route::CreateGroup).await
}
