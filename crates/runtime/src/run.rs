//! A request's wall-clock deadline, and the instance task it bounds.
//!
//! Epoch ticks stop a guest that computes past its time, but they fire only while guest code
//! runs: a guest parked in a host call (sleeping on a wasi clock, waiting for an outgoing
//! response, writing a body no one reads) would never see one. So the whole instance task runs
//! under the deadline too: once it passes, the task is dropped, and with it the store, its
//! pooled instance, the outbound calls it has in flight (wasmtime aborts them with the store's
//! table) and the bulkhead slots it holds. The deadline travels with the request's [`Chain`],
//! so a mesh call ends by its caller's deadline too, whatever the callee's own timeout.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use septa_flows::FlowGuard;

use crate::Chain;

/// When a request to a function with `timeout` must be over: its own timeout from now, or the
/// deadline of the chain it is part of, whichever comes first.
pub(crate) fn deadline(chain: &Chain, timeout: Duration) -> Instant {
    let own = Instant::now() + timeout;
    chain.deadline.map_or(own, |chain| chain.min(own))
}

/// The error the instance task ends with when its deadline stopped it.
#[derive(Debug, thiserror::Error)]
#[error("the request's deadline passed before the guest finished")]
pub(crate) struct DeadlinePassed;

/// How the guest's instance task ended, as its response body needs to know: a body that stops
/// because the guest failed must end in an error, never look complete.
#[derive(Clone, Debug, Default)]
pub(crate) struct GuestEnd(Arc<AtomicU8>);

/// How a guest stopped before finishing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// It trapped or failed.
    Failed,
    /// Its deadline passed.
    Deadline,
    /// It used up its CPU budget.
    CpuBudget,
}

impl GuestEnd {
    // 0, the default: running, or finished as it should.
    const FAILED: u8 = 1;
    const DEADLINE: u8 = 2;
    const CPU_BUDGET: u8 = 3;

    /// Records why the guest stopped; call it while its store is still alive.
    pub(crate) fn set(&self, stop: Stop) {
        let value = match stop {
            Stop::Failed => Self::FAILED,
            Stop::Deadline => Self::DEADLINE,
            Stop::CpuBudget => Self::CPU_BUDGET,
        };
        self.0.store(value, Ordering::Release);
    }

    /// Why the guest stopped before finishing, if it did.
    pub(crate) fn stopped(&self) -> Option<Stop> {
        match self.0.load(Ordering::Acquire) {
            Self::FAILED => Some(Stop::Failed),
            Self::DEADLINE => Some(Stop::Deadline),
            Self::CPU_BUDGET => Some(Stop::CpuBudget),
            _ => None,
        }
    }
}

/// Runs `guest`, the instance task, until it ends or `deadline` passes. Past it, `end` says so
/// before the task (its store, and so the sending side of its response body) is dropped.
pub(crate) async fn until_deadline<F>(
    deadline: Instant,
    end: GuestEnd,
    guest: F,
) -> wasmtime::Result<()>
where
    F: Future<Output = wasmtime::Result<()>>,
{
    let guest = std::pin::pin!(guest);
    tokio::select! {
        outcome = guest => outcome,
        () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
            end.set(Stop::Deadline);
            // `guest` is dropped on the way out, after `end` was set.
            Err(DeadlinePassed.into())
        }
    }
}

/// The most tasks a worker's runtime has for it to count as quiet: its accept loop, a few
/// connections and their guests.
const QUIET_TASKS: usize = 16;

/// Whether the runtime this runs on has few tasks, so what one request waits for is its own
/// path, not other requests.
pub(crate) fn worker_is_quiet() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|runtime| runtime.metrics().num_alive_tasks() <= QUIET_TASKS)
}

/// The record of a flow whose function has not answered yet. Dropped unanswered (the caller
/// stopped waiting: its own deadline passed and took this call with it, or its client went
/// away), it says why on the record, which is written when the flow's guard goes right after,
/// instead of a record with no status and no error.
pub(crate) struct WaitingFlow<'f> {
    flow: &'f mut FlowGuard,
    deadline: Option<Instant>,
    waiting: bool,
}

impl<'f> WaitingFlow<'f> {
    /// Waits with `flow`, for a call that must be over by `deadline`.
    pub(crate) fn new(flow: &'f mut FlowGuard, deadline: Option<Instant>) -> Self {
        Self {
            flow,
            deadline,
            waiting: true,
        }
    }

    /// The function answered (or failed): its caller records what it did.
    pub(crate) fn answered(mut self) {
        self.waiting = false;
    }
}

impl Drop for WaitingFlow<'_> {
    fn drop(&mut self) {
        if !self.waiting {
            return;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.flow
                .set_status(504)
                .set_error("the request's deadline passed before the function answered");
        } else {
            self.flow
                .set_error("the caller stopped waiting before the function answered");
        }
    }
}
