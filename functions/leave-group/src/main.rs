//! `DELETE /api/{app_id}/groups/{group_id}/members/{member_id}`: leave or remove.
//! Behaviour: `chat21::ops::groups::leave`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::entry::lambda::Error> {
    chat21::entry::lambda::serve_http(chat21::routes::Route::LeaveGroup).await
}
