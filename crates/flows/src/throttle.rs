//! Warnings that a flood cannot turn into a flood of log lines.
//!
//! The flow log records every refused request; septa's own log is for an operator to read. A
//! warning written for each request (every 503 of a bulkhead, say) would let anyone who can send
//! requests fill the disk and bury everything else in it. So a warning that can repeat once per
//! request goes through a [`LogThrottle`]: the first few of each kind in a window are written,
//! the rest are counted, and the next one written says how many were left out
//! (`suppressed=N`). It lives here, beside the flow log, because every enforcer already depends
//! on this crate.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How often, at most, each kind of a repeated warning is written: `burst` lines per `window`
/// for each kind, the rest counted.
#[derive(Debug)]
pub struct LogThrottle<K> {
    burst: u32,
    window: Duration,
    /// A few kinds at most (a variant of an error): a list beats a map.
    kinds: Mutex<Vec<Kind<K>>>,
}

#[derive(Debug)]
struct Kind<K> {
    kind: K,
    window_start: Instant,
    written: u32,
    suppressed: u64,
}

impl<K: PartialEq> LogThrottle<K> {
    /// At most `burst` lines of each kind per `window`.
    pub const fn new(burst: u32, window: Duration) -> Self {
        Self {
            burst,
            window,
            kinds: Mutex::new(Vec::new()),
        }
    }

    /// The allowance of a warning written per request: five lines of each kind every ten
    /// seconds, so a flood of one kind writes at most 30 lines a minute.
    pub const fn per_request() -> Self {
        Self::new(5, Duration::from_secs(10))
    }

    /// Whether a warning of `kind` may be written now: `Some(suppressed)`, the warnings of its
    /// kind left out since the last one written, or `None` (this one is counted instead).
    pub fn admit(&self, kind: K) -> Option<u64> {
        self.admit_at(kind, Instant::now())
    }

    fn admit_at(&self, kind: K, now: Instant) -> Option<u64> {
        let mut kinds = self.kinds();
        let entry = match kinds.iter().position(|k| k.kind == kind) {
            Some(i) => &mut kinds[i],
            None => {
                kinds.push(Kind {
                    kind,
                    window_start: now,
                    written: 0,
                    suppressed: 0,
                });
                let last = kinds.len() - 1;
                &mut kinds[last]
            }
        };
        if now.saturating_duration_since(entry.window_start) >= self.window {
            entry.window_start = now;
            entry.written = 0;
        }
        if entry.written >= self.burst {
            entry.suppressed += 1;
            return None;
        }
        entry.written += 1;
        Some(std::mem::take(&mut entry.suppressed))
    }

    fn kinds(&self) -> MutexGuard<'_, Vec<Kind<K>>> {
        // Counts are whole after any panic; keep throttling.
        self.kinds.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_flood_writes_the_burst_then_one_line_a_window_with_the_count_left_out() {
        let throttle = LogThrottle::new(3, Duration::from_secs(10));
        let start = Instant::now();
        let written: Vec<u64> = (0..10_000)
            .filter_map(|i| throttle.admit_at("refused", start + Duration::from_micros(i)))
            .collect();
        assert_eq!(written, [0, 0, 0]);
        let later = start + Duration::from_secs(11);
        assert_eq!(throttle.admit_at("refused", later), Some(9_997));
        assert_eq!(throttle.admit_at("refused", later), Some(0));
    }

    #[test]
    fn each_kind_has_its_own_allowance() {
        let throttle = LogThrottle::new(1, Duration::from_secs(10));
        let now = Instant::now();
        assert_eq!(throttle.admit_at(503, now), Some(0));
        assert_eq!(throttle.admit_at(503, now), None);
        assert_eq!(throttle.admit_at(504, now), Some(0));
    }
}
