//! `PUT /api/{app_id}/webhooks/{webhook_id}`: create or replace a webhook endpoint (admins
//! only). Behaviour: `chat21::ops::webhooks::put`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::entry::lambda::Error> {
    chat21::entry::lambda::serve_http(chat21::routes::Route::PutWebhook).await
}
