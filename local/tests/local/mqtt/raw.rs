//! A raw connection to the broker: hand-encoded MQTT 3.1.1 over TCP or over WebSocket frames,
//! for what a well-behaved client library would refuse to do.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout};

use super::client::CLIENTS;
use super::{Via, WAIT};
use crate::support::{PINGREQ, Server, connect_packet, tok, upgrade_request, ws_frame};

/// A raw connection to the broker.
pub(super) struct Raw {
    pub(super) name: String,
    pub(super) stream: TcpStream,
    pub(super) ws: bool,
    /// Bytes read from the socket, not yet decoded (WebSocket frames, or MQTT over TCP).
    pub(super) wire: Vec<u8>,
    /// MQTT bytes not yet decoded into packets.
    pub(super) mqtt: Vec<u8>,
    pub(super) eof: bool,
}

pub(super) enum Next {
    Packet(u8, Vec<u8>),
    Closed,
    TimedOut,
}

impl Raw {
    /// Opens a TCP (or WebSocket) connection; `recv_buffer` shrinks the socket's receive buffer.
    pub(super) async fn open(
        server: &Server,
        via: Via,
        name: &str,
        recv_buffer: Option<u32>,
    ) -> Raw {
        let port = match via {
            Via::Tcp => server.tcp_port,
            Via::Ws => server.ws_port,
        };
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let stream = socket
            .connect(([127, 0, 0, 1], port).into())
            .await
            .expect("connect to the MQTT port");
        let mut raw = Raw {
            name: name.to_string(),
            stream,
            ws: via == Via::Ws,
            wire: Vec::new(),
            mqtt: Vec::new(),
            eof: false,
        };
        if raw.ws {
            let upgrade = upgrade_request(port, "/ws");
            raw.stream.write_all(upgrade.as_bytes()).await.unwrap();
            let deadline = Instant::now() + WAIT;
            let end = loop {
                if let Some(end) = raw.wire.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end;
                }
                assert!(
                    raw.read(deadline).await,
                    "{name}: no WebSocket handshake answer"
                );
            };
            let head = String::from_utf8_lossy(&raw.wire[..end]).into_owned();
            assert!(head.starts_with("HTTP/1.1 101"), "{name}: {head}");
            assert!(
                head.to_ascii_lowercase()
                    .contains("\r\nsec-websocket-protocol: mqtt"),
                "{name}: the `mqtt` subprotocol is not answered: {head}"
            );
            raw.wire.drain(..end + 4);
        }
        raw
    }

    /// Opens and CONNECTs as `user` with a fresh client id, expecting CONNACK 0.
    pub(super) async fn online(server: &Server, via: Via, user: &str, keep_alive: u16) -> Raw {
        let client_id = format!("{user}-raw-{}", CLIENTS.fetch_add(1, Ordering::Relaxed));
        Raw::connected(server, via, user, &client_id, keep_alive).await
    }

    pub(super) async fn connected(
        server: &Server,
        via: Via,
        user: &str,
        client_id: &str,
        keep_alive: u16,
    ) -> Raw {
        let name = if client_id.is_empty() {
            format!("{user}-anonymous")
        } else {
            client_id.to_string()
        };
        let mut raw = Raw::open(server, via, &name, None).await;
        raw.send(&connect_packet(client_id, keep_alive, Some(&tok(user))))
            .await;
        raw.expect_packet(0x20, &[0, 0], "CONNACK 0").await;
        raw
    }

    /// A PINGREQ must be answered.
    pub(super) async fn ping(&mut self, what: &str) {
        self.send(&PINGREQ).await;
        self.expect_packet(0xD0, &[], what).await;
    }

    pub(super) async fn send(&mut self, packet: &[u8]) {
        let bytes = if self.ws {
            ws_frame(packet)
        } else {
            packet.to_vec()
        };
        // The broker may have closed already: that is for the reads to tell.
        let _ = self.stream.write_all(&bytes).await;
    }

    /// Reads once into `wire`; false at the deadline or at the end of the stream.
    pub(super) async fn read(&mut self, deadline: Instant) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.eof = true;
                false
            }
            Ok(Ok(n)) => {
                self.wire.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => false,
        }
    }

    /// Moves complete WebSocket frames (or, over TCP, everything) from `wire` to `mqtt`.
    pub(super) fn unframe(&mut self) {
        if !self.ws {
            self.mqtt.append(&mut self.wire);
            return;
        }
        loop {
            let w = &self.wire;
            if w.len() < 2 {
                return;
            }
            let (mut len, mut at) = ((w[1] & 0x7f) as usize, 2);
            if len == 126 {
                if w.len() < 4 {
                    return;
                }
                len = u16::from_be_bytes([w[2], w[3]]) as usize;
                at = 4;
            } else if len == 127 {
                if w.len() < 10 {
                    return;
                }
                len = u64::from_be_bytes(w[2..10].try_into().unwrap()) as usize;
                at = 10;
            }
            if w[1] & 0x80 != 0 {
                at += 4; // servers do not mask; skip a mask key if one is there anyway
            }
            if w.len() < at + len {
                return;
            }
            let opcode = w[0] & 0x0f;
            let payload = w[at..at + len].to_vec();
            self.wire.drain(..at + len);
            match opcode {
                0 | 2 => self.mqtt.extend_from_slice(&payload),
                8 => self.eof = true,
                _ => {}
            }
        }
    }

    /// One complete MQTT packet from `mqtt`, if there is one.
    pub(super) fn decode(&mut self) -> Option<(u8, Vec<u8>)> {
        let (mut len, mut shift, mut at) = (0usize, 0, 1);
        loop {
            let byte = *self.mqtt.get(at)?;
            len |= ((byte & 0x7f) as usize) << shift;
            shift += 7;
            at += 1;
            if byte & 0x80 == 0 {
                break;
            }
        }
        if self.mqtt.len() < at + len {
            return None;
        }
        let first = self.mqtt[0];
        let body = self.mqtt[at..at + len].to_vec();
        self.mqtt.drain(..at + len);
        Some((first, body))
    }

    pub(super) async fn next(&mut self, within: Duration) -> Next {
        let deadline = Instant::now() + within;
        loop {
            self.unframe();
            if let Some((first, body)) = self.decode() {
                return Next::Packet(first, body);
            }
            if self.eof {
                return Next::Closed;
            }
            if !self.read(deadline).await && !self.eof {
                return Next::TimedOut;
            }
        }
    }

    pub(super) async fn expect_packet(&mut self, first: u8, body: &[u8], what: &str) {
        match self.next(WAIT).await {
            Next::Packet(f, b) if f == first && b == body => {}
            Next::Packet(f, b) => panic!("{}: expected {what}, got {f:#04x} {b:?}", self.name),
            Next::Closed => panic!("{}: closed while waiting for {what}", self.name),
            Next::TimedOut => panic!("{}: no {what} within {WAIT:?}", self.name),
        }
    }

    /// Reads (and discards) until the broker closes the connection; how long that took and
    /// how many bytes came, or `None` if it was still open after `within`.
    pub(super) async fn closed_within(&mut self, within: Duration) -> Option<(Duration, usize)> {
        let started = Instant::now();
        let deadline = started + within;
        let mut bytes = self.wire.len() + self.mqtt.len();
        self.wire.clear();
        self.mqtt.clear();
        while !self.eof {
            if !self.read(deadline).await && !self.eof {
                return None;
            }
            bytes += self.wire.len();
            // A WebSocket close frame ends it too.
            self.unframe();
            self.mqtt.clear();
        }
        Some((started.elapsed(), bytes))
    }
}
