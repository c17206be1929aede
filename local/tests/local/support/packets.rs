//! Hand-encoded MQTT 3.1.1 packets and WebSocket framing, for the suites that write bytes a
//! well-behaved client library would refuse to (silence, wildcards in a topic name, half a
//! handshake).

/// A packet: its first byte, the remaining length (variable-length encoded), then `body`.
fn with_length(first: u8, body: &[u8]) -> Vec<u8> {
    let mut packet = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        packet.push(byte);
        if len == 0 {
            break;
        }
    }
    packet.extend_from_slice(body);
    packet
}

/// An MQTT string: its length on two bytes, then its bytes.
fn string(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

pub fn connect_packet(client_id: &str, keep_alive: u16, password: Option<&str>) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4];
    // Clean session; with a password, the user name `JWT` as Chat21 sends.
    body.push(if password.is_some() { 0xC2 } else { 0x02 });
    body.extend_from_slice(&keep_alive.to_be_bytes());
    body.extend(string(client_id.as_bytes()));
    if let Some(password) = password {
        body.extend(string(b"JWT"));
        body.extend(string(password.as_bytes()));
    }
    with_length(0x10, &body)
}

pub fn subscribe_packet(packet_id: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    body.extend(string(filter.as_bytes()));
    body.push(qos);
    with_length(0x82, &body)
}

/// A QoS 1 publish (packet id 1) or a QoS 0 one.
pub fn publish_packet(topic: &str, payload: &[u8], qos1: bool) -> Vec<u8> {
    let mut body = string(topic.as_bytes());
    if qos1 {
        body.extend_from_slice(&1u16.to_be_bytes());
    }
    body.extend_from_slice(payload);
    with_length(if qos1 { 0x32 } else { 0x30 }, &body)
}

pub const PINGREQ: [u8; 2] = [0xC0, 0];

/// A WebSocket upgrade to `path` with the `mqtt` subprotocol, as MQTT clients ask for it.
pub fn upgrade_request(port: u16, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
    )
}

/// One masked binary WebSocket frame (clients mask).
pub fn ws_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x82];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n < 65536 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}
