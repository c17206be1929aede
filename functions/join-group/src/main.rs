//! `POST /api/{app_id}/groups/{group_id}/members`: add a member.
//! Behaviour: `chat21::ops::groups::join`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::entry::lambda::Error> {
    chat21::entry::lambda::serve_http(chat21::routes::Route::JoinGroup).await
}
