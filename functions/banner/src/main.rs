//! `GET /` (the version banner) and every unknown path (a JSON 404).
//! Behaviour: `chat21::api`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::lambda::Error> {
    chat21::lambda::serve_http(chat21::routes::Route::Banner).await
}
