//! One worker thread's turns: which of its guests that compute past a yield point runs next.
//!
//! A guest reaches a yield point at every epoch tick. Of the guests of one worker that are at or
//! past one, a single guest holds the worker (the *holder*); the others wait in a queue per
//! segment. At each of its yield points the holder hands the worker to the front guest of the
//! segment that has had the least CPU for its share (its *virtual runtime*: CPU time scaled by
//! [`DEFAULT_CPU_SHARE`] / its share), or to the next guest of its own segment, round robin; it
//! keeps the worker when no one waits. A guest that arrives at a yield point while another holds
//! the worker takes it if its segment is behind the holder's, and waits otherwise.
//!
//! Guests that have not reached a yield point yet (a fresh request) are not held back at all:
//! they run as soon as the worker's tokio runtime polls them, which is at the holder's next
//! yield point at the latest. And every guest that takes the worker yields to tokio once first,
//! so the worker's sockets are polled between any two slices: a request that arrives while
//! guests compute waits for one slice, not for a round of them.
//!
//! A holder that waits on I/O instead of computing gives the worker up at once, and one that
//! finishes gives it to the next; so a guest never waits for a worker nobody uses.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Poll, Waker};
use std::time::Instant;

use septa_manifest::Segment;

use super::GuestState;
use crate::engine::{CONTENDED_TICK, EPOCH_TICK};

/// The CPU share a segment has unless its manifest says otherwise.
pub(super) const DEFAULT_CPU_SHARE: u64 = Segment::DEFAULT_CPU_SHARE as u64;

/// How far behind the [`Worker::floor`] a segment that starts computing again is placed, in
/// virtual nanoseconds. A segment that was idle gets this much ahead of the others and no more:
/// enough that a request of a quiet segment runs before the guests that were looping, little
/// enough that a segment whose guests come and go cannot claim more than its share for long.
const IDLE_CREDIT: u64 = 4 * EPOCH_TICK.as_nanos() as u64;

/// How long after a segment's guests all blocked they still count as ready to run. A guest
/// that streams its response waits for its connection to take each part, a few tens of
/// microseconds at a time: a guest of another segment that went on computing in such a gap would
/// make it wait a whole slice. A wait longer than this is I/O worth computing through.
const BLOCKED_GRACE_NS: u64 = CONTENDED_TICK.as_nanos() as u64;

thread_local! {
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
}

/// Numbers the workers, so that a guest touches only the queues of the worker it was admitted
/// on (0: not admitted on a worker).
static NEXT_WORKER: AtomicU64 = AtomicU64::new(1);

/// Makes the current thread a worker whose guests share it fairly between their segments: at each
/// epoch tick, a guest whose segment has had more than its `cpu_share` of this thread waits for
/// the guests of the others. Call it once on each thread whose tokio runtime (`current_thread`)
/// runs requests; guests on other threads yield to their runtime at every tick, unscheduled.
pub fn schedule_this_thread() {
    WORKER.with(|cell| {
        let mut worker = cell.borrow_mut();
        if worker.is_none() {
            *worker = Some(Worker {
                id: NEXT_WORKER.fetch_add(1, Ordering::Relaxed),
                segments: Vec::new(),
                holder: None,
                floor: 0,
                to_wake: None,
            });
        }
    });
}

/// The current thread's worker, 0 when it is not one.
pub(super) fn current_id() -> u64 {
    WORKER
        .try_with(|cell| {
            cell.try_borrow()
                .ok()
                .and_then(|w| w.as_ref().map(|w| w.id))
        })
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// Runs `f` on the current thread's worker if it is worker `id`, then wakes the guest `f` gave
/// the worker to (after the worker is released, so that nothing it does can find it borrowed).
pub(super) fn with<R>(id: u64, f: impl FnOnce(&mut Worker) -> R) -> Option<R> {
    if id == 0 {
        return None;
    }
    let (out, wake) = WORKER
        .try_with(|cell| {
            let mut worker = cell.try_borrow_mut().ok()?;
            let worker = worker.as_mut().filter(|w| w.id == id)?;
            let out = f(worker);
            Some((out, worker.to_wake.take()))
        })
        .ok()
        .flatten()?;
    if let Some(waker) = wake {
        waker.wake();
    }
    Some(out)
}

/// Where a guest is, for its worker's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Place {
    /// Running, or ready to run outside the queue.
    Ready = 0,
    /// Waiting for the worker in its segment's queue.
    Queued = 1,
    /// Waiting for I/O or another function.
    Blocked = 2,
    /// Finished.
    Gone = 3,
}

impl Place {
    pub(super) fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Ready,
            1 => Self::Queued,
            2 => Self::Blocked,
            _ => Self::Gone,
        }
    }
}

/// What a guest back from its yield to tokio does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resume {
    /// Go on computing.
    GoOn,
    /// Yield to tokio once more: a guest of a segment behind is ready to run.
    YieldAgain,
    /// Wait for the worker in the queue.
    Wait,
}

/// What a guest at a yield point does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Yield to tokio, then go on (see [`Worker::may_go_on`]).
    Run,
    /// Wait in its segment's queue until the worker is handed to it.
    Wait,
    /// Not on a worker: yield to tokio once, then go on.
    Unscheduled,
}

pub(super) struct Worker {
    id: u64,
    /// By segment number ([`super::ledger::segment_index`]).
    segments: Vec<SegmentRun>,
    /// The guest that may compute past its yield points, and its segment.
    holder: Option<(u64, usize)>,
    /// The least virtual runtime of the segments with guests here, never going back: where a
    /// segment that comes back after a while starts from, so that an old low virtual runtime
    /// does not let it shut the others out until it has caught up.
    floor: u64,
    /// The guest just given the worker, to wake once the worker is released.
    to_wake: Option<Waker>,
}

#[derive(Default)]
struct SegmentRun {
    /// CPU time its guests had on this worker, scaled by the default share over its share.
    vruntime: u64,
    /// Its guests on this worker that have not finished.
    active: u32,
    /// Those of them ready to run outside the queue: fresh, back from I/O, or holding the worker.
    ready: u32,
    /// When the last of its ready guests blocked (on I/O, on another task), [`super::now_ns`].
    blocked_at: u64,
    /// Its guests waiting for the worker, in turn order.
    waiting: VecDeque<Waiting>,
}

struct Waiting {
    guest: Arc<GuestState>,
    /// Set once the guest's turn future is polled (right after it is queued).
    waker: Option<Waker>,
    since: Instant,
}

impl Worker {
    fn segment(&mut self, index: usize) -> &mut SegmentRun {
        if self.segments.len() <= index {
            self.segments.resize_with(index + 1, SegmentRun::default);
        }
        &mut self.segments[index]
    }

    fn vruntime(&self, index: usize) -> u64 {
        self.segments.get(index).map_or(0, |s| s.vruntime)
    }

    /// A guest of `segment` starts on this worker. A segment that had no guest here starts at
    /// most [`IDLE_CREDIT`] behind the [`floor`](Self::floor).
    pub(super) fn enter(&mut self, segment: usize) {
        self.raise_floor();
        let floor = self.floor.saturating_sub(IDLE_CREDIT);
        let run = self.segment(segment);
        if run.active == 0 {
            run.vruntime = run.vruntime.max(floor);
        }
        run.active += 1;
        run.ready += 1;
    }

    fn raise_floor(&mut self) {
        let least = self
            .segments
            .iter()
            .filter(|s| s.active > 0)
            .map(|s| s.vruntime)
            .min();
        if let Some(least) = least {
            self.floor = self.floor.max(least);
        }
    }

    /// `guest` finished (or was dropped): out of the queues, and the worker to the next guest if
    /// it held it.
    pub(super) fn leave(&mut self, guest: &GuestState) {
        let was_ready = guest.set_place(Place::Gone) == Place::Ready;
        let run = self.segment(guest.segment);
        run.active = run.active.saturating_sub(1);
        if was_ready {
            run.ready = run.ready.saturating_sub(1);
        }
        run.waiting.retain(|w| w.guest.id != guest.id);
        if self.holder.is_some_and(|(id, _)| id == guest.id) {
            self.hand_to_next();
        }
    }

    /// Adds `nanos` of CPU to `segment`, whose share is `share`.
    pub(super) fn charge(&mut self, segment: usize, share: u64, nanos: u64) {
        let scaled = nanos.saturating_mul(DEFAULT_CPU_SHARE) / share.max(1);
        let run = self.segment(segment);
        run.vruntime = run.vruntime.saturating_add(scaled);
        self.raise_floor();
    }

    /// `guest` waits on something other than the worker (I/O, another function): it gives the
    /// worker up if it held it.
    pub(super) fn blocked(&mut self, guest: &GuestState) {
        if guest.set_place(Place::Blocked) == Place::Ready {
            let run = self.segment(guest.segment);
            run.ready = run.ready.saturating_sub(1);
            if run.ready == 0 {
                run.blocked_at = super::now_ns();
            }
        }
        if self.holder.is_some_and(|(id, _)| id == guest.id) {
            self.hand_to_next();
        }
    }

    /// `guest`, blocked, was woken and runs again.
    pub(super) fn unblocked(&mut self, guest: &GuestState) {
        if guest.set_place(Place::Ready) == Place::Blocked {
            self.segment(guest.segment).ready += 1;
        }
    }

    /// Whether no other segment with guests ready or waiting here has had less CPU for its
    /// share than `segment`.
    pub(super) fn least_served(&self, segment: usize) -> bool {
        let own = self.vruntime(segment);
        !self.segments.iter().enumerate().any(|(i, s)| {
            i != segment && (s.ready > 0 || !s.waiting.is_empty()) && s.vruntime < own
        })
    }

    /// `guest` is at a yield point: whether it goes on or waits for its turn.
    pub(super) fn at_yield_point(&mut self, guest: &Arc<GuestState>) -> Decision {
        let segment = guest.segment;
        if let Some((holder, held_by)) = self.holder
            && holder != guest.id
        {
            // It computed while another guest held the worker (it was fresh, or woke from I/O).
            if self.vruntime(segment) < self.vruntime(held_by) {
                // The holder finds out when it next looks (`may_go_on`, `poll_turn`).
                self.holder = Some((guest.id, segment));
                return Decision::Run;
            }
            self.queue(guest, false);
            return Decision::Wait;
        }
        self.holder = Some((guest.id, segment));
        let least_served = self
            .segments
            .iter()
            .enumerate()
            .filter(|&(i, s)| i != segment && !s.waiting.is_empty())
            .min_by_key(|&(_, s)| s.vruntime)
            .map(|(i, _)| i);
        let next = match least_served {
            Some(other) if self.vruntime(segment) > self.vruntime(other) => other,
            _ if !self.segment(segment).waiting.is_empty() => segment,
            _ => return Decision::Run,
        };
        self.queue(guest, false);
        self.hand_to_front(next);
        Decision::Wait
    }

    /// Whether `guest`, back from its yield to tokio, may go on. If another guest took the
    /// worker meanwhile, it waits at the front of its segment's queue. If it holds the worker
    /// (or no one does) it goes on, unless a segment that had less than its share has a guest
    /// ready outside the queue (a request that arrived while it computed): then it yields again,
    /// so that guest runs first, and a fresh request waits for one slice at most.
    pub(super) fn may_go_on(&mut self, guest: &Arc<GuestState>) -> Resume {
        match self.holder {
            Some((holder, _)) if holder != guest.id => {
                self.queue(guest, true);
                return Resume::Wait;
            }
            Some(_) => {}
            None => self.holder = Some((guest.id, guest.segment)),
        }
        let own = self.vruntime(guest.segment);
        let now = super::now_ns();
        let fresh_behind = self.segments.iter().enumerate().any(|(i, s)| {
            let ready = s.ready > 0
                || (s.active > 0 && now.saturating_sub(s.blocked_at) < BLOCKED_GRACE_NS);
            i != guest.segment && ready && s.vruntime < own
        });
        if fresh_behind {
            Resume::YieldAgain
        } else {
            Resume::GoOn
        }
    }

    /// Whether the worker is `guest`'s now; if not, it is (still) queued, to be woken by `waker`.
    pub(super) fn poll_turn(&mut self, guest: &Arc<GuestState>, waker: &Waker) -> Poll<()> {
        match self.holder {
            Some((holder, _)) if holder == guest.id => return Poll::Ready(()),
            None => {
                self.holder = Some((guest.id, guest.segment));
                let run = self.segment(guest.segment);
                run.waiting.retain(|w| w.guest.id != guest.id);
                if guest.set_place(Place::Ready) != Place::Ready {
                    run.ready += 1;
                }
                return Poll::Ready(());
            }
            Some(_) => {}
        }
        let queued = self
            .segment(guest.segment)
            .waiting
            .iter_mut()
            .find(|w| w.guest.id == guest.id);
        match queued {
            Some(entry) => match &mut entry.waker {
                Some(w) => w.clone_from(waker),
                None => entry.waker = Some(waker.clone()),
            },
            None => {
                // Given the worker, then overtaken before it ran: first in line again.
                self.queue(guest, true);
                if let Some(entry) = self.segment(guest.segment).waiting.front_mut() {
                    entry.waker = Some(waker.clone());
                }
            }
        }
        Poll::Pending
    }

    /// Puts `guest` in its segment's queue, at the back or (`front`) the front: it is preempted.
    fn queue(&mut self, guest: &Arc<GuestState>, front: bool) {
        guest.account.preempted();
        if guest.set_place(Place::Queued) == Place::Ready {
            let run = self.segment(guest.segment);
            run.ready = run.ready.saturating_sub(1);
        }
        let waiting = Waiting {
            guest: guest.clone(),
            waker: None,
            since: Instant::now(),
        };
        let queue = &mut self.segment(guest.segment).waiting;
        if front {
            queue.push_front(waiting);
        } else {
            queue.push_back(waiting);
        }
    }

    /// Gives the worker to the first guest of the least served segment that has one waiting, or
    /// to no one.
    fn hand_to_next(&mut self) {
        let next = self
            .segments
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.waiting.is_empty())
            .min_by_key(|&(_, s)| s.vruntime)
            .map(|(i, _)| i);
        match next {
            Some(segment) => self.hand_to_front(segment),
            None => self.holder = None,
        }
    }

    /// Gives the worker to the first guest waiting in `segment`.
    fn hand_to_front(&mut self, segment: usize) {
        let Some(next) = self.segment(segment).waiting.pop_front() else {
            self.holder = None;
            return;
        };
        let waited = next.since.elapsed().as_nanos();
        next.guest
            .account
            .waited(u64::try_from(waited).unwrap_or(u64::MAX));
        if next.guest.set_place(Place::Ready) != Place::Ready {
            self.segment(segment).ready += 1;
        }
        self.holder = Some((next.guest.id, segment));
        self.to_wake = next.waker;
    }
}
