//! Clients' MQTT publishes, handed over by IoT Core's topic rules: sends, receipts, reads,
//! archives, presence. Behaviour: `chat21::entry::rule` and `chat21::entry::inbound`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::entry::lambda::Error> {
    chat21::entry::rule::serve_mqtt_inbound().await
}
