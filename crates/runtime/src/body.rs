//! A response body that counts the bytes it carries and records its flow when it ends.
//!
//! A flow is over when its body is, not when its headers are sent: the guard travels inside the
//! body, so the record carries the real byte count and latency, and is written exactly once even
//! if the client goes away mid-stream (the body is dropped, and so is the guard).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use septa_flows::FlowGuard;

/// Wraps body `B`, adding every data frame to the flow's `bytes_out` and recording the flow
/// when the body ends or is dropped.
pub struct RecordedBody<B> {
    inner: B,
    guard: Option<FlowGuard>,
}

impl<B> RecordedBody<B> {
    /// Wraps `inner`; `guard` is recorded when the body ends.
    pub fn new(inner: B, guard: FlowGuard) -> Self {
        Self {
            inner,
            guard: Some(guard),
        }
    }
}

impl<B> Body for RecordedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(guard)) = (frame.data_ref(), this.guard.as_mut()) {
                    guard.add_bytes_out(data.len() as u64);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(mut guard) = this.guard.take() {
                    let reason = guard.record().map(|r| r.reason.clone()).unwrap_or_default();
                    guard.set_reason(format!("{reason}; response body failed: {e}"));
                    guard.finish();
                }
            }
            Poll::Ready(None) => {
                if let Some(guard) = this.guard.take() {
                    guard.finish();
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
