//! Fair shares of each worker's CPU between segments, and the CPU budget of a request.
//!
//! Bulkheads cap how many requests a segment runs at once; this shares out what they run. A
//! guest yields to its worker at every epoch tick, and at that yield point the worker's turns
//! ([`worker`]) decide whether it goes on or waits: when guests of several segments compute on
//! one worker, each segment gets the worker in proportion to its `cpu_share`, and a request of a
//! segment that had nothing running is not kept waiting behind the guests that loop.
//!
//! Every poll of a guest's instance task is timed (two reads of the monotonic clock): the time
//! is charged to the request, which is stopped like a timeout past its function's `cpu_ms`, to
//! its segment's virtual runtime on that worker, and to its function's account
//! ([`cpu_usage`]), read when metrics are scraped.

mod ledger;
mod worker;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use septa_policy::{FunctionId, Policy};
use wasmtime::UpdateDeadline;

use crate::engine::EPOCH_TICK;

use self::ledger::Account;
use self::worker::{Decision, Place, Resume};
pub use ledger::{CpuUsage, cpu_usage};
pub use worker::schedule_this_thread;

/// Where each function of one policy is scheduled: its segment, that segment's share, its CPU
/// budget and its account.
pub(crate) struct Scheduler {
    /// By function id.
    functions: Vec<Placed>,
}

struct Placed {
    segment: usize,
    share: u64,
    budget: Duration,
    account: Arc<Account>,
}

impl Scheduler {
    /// The placements `policy` declares.
    pub(crate) fn new(policy: &Policy) -> Self {
        let manifest = policy.manifest();
        let functions = policy
            .functions()
            .iter()
            .map(|f| {
                let segment = &f.spec.placement.segment;
                let share = manifest
                    .segments
                    .get(segment)
                    .map_or(worker::DEFAULT_CPU_SHARE, |s| u64::from(s.cpu_share));
                Placed {
                    segment: ledger::segment_index(segment.as_str()),
                    share,
                    budget: Duration::from_millis(u64::from(f.spec.limits.cpu_ms)),
                    account: ledger::account(segment.as_str(), f.spec.name.as_str()),
                }
            })
            .collect();
        Self { functions }
    }

    /// A request of function `id` starts on the current thread.
    pub(crate) fn admit(&self, id: FunctionId) -> Guest {
        static NEXT_GUEST: AtomicU64 = AtomicU64::new(1);
        let (worker, segment, share, budget, account) = match self.functions.get(id.index()) {
            Some(p) => (
                worker::current_id(),
                p.segment,
                p.share,
                p.budget,
                p.account.clone(),
            ),
            // Not a function of this policy (the host refuses it before it runs): unscheduled.
            None => (0, 0, 1, Duration::MAX, Arc::default()),
        };
        let state = GuestState {
            id: NEXT_GUEST.fetch_add(1, Ordering::Relaxed),
            worker,
            segment,
            share,
            budget_ns: u64::try_from(budget.as_nanos()).unwrap_or(u64::MAX),
            account,
            used_ns: AtomicU64::new(0),
            slice_start: AtomicU64::new(0),
            in_turn: AtomicBool::new(false),
            over_budget: AtomicBool::new(false),
            long_running: AtomicBool::new(false),
            place: AtomicU8::new(Place::Ready as u8),
            admitted: now_ns(),
        };
        trace(&state, "admit");
        worker::with(state.worker, |w| w.enter(segment));
        Guest {
            state: Arc::new(state),
        }
    }
}

/// One request's guest, from admission until it is dropped (then it leaves its worker).
pub(crate) struct Guest {
    state: Arc<GuestState>,
}

/// What the store's epoch callback and the host keep of a [`Guest`].
#[derive(Clone)]
pub(crate) struct GuestClock {
    state: Arc<GuestState>,
}

pub(super) struct GuestState {
    /// Unique in the process.
    id: u64,
    /// The worker it was admitted on, 0 for none.
    worker: u64,
    segment: usize,
    share: u64,
    budget_ns: u64,
    account: Arc<Account>,
    /// CPU the request used so far.
    used_ns: AtomicU64,
    /// When its current slice on the CPU started ([`now_ns`]), 0 while it is not running.
    slice_start: AtomicU64,
    /// Whether it is at a yield point (then a pending poll is not a wait for I/O).
    in_turn: AtomicBool,
    over_budget: AtomicBool,
    /// Whether it is counted in [`LONG_RUNNING`].
    long_running: AtomicBool,
    /// Its [`Place`] on its worker.
    place: AtomicU8,
    admitted: u64,
}

/// Guests, on any thread, that have computed for longer than an [`EPOCH_TICK`]: while there is
/// one, the epoch ticks at [`crate::CONTENDED_TICK`].
static LONG_RUNNING: AtomicUsize = AtomicUsize::new(0);

const LONG_RUN_NS: u64 = EPOCH_TICK.as_nanos() as u64;

/// Whether some guest computes for longer than an [`EPOCH_TICK`].
pub(crate) fn contended() -> bool {
    LONG_RUNNING.load(Ordering::Relaxed) > 0
}

thread_local! { pub(super) static TRACE: std::cell::RefCell<std::collections::VecDeque<(u64,u64,usize,&'static str)>> = std::cell::RefCell::new(std::collections::VecDeque::new()); }
pub(super) fn trace(g: &GuestState, what: &'static str) {
    static ON: OnceLock<bool> = OnceLock::new();
    if !*ON.get_or_init(|| std::env::var_os("SEPTA_TRACE").is_some()) { return; }
    let now = now_ns();
    let _ = TRACE.try_with(|t| { if let Ok(mut t) = t.try_borrow_mut() { if t.len() > 4000 { t.pop_front(); } t.push_back((now, g.id, g.segment, what)); } });
}
fn dump(g: &GuestState, start: u64) {
    if std::env::var_os("SEPTA_TRACE").is_none() { return; }
    let now = now_ns();
    if now - start < 3_000_000 || g.segment != 0 { return; }
    let _ = TRACE.try_with(|t| { if let Ok(t) = t.try_borrow() { let mut out = format!("SLOW guest {} took {}us\n", g.id, (now-start)/1000); for (ts, id, seg, what) in t.iter().filter(|e| e.0 >= start) { out.push_str(&format!("  +{:>6} g{} s{} {}\n", (ts-start)/1000, id, seg, what)); } eprint!("{out}"); } });
}

/// Nanoseconds since the first call, never 0.
fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let since = START.get_or_init(Instant::now).elapsed().as_nanos();
    u64::try_from(since).unwrap_or(u64::MAX).saturating_add(1)
}

impl GuestState {
    /// Moves it to `place`, returning where it was.
    fn set_place(&self, place: Place) -> Place {
        Place::from_u8(self.place.swap(place as u8, Ordering::Relaxed))
    }

    fn place(&self) -> Place {
        Place::from_u8(self.place.load(Ordering::Relaxed))
    }

    /// Charges the time since its slice started to the request, its function and its segment;
    /// a new slice starts now if it `goes_on`.
    fn charge(&self, goes_on: bool) {
        let now = now_ns();
        let start = self
            .slice_start
            .swap(if goes_on { now } else { 0 }, Ordering::Relaxed);
        if start == 0 {
            return;
        }
        let ran = now.saturating_sub(start);
        self.used_ns.fetch_add(ran, Ordering::Relaxed);
        self.account.ran(ran);
        worker::with(self.worker, |w| w.charge(self.segment, self.share, ran));
    }
}

impl Guest {
    /// The handle the store's epoch callback decides with.
    pub(crate) fn clock(&self) -> GuestClock {
        GuestClock {
            state: self.state.clone(),
        }
    }

    /// Runs `task`, the guest's instance task, timing each poll; a poll that leaves the guest
    /// waiting for something other than its turn (I/O, another function) gives its worker up.
    pub(crate) async fn run<F: Future>(self, task: F) -> F::Output {
        let mut task = std::pin::pin!(task);
        let state = &*self.state;
        std::future::poll_fn(|cx| {
            if state.place() == Place::Blocked {
                worker::with(state.worker, |w| w.unblocked(state));
            }
            state.slice_start.store(now_ns(), Ordering::Relaxed);
            trace(state, "poll");
            let polled = task.as_mut().poll(cx);
            trace(state, if polled.is_ready() { "done" } else if state.in_turn.load(Ordering::Relaxed) { "pending-turn" } else { "pending-io" });
            state.charge(false);
            if polled.is_pending() && !state.in_turn.load(Ordering::Relaxed) {
                worker::with(state.worker, |w| w.blocked(state));
            }
            polled
        })
        .await
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        trace(&self.state, "leave");
        dump(&self.state, self.state.admitted);
        if self.state.long_running.load(Ordering::Relaxed) {
            LONG_RUNNING.fetch_sub(1, Ordering::Relaxed);
        }
        worker::with(self.state.worker, |w| w.leave(&self.state));
    }
}

impl GuestClock {
    /// What the guest does at a yield point (an epoch tick): stop, past its CPU budget; or yield
    /// to its worker, going on when its turn comes (see [`worker`]).
    pub(crate) fn yield_point(&self) -> UpdateDeadline {
        let state = &self.state;
        state.charge(true);
        let used = state.used_ns.load(Ordering::Relaxed);
        if used >= state.budget_ns {
            state.over_budget.store(true, Ordering::Relaxed);
            return UpdateDeadline::Interrupt;
        }
        if used < LONG_RUN_NS {
            // A request in its first tick of CPU is not held back by the finer ticks that
            // guests computing for longer bring, unless its segment is ahead of another.
            let least_served = worker::with(state.worker, |w| w.least_served(state.segment));
            if least_served == Some(true) {
                return UpdateDeadline::Continue(1);
            }
        } else if !state.long_running.swap(true, Ordering::Relaxed) {
            LONG_RUNNING.fetch_add(1, Ordering::Relaxed);
        }
        let decision = worker::with(state.worker, |w| w.at_yield_point(state))
            .unwrap_or(Decision::Unscheduled);
        trace(state, if decision == Decision::Wait { "yp-wait" } else { "yp-run" });
        state.in_turn.store(true, Ordering::Relaxed);
        UpdateDeadline::YieldCustom(1, Box::pin(turn(state.clone(), decision)))
    }

    /// Whether the guest was stopped for using up its CPU budget.
    pub(crate) fn over_budget(&self) -> bool {
        self.state.over_budget.load(Ordering::Relaxed)
    }

    /// Its CPU budget.
    pub(crate) fn budget(&self) -> Duration {
        Duration::from_nanos(self.state.budget_ns)
    }
}

/// A guest's turn at a yield point: yield to tokio (so the worker's sockets are polled and what
/// is ready runs), and wait in line when the worker is another guest's.
async fn turn(state: Arc<GuestState>, mut decision: Decision) {
    let _out_of_turn = OutOfTurn(&state);
    loop {
        match decision {
            Decision::Unscheduled => return tokio::task::yield_now().await,
            Decision::Run => {
                if std::env::var_os("SEPTA_OS_YIELD").is_some() { std::thread::yield_now(); }
                tokio::task::yield_now().await;
                let r = worker::with(state.worker, |w| w.may_go_on(&state));
                trace(&state, match r { Some(Resume::GoOn) => "goon", Some(Resume::YieldAgain) => "again", _ => "wait" });
                match r {
                    None | Some(Resume::GoOn) => return,
                    Some(Resume::YieldAgain) => {}
                    Some(Resume::Wait) => decision = Decision::Wait,
                }
            }
            Decision::Wait => {
                std::future::poll_fn(|cx| {
                    worker::with(state.worker, |w| w.poll_turn(&state, cx.waker()))
                        .unwrap_or(Poll::Ready(()))
                })
                .await;
                // Given the worker: yield once more, so it goes on only after the sockets were
                // polled since the last guest computed.
                decision = Decision::Run;
            }
        }
    }
}

/// Marks the guest out of its turn when the turn ends, or is dropped with its task.
struct OutOfTurn<'a>(&'a GuestState);

impl Drop for OutOfTurn<'_> {
    fn drop(&mut self) {
        self.0.in_turn.store(false, Ordering::Relaxed);
    }
}
