//! Deciding which alerts fire: each denied flow record, each refused reload and each run of
//! dropped flow records against every alert, through the spike windows and cooldowns of its source, into firings that are either
//! sent or counted as suppressed. No I/O and no clock of its own (callers pass `now`), so every
//! decision is a unit test.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use septa_flows::{FlowKind, FlowRecord, Verdict};

use super::event::{AlertEvent, Header};
use super::rules::{AlertRules, Rule, Sink, Watch, is_lateral};
use super::sources::{Cooldown, MAX_SOURCES, Sources};
use crate::control::ReloadAttempt;

/// Alerts one alert may send a minute, across all its sources; past it, firings are suppressed,
/// so that many sources at once (a scan from many addresses) cannot flood the receiver either.
pub(crate) const MAX_SENT_PER_MINUTE: u32 = 60;

/// An alert that fired.
#[derive(Debug)]
pub(crate) enum Firing {
    /// To send.
    Send(Box<Delivery>),
    /// Held back by the alert's cooldown or rate cap; only counted.
    Suppressed(Arc<str>),
}

/// An alert on its way out.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) sink: Arc<Sink>,
    pub(crate) event: AlertEvent,
}

/// The alerts in force and what they remember.
#[derive(Debug, Default)]
pub(crate) struct Evaluator {
    rules: AlertRules,
    states: Vec<RuleState>,
}

/// What one alert remembers.
#[derive(Debug)]
struct RuleState {
    sources: Sources,
    minute: RateCap,
}

/// At most [`MAX_SENT_PER_MINUTE`] sends in each minute.
#[derive(Debug, Default)]
struct RateCap {
    start: Option<Instant>,
    sent: u32,
}

impl RateCap {
    fn take(&mut self, now: Instant) -> bool {
        let start = *self.start.get_or_insert(now);
        if now.saturating_duration_since(start) >= Duration::from_secs(60) {
            self.start = Some(now);
            self.sent = 0;
        }
        if self.sent >= MAX_SENT_PER_MINUTE {
            return false;
        }
        self.sent += 1;
        true
    }
}

impl RuleState {
    fn new(rule: &Rule) -> Self {
        let window = match &rule.watch {
            Watch::DenialSpike { window, .. } => *window * 2,
            Watch::LateralMovement(_) | Watch::ReloadRefused | Watch::FlowRecordsDropped => {
                Duration::ZERO
            }
        };
        Self {
            sources: Sources::new(MAX_SOURCES, window.max(rule.min_interval)),
            minute: RateCap::default(),
        }
    }

    /// Decides a firing for `source` at `now` and, when it goes out, builds its event.
    fn fire(
        &mut self,
        rule: &Rule,
        application: &Arc<str>,
        source: &str,
        now: Instant,
        event: impl FnOnce(Header) -> AlertEvent,
    ) -> Firing {
        let tracked = self.sources.touch(source, now);
        let Cooldown::Send { suppressed } = tracked.cooldown(now, rule.min_interval) else {
            return Firing::Suppressed(rule.id.clone());
        };
        if !self.minute.take(now) {
            tracked.also_suppressed();
            return Firing::Suppressed(rule.id.clone());
        }
        let header = Header {
            alert: rule.id.clone(),
            on: rule.on,
            application: application.clone(),
            suppressed,
        };
        Firing::Send(Box::new(Delivery {
            sink: rule.sink.clone(),
            event: event(header),
        }))
    }
}

impl Evaluator {
    pub(crate) fn new(rules: AlertRules) -> Self {
        let states = rules.rules.iter().map(RuleState::new).collect();
        Self { rules, states }
    }

    /// The alerts in force.
    pub(crate) fn rules(&self) -> &AlertRules {
        &self.rules
    }

    /// Puts `rules` in force. An alert whose id and trigger are unchanged keeps its windows and
    /// cooldowns (a reload must not re-send what was just suppressed); the others start afresh.
    pub(crate) fn update(&mut self, rules: AlertRules) {
        let mut old: Vec<(Rule, RuleState)> = std::mem::take(&mut self.rules.rules)
            .into_iter()
            .zip(std::mem::take(&mut self.states))
            .collect();
        self.states = rules
            .rules
            .iter()
            .map(|rule| {
                let same = old
                    .iter()
                    .position(|(o, _)| o.id == rule.id && o.trigger == rule.trigger);
                match same {
                    Some(i) => old.swap_remove(i).1,
                    None => RuleState::new(rule),
                }
            })
            .collect();
        self.rules = rules;
    }

    /// Weighs one flow record at `now`, pushing what fires onto `out`.
    pub(crate) fn observe(
        &mut self,
        record: &Arc<FlowRecord>,
        now: Instant,
        out: &mut Vec<Firing>,
    ) {
        if record.verdict != Verdict::Deny {
            return;
        }
        let application = &self.rules.application;
        for (rule, state) in self.rules.rules.iter().zip(&mut self.states) {
            match &rule.watch {
                Watch::LateralMovement(scope) => {
                    if !is_lateral(record) || !scope.admits(record) {
                        continue;
                    }
                    out.push(state.fire(rule, application, &record.src, now, |header| {
                        AlertEvent::lateral_movement(header, record)
                    }));
                }
                Watch::DenialSpike {
                    threshold,
                    window,
                    scope,
                } => {
                    if !scope.admits(record) {
                        continue;
                    }
                    let source = spike_source(record);
                    let tracked = state.sources.touch(&source, now);
                    let Some(denials) = tracked.spike.count(now, *window, *threshold) else {
                        continue;
                    };
                    let window_s = window.as_secs();
                    out.push(state.fire(rule, application, &source, now, |header| {
                        let source = source.clone().into_owned();
                        AlertEvent::denial_spike(header, source, denials, window_s, record)
                    }));
                }
                Watch::ReloadRefused | Watch::FlowRecordsDropped => {}
            }
        }
    }

    /// Weighs a reload attempt at `now`: a refused one fires every `reload_refused` alert. The
    /// source is the manifest the attempt read, so the same broken file refused again (a file
    /// watcher, an impatient operator) is suppressed, and a different one is not.
    pub(crate) fn reload(&mut self, attempt: &ReloadAttempt, now: Instant, out: &mut Vec<Firing>) {
        if attempt.applied {
            return;
        }
        let source = match &attempt.attempted_hash {
            Some(hash) => format!("manifest:{hash}"),
            None => String::from("manifest:unreadable"),
        };
        let application = &self.rules.application;
        for (rule, state) in self.rules.rules.iter().zip(&mut self.states) {
            if matches!(rule.watch, Watch::ReloadRefused) {
                out.push(state.fire(rule, application, &source, now, |header| {
                    AlertEvent::reload_refused(header, source.clone(), attempt)
                }));
            }
        }
    }
}

impl Evaluator {
    /// Weighs `dropped` flow records dropped at `now` (of `total` so far): every
    /// `flow_records_dropped` alert fires, one source for the whole log, so a log that keeps
    /// dropping sends one alert per `min_interval_s` and counts the rest as suppressed.
    pub(crate) fn records_dropped(
        &mut self,
        dropped: u64,
        total: u64,
        now: Instant,
        out: &mut Vec<Firing>,
    ) {
        let application = &self.rules.application;
        for (rule, state) in self.rules.rules.iter().zip(&mut self.states) {
            if matches!(rule.watch, Watch::FlowRecordsDropped) {
                out.push(
                    state.fire(rule, application, FLOW_LOG_SOURCE, now, |header| {
                        AlertEvent::flow_records_dropped(header, FLOW_LOG_SOURCE, dropped, total)
                    }),
                );
            }
        }
    }
}

/// The source a `flow_records_dropped` alert names: the flow log as a whole.
const FLOW_LOG_SOURCE: &str = "flow-log";

/// Whom a denial counts against in a spike: the client's address for a request from the
/// internet, the caller's identity otherwise.
fn spike_source(record: &FlowRecord) -> Cow<'_, str> {
    match (&record.kind, &record.client) {
        (FlowKind::Ingress, Some(client)) => Cow::Owned(format!("client:{client}")),
        _ => Cow::Borrowed(&record.src),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use septa_flows::FlowKind;

    use super::*;
    use crate::control::ReloadTrigger;

    const APP: &str = r#"septa_manifest_version = 1
[application]
name = "alerting"
[segment.edge]
subnets = { web = "public" }
[segment.payments]
subnets = { app = "private" }
labels = ["pci"]
[function.front]
source = "front.wasm"
placement = "edge/web"
[function.relay]
source = "relay.wasm"
placement = "edge/web"
[function.vault]
source = "vault.wasm"
placement = "payments/app"
[endpoint.cards]
placement = "payments/app"
"#;

    fn rules(alerts: &str) -> AlertRules {
        let text = format!("{APP}{alerts}");
        let manifest = septa_manifest::parse(Path::new("/app/septa.toml"), &text).unwrap();
        AlertRules::from_policy(&septa_policy::Policy::compile(manifest).unwrap())
    }

    fn flow(kind: FlowKind, src: &str, dst: &str, verdict: Verdict) -> Arc<FlowRecord> {
        let mut record = FlowRecord::new(kind, src, dst, verdict, "no allow rule matches");
        record.method = Some("GET".to_owned());
        record.path = Some("/entries".to_owned());
        Arc::new(record)
    }

    fn denied(kind: FlowKind, src: &str, dst: &str) -> Arc<FlowRecord> {
        flow(kind, src, dst, Verdict::Deny)
    }

    fn from_client(client: &str) -> Arc<FlowRecord> {
        let mut record = FlowRecord::new(
            FlowKind::Ingress,
            "gateway",
            "unrouted",
            Verdict::Deny,
            "no route for `/nosuch`",
        );
        record.client = Some(client.to_owned());
        Arc::new(record)
    }

    /// What firing `records` at `now` does: `(alert, Some(event))` when sent, `(alert, None)`
    /// when suppressed.
    fn fire(
        evaluator: &mut Evaluator,
        records: &[Arc<FlowRecord>],
        now: Instant,
    ) -> Vec<(String, Option<AlertEvent>)> {
        let mut out = Vec::new();
        for record in records {
            evaluator.observe(record, now, &mut out);
        }
        out.into_iter().map(outcome).collect()
    }

    fn outcome(firing: Firing) -> (String, Option<AlertEvent>) {
        match firing {
            Firing::Send(d) => (d.event.alert.to_string(), Some(d.event)),
            Firing::Suppressed(alert) => (alert.to_string(), None),
        }
    }

    const LATERAL: &str = r#"
[[alert]]
id = "lateral"
on = "lateral_movement"
webhook = "http://127.0.0.1:9/hook"
[[alert]]
id = "into-pci"
on = "lateral_movement"
from = "segment:edge"
to = "label:pci"
min_interval_s = 0
command = ["page"]
"#;

    #[test]
    fn only_denied_calls_between_functions_are_lateral_movement() {
        let mut evaluator = Evaluator::new(rules(LATERAL));
        let now = Instant::now();
        let quiet = [
            flow(
                FlowKind::Mesh,
                "function:front",
                "function:vault",
                Verdict::Allow,
            ),
            flow(
                FlowKind::Mesh,
                "function:front",
                "function:vault",
                Verdict::Audit,
            ),
            denied(FlowKind::Ingress, "gateway", "function:front"),
            denied(FlowKind::Egress, "function:front", "https://x.example:443"),
        ];
        assert!(fire(&mut evaluator, &quiet, now).is_empty());

        let fired = fire(
            &mut evaluator,
            &[denied(FlowKind::Mesh, "function:front", "function:vault")],
            now,
        );
        let ids: Vec<&str> = fired.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["lateral", "into-pci"]);
        let event = fired[0].1.as_ref().unwrap();
        assert_eq!(event.on, "lateral_movement");
        assert_eq!(&*event.application, "alerting");
        assert_eq!(event.source, "function:front");
        assert_eq!(
            event.summary,
            "alert `lateral`: function:front was denied GET /entries on function:vault: no allow rule matches"
        );
        assert_eq!(event.flows.len(), 1);
        assert_eq!(event.suppressed, 0);
    }

    #[test]
    fn from_and_to_narrow_the_calls_an_alert_watches() {
        let now = Instant::now();
        // Within edge: not into pci. From payments: not from edge. To the endpoint: into pci.
        let cases = [
            (
                denied(FlowKind::Mesh, "function:front", "function:relay"),
                vec!["lateral"],
            ),
            (
                denied(FlowKind::Mesh, "function:vault", "function:front"),
                vec!["lateral"],
            ),
            (
                denied(FlowKind::Mesh, "function:front", "function:vault"),
                vec!["lateral", "into-pci"],
            ),
            (
                denied(FlowKind::Endpoint, "function:relay", "endpoint:cards"),
                vec!["lateral", "into-pci"],
            ),
            (
                denied(FlowKind::Mesh, "function:relay", "function:nosuch"),
                vec!["lateral"],
            ),
        ];
        for (record, want) in cases {
            let mut evaluator = Evaluator::new(rules(LATERAL));
            let got: Vec<String> = fire(&mut evaluator, std::slice::from_ref(&record), now)
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            assert_eq!(got, want, "{} -> {}", record.src, record.dst);
        }
    }

    #[test]
    fn a_source_in_cooldown_is_suppressed_and_the_next_alert_says_how_often() {
        let mut evaluator = Evaluator::new(rules(LATERAL));
        let t0 = Instant::now();
        let call = denied(FlowKind::Mesh, "function:front", "function:vault");
        let lateral = |fired: Vec<(String, Option<AlertEvent>)>| {
            fired.into_iter().find(|(id, _)| id == "lateral").unwrap().1
        };
        assert!(lateral(fire(&mut evaluator, std::slice::from_ref(&call), t0)).is_some());
        for s in 1..4 {
            let at = t0 + Duration::from_secs(s);
            assert!(lateral(fire(&mut evaluator, std::slice::from_ref(&call), at)).is_none());
        }
        // Another caller is another source.
        let other = denied(FlowKind::Mesh, "function:relay", "function:vault");
        assert!(lateral(fire(&mut evaluator, &[other], t0)).is_some());
        // `into-pci` has `min_interval_s = 0`: it sent every one.
        let sent_again = fire(
            &mut evaluator,
            std::slice::from_ref(&call),
            t0 + Duration::from_secs(5),
        );
        assert!(
            sent_again
                .iter()
                .any(|(id, e)| id == "into-pci" && e.is_some())
        );
        // A minute after the first: sent, counting the four held back.
        let later = lateral(fire(&mut evaluator, &[call], t0 + Duration::from_secs(60))).unwrap();
        assert_eq!(later.suppressed, 4);
    }

    const SPIKE: &str = r#"
[[alert]]
id = "spike"
on = "denial_spike"
threshold = 5
window_s = 10
webhook = "http://127.0.0.1:9/hook"
"#;

    #[test]
    fn a_spike_counts_each_client_address_apart() {
        let mut evaluator = Evaluator::new(rules(SPIKE));
        let t0 = Instant::now();
        let four: Vec<_> = (0..4).map(|_| from_client("203.0.113.9")).collect();
        assert!(fire(&mut evaluator, &four, t0).is_empty(), "4 of 5");
        // Another address's denials are its own.
        let others: Vec<_> = (0..4).map(|_| from_client("198.51.100.7")).collect();
        assert!(fire(&mut evaluator, &others, t0).is_empty());
        // Allowed requests from the first address count for nothing.
        let allowed = flow(
            FlowKind::Ingress,
            "gateway",
            "function:front",
            Verdict::Allow,
        );
        assert!(fire(&mut evaluator, &[allowed], t0).is_empty());
        let fired = fire(&mut evaluator, &[from_client("203.0.113.9")], t0);
        let [(id, Some(event))] = fired.as_slice() else {
            panic!("{fired:?}")
        };
        assert_eq!(id, "spike");
        assert_eq!(event.source, "client:203.0.113.9");
        assert_eq!((event.denials, event.window_s), (Some(5), Some(10)));
        assert!(
            event.summary.starts_with(
                "alert `spike`: 5 denials from client:203.0.113.9 within 10 s; the last: ingress"
            ),
            "{}",
            event.summary
        );
        assert!(
            event.summary.ends_with("no route for `/nosuch`"),
            "{}",
            event.summary
        );
    }

    #[test]
    fn a_spike_from_a_function_counts_every_kind_of_denial_it_makes() {
        let mut evaluator = Evaluator::new(rules(SPIKE));
        let t0 = Instant::now();
        let mixed = [
            denied(FlowKind::Mesh, "function:front", "function:vault"),
            denied(FlowKind::Egress, "function:front", "https://x.example:443"),
            denied(FlowKind::Endpoint, "function:front", "endpoint:cards"),
            denied(FlowKind::Egress, "function:front", "https://y.example:443"),
        ];
        assert!(fire(&mut evaluator, &mixed, t0).is_empty());
        let fired = fire(&mut evaluator, &[mixed[0].clone()], t0);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].1.as_ref().unwrap().source, "function:front");
    }

    #[test]
    fn many_sources_at_once_are_capped_per_alert() {
        let mut evaluator = Evaluator::new(rules(
            r#"
[[alert]]
id = "any-denial"
on = "denial_spike"
threshold = 1
min_interval_s = 0
webhook = "http://127.0.0.1:9/hook"
"#,
        ));
        let t0 = Instant::now();
        let scan: Vec<_> = (0..200)
            .map(|i| from_client(&format!("10.0.{}.{}", i / 256, i % 256)))
            .collect();
        let fired = fire(&mut evaluator, &scan, t0);
        let sent = fired.iter().filter(|(_, e)| e.is_some()).count();
        assert_eq!(sent, MAX_SENT_PER_MINUTE as usize);
        assert_eq!(fired.len(), 200, "the rest are counted as suppressed");
        let next_minute = fire(&mut evaluator, &scan[..1], t0 + Duration::from_secs(60));
        assert!(next_minute[0].1.is_some());
    }

    fn attempt(applied: bool, hash: Option<&str>) -> ReloadAttempt {
        ReloadAttempt {
            at_unix_s: 1,
            trigger: ReloadTrigger::FileChange,
            applied,
            policy_hash: "0123456789abcdef0123".to_owned(),
            attempted_hash: hash.map(str::to_owned),
            generation: 3,
            message:
                "septa.toml:4:1: error: invariant `pci-only-through-checkout` is violated\nmore"
                    .to_owned(),
        }
    }

    #[test]
    fn a_refused_reload_fires_once_per_manifest_and_an_applied_one_never() {
        let mut evaluator = Evaluator::new(rules(
            r#"
[[alert]]
id = "bad-reload"
on = "reload_refused"
command = ["page"]
"#,
        ));
        let t0 = Instant::now();
        let reload = |evaluator: &mut Evaluator, attempt: &ReloadAttempt, s: u64| {
            let mut out = Vec::new();
            evaluator.reload(attempt, t0 + Duration::from_secs(s), &mut out);
            out.into_iter().map(outcome).collect::<Vec<_>>()
        };
        assert!(reload(&mut evaluator, &attempt(true, Some("aaa")), 0).is_empty());
        let fired = reload(&mut evaluator, &attempt(false, Some("aaa")), 0);
        let [(_, Some(event))] = fired.as_slice() else {
            panic!("{fired:?}")
        };
        assert_eq!(event.on, "reload_refused");
        assert_eq!(
            event.summary,
            "alert `bad-reload`: a reload (file_change) was refused; generation 3 (policy 0123456789ab) keeps serving: septa.toml:4:1: error: invariant `pci-only-through-checkout` is violated"
        );
        assert!(event.reload.is_some() && event.flows.is_empty());
        let again = reload(&mut evaluator, &attempt(false, Some("aaa")), 1);
        assert!(again[0].1.is_none(), "the same manifest again: suppressed");
        let other = reload(&mut evaluator, &attempt(false, Some("bbb")), 2);
        assert!(other[0].1.is_some(), "another manifest: sent");
        // Flows never fire a reload alert.
        let call = denied(FlowKind::Mesh, "function:front", "function:vault");
        assert!(fire(&mut evaluator, &[call], t0).is_empty());
    }

    #[test]
    fn dropped_flow_records_fire_once_per_interval_and_say_how_many() {
        let mut evaluator = Evaluator::new(rules(
            r#"
[[alert]]
id = "log-gaps"
on = "flow_records_dropped"
min_interval_s = 60
command = ["page"]
"#,
        ));
        let t0 = Instant::now();
        let dropped = |evaluator: &mut Evaluator, n: u64, total: u64, s: u64| {
            let mut out = Vec::new();
            evaluator.records_dropped(n, total, t0 + Duration::from_secs(s), &mut out);
            out.into_iter().map(outcome).collect::<Vec<_>>()
        };
        let fired = dropped(&mut evaluator, 12, 12, 0);
        let [(_, Some(event))] = fired.as_slice() else {
            panic!("{fired:?}")
        };
        assert_eq!(event.on, "flow_records_dropped");
        assert_eq!(event.source, "flow-log");
        assert_eq!((event.dropped, event.dropped_total), (Some(12), Some(12)));
        assert_eq!(
            event.summary,
            "alert `log-gaps`: the flow log dropped 12 flow records (12 since start): its sink is stalled or failing, or the flows outrun it"
        );
        assert!(
            dropped(&mut evaluator, 5, 17, 30)[0].1.is_none(),
            "cooling down"
        );
        let later = dropped(&mut evaluator, 1, 18, 61);
        assert_eq!(later[0].1.as_ref().map(|e| e.suppressed), Some(1));
        // Denials never fire it.
        let call = denied(FlowKind::Mesh, "function:front", "function:vault");
        assert!(fire(&mut evaluator, &[call], t0).is_empty());
    }

    #[test]
    fn an_update_keeps_the_state_of_unchanged_alerts_only() {
        let mut evaluator = Evaluator::new(rules(SPIKE));
        let t0 = Instant::now();
        let four: Vec<_> = (0..4).map(|_| from_client("203.0.113.9")).collect();
        assert!(fire(&mut evaluator, &four, t0).is_empty());
        // The same spike alert after a reload that changed something else: still at 4.
        evaluator.update(rules(&format!("{SPIKE}{LATERAL}")));
        assert_eq!(
            fire(&mut evaluator, &[from_client("203.0.113.9")], t0).len(),
            1
        );

        let mut evaluator = Evaluator::new(rules(SPIKE));
        assert!(fire(&mut evaluator, &four, t0).is_empty());
        // A changed threshold starts afresh.
        evaluator.update(rules(&SPIKE.replace("threshold = 5", "threshold = 6")));
        assert!(fire(&mut evaluator, &four, t0).is_empty());
        assert!(fire(&mut evaluator, &[from_client("203.0.113.9")], t0).is_empty());
        assert_eq!(
            fire(&mut evaluator, &[from_client("203.0.113.9")], t0).len(),
            1
        );
        // And no alerts at all fire nothing.
        evaluator.update(AlertRules::default());
        assert!(fire(&mut evaluator, &four, t0).is_empty());
    }
}
