//! `PUT /api/{app_id}/groups/{group_id}/attributes`.
//! Behaviour: `chat21::ops::groups::set_attributes`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::entry::lambda::Error> {
    chat21::entry::lambda::serve_http(chat21::routes::Route::UpdateGroupAttributes).await
}
