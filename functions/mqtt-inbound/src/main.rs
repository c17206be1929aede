//! Clients' MQTT publishes, handed over by IoT Core's topic rules: sends, receipts, reads,
//! archives, presence. Behaviour: `chat21::realtime::rule` and `chat21::realtime::inbound`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat21::lambda::Error> {
    chat21::realtime::aws::serve_mqtt_inbound().await
}
