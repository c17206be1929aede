//! The connection wrapper that keeps every error JSON, even the ones hyper answers by itself.
//!
//! Requests hyper cannot parse (a bad request line, headers too large, a bad version) never
//! reach the router: hyper answers them with a canned head (`400`/`431`/`505`, no body) and
//! closes the connection. This wrapper sees that head go out and sends the API's JSON error
//! envelope in its place. Every answer the API itself makes has a body, so a 4xx/5xx head with
//! `content-length: 0` can only be hyper's.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Wraps a connection's stream (see the module docs).
pub struct JsonErrors<S> {
    inner: S,
    /// Bytes of a replacement answer still to write.
    pending: Vec<u8>,
}

impl<S> JsonErrors<S> {
    pub fn new(inner: S) -> JsonErrors<S> {
        JsonErrors {
            inner,
            pending: Vec::new(),
        }
    }
}

/// hyper's canned error head, if `head` is one: its status.
fn canned_error(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head).ok()?;
    let rest = text.strip_prefix("HTTP/1.1 ")?;
    let status: u16 = rest.get(..3)?.parse().ok()?;
    let lower = text.to_ascii_lowercase();
    let bodiless = lower.contains("\r\ncontent-length: 0\r\n") && lower.ends_with("\r\n\r\n");
    (status >= 400 && bodiless).then_some(status)
}

/// The JSON error answer that replaces hyper's canned head (and refuses a connection beyond
/// the port's cap: 503).
pub fn json_answer(status: u16) -> Vec<u8> {
    let (reason, message) = match status {
        431 => (
            "Request Header Fields Too Large",
            "the request's headers are too large",
        ),
        414 => ("URI Too Long", "the request's URI is too long"),
        505 => (
            "HTTP Version Not Supported",
            "only HTTP/1.0 and HTTP/1.1 are served",
        ),
        413 => ("Payload Too Large", "the request is too large"),
        503 => (
            "Service Unavailable",
            "the server holds as many connections as it takes: try again shortly",
        ),
        _ => ("Bad Request", "the request is not valid HTTP"),
    };
    let code = match status {
        413 => "payload_too_large",
        503 => "unavailable",
        _ => "invalid_request",
    };
    let body = serde_json::json!({"success": false, "code": code, "message": message}).to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl<S: AsyncWrite + Unpin> JsonErrors<S> {
    /// Writes what is pending; ready once nothing is.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        if let Some(status) = canned_error(buf) {
            self.pending = json_answer(status);
            // The canned head counts as written; its replacement goes out instead.
            let _ = self.drain(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_hypers_bodiless_error_heads() {
        let canned = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(canned_error(canned), Some(400));
        let big = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(canned_error(big), Some(431));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 61\r\n\r\n";
        assert_eq!(canned_error(ours), None);
        let ok = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(canned_error(ok), None);
        assert_eq!(canned_error(b"{\"success\": false}"), None);
    }

    #[test]
    fn the_replacement_is_the_json_envelope() {
        let answer = String::from_utf8(json_answer(431)).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["success"], false);
        assert_eq!(body["code"], "invalid_request");
    }
}
