//! IoT Core's custom authorizer: the JWT of an MQTT CONNECT becomes the user's topic policy.
//! Behaviour: `chat21::realtime::authorizer`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::entry::lambda::Error> {
    chat21::entry::authorizer::serve_authorizer().await
}
