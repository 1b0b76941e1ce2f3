//! Fair shares of the CPU between segments, and the CPU budget of a request.
//!
//! Bulkheads cap how many requests a segment runs at once; this shares out the CPU they use.
//! A guest reaches a yield point at every epoch tick ([`crate::EPOCH_TICK`]). Every guest
//! starts on the worker that read its request, and most finish there before their first yield
//! point. One still computing a tick later (it used [`COMPUTE_AFTER`] of CPU since) moves to its
//! worker's compute thread ([`compute`]), which runs at a lower OS priority: the worker goes
//! back to its sockets, so a request of another segment starts at once (at the latest at the
//! mover's yield point, never after a round of the guests that loop), and the kernel runs the
//! worker before the long computations whenever both want the core.
//!
//! A function whose latest guests all moved starts its next ones on the compute thread, so a
//! segment that keeps sending requests that loop does not hold its worker for a tick each time.
//!
//! On a compute thread the guests take turns at their yield points ([`turns`]): the thread goes
//! to the segment that has had the least CPU for its `cpu_share` (equal by default), so a
//! segment with many looping guests gets no more than one with a single one, and a segment that
//! starts computing there runs at the next yield point.
//!
//! Every poll of a guest's task is timed. The CPU is charged to the request, which is stopped
//! like a timeout past its function's `cpu_ms` ([`GuestClock::over_budget`]), to its segment's
//! turns, and to its function's account ([`cpu_usage`]), read when metrics are scraped.
//!
//! `SEPTA_SCHEDULER=off` in the environment switches all of it off (guests run and yield on
//! their worker, unaccounted, with no CPU budget): a way to measure what the scheduler costs
//! (`scripts/bench-scheduler`), not a setting.

mod compute;
mod guest;
mod ledger;
mod turns;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use septa_policy::{FunctionId, Policy};

pub use compute::{ScheduledThread, schedule_this_thread};
pub(crate) use guest::TaskLost;
pub use ledger::{CpuUsage, cpu_usage};

use self::guest::{Guest, GuestState, Habit};
use self::ledger::Account;
use self::turns::{DEFAULT_CPU_SHARE, Turn};

/// How much CPU a guest uses on its worker after its first yield point before it moves to the
/// compute thread (at a yield point). Half a tick: a guest that computes through the whole tick
/// after its first yield point moves at its second, one whose request merely met a tick (or was
/// kept off the CPU by the kernel across one) stays.
pub(crate) const COMPUTE_AFTER: Duration = Duration::from_micros(500);

/// The environment variable that switches the scheduler off when set to `off`.
const SWITCH_ENV: &str = "SEPTA_SCHEDULER";

/// Where each function of one policy is scheduled: its segment, that segment's share, its CPU
/// budget and its account.
pub(crate) struct Scheduler {
    /// By function id; empty when the scheduler is switched off.
    functions: Vec<Placed>,
}

struct Placed {
    segment: usize,
    share: u64,
    budget: Duration,
    account: Arc<Account>,
    habit: Arc<Habit>,
}

impl Scheduler {
    /// The placements `policy` declares.
    pub(crate) fn new(policy: &Policy) -> Self {
        if switched_off() {
            return Self {
                functions: Vec::new(),
            };
        }
        let manifest = policy.manifest();
        let functions = policy
            .functions()
            .iter()
            .map(|f| {
                let segment = &f.spec.placement.segment;
                let share = manifest
                    .segments
                    .get(segment)
                    .map_or(DEFAULT_CPU_SHARE, |s| u64::from(s.cpu_share));
                Placed {
                    segment: ledger::segment_index(segment.as_str()),
                    share,
                    budget: Duration::from_millis(u64::from(f.spec.limits.cpu_ms)),
                    account: ledger::account(segment.as_str(), f.spec.name.as_str()),
                    habit: Arc::default(),
                }
            })
            .collect();
        Self { functions }
    }

    /// A request of function `id`, which must be over by `deadline`, starts.
    pub(crate) fn admit(&self, id: FunctionId, deadline: Instant) -> Guest {
        static NEXT_GUEST: AtomicU64 = AtomicU64::new(1);
        let Some(placed) = self.functions.get(id.index()) else {
            return Guest(None);
        };
        let turn = Turn {
            guest: NEXT_GUEST.fetch_add(1, Ordering::Relaxed),
            segment: placed.segment,
            account: placed.account.clone(),
        };
        Guest(Some(Arc::new(GuestState::new(
            turn,
            placed.share,
            placed.habit.clone(),
            deadline,
            placed.budget,
            COMPUTE_AFTER,
        ))))
    }
}

/// Whether `SEPTA_SCHEDULER=off` was set when the process first asked.
fn switched_off() -> bool {
    static OFF: OnceLock<bool> = OnceLock::new();
    *OFF.get_or_init(|| std::env::var(SWITCH_ENV).is_ok_and(|v| v == "off"))
}
