//! `PUT /api/{app_id}/groups/{group_id}/members`: replace the member set.
//! Behaviour: `chat21::ops::groups::set_members`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::entry::lambda::Error> {
    chat21::entry::lambda::serve_http(chat21::routes::Route::SetMembers).await
}
