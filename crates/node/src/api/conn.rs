//! The API's connections: a listener whose connections give hyper's own error answers the same
//! JSON body as every other API error.
//!
//! hyper answers some requests before any handler or middleware sees them: a header block larger
//! than its buffer (431), a request target longer than 64 KiB (414), a request line or header it
//! cannot parse, such as a raw 0xFF byte in the path (400). It writes those as a bare head with
//! `content-length: 0` and closes the connection, and offers no hook to shape them. The API
//! promises `{"error": "..."}` on every error, so [`JsonErrorIo`] recognises such a head at the end
//! of a write and gives it a body.
//!
//! Recognising it is safe because every answer the router itself makes to a failed request has a
//! JSON body (the `json_errors` middleware sees to that): a 4xx/5xx head without `content-type`
//! and with `content-length: 0` can only be one of hyper's own.

use axum::serve::Listener;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A TCP listener whose connections are wrapped in [`JsonErrorIo`].
pub(crate) struct JsonErrorListener(pub(crate) TcpListener);

impl Listener for JsonErrorListener {
    type Io = JsonErrorIo<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = Listener::accept(&mut self.0).await;
        (JsonErrorIo::new(io), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection that rewrites hyper's bodiless error answers (see the module documentation).
pub(crate) struct JsonErrorIo<T> {
    inner: T,
    /// A rewritten answer not yet handed to `inner`, and how much of it has been.
    pending: Vec<u8>,
    written: usize,
}

impl<T> JsonErrorIo<T> {
    pub(crate) fn new(inner: T) -> JsonErrorIo<T> {
        JsonErrorIo {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<T: AsyncWrite + Unpin> JsonErrorIo<T> {
    /// Writes what is left of a rewritten answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonErrorIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonErrorIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        match with_json_body(buf) {
            Some(rewritten) => {
                // The caller's bytes are taken in full; what goes out instead is written from
                // `pending`, before anything else and before a flush or shutdown completes.
                this.pending = rewritten;
                if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(buf.len()))
            }
            None => Pin::new(&mut this.inner).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored, so hyper flattens each answer's head into one buffer handed to `poll_write`,
    // where it can be recognised whole.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// Longest head recognised as one of hyper's own error answers (they are about 100 bytes).
const MAX_BARE_HEAD: usize = 512;

/// If `buf` ends with a bodiless 4xx/5xx head (`content-length: 0`, no `content-type`), the same
/// bytes with that answer given a JSON error body.
fn with_json_body(buf: &[u8]) -> Option<Vec<u8>> {
    if !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let tail_from = buf.len().saturating_sub(MAX_BARE_HEAD);
    let start = tail_from + buf[tail_from..].windows(5).rposition(|w| w == b"HTTP/")?;
    let head = std::str::from_utf8(&buf[start..]).ok()?;
    let head = head.strip_suffix("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next()?;
    let status: u16 = parts.next()?.parse().ok()?;
    if !version.starts_with("HTTP/1.") || !(400..600).contains(&status) {
        return None;
    }
    let mut kept = Vec::new();
    let mut empty = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let name = name.trim().to_ascii_lowercase();
        match name.as_str() {
            "content-length" if value.trim() == "0" => empty = true,
            "content-length" | "content-type" | "transfer-encoding" => return None,
            _ => kept.push(line),
        }
    }
    if !empty {
        return None;
    }
    let body = serde_json::json!({ "error": explain(status) }).to_string();
    let mut out = buf[..start].to_vec();
    out.extend_from_slice(status_line.as_bytes());
    out.extend_from_slice(b"\r\n");
    for line in kept {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!(
            "content-type: application/json\r\naccess-control-allow-origin: *\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    Some(out)
}

/// What hyper's automatic answers mean, for the operator reading the error.
fn explain(status: u16) -> String {
    match status {
        400 => "malformed HTTP request (a request line or header that does not parse, such as \
                an unencoded non-ASCII byte in the path)"
            .into(),
        414 => "the request's URL is too long".into(),
        431 => "the request's header block is too large".into(),
        _ => axum::http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("request refused")
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_error_head_gets_a_json_body() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\
                     date: Sun, 06 Dec 2026 15:00:00 GMT\r\n\r\n";
        let out = with_json_body(head).expect("rewritten");
        let text = String::from_utf8(out).expect("text");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
        assert!(head.contains("date: Sun"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).expect("json");
        assert!(json["error"].as_str().is_some_and(|e| e.contains("header")));
    }

    #[test]
    fn a_previous_answer_in_the_same_write_is_kept() {
        let previous = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let error = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        let out = with_json_body(&[&previous[..], &error[..]].concat()).expect("rewritten");
        assert!(out.starts_with(previous));
        assert!(out.ends_with(b"}"));
    }

    #[test]
    fn answers_with_a_body_or_a_success_pass_unchanged() {
        for answer in [
            &b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n"[..],
            &b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"[..],
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"[..],
            &b"{\"value\":\"HTTP/1.1 400 x\"}"[..],
            &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n"[..],
        ] {
            assert_eq!(with_json_body(answer), None, "{}", String::from_utf8_lossy(answer));
        }
    }
}
