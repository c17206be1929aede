//! The lean MQTT-over-WebSocket client: one task per connection (tokio-tungstenite +
//! rmqtt-codec), every arrival recorded in a shared hub; a fleet of them.

use super::*;

pub(crate) type Ws = WebSocketStream<TcpStream>;

/// One `clientadded` as a client received it.
pub(crate) struct Arrival {
    pub(crate) user: u32,
    pub(crate) message_id: String,
    pub(crate) at: Instant,
}

/// What all clients report to.
#[derive(Default)]
pub(crate) struct Hub {
    pub(crate) arrivals: Mutex<Vec<Arrival>>,
    /// `clientadded` publishes recorded since the last `take`.
    pub(crate) count: AtomicUsize,
    /// Every publish received, of any topic.
    pub(crate) publishes: AtomicUsize,
    /// Publishes on a topic outside the receiving client's own tree (never expected).
    pub(crate) foreign: AtomicUsize,
    /// Connections the server closed while the bench still wanted them.
    pub(crate) dropped: AtomicUsize,
}

impl Hub {
    pub(crate) fn record(&self, user: u32, name: &str, publish: &Publish, at: Instant) {
        self.publishes.fetch_add(1, Ordering::Relaxed);
        let own = format!("apps/{APP}/users/{name}/");
        if !publish.topic.starts_with(&own) {
            self.foreign.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if !publish.topic.ends_with("/clientadded") || !publish.topic.contains("/messages/") {
            return;
        }
        let message_id = serde_json::from_slice::<Value>(&publish.payload)
            .ok()
            .and_then(|v| v.get("message_id")?.as_str().map(str::to_string))
            .unwrap_or_default();
        self.arrivals.lock().unwrap().push(Arrival {
            user,
            message_id,
            at,
        });
        self.count.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn take(&self) -> Vec<Arrival> {
        let mut arrivals = self.arrivals.lock().unwrap();
        self.count.store(0, Ordering::Release);
        std::mem::take(&mut *arrivals)
    }

    /// Waits until `n` `clientadded` were recorded, or `timeout`.
    pub(crate) async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.count.load(Ordering::Acquire) < n {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        true
    }
}

pub(crate) struct Mqtt {
    pub(crate) ws: Ws,
    pub(crate) codec: Codec,
    pub(crate) read: BytesMut,
}

impl Mqtt {
    pub(crate) async fn send(&mut self, packet: Packet) -> Res<()> {
        let mut bytes = BytesMut::new();
        self.codec
            .encode(packet, &mut bytes)
            .map_err(|e| e.to_string())?;
        self.ws
            .send(Message::Binary(bytes.freeze()))
            .await
            .map_err(|e| e.to_string())
    }

    /// The next packet; `None` when closed. Cancel-safe.
    pub(crate) async fn next(&mut self) -> Res<Option<Packet>> {
        loop {
            if let Some((packet, _)) = self
                .codec
                .decode(&mut self.read)
                .map_err(|e| e.to_string())?
            {
                return Ok(Some(packet));
            }
            match self.ws.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Binary(bytes))) => self.read.extend_from_slice(&bytes),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
            }
        }
    }

    /// WebSocket (`/ws`, subprotocol `mqtt`), CONNECT with the JWT as password, SUBSCRIBE to
    /// the user's own tree at QoS 1.
    pub(crate) async fn open(ws_port: u16, user: &str, token: &str, client_id: &str) -> Res<Mqtt> {
        let addr = format!("127.0.0.1:{ws_port}");
        let stream = TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("TCP connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let mut request = format!("ws://{addr}/ws")
            .into_client_request()
            .map_err(|e| e.to_string())?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
            .await
            .map_err(|e| format!("WebSocket handshake: {e}"))?;
        let mut mqtt = Mqtt {
            ws,
            codec: Codec::new(0),
            read: BytesMut::with_capacity(512),
        };
        let connect = Connect {
            clean_session: true,
            keep_alive: 60,
            client_id: ByteString::from(client_id),
            username: Some(ByteString::from_static("JWT")),
            password: Some(bytes::Bytes::from(token.to_string())),
            ..Connect::default()
        };
        mqtt.send(Packet::Connect(Box::new(connect))).await?;
        match mqtt.next().await? {
            Some(Packet::ConnectAck(ack))
                if ack.return_code == ConnectAckReason::ConnectionAccepted => {}
            other => return Err(format!("CONNECT refused: {other:?}")),
        }
        mqtt.send(Packet::Subscribe {
            packet_id: NonZeroU16::MIN,
            topic_filters: vec![(
                ByteString::from(format!("apps/{APP}/users/{user}/#")),
                QoS::AtLeastOnce,
            )],
        })
        .await?;
        match mqtt.next().await? {
            Some(Packet::SubscribeAck { status, .. })
                if matches!(status.first(), Some(SubscribeReturnCode::Success(_))) => {}
            other => return Err(format!("SUBSCRIBE refused: {other:?}")),
        }
        Ok(mqtt)
    }

    /// Receives until told to stop: records every publish, acknowledges QoS 1, pings every 30 s.
    pub(crate) async fn serve(
        mut self,
        index: u32,
        user: String,
        hub: Arc<Hub>,
        mut stop: watch::Receiver<bool>,
    ) {
        let period = Duration::from_secs(30);
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                packet = self.next() => match packet {
                    Ok(Some(Packet::Publish(publish))) => {
                        let at = Instant::now();
                        hub.record(index, &user, &publish, at);
                        if let Some(packet_id) = publish.packet_id
                            && self.send(Packet::PublishAck { packet_id }).await.is_err()
                        {
                            hub.dropped.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        if !*stop.borrow() {
                            hub.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        return;
                    }
                },
                _ = stop.changed() => {
                    let _ = self.send(Packet::Disconnect).await;
                    let _ = self.ws.close(None).await;
                    return;
                }
                _ = ping.tick() => {
                    let _ = self.send(Packet::PingRequest).await;
                }
            }
        }
    }
}

/// A set of connected clients.
pub(crate) struct Fleet {
    pub(crate) stop: watch::Sender<bool>,
    pub(crate) tasks: Vec<JoinHandle<()>>,
}

impl Fleet {
    /// Connects one client per user (`users[i]` gets index `i`), `CONNECTING` at a time.
    pub(crate) async fn connect(
        ws_port: u16,
        users: &[String],
        tokens: &[String],
        hub: &Arc<Hub>,
        generation: u32,
    ) -> Res<Fleet> {
        let (stop, stopped) = watch::channel(false);
        let gate = Arc::new(Semaphore::new(CONNECTING));
        let mut tasks = Vec::with_capacity(users.len());
        let mut readies = Vec::with_capacity(users.len());
        for (i, (user, token)) in users.iter().zip(tokens).enumerate() {
            let (ready, is_ready) = oneshot::channel::<Res<()>>();
            readies.push(is_ready);
            let (user, token, hub, gate, stopped) = (
                user.clone(),
                token.clone(),
                hub.clone(),
                gate.clone(),
                stopped.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let opened = {
                    let _permit = gate.acquire().await;
                    let client_id = format!("bench-{generation}-{i}");
                    Mqtt::open(ws_port, &user, &token, &client_id).await
                };
                match opened {
                    Ok(mqtt) => {
                        let _ = ready.send(Ok(()));
                        mqtt.serve(i as u32, user, hub, stopped).await;
                    }
                    Err(e) => {
                        let _ = ready.send(Err(format!("{user}: {e}")));
                    }
                }
            }));
        }
        let fleet = Fleet { stop, tasks };
        let mut failures = Vec::new();
        for ready in readies {
            match ready.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(e),
                Err(_) => failures.push("a client task ended".into()),
            }
        }
        if !failures.is_empty() {
            let n = failures.len();
            fleet.close().await;
            return Err(format!(
                "{n} clients failed to connect, e.g. {}",
                failures[0]
            ));
        }
        Ok(fleet)
    }

    /// DISCONNECT every client and wait for them.
    pub(crate) async fn close(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}
