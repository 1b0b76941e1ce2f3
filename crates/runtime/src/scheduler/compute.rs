//! Which thread runs a guest, and the compute threads that run the guests that compute long.
//!
//! A worker thread reads requests and runs their guests. It gets a compute thread of its own
//! the first time one of its guests computes longer than [`super::COMPUTE_AFTER`]: a
//! `current_thread` tokio runtime on a thread whose OS priority is [`COMPUTE_NICE`] below the
//! worker's, where such guests take turns by segment ([`super::turns`]). The worker stays a
//! thread that mostly waits for sockets, so when a request arrives the kernel runs it at once,
//! before the long computations; a worker that itself computed for a looping guest was a busy
//! thread to the kernel, which then let other busy threads of the machine run first, for
//! milliseconds (`docs/performance.md`, "Segments under CPU pressure").
//!
//! The compute thread lives as long as its worker: when the worker's guard ([`ScheduledThread`])
//! drops, its queue closes and the thread ends, dropping the guests still there, before the
//! worker's runtime goes.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use super::turns::Turns;

/// How many steps of `nice` a compute thread runs below its worker (capped at 19, the lowest):
/// the kernel weighs nice 0 and 19 as 1024 and 15, so a request its worker reads takes the core
/// from a long computation at once, while the long computations get all of a core the worker
/// leaves idle and about 1.5% of one it keeps busy. Nice only weighs threads against others of
/// their cgroup (or session, with autogroup): against septa's own workers, not other services.
/// At nice 10 the worker still waited behind the compute thread often enough to put the quiet
/// segment's p99 at 1.4 to 1.6 times its p99 alone in `tests/noisy_neighbour.rs`, at 0.6 to
/// 0.7 at nice 19 (`docs/performance.md`).
pub(crate) const COMPUTE_NICE: i32 = 19;

/// A guest's task on its way to a compute thread.
pub(super) type Moved = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What the current thread is to the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Neither a worker nor a compute thread: guests run here unscheduled.
    Other,
    /// A worker: guests start here, and move when they compute long.
    Worker,
    /// A compute thread: guests take turns by segment.
    Compute,
}

enum ThreadState {
    Other,
    Worker { id: u64, compute: Link },
    Compute { turns: Turns },
}

/// A worker's way to its compute thread.
enum Link {
    NotStarted,
    Running(UnboundedSender<Moved>, JoinHandle<()>),
    /// The thread could not be started (said once): guests stay on the worker.
    Failed,
}

thread_local! {
    static THREAD: RefCell<ThreadState> = const { RefCell::new(ThreadState::Other) };
}

/// Makes the current thread a worker: the guests it starts that compute longer than a tick
/// move to a compute thread of its own, where they share the CPU by segment (`cpu_share`).
/// Call it on each thread whose `current_thread` tokio runtime serves requests, after building
/// the runtime, and keep the guard until the runtime has finished: dropped, it stops the compute
/// thread (dropping the guests still there) and waits for it, so that none of them outlives the
/// worker's runtime, whose timers and sockets they use.
#[must_use = "the thread stops being a worker when the guard is dropped"]
pub fn schedule_this_thread() -> ScheduledThread {
    static NEXT_WORKER: AtomicU64 = AtomicU64::new(1);
    let _ = THREAD.try_with(|cell| {
        if let Ok(mut state) = cell.try_borrow_mut()
            && matches!(*state, ThreadState::Other)
        {
            *state = ThreadState::Worker {
                id: NEXT_WORKER.fetch_add(1, Ordering::Relaxed),
                compute: Link::NotStarted,
            };
        }
    });
    ScheduledThread {
        _not_send: std::marker::PhantomData,
    }
}

/// A worker thread, until dropped (see [`schedule_this_thread`]).
pub struct ScheduledThread {
    /// It belongs to the thread it was made on.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for ScheduledThread {
    fn drop(&mut self) {
        let state = THREAD
            .try_with(|cell| {
                let mut state = cell.try_borrow_mut().ok()?;
                Some(std::mem::replace(&mut *state, ThreadState::Other))
            })
            .ok()
            .flatten();
        if let Some(ThreadState::Worker {
            compute: Link::Running(queue, thread),
            ..
        }) = state
        {
            drop(queue);
            let _ = thread.join();
        }
    }
}

/// The current thread's role.
pub(super) fn role() -> Role {
    THREAD
        .try_with(|cell| match cell.try_borrow().as_deref() {
            Ok(ThreadState::Worker { .. }) => Role::Worker,
            Ok(ThreadState::Compute { .. }) => Role::Compute,
            _ => Role::Other,
        })
        .unwrap_or(Role::Other)
}

/// The current thread's CPU time, in nanoseconds: what a guest on a compute thread is charged
/// with, since the kernel often runs something else in the middle of its long slices there.
pub(super) fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let nanos = i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec);
    u64::try_from(nanos).unwrap_or(0)
}

/// Nanoseconds on the monotonic clock: what a guest on a worker is charged with. A read costs a
/// few nanoseconds where the CPU clock costs a system call, and a guest there runs in short
/// slices at full priority, so the two agree.
pub(super) fn monotonic_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let since = START.get_or_init(Instant::now).elapsed().as_nanos();
    u64::try_from(since).unwrap_or(u64::MAX)
}

/// Runs `f` on the current compute thread's turns; `None` on any other thread.
pub(super) fn with_turns<R>(f: impl FnOnce(&mut Turns) -> R) -> Option<R> {
    THREAD
        .try_with(|cell| match cell.try_borrow_mut().as_deref_mut() {
            Ok(ThreadState::Compute { turns }) => Some(f(turns)),
            _ => None,
        })
        .ok()
        .flatten()
}

/// The current worker's way to its compute thread, which starts the first time it is asked
/// for; `None` when there is none (not a worker, or the thread could not start or stopped).
pub(super) fn link() -> Option<UnboundedSender<Moved>> {
    THREAD
        .try_with(|cell| {
            let mut state = cell.try_borrow_mut().ok()?;
            let ThreadState::Worker { id, compute } = &mut *state else {
                return None;
            };
            if matches!(compute, Link::NotStarted) {
                *compute = match start(*id) {
                    Ok((sender, thread)) => Link::Running(sender, thread),
                    Err(e) => {
                        tracing::warn!(worker = *id, error = %e, "could not start a compute thread: guests that compute long stay on their worker");
                        Link::Failed
                    }
                };
            }
            match compute {
                Link::Running(sender, _) if !sender.is_closed() => Some(sender.clone()),
                Link::Running(..) => {
                    tracing::warn!(worker = *id, "the compute thread stopped: guests that compute long stay on their worker");
                    *compute = Link::Failed;
                    None
                }
                _ => None,
            }
        })
        .ok()
        .flatten()
}

/// Starts worker `worker`'s compute thread.
fn start(worker: u64) -> std::io::Result<(UnboundedSender<Moved>, JoinHandle<()>)> {
    // Built here, so that a failure leaves the guest where it is instead of losing it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (sender, mut queue) = unbounded_channel::<Moved>();
    let thread = std::thread::Builder::new()
        .name(format!("septa-compute-{worker}"))
        .spawn(move || {
            lower_priority(worker);
            let _ = THREAD.try_with(|cell| {
                if let Ok(mut state) = cell.try_borrow_mut() {
                    *state = ThreadState::Compute {
                        turns: Turns::default(),
                    };
                }
            });
            runtime.block_on(async move {
                while let Some(task) = queue.recv().await {
                    tokio::spawn(task);
                }
            });
            // The runtime drops the guests still running as it goes.
        })?;
    Ok((sender, thread))
}

/// Puts the current thread [`COMPUTE_NICE`] steps below the process's priority. Raising nice
/// needs no privilege; if it fails all the same, the thread runs at its worker's priority.
fn lower_priority(worker: u64) {
    let thread = rustix::thread::gettid();
    let current = rustix::process::getpriority_process(None).unwrap_or(0);
    let nice = (current + COMPUTE_NICE).min(19);
    if let Err(e) = rustix::process::setpriority_process(Some(thread), nice) {
        tracing::warn!(worker, error = %e, "could not lower the priority of a compute thread");
    }
}
