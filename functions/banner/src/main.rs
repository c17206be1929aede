//! `GET /` (the version banner) and every unknown path (a JSON 404).
//! Behaviour: `chat21::entry::http`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::entry::lambda::Error> {
    chat21::entry::lambda::serve_http(chat21::routes::Route::Banner).await
}
