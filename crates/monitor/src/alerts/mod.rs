//! Alerts: the operator's `[[alert]]`s, watched and sent while septa runs.
//!
//! [`Alerts`] is a [`FlowObserver`]: on the flow log's writer thread it weighs each denied flow
//! against the alerts in force (a denied call between functions, a spike of denials from one
//! source) and learns of flow records the log dropped; the host tells it of each refused reload
//! ([`Alerts::reload_refused`]). What fires
//! goes through a per-source cooldown and a per-alert cap, then onto a bounded queue; a delivery
//! thread posts it to a webhook or hands it to a command, and [`AlertCounts`] says how each one
//! ended (`septa_alerts_total{alert,outcome}`). The writer thread never waits: an allowed flow
//! costs one comparison, a denial a few lookups, a full queue drops the alert.
//!
//! ```text
//! writer thread ─▶ Alerts::observe ─▶ rules × sources (windows, cooldowns) ─┐
//! reload path ──▶ Alerts::reload_refused ──────────────────────────────────┤ try_send
//!                                          delivery thread ◀─ bounded queue ┘
//!                                            ├─ webhook: HTTP POST, JSON body
//!                                            └─ command: argv, JSON on stdin, killed past its timeout
//! ```

mod counts;
mod deliver;
mod evaluate;
mod event;
mod rules;
mod sources;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use septa_flows::{FlowObserver, FlowRecord, LogThrottle, Verdict};

pub use counts::{AlertCounts, AlertOutcome, ByOutcome};
pub use rules::AlertRules;

use crate::control::ReloadAttempt;
use deliver::Courier;
use evaluate::{Evaluator, Firing};

/// The alerts in force, watching flows and reloads, and the thread that sends them.
pub struct Alerts {
    evaluator: Mutex<Evaluator>,
    courier: Courier,
    counts: AlertCounts,
    /// Flow records the flow log reported dropped so far.
    dropped_total: AtomicU64,
}

impl Alerts {
    /// Puts `rules` in force and starts the delivery thread (which ends when this is dropped).
    pub fn start(rules: AlertRules) -> std::io::Result<Self> {
        let counts = AlertCounts::default();
        counts.declare(rules.ids());
        let courier = Courier::start(counts.clone())?;
        Ok(Self {
            evaluator: Mutex::new(Evaluator::new(rules)),
            courier,
            counts,
            dropped_total: AtomicU64::new(0),
        })
    }

    /// Swaps in the alerts of a newly loaded policy, at once: a record is weighed against the old
    /// alerts or the new ones, never a mix. Alerts whose id and trigger did not change keep their
    /// windows and cooldowns.
    pub fn update(&self, rules: AlertRules) {
        self.counts.declare(rules.ids());
        self.evaluator().update(rules);
    }

    /// Fires the `reload_refused` alerts for `attempt`, if it was refused (an applied attempt
    /// fires nothing). Call it on whichever thread made the attempt: it only queues.
    pub fn reload_refused(&self, attempt: &ReloadAttempt) {
        let mut firings = Vec::new();
        self.evaluator()
            .reload(attempt, Instant::now(), &mut firings);
        self.dispatch(firings);
    }

    /// How each alert's firings ended so far; shared, so metrics can read it when scraped.
    pub fn counts(&self) -> AlertCounts {
        self.counts.clone()
    }

    /// How many alerts are in force.
    pub fn len(&self) -> usize {
        self.evaluator().rules().len()
    }

    /// Whether no alert is in force.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn dispatch(&self, firings: Vec<Firing>) {
        for firing in firings {
            match firing {
                Firing::Suppressed(alert) => self.counts.count(&alert, AlertOutcome::Suppressed),
                Firing::Send(delivery) => {
                    if let Err(dropped) = self.courier.send(delivery) {
                        let alert = dropped.event.alert;
                        // A queue that stays full drops at the rate flows are denied.
                        static DROPPED: LogThrottle<()> = LogThrottle::per_request();
                        if let Some(suppressed) = DROPPED.admit(()) {
                            tracing::warn!(alert = %alert, suppressed, "alert dropped: the delivery queue is full");
                        }
                        self.counts.count(&alert, AlertOutcome::Dropped);
                    }
                }
            }
        }
    }

    fn evaluator(&self) -> MutexGuard<'_, Evaluator> {
        // Windows and cooldowns are whole after any panic; keep alerting.
        self.evaluator
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl FlowObserver for Alerts {
    fn observe(&self, batch: &[Arc<FlowRecord>]) {
        // Every trigger on flows is a denial: most batches end here, without the lock.
        if !batch.iter().any(|r| r.verdict == Verdict::Deny) {
            return;
        }
        let now = Instant::now();
        let mut firings = Vec::new();
        {
            let mut evaluator = self.evaluator();
            if evaluator.rules().is_empty() {
                return;
            }
            for record in batch {
                evaluator.observe(record, now, &mut firings);
            }
        }
        self.dispatch(firings);
    }

    fn records_dropped(&self, dropped: u64) {
        let total = self.dropped_total.fetch_add(dropped, Ordering::Relaxed) + dropped;
        let mut firings = Vec::new();
        self.evaluator()
            .records_dropped(dropped, total, Instant::now(), &mut firings);
        self.dispatch(firings);
    }
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts")
            .field("alerts", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::path::Path;
    use std::sync::mpsc;
    use std::time::Duration;

    use septa_flows::FlowKind;

    use super::*;
    use crate::Metrics;

    /// Waits until `alert` has `want` firings ending as `outcome`.
    fn wait_for(counts: &AlertCounts, alert: &str, outcome: AlertOutcome, want: u64) {
        let start = Instant::now();
        while counts.get(alert, outcome) < want {
            assert!(start.elapsed() < Duration::from_secs(10), "{counts:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_denied_flow_reaches_the_webhook_and_the_metrics_count_it() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, requests) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut bytes = vec![0; 64 * 1024];
                let n = stream.read(&mut bytes).unwrap();
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .unwrap();
                tx.send(String::from_utf8_lossy(&bytes[..n]).into_owned())
                    .unwrap();
            }
        });
        let text = format!(
            r#"septa_manifest_version = 1
[application]
name = "alerting"
[segment.edge]
subnets = {{ web = "public" }}
[function.a]
source = "a.wasm"
placement = "edge/web"
[function.b]
source = "b.wasm"
placement = "edge/web"
[[alert]]
id = "lateral"
on = "lateral_movement"
webhook = "http://{addr}/hook"
[[alert]]
id = "quiet"
on = "reload_refused"
webhook = "http://{addr}/hook"
"#
        );
        let manifest = septa_manifest::parse(Path::new("/app/septa.toml"), &text).unwrap();
        let policy = septa_policy::Policy::compile(manifest).unwrap();
        let alerts = Alerts::start(AlertRules::from_policy(&policy)).unwrap();
        let metrics = Metrics::new();
        metrics.watch_alerts(alerts.counts());

        let call = |verdict| {
            let record = FlowRecord::new(FlowKind::Mesh, "function:a", "function:b", verdict, "r");
            Arc::new(record)
        };
        alerts.observe(&[call(Verdict::Allow), call(Verdict::Deny)]);
        alerts.observe(&[call(Verdict::Deny)]);
        let request = requests.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(request.starts_with("POST /hook HTTP/1.1\r\n"), "{request}");
        assert!(request.contains(r#""alert":"lateral""#), "{request}");
        wait_for(&alerts.counts(), "lateral", AlertOutcome::Sent, 1);
        assert_eq!(alerts.counts().get("lateral", AlertOutcome::Suppressed), 1);

        let page = metrics.render();
        for line in [
            r#"septa_alerts_total{alert="lateral",outcome="sent"} 1"#,
            r#"septa_alerts_total{alert="lateral",outcome="failed"} 0"#,
            r#"septa_alerts_total{alert="lateral",outcome="dropped"} 0"#,
            r#"septa_alerts_total{alert="lateral",outcome="suppressed"} 1"#,
            r#"septa_alerts_total{alert="quiet",outcome="sent"} 0"#,
        ] {
            assert!(page.lines().any(|l| l == line), "{line} missing:\n{page}");
        }
        assert!(requests.recv_timeout(Duration::from_millis(200)).is_err());
    }
}
