//! `GET /api/{app_id}/webhooks/{webhook_id}`: one webhook endpoint (admins only).
//! Behaviour: `chat21::ops::webhooks::get`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::entry::lambda::Error> {
    chat21::entry::lambda::serve_http(chat21::routes::Route::GetWebhook).await
}
