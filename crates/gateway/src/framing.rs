//! Request framing at the connection: HTTP/1 requests whose body length two parsers could read
//! differently are refused before the gateway sees them, and a client too slow to send its head
//! is told `408` before the connection closes.
//!
//! A request carrying both `Content-Length` and `Transfer-Encoding`, or `Content-Length` twice, is
//! the raw material of request smuggling: a proxy in front of septa may frame it one way and
//! hyper the other, and the bytes one of them takes for a body the other serves as a request.
//! hyper accepts several such heads (it drops the length, or keeps one of two copies), and what it
//! hands the service no longer shows it. So [`FramedStream`] reads the stream below hyper — the
//! same bytes, unchanged — and [`ConnectionWatch`] tells the service which request to refuse.

mod scan;

use std::io::{self, Read};
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use http::header::CONNECTION;
use http::{HeaderValue, Response, Version};
use septa_runtime::HyperOutgoingBody;
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub(crate) use scan::ScanLimits;
pub(crate) use scan::{FramingError, Refusal, Scanner};

/// What a connection's [`FramedStream`] found, for the service and the connection task.
#[derive(Debug, Default)]
pub(crate) struct ConnectionWatch {
    /// The first refused request; every later one is refused too (the connection closes after
    /// the first, so they are never read in practice).
    refusal: OnceLock<Refusal>,
    /// HTTP/1 requests handed to the service so far.
    requests: AtomicU64,
    /// Past the first bytes: HTTP/1 or HTTP/2 is known.
    protocol_known: AtomicBool,
    /// hyper gave up waiting for a request head.
    header_timed_out: AtomicBool,
}

impl ConnectionWatch {
    /// Says whether a request about to be handed to the service is refused, counting it if it
    /// is HTTP/1 (HTTP/2 frames every message itself, so nothing here concerns it).
    pub(crate) fn check(&self, version: Version) -> Option<FramingError> {
        if version >= Version::HTTP_2 {
            return None;
        }
        let index = self.requests.fetch_add(1, Ordering::Relaxed);
        self.refusal
            .get()
            .filter(|refusal| index >= refusal.index)
            .map(|refusal| refusal.error)
    }

    /// Whether the client has sent enough to tell HTTP/1 from HTTP/2.
    pub(crate) fn protocol_known(&self) -> bool {
        self.protocol_known.load(Ordering::Acquire)
    }

    /// Records that hyper closed the connection because a request head took too long; the
    /// stream answers `408` when it is dropped, if it safely can.
    pub(crate) fn header_timed_out(&self) {
        self.header_timed_out.store(true, Ordering::Release);
    }
}

/// The answer to a request refused for its framing: the status, `Connection: close`, and what
/// was wrong with what the client sent, in the gateway's JSON error shape with the refusal's
/// trace id.
pub(crate) fn refusal_response(error: FramingError, trace: u64) -> Response<HyperOutgoingBody> {
    let message = error.to_string();
    let mut response = septa_runtime::json_error(error.status(), &message, Some(trace), None);
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// What a client too slow with its head is told before the connection closes. hyper writes
/// nothing then, so this is written to the socket directly.
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\n\
connection: close\r\n\
content-type: application/json\r\n\
content-length: 66\r\n\
\r\n\
{\"error\":\"request headers were not received in time\",\"status\":408}";

/// A TCP connection as hyper reads it, with every byte read also followed by a [`Scanner`].
/// Reads and writes pass through unchanged; the scanner copies nothing but the start of a head
/// split across reads.
pub(crate) struct FramedStream {
    stream: TcpStream,
    scanner: Scanner,
    watch: Arc<ConnectionWatch>,
    /// Everything hyper wrote has been flushed: hyper flushes the socket only once its own
    /// buffer is empty, so nothing of an earlier response is left unsent.
    writes_settled: bool,
}

impl FramedStream {
    /// Wraps an accepted connection; `watch` is what the service reads.
    pub(crate) fn new(stream: TcpStream, watch: Arc<ConnectionWatch>, limits: ScanLimits) -> Self {
        Self {
            stream,
            scanner: Scanner::new(limits),
            watch,
            writes_settled: true,
        }
    }

    fn publish(&self) {
        if !self.watch.protocol_known() && self.scanner.protocol_known() {
            self.watch.protocol_known.store(true, Ordering::Release);
        }
        if let Some(refusal) = self.scanner.refusal() {
            // Only the first refusal is ever found; a second `set` is a no-op.
            let _ = self.watch.refusal.set(refusal);
        }
    }
}

impl AsyncRead for FramedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.stream).poll_read(cx, buf))?;
        this.scanner.observe(&buf.filled()[before..]);
        this.publish();
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for FramedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.writes_settled = false;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.writes_settled = false;
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.stream).poll_flush(cx))?;
        this.writes_settled = true;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl Drop for FramedStream {
    /// hyper drops the connection without a word when its header read timeout fires. Answer
    /// `408` instead, when that is safe: the client had started a head (an idle keep-alive
    /// connection is closed silently, as any server does) and every earlier response was sent
    /// in full, so the `408` cannot land inside one.
    fn drop(&mut self) {
        if self.watch.header_timed_out.load(Ordering::Acquire)
            && self.writes_settled
            && self.scanner.head_started()
        {
            answer_timeout(SockRef::from(&self.stream));
        }
    }
}

/// Writes [`REQUEST_TIMEOUT`] without waiting: the send buffer is empty, so it fits, and a
/// client that stopped reading just sees the close.
fn answer_timeout(socket: SockRef<'_>) {
    if socket.send(REQUEST_TIMEOUT).is_ok() {
        let _ = socket.shutdown(Shutdown::Write);
    }
    // Discard what the client sent since hyper's last read: closing a socket with unread bytes
    // resets the connection, and a reset can destroy the response before the client reads it.
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match (&*socket).read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_408_declares_its_body_length() {
        let text = std::str::from_utf8(REQUEST_TIMEOUT).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let declared = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap();
        assert_eq!(declared.parse::<usize>().unwrap(), body.len());
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["status"], 408);
    }

    #[tokio::test]
    async fn bytes_pass_unchanged_and_the_refused_request_is_named() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let watch = Arc::new(ConnectionWatch::default());
        let limits = ScanLimits {
            max_head_bytes: 8192,
            max_headers: 100,
        };
        let mut framed = FramedStream::new(accepted, watch.clone(), limits);
        let sent: &[u8] = b"POST /a HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc\
POST /b HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n";
        client.write_all(sent).await.unwrap();
        client.shutdown().await.unwrap();
        let mut seen = Vec::new();
        framed.read_to_end(&mut seen).await.unwrap();
        assert_eq!(seen, sent);
        assert!(watch.protocol_known());
        assert_eq!(watch.check(Version::HTTP_11), None);
        assert_eq!(
            watch.check(Version::HTTP_11),
            Some(FramingError::LengthAndTransferEncoding)
        );
        assert_eq!(watch.check(Version::HTTP_2), None, "HTTP/2 is not judged");
        framed.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        framed.flush().await.unwrap();
        let mut answer = [0u8; 19];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 200 OK\r\n\r\n");
    }
}
