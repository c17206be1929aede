//! `DELETE /api/{app_id}/webhooks/{webhook_id}`: delete a webhook endpoint (admins only).
//! Behaviour: `chat21::ops::webhooks::delete`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::entry::lambda::Error> {
    chat21::entry::lambda::serve_http(chat21::routes::Route::DeleteWebhook).await
}
