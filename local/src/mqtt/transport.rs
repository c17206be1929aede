//! MQTT packets over a connection: plain TCP (a byte stream) or WebSocket (binary frames,
//! RabbitMQ Web-MQTT's `/ws` path and `mqtt` subprotocol, as Chat21 clients expect).

use std::io;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use rmqtt_codec::v3::{self, Packet};
use rmqtt_codec::version::{ProtocolVersion, VersionCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::codec::{Decoder, Encoder};

/// Largest packet a client may send: a stored message is at most 120 KiB, plus the topic and
/// the packet's own fields.
pub const MAX_PACKET_BYTES: u32 = 128 * 1024;
/// Buffers start this small (an idle connection holds little) and grow with the traffic.
const INITIAL_BUFFER: usize = 512;

/// What a connection can fail with.
#[derive(Debug)]
pub enum Failure {
    Io(io::Error),
    /// Not MQTT 3.1.1 (or 3.1), or a malformed packet.
    Protocol(String),
    /// MQTT 5: answered with "unacceptable protocol version".
    Version5,
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Io(e)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Io(e) => write!(f, "{e}"),
            Failure::Protocol(why) => write!(f, "protocol error: {why}"),
            Failure::Version5 => f.write_str("MQTT 5 is not served (3.1.1 is)"),
        }
    }
}

enum Link {
    Tcp(TcpStream),
    Ws(Box<WebSocketStream<TcpStream>>),
}

/// One client connection, read and written as MQTT 3.1.1 packets.
pub struct Transport {
    link: Link,
    codec: v3::Codec,
    /// Bytes read but not yet decoded.
    read: BytesMut,
    /// The first packet has been checked for its protocol version.
    versioned: bool,
}

/// The WebSocket handshake: only `/ws`, answering the `mqtt` subprotocol clients ask for.
#[allow(clippy::result_large_err)]
fn handshake(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    if request.uri().path() != "/ws" {
        let mut refused = ErrorResponse::new(Some("MQTT is served on /ws".into()));
        *refused.status_mut() = StatusCode::NOT_FOUND;
        return Err(refused);
    }
    let offered = request
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|p| p.eq_ignore_ascii_case("mqtt") || p.eq_ignore_ascii_case("mqttv3.1"))
        .map(str::to_string);
    if let Some(protocol) = offered.and_then(|p| HeaderValue::from_str(&p).ok()) {
        response
            .headers_mut()
            .insert("sec-websocket-protocol", protocol);
    }
    Ok(response)
}

impl Transport {
    fn new(link: Link) -> Transport {
        Transport {
            link,
            codec: v3::Codec::new(MAX_PACKET_BYTES),
            read: BytesMut::with_capacity(INITIAL_BUFFER),
            versioned: false,
        }
    }

    pub fn tcp(stream: TcpStream) -> Transport {
        let _ = stream.set_nodelay(true);
        Transport::new(Link::Tcp(stream))
    }

    /// Completes the WebSocket handshake of a new connection.
    pub async fn websocket(stream: TcpStream) -> Result<Transport, Failure> {
        let _ = stream.set_nodelay(true);
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_message_size(Some(MAX_PACKET_BYTES as usize + 1024))
            .max_frame_size(Some(MAX_PACKET_BYTES as usize + 1024));
        let ws = tokio_tungstenite::accept_hdr_async_with_config(stream, handshake, Some(config))
            .await
            .map_err(|e| Failure::Protocol(format!("WebSocket handshake: {e}")))?;
        Ok(Transport::new(Link::Ws(Box::new(ws))))
    }

    /// Decodes one packet from what was read, if a whole one is there.
    fn decode(&mut self) -> Result<Option<Packet>, Failure> {
        if !self.versioned {
            match VersionCodec.decode(&mut self.read) {
                Ok(None) => return Ok(None),
                Ok(Some(ProtocolVersion::MQTT3)) => self.versioned = true,
                Ok(Some(ProtocolVersion::MQTT5)) => return Err(Failure::Version5),
                Err(e) => return Err(Failure::Protocol(e.to_string())),
            }
        }
        match self.codec.decode(&mut self.read) {
            Ok(packet) => Ok(packet.map(|(p, _)| p)),
            Err(e) => Err(Failure::Protocol(e.to_string())),
        }
    }

    /// The next packet; `None` when the client closed the connection. Cancel-safe.
    pub async fn next(&mut self) -> Option<Result<Packet, Failure>> {
        loop {
            match self.decode() {
                Ok(Some(packet)) => return Some(Ok(packet)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            match &mut self.link {
                Link::Tcp(stream) => {
                    if self.read.capacity() == self.read.len() {
                        self.read.reserve(INITIAL_BUFFER);
                    }
                    match stream.read_buf(&mut self.read).await {
                        Ok(0) => return None,
                        Ok(_) => {}
                        Err(e) => return Some(Err(e.into())),
                    }
                }
                Link::Ws(ws) => match ws.next().await? {
                    Ok(Message::Binary(bytes)) => self.read.extend_from_slice(&bytes),
                    Ok(Message::Close(_)) => return None,
                    // Pings are answered by tungstenite; text frames are not MQTT.
                    Ok(Message::Text(_)) => {
                        return Some(Err(Failure::Protocol("a text frame".into())));
                    }
                    Ok(_) => {}
                    Err(e) => return Some(Err(Failure::Protocol(e.to_string()))),
                },
            }
        }
    }

    /// Writes one packet.
    pub async fn send(&mut self, packet: Packet) -> Result<(), Failure> {
        let mut bytes = BytesMut::new();
        self.codec
            .encode(packet, &mut bytes)
            .map_err(|e| Failure::Protocol(e.to_string()))?;
        match &mut self.link {
            Link::Tcp(stream) => stream.write_all(&bytes).await?,
            Link::Ws(ws) => ws
                .send(Message::Binary(bytes.freeze()))
                .await
                .map_err(|e| Failure::Protocol(e.to_string()))?,
        }
        Ok(())
    }

    /// Closes the connection (best effort).
    pub async fn close(&mut self) {
        match &mut self.link {
            Link::Tcp(stream) => {
                let _ = stream.shutdown().await;
            }
            Link::Ws(ws) => {
                let _ = SinkExt::close(ws.as_mut()).await;
            }
        }
    }
}
