//! What an alert remembers about each source it has seen: the denial count of its spike window
//! and when it last sent for it. Bounded: at most [`MAX_SOURCES`] sources per alert, the idle
//! ones forgotten first, then the least recently seen, so a flood of distinct client addresses
//! costs a fixed amount of memory.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Sources one alert tracks at most.
pub(crate) const MAX_SOURCES: usize = 4_096;

/// A sliding window of denials, estimated from two fixed windows: the count in the current one
/// plus the previous one's, weighted by how much of it the sliding window still covers. O(1)
/// memory whatever the threshold, and exact while a source's first window lasts.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SpikeWindow {
    /// When the current fixed window began; `None` before the first denial (or after a spike).
    start: Option<Instant>,
    current: u64,
    previous: u64,
}

impl SpikeWindow {
    /// Counts one denial at `now`; when the estimate reaches `threshold`, returns it and starts
    /// over, so the next spike needs `threshold` denials of its own.
    pub(crate) fn count(&mut self, now: Instant, window: Duration, threshold: u32) -> Option<u64> {
        let window = window.max(Duration::from_millis(1));
        let start = *self.start.get_or_insert(now);
        let mut into = now.saturating_duration_since(start);
        if into >= window * 2 {
            (self.previous, self.current) = (0, 0);
            self.start = Some(now);
            into = Duration::ZERO;
        } else if into >= window {
            (self.previous, self.current) = (self.current, 0);
            self.start = Some(start + window);
            into -= window;
        }
        self.current += 1;
        let (window_ns, into_ns) = (window.as_nanos(), into.as_nanos().min(window.as_nanos()));
        let still_covered = u128::from(self.previous) * (window_ns - into_ns) / window_ns;
        let estimate = self.current + u64::try_from(still_covered).unwrap_or(u64::MAX);
        if estimate < u64::from(threshold) {
            return None;
        }
        *self = Self::default();
        Some(estimate)
    }
}

/// One source of one alert.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tracked {
    last_seen: Instant,
    pub(crate) spike: SpikeWindow,
    /// When an alert was last sent for it.
    last_sent: Option<Instant>,
    /// Firings suppressed since then.
    suppressed: u64,
}

/// Whether a firing goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cooldown {
    /// Send it, saying how many firings for this source were suppressed since the last one.
    Send { suppressed: u64 },
    /// Within `min_interval_s` of the last one sent for this source.
    Suppress,
}

impl Tracked {
    fn new(now: Instant) -> Self {
        Self {
            last_seen: now,
            spike: SpikeWindow::default(),
            last_sent: None,
            suppressed: 0,
        }
    }

    /// Decides a firing at `now` under `min_interval`, and remembers the decision.
    pub(crate) fn cooldown(&mut self, now: Instant, min_interval: Duration) -> Cooldown {
        let cooling = self
            .last_sent
            .is_some_and(|sent| now.saturating_duration_since(sent) < min_interval);
        if cooling {
            self.suppressed += 1;
            return Cooldown::Suppress;
        }
        self.last_sent = Some(now);
        Cooldown::Send {
            suppressed: std::mem::take(&mut self.suppressed),
        }
    }

    /// Counts a firing suppressed for another reason (the alert's rate cap), so the next alert
    /// sent for this source reports it.
    pub(crate) fn also_suppressed(&mut self) {
        self.suppressed += 1;
    }
}

/// The sources of one alert.
#[derive(Debug)]
pub(crate) struct Sources {
    map: HashMap<Box<str>, Tracked>,
    capacity: usize,
    /// A source unseen for this long has nothing left to remember: its window and its cooldown
    /// are both over.
    idle_after: Duration,
}

impl Sources {
    pub(crate) fn new(capacity: usize, idle_after: Duration) -> Self {
        Self {
            map: HashMap::new(),
            capacity: capacity.max(1),
            idle_after,
        }
    }

    /// The state of `source`, seen at `now`; a new one makes room first if it must.
    pub(crate) fn touch(&mut self, source: &str, now: Instant) -> &mut Tracked {
        if self.map.len() >= self.capacity && !self.map.contains_key(source) {
            self.make_room(now);
        }
        let tracked = self
            .map
            .entry(Box::from(source))
            .or_insert_with(|| Tracked::new(now));
        tracked.last_seen = now;
        tracked
    }

    /// Forgets the idle sources; if that is not enough, the least recently seen eighth, so that
    /// under a flood of new sources the cost of a sweep is shared by the inserts that follow it.
    fn make_room(&mut self, now: Instant) {
        let idle_after = self.idle_after;
        self.map
            .retain(|_, t| now.saturating_duration_since(t.last_seen) < idle_after);
        if self.map.len() < self.capacity {
            return;
        }
        let mut seen: Vec<Instant> = self.map.values().map(|t| t.last_seen).collect();
        let evict = (self.capacity / 8).max(1).min(seen.len());
        let (_, cutoff, _) = seen.select_nth_unstable(evict - 1);
        let cutoff = *cutoff;
        let mut left = evict;
        self.map.retain(|_, t| {
            if left > 0 && t.last_seen <= cutoff {
                left -= 1;
                return false;
            }
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn at(t0: Instant, s: f64) -> Instant {
        t0 + Duration::from_secs_f64(s)
    }

    #[test]
    fn a_spike_fires_at_the_threshold_and_not_one_before() {
        let t0 = Instant::now();
        let mut window = SpikeWindow::default();
        for i in 0..19 {
            assert_eq!(window.count(at(t0, f64::from(i)), MINUTE, 20), None, "{i}");
        }
        assert_eq!(window.count(at(t0, 19.0), MINUTE, 20), Some(20));
        // It started over: the next spike needs 20 more.
        for i in 0..19 {
            assert_eq!(window.count(at(t0, 20.0 + f64::from(i)), MINUTE, 20), None);
        }
        assert_eq!(window.count(at(t0, 40.0), MINUTE, 20), Some(20));
    }

    #[test]
    fn denials_spread_wider_than_the_window_never_fire() {
        let t0 = Instant::now();
        let mut window = SpikeWindow::default();
        // 10 denials a minute, a threshold of 20 a minute: the estimate never gets there.
        for i in 0..600 {
            let now = at(t0, f64::from(i) * 6.0);
            assert_eq!(window.count(now, MINUTE, 20), None, "denial {i}");
        }
    }

    #[test]
    fn the_window_slides_across_a_boundary() {
        let t0 = Instant::now();
        let mut window = SpikeWindow::default();
        // The window opens at a source's first denial; 14 more late in that minute...
        assert_eq!(window.count(t0, MINUTE, 20), None);
        for i in 0..14 {
            assert_eq!(
                window.count(at(t0, 50.0 + f64::from(i) * 0.5), MINUTE, 20),
                None
            );
        }
        // ...and 6 just after it: the previous minute still counts almost fully (15 × 59/60 →
        // 14), so the sixth makes 20 where a fixed window would have started again from zero.
        for i in 0..5 {
            assert_eq!(window.count(at(t0, 61.0), MINUTE, 20), None, "{i}");
        }
        assert_eq!(window.count(at(t0, 61.0), MINUTE, 20), Some(20));
        // A long silence forgets everything.
        let mut quiet = SpikeWindow::default();
        for _ in 0..19 {
            quiet.count(t0, MINUTE, 20);
        }
        assert_eq!(quiet.count(at(t0, 121.0), MINUTE, 20), None);
    }

    #[test]
    fn a_cooldown_suppresses_and_then_reports_what_it_suppressed() {
        let t0 = Instant::now();
        let mut sources = Sources::new(8, MINUTE);
        let send =
            |s: &mut Sources, t| s.touch("function:a", at(t0, t)).cooldown(at(t0, t), MINUTE);
        assert_eq!(send(&mut sources, 0.0), Cooldown::Send { suppressed: 0 });
        assert_eq!(send(&mut sources, 1.0), Cooldown::Suppress);
        assert_eq!(send(&mut sources, 59.0), Cooldown::Suppress);
        assert_eq!(send(&mut sources, 60.0), Cooldown::Send { suppressed: 2 });
        let other = sources.touch("function:b", at(t0, 60.5));
        assert_eq!(
            other.cooldown(at(t0, 60.5), MINUTE),
            Cooldown::Send { suppressed: 0 },
            "sources cool down apart"
        );
        let mut every = Sources::new(8, MINUTE);
        for t in 0..3 {
            let now = at(t0, f64::from(t));
            let cooldown = every.touch("x", now).cooldown(now, Duration::ZERO);
            assert_eq!(cooldown, Cooldown::Send { suppressed: 0 });
        }
    }

    #[test]
    fn memory_is_bounded_idle_sources_go_first_then_the_oldest() {
        let t0 = Instant::now();
        let mut sources = Sources::new(64, MINUTE);
        sources.touch("old", t0);
        for i in 0..63 {
            sources.touch(&format!("10.0.0.{i}"), at(t0, 30.0));
        }
        assert_eq!(sources.map.len(), 64);
        // `old` has been idle for a minute: it alone makes room.
        sources.touch("new", at(t0, 61.0));
        assert_eq!(sources.map.len(), 64);
        assert!(!sources.map.contains_key("old"));
        assert!(sources.map.contains_key("10.0.0.0"));
        // A flood of fresh sources never grows past the cap.
        for i in 0..10_000 {
            sources.touch(&format!("flood-{i}"), at(t0, 62.0 + f64::from(i) * 1e-3));
            assert!(sources.map.len() <= 64);
        }
        assert!(sources.map.contains_key("flood-9999"));
    }
}
