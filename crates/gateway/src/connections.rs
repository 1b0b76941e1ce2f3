//! The open connections of one worker, bounded: each connection holds a [`Slot`] for its
//! life, and when the worker's share of the listener's cap is taken, the connections idle the
//! longest are asked to close so a new client is served. A connection is idle when no request
//! of its is being answered (no handler running, no response body still being sent).
//!
//! The same slot counts the requests a client cancels before they are answered (an HTTP/2
//! `RST_STREAM` right after its `HEADERS`, CVE-2023-44487): past [`MAX_CANCELLED`] such
//! requests, more than half of the connection's, the connection is dropped at once.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

/// Requests a client may cancel before they are answered, on one connection, before the
/// connection is dropped (if they are also more than half of its requests). Browsers cancel
/// some requests; a rapid-reset client cancels nearly all of them, by the thousand.
pub(crate) const MAX_CANCELLED: u32 = 100;

/// After a scan that found no idle connection to close, new connections are refused without
/// scanning again for this long: a flood of new connections against a worker whose every
/// connection is busy costs one scan per interval, not one per connection.
const RESCAN_AFTER: Duration = Duration::from_millis(50);

/// The open connections of one worker, at most `cap` of them not yet asked to close.
pub(crate) struct Registry {
    cap: usize,
    epoch: Instant,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    open: HashMap<u64, Arc<Tracked>>,
    /// How many of `open` were asked to close and have not yet.
    closing: usize,
    /// When a scan last found nothing idle to close.
    nothing_idle_at: Option<Instant>,
}

/// What a connection and the registry share.
pub(crate) struct Tracked {
    /// Requests being answered: handlers running and response bodies being sent.
    busy: AtomicUsize,
    /// When `busy` last fell to zero, in milliseconds since the registry's epoch.
    idle_since_ms: AtomicU64,
    /// Set when the registry asked the connection to close.
    closing: AtomicBool,
    /// Set when the connection is to be dropped at once rather than closed gracefully.
    abort: AtomicBool,
    /// Wakes the connection when `closing` or `abort` is set.
    pub(crate) close: Notify,
    requests: AtomicU32,
    cancelled: AtomicU32,
    epoch: Instant,
}

impl Registry {
    /// A registry admitting `cap` connections (at least one).
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            epoch: Instant::now(),
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection, asking the longest idle ones to close when the cap is
    /// reached; `None` when the cap is reached and none is idle.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut inner = self.lock();
        if inner.open.len() - inner.closing >= self.cap && self.close_idle(&mut inner) == 0 {
            return None;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let tracked = Arc::new(Tracked {
            busy: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            closing: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            close: Notify::new(),
            requests: AtomicU32::new(0),
            cancelled: AtomicU32::new(0),
            epoch: self.epoch,
        });
        inner.open.insert(id, tracked.clone());
        Some(Slot {
            registry: self.clone(),
            id,
            tracked,
        })
    }

    /// Asks the longest idle connection to close, to free a file descriptor (after `accept`
    /// failed for want of one). Returns whether there was one.
    pub(crate) fn shed_one(&self) -> bool {
        let mut inner = self.lock();
        inner.nothing_idle_at = None;
        self.close_oldest(&mut inner, 1) > 0
    }

    /// Asks the longest idle connections to close: a thirty-second of the idle ones at least
    /// one, so that the scan this takes is paid once per many new connections.
    fn close_idle(&self, inner: &mut Inner) -> usize {
        if inner
            .nothing_idle_at
            .is_some_and(|at| at.elapsed() < RESCAN_AFTER)
        {
            return 0;
        }
        let idle = inner.open.values().filter(|t| t.is_idle()).count();
        let closed = self.close_oldest(inner, (idle / 32).max(1));
        if closed == 0 {
            inner.nothing_idle_at = Some(Instant::now());
        }
        closed
    }

    fn close_oldest(&self, inner: &mut Inner, count: usize) -> usize {
        let mut idle: Vec<(u64, &Arc<Tracked>)> = inner
            .open
            .values()
            .filter(|t| t.is_idle())
            .map(|t| (t.idle_since_ms.load(Ordering::Relaxed), t))
            .collect();
        let count = count.min(idle.len());
        if count == 0 {
            return 0;
        }
        if count < idle.len() {
            idle.select_nth_unstable_by_key(count - 1, |(since, _)| *since);
        }
        for (_, tracked) in &idle[..count] {
            tracked.closing.store(true, Ordering::Relaxed);
            tracked.close.notify_one();
        }
        inner.closing += count;
        count
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

impl Tracked {
    fn is_idle(&self) -> bool {
        self.busy.load(Ordering::Relaxed) == 0 && !self.closing.load(Ordering::Relaxed)
    }

    /// How long the connection has been idle, or `None` while it is answering a request.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let since = self.idle_since_ms.load(Ordering::Relaxed);
        Some(Duration::from_millis(now.saturating_sub(since)))
    }

    /// Whether the connection is to be dropped at once (a rapid-reset client).
    pub(crate) fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// Marks one request begun: the connection is busy until the returned guard and every
    /// [`Busy::clone_for_body`] of it are dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> Busy {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy {
            tracked: self.clone(),
            answered: false,
        }
    }

    fn end(&self) {
        if self.busy.fetch_sub(1, Ordering::Relaxed) == 1 {
            let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.idle_since_ms.store(now, Ordering::Relaxed);
        }
    }

    fn cancelled(&self) {
        let cancelled = self.cancelled.fetch_add(1, Ordering::Relaxed) + 1;
        let requests = self.requests.load(Ordering::Relaxed);
        if cancelled > MAX_CANCELLED && cancelled.saturating_mul(2) > requests {
            self.abort.store(true, Ordering::Relaxed);
            self.close.notify_one();
        }
    }
}

/// A connection's place in its worker's registry, given up when the connection ends.
pub(crate) struct Slot {
    registry: Arc<Registry>,
    id: u64,
    pub(crate) tracked: Arc<Tracked>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        if inner.open.remove(&self.id).is_some() && self.tracked.closing.load(Ordering::Relaxed) {
            inner.closing -= 1;
        }
    }
}

/// One request being answered. Dropped before [`Busy::answered`] was called, it counts as a
/// request the client cancelled.
pub(crate) struct Busy {
    tracked: Arc<Tracked>,
    answered: bool,
}

impl Busy {
    /// The handler produced a response: the request was not cancelled. The connection stays
    /// busy while the response body is sent, through the guard this returns.
    pub(crate) fn answered(mut self) -> BodyBusy {
        self.answered = true;
        self.tracked.busy.fetch_add(1, Ordering::Relaxed);
        BodyBusy(self.tracked.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if !self.answered {
            self.tracked.cancelled();
        }
        self.tracked.end();
    }
}

/// Keeps a connection busy while a response body is being sent.
pub(crate) struct BodyBusy(Arc<Tracked>);

impl Drop for BodyBusy {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A response body that keeps its connection busy until it is sent or dropped.
pub(crate) struct TrackedBody<B> {
    body: B,
    _busy: BodyBusy,
}

impl<B> TrackedBody<B> {
    pub(crate) fn new(body: B, busy: BodyBusy) -> Self {
        Self { body, _busy: busy }
    }
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn at_the_cap_the_longest_idle_connection_is_asked_to_close() {
        let registry = Arc::new(Registry::new(2));
        let first = registry.admit().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let second = registry.admit().unwrap();
        let busy = second.tracked.begin();
        let third = registry.admit().unwrap();
        assert!(first.tracked.closing.load(Ordering::Relaxed));
        assert!(!second.tracked.closing.load(Ordering::Relaxed));
        // `second` is busy and `third` is new and idle: the next one closes `third`.
        let _fourth = registry.admit().unwrap();
        assert!(third.tracked.closing.load(Ordering::Relaxed));
        drop(first);
        drop(third);
        assert_eq!(registry.lock().closing, 0);
        drop(busy);
    }

    #[test]
    fn when_every_connection_is_busy_a_new_one_is_refused() {
        let registry = Arc::new(Registry::new(1));
        let only = registry.admit().unwrap();
        let _busy = only.tracked.begin();
        assert!(registry.admit().is_none());
    }

    #[test]
    fn a_connection_whose_requests_are_mostly_cancelled_is_aborted() {
        let registry = Arc::new(Registry::new(4));
        let slot = registry.admit().unwrap();
        for _ in 0..MAX_CANCELLED {
            drop(slot.tracked.begin());
        }
        assert!(!slot.tracked.aborted());
        // Answered requests keep a browser that cancels some of its own in good standing.
        for _ in 0..MAX_CANCELLED * 2 {
            drop(slot.tracked.begin().answered());
        }
        drop(slot.tracked.begin());
        assert!(!slot.tracked.aborted());
        for _ in 0..MAX_CANCELLED * 2 {
            drop(slot.tracked.begin());
        }
        assert!(slot.tracked.aborted());
        assert!(slot.tracked.idle_for().is_some());
    }
}
