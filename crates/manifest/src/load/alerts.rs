//! The last stage of loading: the operator's `[[alert]]`s, whose trigger, selectors and sink are
//! checked here so that a running septa never meets an alert it cannot evaluate or send.

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_spanned::Spanned;

use super::Loader;
use super::references::References;
use crate::alert::{Alert, AlertSink, AlertTrigger, FlowScope, WebhookUrl};
use crate::diagnostic::{Diagnostic, Location, did_you_mean};
use crate::raw::RawAlert;
use crate::selector::Selector;

impl Loader {
    pub(super) fn alerts(
        &mut self,
        dir: &Path,
        raw: &[(Location, RawAlert)],
        refs: &References,
    ) -> Vec<Alert> {
        let mut out = Vec::new();
        let mut ids = HashSet::new();
        for (at, r) in raw {
            let id = self.entry_id(&r.id, &mut ids, "alert");
            let trigger = self.alert_trigger(r, refs);
            let sink = self.alert_sink(*at, dir, r);
            let min_interval_s = self.bounded(
                r.min_interval_s.as_ref(),
                "min_interval_s",
                0..=Alert::MAX_MIN_INTERVAL_S,
                Alert::DEFAULT_MIN_INTERVAL_S,
            );
            let timeout_ms = self.bounded(
                r.timeout_ms.as_ref(),
                "timeout_ms",
                1..=Alert::MAX_TIMEOUT_MS,
                Alert::DEFAULT_TIMEOUT_MS,
            );
            let (Some(id), Some(trigger), Some(sink), Some(min_interval_s), Some(timeout_ms)) =
                (id, trigger, sink, min_interval_s, timeout_ms)
            else {
                continue;
            };
            out.push(Alert {
                id,
                trigger,
                sink,
                min_interval_s,
                timeout_ms,
                location: *at,
            });
        }
        out
    }

    /// `on`, with the fields that belong to it and none that do not.
    fn alert_trigger(&mut self, r: &RawAlert, refs: &References) -> Option<AlertTrigger> {
        let on = r.on.get_ref().as_str();
        let known = AlertTrigger::NAMES.map(|n| format!("`{n}`")).join(", ");
        if !AlertTrigger::NAMES.contains(&on) {
            let message = match did_you_mean(on, AlertTrigger::NAMES) {
                Some(n) => format!("unknown alert trigger `{on}` (did you mean `{n}`?)"),
                None => format!("unknown alert trigger `{on}`"),
            };
            self.error_help(&r.on.span(), message, format!("`on` is one of {known}"));
            return None;
        }
        let spike = on == "denial_spike";
        for (field, span) in [
            ("threshold", r.threshold.as_ref().map(Spanned::span)),
            ("window_s", r.window_s.as_ref().map(Spanned::span)),
        ] {
            if let Some(span) = span.filter(|_| !spike) {
                self.error(
                    &span,
                    format!("`{field}` applies only to `on = \"denial_spike\"`, not `{on}`"),
                );
            }
        }
        if on == "reload_refused" || on == "flow_records_dropped" {
            let watches = if on == "reload_refused" {
                "reloads"
            } else {
                "the flow log"
            };
            for (field, raw) in [("from", &r.from), ("to", &r.to)] {
                if let Some(raw) = raw {
                    self.error(
                        &raw.span(),
                        format!("`{field}` narrows the flows an alert watches; `on = \"{on}\"` watches {watches}, not flows"),
                    );
                }
            }
            return Some(if on == "reload_refused" {
                AlertTrigger::ReloadRefused
            } else {
                AlertTrigger::FlowRecordsDropped
            });
        }
        let scope = self.flow_scope(on, r, refs)?;
        if !spike {
            return Some(AlertTrigger::LateralMovement { scope });
        }
        let Some(threshold) = &r.threshold else {
            self.error_help(
                &r.on.span(),
                "`on = \"denial_spike\"` needs a `threshold`",
                "add `threshold = N`: the denials from one source within `window_s` that make a spike",
            );
            return None;
        };
        let threshold = self.bounded(Some(threshold), "threshold", 1..=Alert::MAX_THRESHOLD, 0)?;
        let window_s = self.bounded(
            r.window_s.as_ref(),
            "window_s",
            1..=Alert::MAX_WINDOW_S,
            Alert::DEFAULT_WINDOW_S,
        )?;
        Some(AlertTrigger::DenialSpike {
            threshold,
            window_s,
            scope,
        })
    }

    /// `from` and `to` of an alert on flows: places that exist, and that can be at that end of
    /// the flows the trigger watches.
    fn flow_scope(&mut self, on: &str, r: &RawAlert, refs: &References) -> Option<FlowScope> {
        let mut ok = true;
        let mut side = |loader: &mut Self, raw: &Option<Spanned<String>>, from: bool| {
            let raw = raw.as_ref()?;
            let Some(selector) = loader.invariant_selector(raw, refs) else {
                ok = false;
                return None;
            };
            let problem = match (&selector, from) {
                (Selector::Endpoint(n), true) => Some((
                    format!("endpoint `{n}` cannot be an alert's `from`: endpoints answer calls, they never make them"),
                    "name the functions whose calls the alert watches",
                )),
                (Selector::Gateway, true) if on == "lateral_movement" => Some((
                    "`from = \"gateway\"` is not lateral movement: that is movement between functions, and the gateway makes no mesh calls".to_owned(),
                    "watch requests from the internet with `on = \"denial_spike\"` and `from = \"gateway\"`",
                )),
                (Selector::Gateway, false) => Some((
                    "`to = \"gateway\"` selects nothing: no flow goes to the gateway".to_owned(),
                    "`to` names the functions or endpoints that were called",
                )),
                _ => None,
            };
            if let Some((message, help)) = problem {
                loader.error_help(&raw.span(), message, help);
                ok = false;
                return None;
            }
            Some(selector)
        };
        let from = side(self, &r.from, true);
        let to = side(self, &r.to, false);
        ok.then_some(FlowScope { from, to })
    }

    /// Exactly one of `webhook` and `command`, each well formed.
    fn alert_sink(&mut self, at: Location, dir: &Path, r: &RawAlert) -> Option<AlertSink> {
        match (&r.webhook, &r.command) {
            (Some(url), None) => match WebhookUrl::parse(url.get_ref()) {
                Ok(url) => Some(AlertSink::Webhook(url)),
                Err(e) => {
                    self.error(&url.span(), e);
                    None
                }
            },
            (None, Some(argv)) => self.command(&argv.span(), dir, argv.get_ref()),
            (Some(_), Some(argv)) => {
                self.error_help(
                    &argv.span(),
                    "an alert takes `webhook` or `command`, not both",
                    "declare two alerts to send to both",
                );
                None
            }
            (None, None) => {
                self.errors.push(
                    Diagnostic::at(at, format!("alert `{}` has no `webhook` and no `command`", r.id.get_ref()))
                        .with_help("add `webhook = \"http://HOST:PORT/PATH\"` or `command = [\"PROGRAM\", \"ARG\", ...]`"),
                );
                None
            }
        }
    }

    /// `command = ["PROGRAM", "ARG", ...]`, run without a shell: a relative program with a `/`
    /// is resolved against the manifest's directory, a bare name is looked up on `PATH`.
    fn command(&mut self, span: &Range<usize>, dir: &Path, argv: &[String]) -> Option<AlertSink> {
        let Some((program, args)) = argv.split_first() else {
            self.error_help(
                span,
                "`command` is empty",
                "write the program and its arguments: `command = [\"/usr/local/bin/page\", \"--sev=2\"]`; no shell runs it",
            );
            return None;
        };
        if program.is_empty() {
            self.error(span, "`command` names an empty program");
            return None;
        }
        if argv.iter().any(|a| a.contains('\0')) {
            self.error(
                span,
                "`command` holds a NUL character, which no program can receive",
            );
            return None;
        }
        let path = PathBuf::from(program);
        let program = if program.contains('/') && path.is_relative() {
            dir.join(path)
        } else {
            path
        };
        Some(AlertSink::Command {
            program,
            args: args.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    use crate::alert::{AlertSink, AlertTrigger};
    use crate::load::parse;
    use crate::selector::Selector;

    const PLACES: &str = r#"septa_manifest_version = 1
[application]
name = "alerts"
[segment.edge]
subnets = { web = "public" }
[segment.payments]
subnets = { app = "private" }
labels = ["pci"]
[function.front]
source = "front.wasm"
placement = "edge/web"
[function.vault]
source = "vault.wasm"
placement = "payments/app"
[endpoint.cards]
placement = "payments/app"
"#;

    /// The diagnostics of `PLACES` followed by `alerts`, one `LINE:COL: MESSAGE` each, the
    /// line counted within `alerts`.
    fn errors(alerts: &str) -> Vec<String> {
        let offset = PLACES.lines().count();
        let text = format!("{PLACES}{alerts}");
        let e = parse(Path::new("/app/septa.toml"), &text).unwrap_err();
        e.items
            .iter()
            .map(|d| match d.location {
                Some(at) => format!("{}:{}: {}", at.line - offset, at.col, d.message),
                None => d.message.clone(),
            })
            .collect()
    }

    #[test]
    fn every_trigger_and_sink_loads_with_its_defaults() {
        let text = format!(
            r#"{PLACES}
[[alert]]
id = "lateral"
on = "lateral_movement"
to = "label:pci"
webhook = "http://127.0.0.1:9000/hooks/septa"
[[alert]]
id = "spike"
on = "denial_spike"
from = "gateway"
threshold = 20
command = ["bin/page", "--sev=2"]
min_interval_s = 0
timeout_ms = 250
[[alert]]
id = "reload"
on = "reload_refused"
command = ["logger", "-t", "septa"]
"#
        );
        let m = parse(Path::new("/app/septa.toml"), &text).unwrap();
        let [lateral, spike, reload] = m.alerts.as_slice() else {
            panic!("{:#?}", m.alerts)
        };
        match &lateral.trigger {
            AlertTrigger::LateralMovement { scope } => {
                assert_eq!(scope.from, None);
                assert_eq!(scope.to, Some(Selector::parse("label:pci").unwrap()));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(lateral.min_interval_s, 60);
        assert_eq!(lateral.timeout_ms, 5_000);
        match &lateral.sink {
            AlertSink::Webhook(url) => assert_eq!(url.path_and_query(), "/hooks/septa"),
            other => panic!("{other:?}"),
        }
        match &spike.trigger {
            AlertTrigger::DenialSpike {
                threshold,
                window_s,
                scope,
            } => {
                assert_eq!((*threshold, *window_s), (20, 60));
                assert_eq!(scope.from, Some(Selector::Gateway));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!((spike.min_interval_s, spike.timeout_ms), (0, 250));
        let AlertSink::Command { program, args } = &spike.sink else {
            panic!("{:?}", spike.sink)
        };
        assert_eq!(
            program,
            Path::new("/app/bin/page"),
            "relative to the manifest"
        );
        assert_eq!(args, &["--sev=2"]);
        let AlertSink::Command { program, .. } = &reload.sink else {
            panic!("{:?}", reload.sink)
        };
        assert_eq!(
            program,
            Path::new("logger"),
            "a bare name is looked up on PATH"
        );
        assert_eq!(reload.trigger, AlertTrigger::ReloadRefused);
    }

    #[test]
    fn mistakes_are_refused_where_they_are_written() {
        let got = errors(
            r#"[[alert]]
id = "a"
on = "lateral_movment"
webhook = "http://x.example/"
[[alert]]
id = "b"
on = "denial_spike"
threshold = 0
webhook = "https://hooks.example/x"
[[alert]]
id = "b"
on = "reload_refused"
[[alert]]
id = "c"
on = "lateral_movement"
from = "gateway"
to = "segment:payment"
webhook = "http://x.example/"
command = ["page"]
[[alert]]
id = "d"
on = "reload_refused"
from = "function:front"
window_s = 10
command = []
[[alert]]
id = "e"
on = "denial_spike"
from = "endpoint:cards"
command = ["page"]
min_interval_s = 86401
timeout_ms = 0
[[alert]]
id = "f"
on = "lateral_movement"
to = "gateway"
command = ["page"]
"#,
        );
        let want = [
            "3:6: unknown alert trigger `lateral_movment` (did you mean `lateral_movement`?)",
            "8:13: `threshold` must be between 1 and 1000000, not 0",
            "9:11: webhook `https://hooks.example/x` uses `https`, which septa does not send alerts over; post to an `http://` relay on this host, or use `command`",
            "10:1: alert `b` has no `webhook` and no `command`",
            "11:6: duplicate alert id `b`",
            "16:8: `from = \"gateway\"` is not lateral movement: that is movement between functions, and the gateway makes no mesh calls",
            "17:6: unknown segment `payment` (did you mean `payments`?)",
            "19:11: an alert takes `webhook` or `command`, not both",
            "23:8: `from` narrows the flows an alert watches; `on = \"reload_refused\"` watches reloads, not flows",
            "24:12: `window_s` applies only to `on = \"denial_spike\"`, not `reload_refused`",
            "25:11: `command` is empty",
            "29:8: endpoint `cards` cannot be an alert's `from`: endpoints answer calls, they never make them",
            "31:18: `min_interval_s` must be between 0 and 86400, not 86401",
            "32:14: `timeout_ms` must be between 1 and 60000, not 0",
            "36:6: `to = \"gateway\"` selects nothing: no flow goes to the gateway",
        ];
        assert_eq!(got, want, "{got:#?}");
    }

    #[test]
    fn a_spike_needs_a_threshold_and_fields_are_checked_by_name() {
        let got = errors(
            r#"[[alert]]
id = "spike"
on = "denial_spike"
command = ["page"]
[[alert]]
id = "typo"
on = "denial_spike"
treshold = 5
command = ["page"]
"#,
        );
        assert_eq!(got.len(), 2, "{got:#?}");
        assert_eq!(got[0], "3:6: `on = \"denial_spike\"` needs a `threshold`");
        assert!(
            got[1].starts_with("8:1: unknown field `treshold`, expected one of"),
            "{got:#?}"
        );
    }
}
