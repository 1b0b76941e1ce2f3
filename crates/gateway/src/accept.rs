//! Accepting connections when file descriptors run short: septa raises its descriptor limit
//! to the hard limit at start and sizes the connection cap from it ([`raise_fd_limit`],
//! [`connection_cap`]); if `accept` still fails for want of descriptors, the worker sheds its
//! longest idle connection, backs off, and warns once a minute rather than spinning.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use crate::connections::Registry;

/// The descriptor limit assumed when the system reports none.
const UNLIMITED: u64 = 1 << 20;

/// Raises the soft limit on open files to the hard limit, and returns the limit in force.
pub fn raise_fd_limit() -> u64 {
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(UNLIMITED);
    let Some(maximum) = limit.maximum.filter(|max| *max > current) else {
        return current;
    };
    let raised = Rlimit {
        current: Some(maximum),
        maximum: Some(maximum),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => maximum,
        Err(error) => {
            tracing::warn!(%error, current, maximum, "cannot raise the open-file limit");
            current
        }
    }
}

/// The client connections a process allowed `fd_limit` open files may hold: all but a quarter
/// (at least 64), which are kept for the flow log, components, stores and the connections
/// functions open.
pub fn connection_cap(fd_limit: u64) -> usize {
    let reserve = (fd_limit / 4).max(64);
    usize::try_from(fd_limit.saturating_sub(reserve))
        .unwrap_or(usize::MAX)
        .max(1)
}

/// The shortest and longest wait after `accept` failed for want of descriptors.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const LONGEST_BACKOFF: Duration = Duration::from_millis(500);

/// How often, at most, failing accepts are warned about (across workers).
const WARN_EVERY: Duration = Duration::from_secs(60);

/// A worker's wait after failed accepts, doubling while they keep failing.
#[derive(Default)]
pub(crate) struct AcceptBackoff {
    delay: Duration,
}

impl AcceptBackoff {
    /// An accept succeeded: the next failure waits the shortest time again.
    pub(crate) fn succeeded(&mut self) {
        self.delay = Duration::ZERO;
    }

    /// An accept failed with `error`. A connection that failed on its own (reset before it
    /// was accepted) costs nothing; anything else, running out of descriptors above all, sheds
    /// the worker's longest idle connection and waits before the next accept.
    pub(crate) async fn failed(&mut self, error: &io::Error, registry: &Registry) {
        if matches!(
            error.kind(),
            io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
        ) {
            return;
        }
        let errno = Errno::from_io_error(error);
        if [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM]
            .iter()
            .any(|e| Some(*e) == errno)
        {
            registry.shed_one();
        }
        self.delay = (self.delay * 2).clamp(FIRST_BACKOFF, LONGEST_BACKOFF);
        warn_now_and_then(error);
        tokio::time::sleep(self.delay).await;
    }
}

/// Warns about a failed accept at most once per [`WARN_EVERY`], with the count since.
fn warn_now_and_then(error: &io::Error) {
    static FAILURES: AtomicU64 = AtomicU64::new(0);
    static LAST: OnceLock<Mutex<Option<Instant>>> = OnceLock::new();
    let failures = FAILURES.fetch_add(1, Ordering::Relaxed) + 1;
    let mut last = LAST
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if last.is_some_and(|at| at.elapsed() < WARN_EVERY) {
        return;
    }
    *last = Some(Instant::now());
    FAILURES.store(0, Ordering::Relaxed);
    tracing::warn!(
        %error,
        failures,
        "cannot accept connections (out of file descriptors?); backing off, shedding idle connections"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_keeps_a_quarter_of_the_descriptors_and_at_least_64() {
        assert_eq!(connection_cap(20_000), 15_000);
        assert_eq!(connection_cap(256), 192);
        assert_eq!(connection_cap(64), 1);
        assert_eq!(connection_cap(1024), 768);
    }
}
