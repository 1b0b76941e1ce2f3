//! The bodies the host wraps around a request: the response body that counts the bytes it
//! carries and records its flow when it ends, the guest's response body that ends in an error
//! when the guest stops before finishing it, and the request bodies with a time limit and a
//! byte count.
//!
//! A flow is over when its body is, not when its headers are sent: the guard travels inside the
//! body, so the record carries the real byte count and latency, and is written exactly once even
//! if the client goes away mid-stream (the body is dropped, and so is the guard).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use septa_flows::FlowGuard;

use crate::run::{GuestEnd, Stop};

/// Wraps body `B`, adding every data frame to the flow's `bytes_out` and recording the flow
/// when the body ends or is dropped.
pub struct RecordedBody<B> {
    inner: B,
    guard: Option<FlowGuard>,
    bytes_in: Option<Arc<AtomicU64>>,
}

impl<B> RecordedBody<B> {
    /// Wraps `inner`; `guard` is recorded when the body ends.
    pub fn new(inner: B, guard: FlowGuard) -> Self {
        Self {
            inner,
            guard: Some(guard),
            bytes_in: None,
        }
    }

    /// Also records, as the flow's `bytes_in`, what a [`CountedBody`] of the request counted.
    pub fn with_bytes_in(mut self, counter: Arc<AtomicU64>) -> Self {
        self.bytes_in = Some(counter);
        self
    }

    /// Takes the guard for recording, with the request bytes counted so far.
    fn take_guard(&mut self) -> Option<FlowGuard> {
        let mut guard = self.guard.take()?;
        if let Some(counter) = &self.bytes_in {
            guard.add_bytes_in(counter.load(Ordering::Relaxed));
        }
        Some(guard)
    }
}

impl<B> Drop for RecordedBody<B> {
    fn drop(&mut self) {
        // A client that goes away mid-stream still gets its flow recorded, exactly once.
        drop(self.take_guard());
    }
}

/// A guest's response body, which ends in an error, never as if complete, when the guest
/// stopped before finishing it: trapped, or stopped at its deadline or its CPU budget while
/// still streaming (or while no one read what it wrote). The instance task has already returned
/// its slots by then; the error tells the client (and the flow record) that what arrived is cut
/// short.
pub struct GuestBody<B> {
    inner: B,
    end: GuestEnd,
    /// The function, its timeout and its CPU budget, for the error.
    function: Arc<str>,
    timeout: Duration,
    cpu_budget: Duration,
    done: bool,
}

impl<B> GuestBody<B> {
    pub(crate) fn new(
        inner: B,
        end: GuestEnd,
        function: Arc<str>,
        timeout: Duration,
        cpu_budget: Duration,
    ) -> Self {
        Self {
            inner,
            end,
            function,
            timeout,
            cpu_budget,
            done: false,
        }
    }
}

impl<B> Body for GuestBody<B>
where
    B: Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Unpin,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if !matches!(polled, Poll::Ready(None)) {
            return polled;
        }
        self.done = true;
        let why = match self.end.stopped() {
            None => return Poll::Ready(None),
            Some(Stop::Deadline) => format!(
                "function `{}` exceeded its timeout of {} ms while sending its response",
                self.function,
                self.timeout.as_millis()
            ),
            Some(Stop::CpuBudget) => format!(
                "function `{}` exceeded its CPU budget of {} ms while sending its response",
                self.function,
                self.cpu_budget.as_millis()
            ),
            Some(Stop::Failed) => format!(
                "function `{}` failed while sending its response",
                self.function
            ),
        };
        Poll::Ready(Some(Err(wasmtime_wasi_http::Error::InternalError(Some(
            why,
        )))))
    }

    fn is_end_stream(&self) -> bool {
        // Only once the guest's end is known: an early end must still be turned into an error.
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that must arrive within a time limit. Past it, a function waiting for more of
/// the body reads `connection-read-timeout` and the host answers 408 for the request, so a
/// client trickling a body cannot hold an instance beyond the limit.
pub struct DeadlineBody<B> {
    inner: B,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    expired: Arc<AtomicBool>,
}

impl<B> DeadlineBody<B> {
    /// Wraps `inner`, which must end within `limit` from now (`None`: no limit). The flag
    /// returned is set if it did not.
    pub fn new(inner: B, limit: Option<Duration>) -> (Self, Arc<AtomicBool>) {
        let expired = Arc::new(AtomicBool::new(false));
        let body = Self {
            inner,
            deadline: limit.map(|l| Box::pin(tokio::time::sleep(l))),
            expired: expired.clone(),
        };
        (body, expired)
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let passed = this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if !passed {
                    return Poll::Pending;
                }
                this.expired.store(true, Ordering::Relaxed);
                this.deadline = None;
                Poll::Ready(Some(Err(wasmtime_wasi_http::Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that counts the bytes the function reads from it.
pub struct CountedBody<B> {
    inner: B,
    count: Arc<AtomicU64>,
}

impl<B> CountedBody<B> {
    /// Wraps `inner`; the returned counter grows as the body is read.
    pub fn new(inner: B) -> (Self, Arc<AtomicU64>) {
        let count = Arc::new(AtomicU64::new(0));
        (
            Self {
                inner,
                count: count.clone(),
            },
            count,
        )
    }
}

impl<B> Body for CountedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
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
                if let Some(mut guard) = this.take_guard() {
                    guard.set_error(format!("response body failed: {e}"));
                    guard.finish();
                }
            }
            Poll::Ready(None) => {
                if let Some(guard) = this.take_guard() {
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
