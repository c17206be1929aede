//! `GET /api/{app_id}/groups/{group_id}`.
//! Behaviour: `chat21::ops::groups::get`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::entry::lambda::Error> {
    chat21::entry::lambda::serve_http(chat21::routes::Route::GetGroup).await
}
