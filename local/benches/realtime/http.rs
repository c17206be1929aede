//! A keep-alive HTTP/1.1 client (hyper's server writes Content-Length on every answer).

use super::*;

pub(crate) struct Http {
    pub(crate) port: u16,
    pub(crate) stream: TcpStream,
    pub(crate) buf: Vec<u8>,
}

impl Http {
    pub(crate) async fn connect(port: u16) -> Res<Http> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("HTTP connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(Http {
            port,
            stream,
            buf: Vec::with_capacity(8192),
        })
    }

    pub(crate) async fn call(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        body: &str,
    ) -> Res<(u16, String)> {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        );
        self.stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("HTTP write: {e}"))?;
        let head_end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_string();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad HTTP answer: {head:?}"))?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        while self.buf.len() < head_end + length {
            self.fill().await?;
        }
        let body = String::from_utf8_lossy(&self.buf[head_end..head_end + length]).to_string();
        self.buf.drain(..head_end + length);
        Ok((status, body))
    }

    pub(crate) async fn fill(&mut self) -> Res<()> {
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Err("the server closed the HTTP connection".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("HTTP read: {e}")),
        }
    }
}

pub(crate) fn send_body(recipient: &str, message_id: &str, text: &str) -> String {
    json!({
        "sender_fullname": "Bench Sender",
        "recipient_id": recipient,
        "recipient_fullname": recipient,
        "text": text,
        "message_id": message_id,
    })
    .to_string()
}
