//! `POST /api/{app_id}/groups`: create a group.
//! Behaviour: `chat21::ops::groups::create`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::lambda::Error> {
    chat21::lambda::serve_http(chat21::routes::Route::CreateGroup).await
}
