//! Whose turn it is on one compute thread: the guests there take the thread one at a time, and
//! at each yield point it goes to the segment that has had the least CPU for its share.
//!
//! Each segment with guests on the thread has a *virtual runtime*: the CPU its guests had here,
//! scaled by [`DEFAULT_CPU_SHARE`] / its `cpu_share`, so a segment with twice the share gets
//! twice the CPU before it is ahead. One guest holds the thread; the others wait in a queue per
//! segment. When the holder reaches a yield point it goes to the back of its segment's queue and
//! the thread goes to the front guest of the segment with the least virtual runtime (itself
//! again when it is alone, or its own segment is the least served). A guest that waits for I/O
//! gives the thread up, and asks for it again when it wakes.
//!
//! A segment that had no guest on the thread starts level with the least served segment that
//! has: it neither carries credit from the time it was idle (it could not shut the others out
//! until it caught up) nor debt. Since the holder has just been charged for its slice, the
//! newcomer's segment is behind it at the holder's next yield point, and runs then.
//!
//! This is plain data, driven by the compute thread ([`super::compute`]); it never blocks and
//! never wakes anyone itself: it returns the waker of the guest the thread went to.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use super::ledger::Account;

/// The CPU share of a segment that declares none.
pub(crate) const DEFAULT_CPU_SHARE: u64 = septa_manifest::Segment::DEFAULT_CPU_SHARE as u64;

/// A guest, as the turns know it.
#[derive(Clone)]
pub(crate) struct Turn {
    /// Unique in the process.
    pub(crate) guest: u64,
    /// Its segment's number ([`super::ledger::segment_index`]).
    pub(crate) segment: usize,
    /// Where its waits and preemptions are counted.
    pub(crate) account: Arc<Account>,
}

/// The turns of one compute thread.
#[derive(Default)]
pub(crate) struct Turns {
    /// By segment number.
    segments: Vec<SegmentTurns>,
    /// The guest that may run, if any.
    holder: Option<u64>,
}

#[derive(Default)]
struct SegmentTurns {
    /// CPU its guests had on this thread, scaled by the default share over its share.
    vruntime: u64,
    /// Its guests on this thread that have not finished.
    active: u32,
    /// Its guests waiting for the thread, in turn order.
    queue: VecDeque<Waiting>,
}

struct Waiting {
    turn: Turn,
    /// Set when the guest's task was polled while waiting; `None` while a wake-up is already
    /// on its way to it (it queued itself from a yield point that woke its task).
    waker: Option<Waker>,
    since: Instant,
}

/// What a guest does at a yield point.
#[derive(Debug)]
pub(crate) enum AfterYield {
    /// It keeps the thread.
    GoOn,
    /// The thread went to another guest; it waits in its queue. The waker is the other
    /// guest's, to wake once the turns are released.
    Wait(Option<Waker>),
}

impl Turns {
    fn segment(&mut self, index: usize) -> &mut SegmentTurns {
        if self.segments.len() <= index {
            self.segments.resize_with(index + 1, SegmentTurns::default);
        }
        &mut self.segments[index]
    }

    /// A guest of `segment` arrives on this thread. A segment that had no guest here starts
    /// level with the least served one that has.
    pub(crate) fn arrive(&mut self, segment: usize) {
        let least_active = self
            .segments
            .iter()
            .enumerate()
            .filter(|&(i, s)| i != segment && s.active > 0)
            .map(|(_, s)| s.vruntime)
            .min();
        let run = self.segment(segment);
        if run.active == 0
            && let Some(least) = least_active
        {
            run.vruntime = least;
        }
        run.active += 1;
    }

    /// Whether `turn`'s guest holds the thread; if not, it waits in its queue for `waker`. When
    /// no one holds the thread, the least served of the waiting guests (this one included)
    /// gets it: the waker returned is that guest's, when it is another.
    pub(crate) fn claim(&mut self, turn: &Turn, waker: &Waker) -> (bool, Option<Waker>) {
        if self.holder == Some(turn.guest) {
            return (true, None);
        }
        self.wait(turn, Some(waker.clone()));
        if self.holder.is_some() {
            return (false, None);
        }
        match self.dispatch() {
            Some((guest, _)) if guest == turn.guest => (true, None),
            Some((_, other)) => (false, other),
            None => (false, None),
        }
    }

    /// The holder `turn` is at a yield point: it goes to the back of its queue, and the thread
    /// to the least served waiting guest, which may be itself.
    pub(crate) fn yielded(&mut self, turn: &Turn) -> AfterYield {
        if self.holder == Some(turn.guest) {
            self.holder = None;
        }
        // Its task was woken by the yield itself: it needs no waker to be polled again.
        self.wait(turn, None);
        match self.dispatch() {
            Some((guest, _)) if guest == turn.guest => AfterYield::GoOn,
            Some((_, other)) => {
                turn.account.preempted();
                AfterYield::Wait(other)
            }
            None => AfterYield::GoOn,
        }
    }

    /// `turn`'s guest waits for something else than the thread (I/O, another function): it
    /// gives the thread up. Returns the waker of the guest the thread went to.
    pub(crate) fn blocked(&mut self, turn: &Turn) -> Option<Waker> {
        if self.holder != Some(turn.guest) {
            return None;
        }
        self.holder = None;
        self.dispatch().and_then(|(_, waker)| waker)
    }

    /// `turn`'s guest finished (or was dropped): out of its queue, and the thread to the next
    /// guest if it held it. Returns that guest's waker.
    pub(crate) fn leave(&mut self, turn: &Turn) -> Option<Waker> {
        let run = self.segment(turn.segment);
        run.active = run.active.saturating_sub(1);
        run.queue.retain(|w| w.turn.guest != turn.guest);
        if self.holder != Some(turn.guest) {
            return None;
        }
        self.holder = None;
        self.dispatch().and_then(|(_, waker)| waker)
    }

    /// Adds `nanos` of CPU to `segment`, whose share is `share`.
    pub(crate) fn charge(&mut self, segment: usize, share: u64, nanos: u64) {
        let scaled = nanos.saturating_mul(DEFAULT_CPU_SHARE) / share.max(1);
        let run = self.segment(segment);
        run.vruntime = run.vruntime.saturating_add(scaled);
    }

    /// Queues `turn` (once), keeping the newest waker.
    fn wait(&mut self, turn: &Turn, waker: Option<Waker>) {
        let queue = &mut self.segment(turn.segment).queue;
        match queue.iter_mut().find(|w| w.turn.guest == turn.guest) {
            Some(waiting) => {
                if waker.is_some() {
                    waiting.waker = waker;
                }
            }
            None => queue.push_back(Waiting {
                turn: turn.clone(),
                waker,
                since: Instant::now(),
            }),
        }
    }

    /// Gives the free thread to the front guest of the least served segment that has one
    /// waiting: its id and waker.
    fn dispatch(&mut self) -> Option<(u64, Option<Waker>)> {
        let next = self
            .segments
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.queue.is_empty())
            .min_by_key(|&(_, s)| s.vruntime)
            .map(|(i, _)| i)?;
        let waiting = self.segments[next].queue.pop_front()?;
        waiting
            .turn
            .account
            .waited(u64::try_from(waiting.since.elapsed().as_nanos()).unwrap_or(u64::MAX));
        self.holder = Some(waiting.turn.guest);
        Some((waiting.turn.guest, waiting.waker))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;
    use std::task::Waker;

    use super::*;

    fn turn(guest: u64, segment: usize) -> Turn {
        Turn {
            guest,
            segment,
            account: Arc::default(),
        }
    }

    /// Runs `guests` (with their segments' shares) for `slices` slices of 1 ms each, every
    /// guest always ready to compute; returns the CPU each segment got, in slices.
    fn run(guests: &[(u64, usize)], shares: &[u64], slices: usize) -> BTreeMap<usize, usize> {
        let mut turns = Turns::default();
        let all: Vec<Turn> = guests.iter().map(|&(g, s)| turn(g, s)).collect();
        for t in &all {
            turns.arrive(t.segment);
            turns.claim(t, Waker::noop());
        }
        let mut got = BTreeMap::new();
        for _ in 0..slices {
            let holder = all
                .iter()
                .find(|t| turns.holder == Some(t.guest))
                .unwrap()
                .clone();
            *got.entry(holder.segment).or_default() += 1;
            turns.charge(holder.segment, shares[holder.segment], 1_000_000);
            turns.yielded(&holder);
        }
        got
    }

    #[test]
    fn segments_share_the_thread_equally_whatever_their_number_of_guests() {
        // Segment 0 has three guests, segment 1 one: each segment gets half.
        let got = run(&[(1, 0), (2, 0), (3, 0), (4, 1)], &[100, 100], 1_000);
        assert_eq!(got[&0], 500);
        assert_eq!(got[&1], 500);
    }

    #[test]
    fn cpu_share_weighs_the_split() {
        let got = run(&[(1, 0), (2, 1)], &[300, 100], 1_000);
        assert!(got[&0].abs_diff(750) <= 2, "{got:?}");
        assert!(got[&1].abs_diff(250) <= 2, "{got:?}");
    }

    #[test]
    fn guests_of_one_segment_take_turns() {
        let mut turns = Turns::default();
        let (a, b) = (turn(1, 0), turn(2, 0));
        turns.arrive(0);
        turns.arrive(0);
        assert!(turns.claim(&a, Waker::noop()).0);
        assert!(!turns.claim(&b, Waker::noop()).0);
        turns.charge(0, 100, 1_000_000);
        assert!(matches!(turns.yielded(&a), AfterYield::Wait(Some(_))));
        assert!(turns.claim(&b, Waker::noop()).0);
        assert_eq!(a.account.preemptions(), 1);
    }

    #[test]
    fn a_newcomer_runs_at_the_next_yield_point_not_after_a_round_of_loopers() {
        let mut turns = Turns::default();
        let loopers: Vec<Turn> = (1..=8).map(|g| turn(g, 0)).collect();
        for t in &loopers {
            turns.arrive(0);
            turns.claim(t, Waker::noop());
        }
        // They loop for a while.
        for _ in 0..100 {
            let holder = loopers
                .iter()
                .find(|t| turns.holder == Some(t.guest))
                .unwrap()
                .clone();
            turns.charge(0, 100, 1_000_000);
            turns.yielded(&holder);
        }
        let quiet = turn(100, 1);
        turns.arrive(1);
        assert!(!turns.claim(&quiet, Waker::noop()).0);
        let holder = loopers
            .iter()
            .find(|t| turns.holder == Some(t.guest))
            .unwrap()
            .clone();
        turns.charge(0, 100, 1_000_000);
        assert!(matches!(turns.yielded(&holder), AfterYield::Wait(Some(_))));
        assert_eq!(turns.holder, Some(100));
    }

    #[test]
    fn an_idle_segment_brings_back_no_credit() {
        let mut turns = Turns::default();
        let (busy, back) = (turn(1, 0), turn(2, 1));
        turns.arrive(0);
        turns.claim(&busy, Waker::noop());
        for _ in 0..1_000 {
            turns.charge(0, 100, 1_000_000);
            turns.yielded(&busy);
        }
        // Segment 1 arrives after the other ran for a second: they alternate from then on, it
        // does not get the next second to itself.
        turns.arrive(1);
        turns.claim(&back, Waker::noop());
        let mut got = [0, 0];
        for _ in 0..100 {
            let holder = if turns.holder == Some(1) {
                &busy
            } else {
                &back
            };
            got[holder.segment] += 1;
            turns.charge(holder.segment, 100, 1_000_000);
            turns.yielded(holder);
        }
        assert_eq!(got, [50, 50]);
    }

    #[test]
    fn a_blocked_or_finished_holder_hands_the_thread_on() {
        let mut turns = Turns::default();
        let (a, b) = (turn(1, 0), turn(2, 1));
        turns.arrive(0);
        turns.arrive(1);
        assert!(turns.claim(&a, Waker::noop()).0);
        assert!(!turns.claim(&b, Waker::noop()).0);
        assert!(turns.blocked(&a).is_some());
        assert_eq!(turns.holder, Some(2));
        // Woken, `a` waits for `b`, which leaves and hands the thread back.
        assert!(!turns.claim(&a, Waker::noop()).0);
        assert!(turns.leave(&b).is_some());
        assert!(turns.claim(&a, Waker::noop()).0);
        assert!(turns.leave(&a).is_none());
        assert_eq!(turns.holder, None);
    }
}
