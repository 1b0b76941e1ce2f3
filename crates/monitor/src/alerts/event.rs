//! What an alert says: the JSON a webhook receives as its body and a command on its standard
//! input, with a one-line summary a human can act on.

use std::sync::Arc;
use std::time::SystemTime;

use septa_flows::{FlowKind, FlowRecord, format_rfc3339_millis};
use serde::{Serialize, Serializer};

use crate::control::ReloadAttempt;

/// One alert, as sent.
///
/// ```json
/// {"alert":"lateral-movement","on":"lateral_movement","time":"2026-11-29T20:41:03.123Z",
///  "application":"shop","source":"function:storefront",
///  "summary":"alert `lateral-movement`: function:storefront was denied GET /entries on function:ledger: no allow rule …",
///  "flows":[{…the flow record…}],"suppressed":0}
/// ```
///
/// A `denial_spike` adds `denials` and `window_s` (and `flows` holds the denial that completed
/// the spike); a `reload_refused` carries `reload` (the attempt) instead of `flows`; a
/// `flow_records_dropped` carries `dropped` (since the last firing it reports) and
/// `dropped_total`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AlertEvent {
    /// The alert's id.
    #[serde(serialize_with = "text")]
    pub(crate) alert: Arc<str>,
    /// Its trigger: `lateral_movement`, `denial_spike`, `reload_refused` or
    /// `flow_records_dropped`.
    pub(crate) on: &'static str,
    /// When it fired, RFC 3339 UTC with milliseconds.
    pub(crate) time: String,
    /// The application whose policy declares it.
    #[serde(serialize_with = "text")]
    pub(crate) application: Arc<str>,
    /// What it fired for: a caller's identity, `client:ADDRESS`, or the refused manifest's hash.
    pub(crate) source: String,
    /// One line naming the alert, the flow or reload, and the rule or reason behind it.
    pub(crate) summary: String,
    /// The flow records behind it.
    #[serde(serialize_with = "records", skip_serializing_if = "Vec::is_empty")]
    pub(crate) flows: Vec<Arc<FlowRecord>>,
    /// The denials from the source within the window (`denial_spike`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) denials: Option<u64>,
    /// The window, in seconds (`denial_spike`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) window_s: Option<u64>,
    /// The refused attempt (`reload_refused`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reload: Option<ReloadAttempt>,
    /// Flow records dropped in the run that fired it (`flow_records_dropped`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) dropped: Option<u64>,
    /// Flow records dropped since septa started (`flow_records_dropped`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) dropped_total: Option<u64>,
    /// Firings for this alert and source suppressed since the last one sent.
    pub(crate) suppressed: u64,
}

fn text<S: Serializer>(text: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(text)
}

fn records<S: Serializer>(flows: &[Arc<FlowRecord>], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(flows.iter().map(|f| &**f))
}

/// What every alert says, whatever fired it.
pub(crate) struct Header {
    pub(crate) alert: Arc<str>,
    pub(crate) on: &'static str,
    pub(crate) application: Arc<str>,
    pub(crate) suppressed: u64,
}

impl AlertEvent {
    fn new(header: Header, source: String, summary: String) -> Self {
        Self {
            alert: header.alert,
            on: header.on,
            time: format_rfc3339_millis(SystemTime::now()),
            application: header.application,
            source,
            summary,
            flows: Vec::new(),
            denials: None,
            window_s: None,
            reload: None,
            dropped: None,
            dropped_total: None,
            suppressed: header.suppressed,
        }
    }

    /// A function's denied call to another function or an endpoint.
    pub(crate) fn lateral_movement(header: Header, record: &Arc<FlowRecord>) -> Self {
        let summary = format!(
            "alert `{}`: {} was denied {}: {}",
            header.alert,
            record.src,
            describe(record),
            decided(record)
        );
        let mut event = Self::new(header, record.src.clone(), summary);
        event.flows.push(Arc::clone(record));
        event
    }

    /// `denials` denials from `source` within `window_s`, the last of them `last`.
    pub(crate) fn denial_spike(
        header: Header,
        source: String,
        denials: u64,
        window_s: u64,
        last: &Arc<FlowRecord>,
    ) -> Self {
        let summary = format!(
            "alert `{}`: {denials} denials from {source} within {window_s} s; the last: {} {}: {}",
            header.alert,
            last.kind,
            describe(last),
            decided(last)
        );
        let mut event = Self::new(header, source, summary);
        event.flows.push(Arc::clone(last));
        event.denials = Some(denials);
        event.window_s = Some(window_s);
        event
    }

    /// A refused reload; `source` names the manifest it read.
    pub(crate) fn reload_refused(header: Header, source: String, attempt: &ReloadAttempt) -> Self {
        let hash: String = attempt.policy_hash.chars().take(12).collect();
        let why = attempt.message.lines().next().unwrap_or("no reason given");
        let summary = format!(
            "alert `{}`: a reload ({}) was refused; generation {} (policy {hash}) keeps serving: {why}",
            header.alert,
            attempt.trigger.as_str(),
            attempt.generation,
        );
        let mut event = Self::new(header, source, summary);
        event.reload = Some(attempt.clone());
        event
    }
}

impl AlertEvent {
    /// `dropped` more flow records dropped by the flow log, `total` since septa started.
    pub(crate) fn flow_records_dropped(
        header: Header,
        source: &str,
        dropped: u64,
        total: u64,
    ) -> Self {
        let summary = format!(
            "alert `{}`: the flow log dropped {dropped} flow records ({total} since start): its sink is stalled or failing, or the flows outrun it",
            header.alert
        );
        let mut event = Self::new(header, source.to_owned(), summary);
        event.dropped = Some(dropped);
        event.dropped_total = Some(total);
        event
    }
}

/// `GET /entries on function:ledger`, `a call to https://x.example:443`, ...
fn describe(record: &FlowRecord) -> String {
    let request = match (&record.method, &record.path) {
        (Some(method), Some(path)) => format!("{method} {path}"),
        (Some(method), None) => method.clone(),
        (None, Some(path)) => path.clone(),
        (None, None) => String::from("a call"),
    };
    match record.kind {
        FlowKind::Egress => match &record.target {
            Some(target) => format!("{request} to {target}"),
            None => format!("{request} to {}", record.dst),
        },
        FlowKind::Ingress | FlowKind::Mesh | FlowKind::Endpoint => {
            format!("{request} on {}", record.dst)
        }
    }
}

/// The reason of a denial, with the rule when one decided it.
fn decided(record: &FlowRecord) -> String {
    match &record.rule {
        Some(rule) => format!("{} (rule `{rule}`)", record.reason),
        None => record.reason.clone(),
    }
}
