//! `GET /api/{app_id}/webhooks`: the tenant's webhook endpoints (admins only).
//! Behaviour: `chat21::ops::webhooks::list`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::entry::lambda::Error> {
    chat21::entry::lambda::serve_http(chat21::routes::Route::ListWebhooks).await
}
