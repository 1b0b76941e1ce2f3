//! What the mesh listener lets in before a peer has proved who it is. Anyone who can reach the
//! mesh port can open connections and never finish their handshakes; each holds a descriptor,
//! which the process shares with its gateway. So the listener bounds both: handshakes in flight
//! (when full, the oldest is dropped: a stalled handshake is older than a node's, which takes a
//! millisecond), and connections of authenticated peers. Both are sized from the open-file limit,
//! within the quarter of it the gateway leaves (`septa_gateway::connection_cap`).
//!
//! Refused handshakes are recorded as flows, but an unauthenticated stranger must not be able to
//! write the flow log at the rate it can open connections: records of refused handshakes are
//! budgeted per listener, and what goes over the budget is counted and warned about at most once
//! a minute.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// How many connections the mesh listener holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeshLimits {
    /// TLS handshakes in flight (unauthenticated connections).
    pub handshakes: usize,
    /// Connections of authenticated peers.
    pub connections: usize,
}

impl MeshLimits {
    /// The limits for a process allowed `fd_limit` open files: a sixteenth of them each (a node
    /// has a handful of peers, each on one pooled connection), at least 16, at most 256
    /// handshakes and 1,024 connections.
    pub fn for_fd_limit(fd_limit: u64) -> Self {
        let share = usize::try_from(fd_limit / 16).unwrap_or(usize::MAX).max(16);
        Self {
            handshakes: share.min(256),
            connections: share.min(1024),
        }
    }
}

/// How many refused handshakes are recorded in a burst, and how many a second after it.
const RECORD_BURST: f64 = 64.0;
const RECORDS_PER_SECOND: f64 = 16.0;
/// How often, at most, unrecorded refusals and failing accepts are warned about.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The door of one mesh listener.
pub(crate) struct Door {
    limits: MeshLimits,
    pending: Mutex<Pending>,
    connections: Arc<Semaphore>,
    records: Mutex<RecordBudget>,
}

impl Door {
    pub(crate) fn new(limits: MeshLimits) -> Self {
        Self {
            limits,
            pending: Mutex::new(Pending::default()),
            connections: Arc::new(Semaphore::new(limits.connections.max(1))),
            records: Mutex::new(RecordBudget::new(Instant::now())),
        }
    }

    /// Lets a new connection start its handshake, dropping the oldest one in flight if the
    /// listener already has its fill. The handshake must end when the returned ticket's
    /// `evicted` resolves.
    pub(crate) fn handshake(self: &Arc<Self>) -> Handshake {
        let (evict, evicted) = oneshot::channel();
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        while pending.live.len() >= self.limits.handshakes.max(1) {
            pending.evict_oldest();
        }
        let id = pending.admit(evict);
        Handshake {
            door: self.clone(),
            id,
            evicted,
        }
    }

    /// A place for an authenticated peer's connection, or `None` when the listener holds its
    /// fill of them.
    pub(crate) fn connection(&self) -> Option<OwnedSemaphorePermit> {
        self.connections.clone().try_acquire_owned().ok()
    }

    /// Whether a refused handshake may be recorded now. Over the budget, the refusal is counted,
    /// and the count is warned about at most once a minute.
    pub(crate) fn may_record_refusal(&self) -> bool {
        let mut budget = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if budget.take(now) {
            return true;
        }
        budget.unrecorded += 1;
        if budget
            .warned
            .is_none_or(|at| now.duration_since(at) >= WARN_EVERY)
        {
            tracing::warn!(
                unrecorded = budget.unrecorded,
                "mesh listener: refused handshakes over the recording budget are counted, not recorded"
            );
            budget.warned = Some(now);
            budget.unrecorded = 0;
        }
        false
    }
}

/// A handshake in flight. Dropped when it ends, freeing its place.
pub(crate) struct Handshake {
    door: Arc<Door>,
    id: u64,
    /// Resolves (with an error) when the listener drops this handshake for a newer one.
    pub(crate) evicted: oneshot::Receiver<()>,
}

impl Drop for Handshake {
    fn drop(&mut self) {
        let mut pending = self
            .door
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        pending.live.remove(&self.id);
    }
}

/// The handshakes in flight, oldest first.
#[derive(Default)]
struct Pending {
    next: u64,
    /// Ids in the order they came; ids of ended handshakes are skipped when met.
    order: VecDeque<u64>,
    /// Dropping a handshake's sender evicts it.
    live: HashMap<u64, oneshot::Sender<()>>,
}

impl Pending {
    fn admit(&mut self, evict: oneshot::Sender<()>) -> u64 {
        let id = self.next;
        self.next += 1;
        self.live.insert(id, evict);
        self.order.push_back(id);
        // Ended handshakes leave their ids behind; keep the queue within twice the live ones.
        if self.order.len() > 2 * self.live.len() + 64 {
            let live = &self.live;
            self.order.retain(|id| live.contains_key(id));
        }
        id
    }

    fn evict_oldest(&mut self) {
        while let Some(id) = self.order.pop_front() {
            if self.live.remove(&id).is_some() {
                return;
            }
        }
    }
}

/// A token bucket for records of refused handshakes.
struct RecordBudget {
    tokens: f64,
    at: Instant,
    unrecorded: u64,
    warned: Option<Instant>,
}

impl RecordBudget {
    fn new(now: Instant) -> Self {
        Self {
            tokens: RECORD_BURST,
            at: now,
            unrecorded: 0,
            warned: None,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let refill = now.duration_since(self.at).as_secs_f64() * RECORDS_PER_SECOND;
        self.tokens = (self.tokens + refill).min(RECORD_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How long to wait after `accept` failed, doubling while it keeps failing (descriptors run
/// out), and a warning at most once a minute rather than one per failure.
#[derive(Default)]
pub(crate) struct AcceptBackoff {
    delay: Duration,
    failures: u64,
    warned: Option<Instant>,
}

impl AcceptBackoff {
    pub(crate) fn succeeded(&mut self) {
        self.delay = Duration::ZERO;
    }

    pub(crate) async fn failed(&mut self, error: &std::io::Error) {
        self.failures += 1;
        let now = Instant::now();
        if self
            .warned
            .is_none_or(|at| now.duration_since(at) >= WARN_EVERY)
        {
            tracing::warn!(%error, failures = self.failures, "mesh listener cannot accept; backing off");
            self.warned = Some(now);
            self.failures = 0;
        }
        self.delay = (self.delay * 2).clamp(Duration::from_millis(10), Duration::from_millis(500));
        tokio::time::sleep(self.delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_descriptor_limit_within_bounds() {
        assert_eq!(
            MeshLimits::for_fd_limit(512),
            MeshLimits {
                handshakes: 32,
                connections: 32
            }
        );
        assert_eq!(MeshLimits::for_fd_limit(64).handshakes, 16);
        let large = MeshLimits::for_fd_limit(1 << 20);
        assert_eq!((large.handshakes, large.connections), (256, 1024));
    }

    #[tokio::test]
    async fn a_full_listener_drops_its_oldest_handshake_for_a_new_one() {
        let door = Arc::new(Door::new(MeshLimits {
            handshakes: 2,
            connections: 1,
        }));
        let mut first = door.handshake();
        let mut second = door.handshake();
        let third = door.handshake();
        assert!((&mut first.evicted).await.is_err(), "the oldest is dropped");
        assert!(
            second
                .evicted
                .try_recv()
                .is_err_and(|e| e == oneshot::error::TryRecvError::Empty)
        );
        drop(second);
        // The second's place is free again: a fourth drops nobody.
        let _fourth = door.handshake();
        drop(third);
        assert_eq!(door.pending.lock().unwrap().live.len(), 1);
    }

    #[test]
    fn authenticated_connections_are_bounded() {
        let door = Door::new(MeshLimits {
            handshakes: 1,
            connections: 1,
        });
        let held = door.connection().expect("one place");
        assert!(door.connection().is_none());
        drop(held);
        assert!(door.connection().is_some());
    }

    #[test]
    fn refused_handshakes_are_recorded_within_a_budget() {
        let door = Door::new(MeshLimits::for_fd_limit(1024));
        let recorded = (0..1000).filter(|_| door.may_record_refusal()).count();
        assert!(
            (64..=80).contains(&recorded),
            "{recorded} of 1000 refusals recorded in a burst"
        );
    }
}
