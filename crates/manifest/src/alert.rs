//! Alerts the operator declares in `[[alert]]`: what to watch for (a denied lateral movement, a
//! spike of denials from one source, a refused reload, flow records dropped) and where to send it (a webhook or a
//! command). Evaluating and delivering them is `septa-monitor`'s; this is the validated shape.

use std::fmt;
use std::path::PathBuf;

use crate::diagnostic::Location;
use crate::https_url::{UrlParts, authority, parse_url};
use crate::model::Name;
use crate::selector::Selector;

/// One `[[alert]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// Its id, named by every alert it sends and by `septa_alerts_total{alert}`.
    pub id: Name,
    /// What makes it fire.
    pub trigger: AlertTrigger,
    /// Where it goes.
    pub sink: AlertSink,
    /// After sending for one source, further firings for that source within this many seconds
    /// are suppressed (counted, and reported in the next alert sent); 0 sends every one.
    pub min_interval_s: u32,
    /// How long one delivery may take (the webhook's whole exchange, or the command until it
    /// exits, after which it is killed), in milliseconds.
    pub timeout_ms: u32,
    /// Where it is declared.
    pub location: Location,
}

impl Alert {
    /// `min_interval_s` of an alert that sets none: one alert a minute per source.
    pub const DEFAULT_MIN_INTERVAL_S: u32 = 60;
    /// The longest `min_interval_s`: a day.
    pub const MAX_MIN_INTERVAL_S: u32 = 86_400;
    /// `timeout_ms` of an alert that sets none.
    pub const DEFAULT_TIMEOUT_MS: u32 = 5_000;
    /// The longest `timeout_ms`: a minute.
    pub const MAX_TIMEOUT_MS: u32 = 60_000;
    /// `window_s` of a denial spike that sets none.
    pub const DEFAULT_WINDOW_S: u32 = 60;
    /// The longest `window_s`: a day.
    pub const MAX_WINDOW_S: u32 = 86_400;
    /// The largest `threshold`.
    pub const MAX_THRESHOLD: u32 = 1_000_000;
}

/// What makes an alert fire (`on = "..."`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlertTrigger {
    /// `lateral_movement`: a function's call to another function or an endpoint was denied.
    LateralMovement {
        /// Which calls count.
        scope: FlowScope,
    },
    /// `denial_spike`: at least `threshold` denials from one source within `window_s` seconds.
    /// The source is the client address for ingress, the caller's identity otherwise.
    DenialSpike {
        /// Denials that make a spike (at least 1).
        threshold: u32,
        /// The sliding window, in seconds.
        window_s: u32,
        /// Which denials count.
        scope: FlowScope,
    },
    /// `reload_refused`: a reload attempt was refused (an invalid manifest, a failed invariant,
    /// a component that does not compile) and the old policy kept serving.
    ReloadRefused,
    /// `flow_records_dropped`: the flow log dropped records (its sink stalled or failed, or the
    /// flows outran it), so the log is missing flows that happened.
    FlowRecordsDropped,
}

impl AlertTrigger {
    /// The names `on` accepts, in the order the manifest reference lists them.
    pub const NAMES: [&'static str; 4] = [
        "lateral_movement",
        "denial_spike",
        "reload_refused",
        "flow_records_dropped",
    ];

    /// The name `on` spells it with, e.g. `denial_spike`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::LateralMovement { .. } => "lateral_movement",
            Self::DenialSpike { .. } => "denial_spike",
            Self::ReloadRefused => "reload_refused",
            Self::FlowRecordsDropped => "flow_records_dropped",
        }
    }

    /// The flows it watches, if it watches flows.
    pub fn scope(&self) -> Option<&FlowScope> {
        match self {
            Self::LateralMovement { scope } | Self::DenialSpike { scope, .. } => Some(scope),
            Self::ReloadRefused | Self::FlowRecordsDropped => None,
        }
    }
}

impl fmt::Display for AlertTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Narrows the flows an alert watches by who called (`from`) and whom (`to`); absent, any.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowScope {
    /// The caller: a function selector, or `gateway` for requests from the internet.
    pub from: Option<Selector>,
    /// The callee: a function or endpoint selector (never matches an egress destination).
    pub to: Option<Selector>,
}

/// Where an alert is sent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AlertSink {
    /// An HTTP `POST` of the alert as JSON; any 2xx answer is success.
    Webhook(WebhookUrl),
    /// A program run without a shell, the alert as JSON on its standard input; exit status 0 is
    /// success.
    Command {
        /// The program: a name looked up on `PATH`, or a path (a relative one resolved against
        /// the manifest's directory).
        program: PathBuf,
        /// Its arguments.
        args: Vec<String>,
    },
}

/// An `http://HOST[:PORT][/PATH][?QUERY]` URL a webhook posts to. Plain `http` only: point it
/// at a relay on the same host (or use a command) to reach an `https` service.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WebhookUrl {
    parts: UrlParts,
}

impl WebhookUrl {
    /// Parses `s`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts = parse_url(s, "http://HOST[:PORT]/PATH", |scheme| {
            if scheme.eq_ignore_ascii_case("http") {
                Ok(80)
            } else if scheme.eq_ignore_ascii_case("https") {
                Err(format!(
                    "webhook `{s}` uses `https`, which septa does not send alerts over; post to an `http://` relay on this host, or use `command`"
                ))
            } else {
                Err(format!(
                    "webhook `{s}` has scheme `{scheme}`; webhooks are `http://` URLs"
                ))
            }
        })?;
        Ok(Self { parts })
    }

    /// The host: a lowercase DNS name, or an IP address without brackets.
    pub fn host(&self) -> &str {
        &self.parts.host
    }

    /// The port (80 unless the URL names one).
    pub fn port(&self) -> u16 {
        self.parts.port
    }

    /// The path with the query, if any; always starts with `/`.
    pub fn path_and_query(&self) -> &str {
        &self.parts.path_and_query
    }

    /// `HOST` or `HOST:PORT` as the `Host` header carries it.
    pub fn authority(&self) -> String {
        authority(&self.parts.host, self.parts.port, 80)
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.path_and_query())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn webhooks_are_plain_http_to_one_host() {
        let url = WebhookUrl::parse("HTTP://127.0.0.1:9000/hooks/septa?x=1").unwrap();
        assert_eq!(url.to_string(), "http://127.0.0.1:9000/hooks/septa?x=1");
        assert_eq!((url.host(), url.port()), ("127.0.0.1", 9000));
        let bare = WebhookUrl::parse("http://alerts.example").map(|u| u.to_string());
        assert_eq!(bare.as_deref(), Ok("http://alerts.example/"));
        for (bad, says) in [
            ("https://hooks.slack.example/x", "does not send alerts over"),
            ("ftp://x.example/", "webhooks are `http://` URLs"),
            (
                "127.0.0.1:9000/hook",
                "is not a URL of the form `http://HOST[:PORT]/PATH`",
            ),
            ("http://user:pw@x.example/", "user info"),
            ("http://*.example/", "not a pattern"),
            ("http://x.example:0/", "not a port"),
        ] {
            let e = WebhookUrl::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
