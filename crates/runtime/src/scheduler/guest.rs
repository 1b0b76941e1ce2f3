//! One request's guest as the scheduler sees it: the CPU it has used, its yield points, and the
//! task that runs it, on its worker first and on the worker's compute thread once it computes
//! long.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use wasmtime::UpdateDeadline;

use super::compute::{self, Moved, Role, monotonic_ns, thread_cpu_ns};
use super::turns::{AfterYield, Turn};

/// How many of a function's guests in a row had to move to the compute thread before its next
/// ones start there, sparing the worker their first tick of computing.
const STARTS_LONG_AFTER: u32 = 2;

/// How many of a function's latest guests in a row computed long. Once [`STARTS_LONG_AFTER`]
/// did, its next guests start on the compute thread; the first of them that turns out short
/// sends the next ones back to the worker.
#[derive(Debug, Default)]
pub(super) struct Habit(AtomicU32);

impl Habit {
    fn starts_long(&self) -> bool {
        self.0.load(Ordering::Relaxed) >= STARTS_LONG_AFTER
    }

    fn record(&self, computed_long: bool) {
        // Racing guests of one function may lose an update: it only delays the switch.
        let next = if computed_long {
            self.0
                .load(Ordering::Relaxed)
                .saturating_add(1)
                .min(STARTS_LONG_AFTER)
        } else {
            0
        };
        self.0.store(next, Ordering::Relaxed);
    }
}

/// What the scheduler keeps of one request's guest, shared by its task and its store's epoch
/// callback (which runs inside the task's polls).
///
/// A guest's polls are timed on the monotonic clock until its first yield point, and on its
/// thread's CPU clock from then on: the first is nearly free and most guests never reach a yield
/// point; the second costs a system call per read, but a poll the kernel interrupts for another
/// thread does not look like computing, so a request that was merely kept waiting is not taken
/// for a long computation.
pub(super) struct GuestState {
    pub(super) turn: Turn,
    pub(super) share: u64,
    /// Its function's guests so far.
    habit: Arc<Habit>,
    /// When its request must be over: past it, it runs without waiting for its turn, so that
    /// it is stopped at once.
    deadline: Instant,
    budget_ns: u64,
    /// CPU it must have used on its thread's CPU clock to move to the compute thread.
    compute_after_ns: u64,
    /// CPU used in the polls (and parts of polls) that ended.
    used_ns: AtomicU64,
    /// The part of `used_ns` measured on the thread's CPU clock, which is also charged to its
    /// function's account as it is used; the rest is charged when the guest is over, so that a
    /// short request touches the account (which every worker's guests of the function share)
    /// once.
    computed_ns: AtomicU64,
    /// The clock's reading when the current poll (or its part on the current clock) started, or
    /// 0 between polls.
    slice_start: AtomicU64,
    /// Whether it is timed on its thread's CPU clock.
    on_cpu_clock: AtomicBool,
    /// Set by the epoch callback: the poll that is ending stopped at a yield point.
    at_yield: AtomicBool,
    over_budget: AtomicBool,
}

impl GuestState {
    pub(super) fn new(
        turn: Turn,
        share: u64,
        habit: Arc<Habit>,
        deadline: Instant,
        budget: Duration,
        compute_after: Duration,
    ) -> Self {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Self {
            turn,
            share,
            habit,
            deadline,
            budget_ns: nanos(budget),
            compute_after_ns: nanos(compute_after),
            used_ns: AtomicU64::new(0),
            computed_ns: AtomicU64::new(0),
            slice_start: AtomicU64::new(0),
            on_cpu_clock: AtomicBool::new(false),
            at_yield: AtomicBool::new(false),
            over_budget: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        if self.on_cpu_clock.load(Ordering::Relaxed) {
            thread_cpu_ns()
        } else {
            monotonic_ns()
        }
    }

    /// CPU used so far, the current poll included.
    fn used(&self) -> u64 {
        let start = self.slice_start.load(Ordering::Relaxed);
        let running = if start == 0 {
            0
        } else {
            self.now().saturating_sub(start)
        };
        self.used_ns.load(Ordering::Relaxed).saturating_add(running)
    }

    /// Charges the current poll up to now and goes on timing it on the thread's CPU clock.
    fn to_cpu_clock(&self) {
        if self.on_cpu_clock.load(Ordering::Relaxed) {
            return;
        }
        let start = self.slice_start.load(Ordering::Relaxed);
        if start != 0 {
            self.charge(monotonic_ns().saturating_sub(start), false);
            self.slice_start
                .store(thread_cpu_ns().max(1), Ordering::Relaxed);
        }
        self.on_cpu_clock.store(true, Ordering::Relaxed);
    }

    fn charge(&self, nanos: u64, on_cpu_clock: bool) {
        self.used_ns.fetch_add(nanos, Ordering::Relaxed);
        if on_cpu_clock {
            self.computed_ns.fetch_add(nanos, Ordering::Relaxed);
            self.turn.account.ran(nanos);
        }
    }

    /// Runs `poll` as one slice of the guest, and charges it the CPU it used; returns that too.
    fn timed<R>(&self, poll: impl FnOnce() -> R) -> (R, u64) {
        // Never 0, which means "between polls".
        self.slice_start.store(self.now().max(1), Ordering::Relaxed);
        let out = poll();
        // The epoch callback may have changed clocks, and the start with it.
        let start = self.slice_start.swap(0, Ordering::Relaxed);
        let ran = self.now().saturating_sub(start);
        self.charge(ran, self.on_cpu_clock.load(Ordering::Relaxed));
        (out, ran)
    }

    /// Whether it has computed long enough on its worker to move to the compute thread.
    fn computes_long(&self) -> bool {
        self.computed_ns.load(Ordering::Relaxed) >= self.compute_after_ns
    }
}

impl Drop for GuestState {
    /// The guest is over (its task and its store are gone): the CPU it used on its worker goes
    /// to its function's account, and whether it computed long tells where its function's next
    /// guests start.
    fn drop(&mut self) {
        let computed = self.computed_ns.load(Ordering::Relaxed);
        let used = self.used_ns.load(Ordering::Relaxed);
        self.turn.account.ran(used.saturating_sub(computed));
        self.habit.record(self.computes_long());
    }
}

/// A request's guest, from admission until its task is spawned.
pub(crate) struct Guest(pub(super) Option<Arc<GuestState>>);

/// What the store's epoch callback decides with, and what the host asks after the guest
/// stopped.
#[derive(Clone)]
pub(crate) struct GuestClock(Option<Arc<GuestState>>);

impl Guest {
    /// The handle for the store's epoch callback.
    pub(crate) fn clock(&self) -> GuestClock {
        GuestClock(self.0.clone())
    }

    /// Spawns `task`, the guest's instance task, on the current thread's runtime: timed poll
    /// by poll, and moved to the worker's compute thread at the first yield point by which it
    /// has computed for [`super::COMPUTE_AFTER`] since its first. When its function's latest
    /// guests all computed that long, it starts on the compute thread instead.
    pub(crate) fn spawn<F>(self, task: F) -> GuestTask<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let Some(state) = self.0 else {
            return GuestTask::Plain(tokio::spawn(task));
        };
        let (done, output) = oneshot::channel();
        let task: Pin<Box<dyn Future<Output = F::Output> + Send>> = Box::pin(task);
        let role = compute::role();
        let compute = (role == Role::Worker && state.habit.starts_long())
            .then(compute::link)
            .flatten();
        match role {
            Role::Compute => {
                tokio::spawn(OnCompute::new(state, task, done));
            }
            Role::Worker if compute.is_some() => {
                if let Some(link) = compute {
                    // Only fails if the compute thread is gone: its caller hears the task was
                    // lost.
                    let _ = link.send(Box::pin(OnCompute::new(state, task, done)));
                }
            }
            role => {
                tokio::spawn(OnWorker {
                    state,
                    task: Some(task),
                    done: Some(done),
                    may_move: role == Role::Worker,
                });
            }
        }
        GuestTask::Scheduled(output)
    }
}

impl GuestClock {
    /// What the guest does at a yield point (an epoch tick): stop, past its CPU budget; or
    /// yield to its thread's runtime, which polls its sockets and timers before the guest goes
    /// on, and where its task decides whether it moves or waits for its turn.
    pub(crate) fn yield_point(&self) -> UpdateDeadline {
        if let Some(state) = &self.0 {
            if state.used() >= state.budget_ns {
                state.over_budget.store(true, Ordering::Relaxed);
                return UpdateDeadline::Interrupt;
            }
            state.to_cpu_clock();
            state.at_yield.store(true, Ordering::Relaxed);
        }
        UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
    }

    /// Whether the guest was stopped for using up its CPU budget.
    pub(crate) fn over_budget(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|s| s.over_budget.load(Ordering::Relaxed))
    }

    /// Its CPU budget.
    pub(crate) fn budget(&self) -> Duration {
        self.0
            .as_ref()
            .map_or(Duration::MAX, |s| Duration::from_nanos(s.budget_ns))
    }
}

/// The end of a guest's instance task.
pub(crate) enum GuestTask<T> {
    /// Spawned as is: the scheduler is switched off.
    Plain(tokio::task::JoinHandle<T>),
    /// Scheduled: the output comes from whichever thread finished it.
    Scheduled(oneshot::Receiver<T>),
}

/// An instance task that ended without an output: it panicked, or its thread stopped.
#[derive(Debug, thiserror::Error)]
#[error("the instance task failed: {0}")]
pub(crate) struct TaskLost(String);

impl<T> Future for GuestTask<T> {
    type Output = Result<T, TaskLost>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Plain(handle) => Pin::new(handle)
                .poll(cx)
                .map_err(|e| TaskLost(e.to_string())),
            Self::Scheduled(output) => Pin::new(output).poll(cx).map_err(|_| {
                TaskLost("it ended without finishing (it panicked, or its thread stopped)".into())
            }),
        }
    }
}

type BoxedTask<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A guest's task on the worker that started it.
struct OnWorker<T> {
    state: Arc<GuestState>,
    /// `None` once finished or moved.
    task: Option<BoxedTask<T>>,
    done: Option<oneshot::Sender<T>>,
    /// Whether it may still move to a compute thread (on a worker, while it has one).
    may_move: bool,
}

impl<T: Send + 'static> Future for OnWorker<T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(task) = this.task.as_mut() else {
            return Poll::Ready(());
        };
        let (polled, _) = this.state.timed(|| task.as_mut().poll(cx));
        if let Poll::Ready(out) = polled {
            if let Some(done) = this.done.take() {
                let _ = done.send(out);
            }
            this.task = None;
            return Poll::Ready(());
        }
        let at_yield = this.state.at_yield.swap(false, Ordering::Relaxed);
        if at_yield && this.may_move && this.state.computes_long() {
            return this.move_to_compute();
        }
        Poll::Pending
    }
}

impl<T: Send + 'static> OnWorker<T> {
    /// Hands the task to the compute thread: done here. Its yield woke this task, not the
    /// moved one; the compute thread polls that one when it arrives.
    fn move_to_compute(&mut self) -> Poll<()> {
        let (Some(task), Some(done)) = (self.task.take(), self.done.take()) else {
            return Poll::Ready(());
        };
        let Some(link) = compute::link() else {
            self.may_move = false;
            self.task = Some(task);
            self.done = Some(done);
            return Poll::Pending;
        };
        let moved: Moved = Box::pin(OnCompute::new(self.state.clone(), task, done));
        // Only fails if the compute thread is gone; the guest goes with it, and its caller
        // hears that its task was lost.
        let _ = link.send(moved);
        Poll::Ready(())
    }
}

/// A guest's task on a compute thread, where it runs only in its turn.
struct OnCompute<T> {
    state: Arc<GuestState>,
    task: Option<BoxedTask<T>>,
    done: Option<oneshot::Sender<T>>,
    /// Whether it is counted in the thread's turns (from its first poll until it leaves).
    present: bool,
}

impl<T> OnCompute<T> {
    fn new(state: Arc<GuestState>, task: BoxedTask<T>, done: oneshot::Sender<T>) -> Self {
        // Here the kernel often runs another thread in the middle of a slice.
        state.on_cpu_clock.store(true, Ordering::Relaxed);
        Self {
            state,
            task: Some(task),
            done: Some(done),
            present: false,
        }
    }

    fn leave(&mut self) {
        if std::mem::take(&mut self.present) {
            wake(compute::with_turns(|t| t.leave(&self.state.turn)).flatten());
        }
    }
}

impl<T: Send + 'static> Future for OnCompute<T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let turn = &this.state.turn;
        if !this.present {
            this.present = compute::with_turns(|t| t.arrive(turn.segment)).is_some();
        }
        // Past its deadline it runs out of turn, to be stopped; off a compute thread (never, as
        // spawned), it runs unscheduled.
        if Instant::now() < this.state.deadline {
            let (mine, other) =
                compute::with_turns(|t| t.claim(turn, cx.waker())).unwrap_or((true, None));
            wake(other);
            if !mine {
                return Poll::Pending;
            }
        }
        let Some(task) = this.task.as_mut() else {
            return Poll::Ready(());
        };
        let (polled, ran) = this.state.timed(|| task.as_mut().poll(cx));
        let (segment, share) = (turn.segment, this.state.share);
        compute::with_turns(|t| t.charge(segment, share, ran));
        if let Poll::Ready(out) = polled {
            if let Some(done) = this.done.take() {
                let _ = done.send(out);
            }
            this.task = None;
            this.leave();
            return Poll::Ready(());
        }
        let other = if this.state.at_yield.swap(false, Ordering::Relaxed) {
            // The yield woke this task: it is polled again, and goes on if the turn is still its.
            match compute::with_turns(|t| t.yielded(&this.state.turn)) {
                Some(AfterYield::Wait(other)) => other,
                _ => None,
            }
        } else {
            compute::with_turns(|t| t.blocked(&this.state.turn)).flatten()
        };
        wake(other);
        Poll::Pending
    }
}

impl<T> Drop for OnCompute<T> {
    fn drop(&mut self) {
        self.leave();
    }
}

fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_starts_on_the_compute_thread_after_two_long_guests_until_a_short_one() {
        let habit = Habit::default();
        assert!(!habit.starts_long());
        habit.record(true);
        assert!(!habit.starts_long());
        habit.record(true);
        assert!(habit.starts_long());
        habit.record(true);
        assert!(habit.starts_long());
        habit.record(false);
        assert!(!habit.starts_long());
    }
}
