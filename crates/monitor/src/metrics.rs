//! Prometheus metrics: counters and histograms derived from every flow record (a
//! [`FlowObserver`] on the flow log's writer thread), gauges the host sets (the loaded policy,
//! reloads, functions per segment) and values read when scraped (instances in use, the CPU time
//! guests used and waited, the flow log's own counters).
//!
//! Label values come from the loaded policy, never from requests (see [`crate::labels`]), and
//! every family is capped at a number of series; what does not fit is counted in
//! `septa_metrics_dropped_series_total` instead of growing the page without bound.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use septa_flows::{FlowKind, FlowLogStats, FlowObserver, FlowRecord, Verdict};
use septa_policy::Policy;

use crate::alerts::{AlertCounts, ByOutcome};
use crate::exposition::{Exposition, MetricType};
use crate::labels::{Label, Vocabulary};

/// Series a family may hold before new ones are dropped (and counted).
pub const DEFAULT_MAX_SERIES: usize = 2_000;

/// Upper bounds of the latency buckets: microseconds, and the `le` label in seconds. From 100 µs
/// (a gateway refusal) to 10 s (past most function timeouts).
const LATENCY_BUCKETS: [(u64, &str); 16] = [
    (100, "0.0001"),
    (250, "0.00025"),
    (500, "0.0005"),
    (1_000, "0.001"),
    (2_500, "0.0025"),
    (5_000, "0.005"),
    (10_000, "0.01"),
    (25_000, "0.025"),
    (50_000, "0.05"),
    (100_000, "0.1"),
    (250_000, "0.25"),
    (500_000, "0.5"),
    (1_000_000, "1"),
    (2_500_000, "2.5"),
    (5_000_000, "5"),
    (10_000_000, "10"),
];

const FLOWS: &str = "septa_flows_total";
const LATENCY: &str = "septa_flow_latency_seconds";
const RATE_LIMITED: &str = "septa_rate_limited_total";
const DENIALS: &str = "septa_denials_total";
const ALERTS: &str = "septa_alerts_total";
const PEER_FLOWS: &str = "septa_peer_flows_total";
const PEER_LATENCY: &str = "septa_peer_latency_seconds";
const PEER_UNREACHABLE: &str = "septa_peer_unreachable_total";

/// How a policy reload ended, for `septa_reloads_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new policy was validated and swapped in.
    Success,
    /// The new policy was refused; the old one kept serving.
    Failure,
}

impl ReloadOutcome {
    const ALL: [Self; 2] = [Self::Success, Self::Failure];

    /// The label value: `success` or `failure`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// What [`Metrics::load_policy`] was last told about the policy in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedPolicy {
    /// The application's name.
    pub application: String,
    /// SHA-256 of the manifest file's bytes, lowercase hex (see [`crate::manifest_hash`]).
    pub hash: String,
    /// How many functions (not counting endpoints) it places.
    pub functions: usize,
}

/// Reads each function's instances in use when metrics are scraped: `(function, in use)`.
pub type InstancesInUse = Box<dyn Fn() -> Vec<(String, u64)> + Send + Sync>;

/// What one function's guests have cost since the process started, as the runtime's scheduler
/// counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestCpu {
    /// The function's segment.
    pub segment: String,
    /// The function.
    pub function: String,
    /// CPU time its guests ran.
    pub cpu: Duration,
    /// Time its guests were ready to run but waited for other guests to have their turn.
    pub waited: Duration,
    /// Times one of its guests was stopped at a yield point so that another could run.
    pub preemptions: u64,
}

/// Reads each function's [`GuestCpu`] when metrics are scraped.
pub type GuestCpuSource = Box<dyn Fn() -> Vec<GuestCpu> + Send + Sync>;

/// Reads, when metrics are scraped, how often each peer node could not be reached:
/// `(node, attempts that failed)`.
pub type PeersUnreachable = Box<dyn Fn() -> Vec<(String, u64)> + Send + Sync>;

/// Every metric septa exposes. Share it behind an `Arc`: the flow log observes into it, the host
/// sets its gauges, the admin listener renders it.
pub struct Metrics {
    max_series: usize,
    state: Mutex<State>,
    sources: Mutex<Sources>,
}

#[derive(Default)]
struct Sources {
    flow_log: Option<FlowLogStats>,
    instances: Option<InstancesInUse>,
    guest_cpu: Option<GuestCpuSource>,
    alerts: Option<AlertCounts>,
    peers: Option<PeersUnreachable>,
}

#[derive(Default)]
struct State {
    vocabulary: Vocabulary,
    flows: HashMap<FlowKey, u64>,
    latency: HashMap<(FlowKind, Label), Histogram>,
    rate_limited: HashMap<Label, u64>,
    denials: HashMap<(FlowKind, Label, Label), u64>,
    /// Flows between this node and another, by peer node, kind and outcome.
    peer_flows: HashMap<(Label, FlowKind, &'static str), u64>,
    peer_latency: HashMap<Label, Histogram>,
    dropped: BTreeMap<&'static str, u64>,
    loaded: Option<LoadedPolicy>,
    reloads: [u64; 2],
    functions: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FlowKey {
    kind: FlowKind,
    verdict: Verdict,
    rule: Label,
    segment: Label,
    destination: Label,
    route: Label,
}

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Per bucket, not cumulative; the last counts what is over every bound.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum_us: u64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, latency_us: u64) {
        let bucket = LATENCY_BUCKETS.partition_point(|&(bound, _)| bound < latency_us);
        if let Some(count) = self.buckets.get_mut(bucket) {
            *count += 1;
        }
        self.sum_us = self.sum_us.saturating_add(latency_us);
        self.count += 1;
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Empty metrics, each family capped at [`DEFAULT_MAX_SERIES`] series.
    pub fn new() -> Self {
        Self::with_max_series(DEFAULT_MAX_SERIES)
    }

    /// Empty metrics, each family capped at `max_series` series.
    pub fn with_max_series(max_series: usize) -> Self {
        Self {
            max_series,
            state: Mutex::default(),
            sources: Mutex::default(),
        }
    }

    /// Takes `policy` as the one in force: its names become the label values flows may use,
    /// `septa_policy_info` shows `hash` and its application, `septa_functions` its placements.
    /// Series counted under an earlier policy stay (counters never go back).
    pub fn load_policy(&self, policy: &Policy, hash: impl Into<String>) {
        let manifest = policy.manifest();
        let mut functions: BTreeMap<String, u64> = manifest
            .segments
            .keys()
            .map(|segment| (segment.to_string(), 0))
            .collect();
        let mut total = 0;
        for function in manifest.components() {
            *functions
                .entry(function.placement.segment.to_string())
                .or_default() += 1;
            total += 1;
        }
        let loaded = LoadedPolicy {
            application: manifest.application.to_string(),
            hash: hash.into(),
            functions: total,
        };
        let vocabulary = Vocabulary::from_policy(policy);
        let mut state = self.state();
        state.vocabulary = vocabulary;
        state.functions = functions;
        state.loaded = Some(loaded);
    }

    /// What [`load_policy`](Self::load_policy) was last told, if anything.
    pub fn loaded_policy(&self) -> Option<LoadedPolicy> {
        self.state().loaded.clone()
    }

    /// Counts one reload attempt.
    pub fn count_reload(&self, outcome: ReloadOutcome) {
        let index = match outcome {
            ReloadOutcome::Success => 0,
            ReloadOutcome::Failure => 1,
        };
        self.state().reloads[index] += 1;
    }

    /// Reports the flow log's backpressure and write failures, read when scraped.
    pub fn watch_flow_log(&self, stats: FlowLogStats) {
        self.sources().flow_log = Some(stats);
    }

    /// Reports how each alert's firings ended (`septa_alerts_total`), read when scraped.
    pub fn watch_alerts(&self, counts: AlertCounts) {
        self.sources().alerts = Some(counts);
    }

    /// Reports how often each peer node could not be reached, read from `source` when scraped.
    pub fn watch_peers(&self, source: PeersUnreachable) {
        self.sources().peers = Some(source);
    }

    /// Reports each function's instances in use, read from `source` when scraped (it should be
    /// cheap: it runs on the admin listener's thread at every scrape).
    pub fn watch_instances(&self, source: InstancesInUse) {
        self.sources().instances = Some(source);
    }

    /// Reports the CPU time each function's guests used and waited, and how often they were
    /// preempted, read from `source` when scraped.
    pub fn watch_guest_cpu(&self, source: GuestCpuSource) {
        self.sources().guest_cpu = Some(source);
    }

    /// What each function's guests have cost so far, as [`Self::watch_guest_cpu`]'s source says;
    /// empty when nothing reports it.
    pub fn guest_cpu(&self) -> Vec<GuestCpu> {
        self.sources()
            .guest_cpu
            .as_ref()
            .map(|read| read())
            .unwrap_or_default()
    }

    /// The metrics as a page of Prometheus text exposition format 0.0.4 (serve it with
    /// [`crate::PROMETHEUS_CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let (flow_log, instances, guest_cpu, alerts, peers) = {
            let sources = self.sources();
            let flow_log = sources.flow_log.clone().unwrap_or_default();
            let alerts = sources.alerts.as_ref().map(AlertCounts::snapshot);
            (
                flow_log,
                sources.instances.as_ref().map(|read| read()),
                sources.guest_cpu.as_ref().map(|read| read()),
                alerts,
                sources.peers.as_ref().map(|read| read()),
            )
        };
        let mut page = Exposition::default();
        self.state().render(&mut page);
        render_peers_unreachable(&mut page, peers.unwrap_or_default());
        render_sources(&mut page, &flow_log, instances);
        render_guest_cpu(&mut page, guest_cpu.unwrap_or_default(), self.max_series);
        render_alerts(&mut page, alerts.unwrap_or_default());
        page.finish()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Counting never leaves the state half updated in a way that matters; keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sources(&self) -> MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FlowObserver for Metrics {
    fn observe(&self, batch: &[Arc<FlowRecord>]) {
        let mut state = self.state();
        for record in batch {
            state.count(record, self.max_series);
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("max_series", &self.max_series)
            .finish_non_exhaustive()
    }
}

/// The entry for `key` in a family capped at `max` series, or `None` (counted as dropped) when
/// it is new and the family is full.
fn series<'a, K: Hash + Eq, V: Default>(
    family: &'a mut HashMap<K, V>,
    key: K,
    max: usize,
    dropped: &mut BTreeMap<&'static str, u64>,
    name: &'static str,
) -> Option<&'a mut V> {
    if family.len() >= max && !family.contains_key(&key) {
        *dropped.entry(name).or_default() += 1;
        return None;
    }
    Some(family.entry(key).or_default())
}

impl State {
    fn count(&mut self, record: &FlowRecord, max: usize) {
        let words = &self.vocabulary;
        let destination = words.destination(record.kind, &record.dst);
        let segment = words.segment(record.segment.as_deref());
        let route = words.route(record.route.as_deref());
        let key = FlowKey {
            kind: record.kind,
            verdict: record.verdict,
            rule: words.rule(record.rule.as_deref()),
            segment: segment.clone(),
            destination: destination.clone(),
            route: route.clone(),
        };
        let dropped = &mut self.dropped;
        if let Some(count) = series(&mut self.flows, key, max, dropped, FLOWS) {
            *count += 1;
        }
        let key = (record.kind, destination.clone());
        if let Some(histogram) = series(&mut self.latency, key, max, dropped, LATENCY) {
            histogram.observe(record.latency_us);
        }
        if record.kind == FlowKind::Ingress && record.status == Some(429) {
            let count = series(&mut self.rate_limited, route, max, dropped, RATE_LIMITED);
            if let Some(count) = count {
                *count += 1;
            }
        }
        if record.verdict == Verdict::Deny {
            let key = (record.kind, segment, destination);
            if let Some(count) = series(&mut self.denials, key, max, dropped, DENIALS) {
                *count += 1;
            }
        }
        if let Some(peer) = record.peer.as_deref() {
            let peer = words.peer(peer);
            let outcome = match record.verdict {
                Verdict::Deny => "denied",
                _ if record.status.is_some_and(|s| s >= 500) || record.error.is_some() => "failed",
                _ => "allowed",
            };
            let key = (peer.clone(), record.kind, outcome);
            if let Some(count) = series(&mut self.peer_flows, key, max, dropped, PEER_FLOWS) {
                *count += 1;
            }
            let latency = series(&mut self.peer_latency, peer, max, dropped, PEER_LATENCY);
            if let Some(histogram) = latency {
                histogram.observe(record.latency_us);
            }
        }
    }

    fn render(&self, page: &mut Exposition) {
        page.family(
            FLOWS,
            "Flows decided, by enforcement point, verdict, deciding rule, segment, destination and gateway route.",
            MetricType::Counter,
        );
        for (key, count) in sorted(&self.flows, |k| {
            (
                k.kind.as_str(),
                k.verdict.as_str(),
                k.rule.clone(),
                k.segment.clone(),
                k.destination.clone(),
                k.route.clone(),
            )
        }) {
            let labels = [
                ("kind", key.kind.as_str()),
                ("verdict", key.verdict.as_str()),
                ("rule", &*key.rule),
                ("segment", &*key.segment),
                ("destination", &*key.destination),
                ("route", &*key.route),
            ];
            page.sample(FLOWS, &labels, *count);
        }

        page.family(
            LATENCY,
            "How long flows took, from decision to the end of the response, by enforcement point and destination.",
            MetricType::Histogram,
        );
        for ((kind, destination), histogram) in
            sorted(&self.latency, |(k, d)| (k.as_str(), d.clone()))
        {
            render_histogram(page, kind.as_str(), destination, histogram);
        }

        page.family(
            RATE_LIMITED,
            "Ingress requests refused with 429 by a rate limit, by gateway route.",
            MetricType::Counter,
        );
        for (route, count) in sorted(&self.rate_limited, Clone::clone) {
            page.sample(RATE_LIMITED, &[("route", &**route)], *count);
        }

        page.family(
            DENIALS,
            "Flows denied, by enforcement point, segment and destination.",
            MetricType::Counter,
        );
        for ((kind, segment, destination), count) in sorted(&self.denials, |(k, s, d)| {
            (k.as_str(), s.clone(), d.clone())
        }) {
            let labels = [
                ("kind", kind.as_str()),
                ("segment", &**segment),
                ("destination", &**destination),
            ];
            page.sample(DENIALS, &labels, *count);
        }

        page.family(
            PEER_FLOWS,
            "Flows to or from another node of the cluster, by peer node, enforcement point and outcome (allowed, denied, failed).",
            MetricType::Counter,
        );
        for ((peer, kind, outcome), count) in
            sorted(&self.peer_flows, |(p, k, o)| (p.clone(), k.as_str(), *o))
        {
            let labels = [
                ("peer", &**peer),
                ("kind", kind.as_str()),
                ("outcome", outcome),
            ];
            page.sample(PEER_FLOWS, &labels, *count);
        }
        page.family(
            PEER_LATENCY,
            "How long flows to or from another node took, from decision to the end of the response, by peer node.",
            MetricType::Histogram,
        );
        for (peer, histogram) in sorted(&self.peer_latency, Clone::clone) {
            render_buckets(page, PEER_LATENCY, &[("peer", peer)], histogram);
        }

        page.family(
            "septa_metrics_dropped_series_total",
            "Observations not counted because their metric already had as many series as it may hold.",
            MetricType::Counter,
        );
        for name in [
            FLOWS,
            LATENCY,
            RATE_LIMITED,
            DENIALS,
            PEER_FLOWS,
            PEER_LATENCY,
        ] {
            let dropped = self.dropped.get(name).copied().unwrap_or(0);
            page.sample(
                "septa_metrics_dropped_series_total",
                &[("metric", name)],
                dropped,
            );
        }

        page.family(
            "septa_policy_info",
            "The policy in force: SHA-256 of its manifest file, and its application. Always 1.",
            MetricType::Gauge,
        );
        if let Some(loaded) = &self.loaded {
            let labels = [
                ("hash", loaded.hash.as_str()),
                ("application", loaded.application.as_str()),
            ];
            page.sample("septa_policy_info", &labels, 1);
        }

        page.family(
            "septa_reloads_total",
            "Attempts to reload the policy, by outcome.",
            MetricType::Counter,
        );
        for (outcome, count) in ReloadOutcome::ALL.iter().zip(self.reloads) {
            page.sample(
                "septa_reloads_total",
                &[("outcome", outcome.as_str())],
                count,
            );
        }

        page.family(
            "septa_functions",
            "Functions (not counting endpoints) the policy in force places in each segment.",
            MetricType::Gauge,
        );
        for (segment, count) in &self.functions {
            page.sample("septa_functions", &[("segment", segment)], count);
        }
    }
}

fn render_histogram(page: &mut Exposition, kind: &str, destination: &str, histogram: &Histogram) {
    let labels = [("kind", kind), ("destination", destination)];
    render_buckets(page, LATENCY, &labels, histogram);
}

/// The samples of histogram `name` with `labels`: its cumulative buckets, sum and count.
fn render_buckets(
    page: &mut Exposition,
    name: &str,
    labels: &[(&str, &str)],
    histogram: &Histogram,
) {
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0;
    let mut with_le = labels.to_vec();
    with_le.push(("le", ""));
    let last = with_le.len() - 1;
    for (i, (_, le)) in LATENCY_BUCKETS.iter().enumerate() {
        cumulative += histogram.buckets.get(i).copied().unwrap_or(0);
        with_le[last].1 = le;
        page.sample(&bucket, &with_le, cumulative);
    }
    with_le[last].1 = "+Inf";
    page.sample(&bucket, &with_le, histogram.count);
    // Microseconds to seconds; f64 is exact for any plausible sum.
    let seconds = histogram.sum_us as f64 / 1e6;
    page.sample(&format!("{name}_sum"), labels, seconds);
    page.sample(&format!("{name}_count"), labels, histogram.count);
}

fn render_peers_unreachable(page: &mut Exposition, mut peers: Vec<(String, u64)>) {
    page.family(
        PEER_UNREACHABLE,
        "Attempts to reach another node that failed (no connection, TLS refused, or the connection broke before it took the request), by peer node; a call moves on to the next node that hosts its callee.",
        MetricType::Counter,
    );
    peers.sort();
    for (peer, count) in &peers {
        page.sample(PEER_UNREACHABLE, &[("peer", peer)], count);
    }
}

fn render_sources(
    page: &mut Exposition,
    flow_log: &FlowLogStats,
    instances: Option<Vec<(String, u64)>>,
) {
    page.family(
        "septa_function_instances_in_use",
        "Requests each function (or endpoint) is serving right now, out of its max_concurrency.",
        MetricType::Gauge,
    );
    let mut instances = instances.unwrap_or_default();
    instances.sort();
    for (function, in_use) in &instances {
        page.sample(
            "septa_function_instances_in_use",
            &[("function", function)],
            in_use,
        );
    }
    page.family(
        "septa_flow_log_backpressure_total",
        "Times a flow record found the flow log's queue full and its request waited for the writer.",
        MetricType::Counter,
    );
    page.sample(
        "septa_flow_log_backpressure_total",
        &[],
        flow_log.backpressure_events(),
    );
    page.family(
        "septa_flow_log_write_failures_total",
        "Flow records that could not be written to the flow log.",
        MetricType::Counter,
    );
    page.sample(
        "septa_flow_log_write_failures_total",
        &[],
        flow_log.write_failures(),
    );
    page.family(
        "septa_flow_log_dropped_total",
        "Flow records the flow log dropped: no room for them (a stalled or slow sink) or a failed write; see --flow-log-overflow.",
        MetricType::Counter,
    );
    page.sample("septa_flow_log_dropped_total", &[], flow_log.dropped());
}

/// A family read from each function's [`GuestCpu`]: name, help, and the value of a sample.
struct GuestCpuFamily {
    name: &'static str,
    help: &'static str,
    value: fn(&GuestCpu) -> String,
}

const GUEST_CPU_FAMILIES: [GuestCpuFamily; 3] = [
    GuestCpuFamily {
        name: "septa_cpu_seconds_total",
        help: "CPU time guests used, by segment and function.",
        value: |u| u.cpu.as_secs_f64().to_string(),
    },
    GuestCpuFamily {
        name: "septa_cpu_wait_seconds_total",
        help: "Time guests were ready to compute but waited for another guest's turn on their compute thread, by segment and function.",
        value: |u| u.waited.as_secs_f64().to_string(),
    },
    GuestCpuFamily {
        name: "septa_preemptions_total",
        help: "Times a guest made way for another (of a segment behind its share, or the next of its own) at a yield point, by segment and function.",
        value: |u| u.preemptions.to_string(),
    },
];

/// The CPU families, one series per function the process has run (the runtime keeps them across
/// reloads, so the cap still applies).
fn render_guest_cpu(page: &mut Exposition, mut usage: Vec<GuestCpu>, max_series: usize) {
    usage.sort_by(|a, b| (&a.segment, &a.function).cmp(&(&b.segment, &b.function)));
    usage.truncate(max_series);
    for family in &GUEST_CPU_FAMILIES {
        page.family(family.name, family.help, MetricType::Counter);
        for u in &usage {
            let labels = [
                ("segment", u.segment.as_str()),
                ("function", u.function.as_str()),
            ];
            page.sample(family.name, &labels, (family.value)(u));
        }
    }
}

fn render_alerts(page: &mut Exposition, alerts: Vec<(Arc<str>, ByOutcome)>) {
    page.family(
        ALERTS,
        "Firings of the alerts septa.toml declares, by alert and outcome: sent, failed (not retried), dropped (the delivery queue was full) or suppressed (cooldown or rate cap).",
        MetricType::Counter,
    );
    for (alert, by_outcome) in &alerts {
        for (outcome, count) in by_outcome {
            let labels = [("alert", &**alert), ("outcome", outcome.as_str())];
            page.sample(ALERTS, &labels, *count);
        }
    }
}

/// A family's series in a stable order, so that scrapes are easy to read and compare.
fn sorted<K, V, O: Ord>(family: &HashMap<K, V>, order: impl Fn(&K) -> O) -> Vec<(&K, &V)> {
    let mut series: Vec<(&K, &V)> = family.iter().collect();
    series.sort_by_key(|(k, _)| order(k));
    series
}
