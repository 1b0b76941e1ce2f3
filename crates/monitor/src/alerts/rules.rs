//! The alerts of one policy, compiled for the writer thread: selectors resolved once — by the
//! policy, as every other reader of selectors resolves them — into the identities flow records
//! name, so matching a record is a few set lookups.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use septa_flows::{FlowKind, FlowRecord};
use septa_manifest::{Alert, AlertSink, AlertTrigger, FlowScope, Selector};
use septa_policy::Policy;

/// The identity flow records give the gateway as a caller.
const GATEWAY: &str = "gateway";

/// The alerts a policy's manifest declares, ready to evaluate. Build one per loaded policy and
/// hand it to [`Alerts::update`](super::Alerts::update) on reload.
#[derive(Debug, Clone, Default)]
pub struct AlertRules {
    pub(crate) application: Arc<str>,
    pub(crate) rules: Vec<Rule>,
}

impl AlertRules {
    /// The alerts `policy`'s manifest declares, their selectors resolved by `policy`.
    pub fn from_policy(policy: &Policy) -> Self {
        // Alerts are declarations, not rules: the manifest is where they are listed.
        let manifest = policy.manifest();
        let dir: Arc<Path> = Arc::from(manifest.dir.as_path());
        let rules = manifest
            .alerts
            .iter()
            .map(|alert| Rule::compile(policy, alert, &dir))
            .collect();
        Self {
            application: Arc::from(manifest.application.as_str()),
            rules,
        }
    }

    /// How many alerts there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The alerts' ids, in file order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| &*r.id)
    }
}

/// One compiled `[[alert]]`.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) id: Arc<str>,
    /// `on`, as the manifest spells it.
    pub(crate) on: &'static str,
    pub(crate) watch: Watch,
    pub(crate) sink: Arc<Sink>,
    pub(crate) min_interval: Duration,
    /// The declaration, to tell on reload whether the alert changed.
    pub(crate) trigger: AlertTrigger,
}

/// What a rule watches for.
#[derive(Debug, Clone)]
pub(crate) enum Watch {
    /// A denied call from a function to a function or an endpoint.
    LateralMovement(Scope),
    /// `threshold` denials from one source within `window`.
    DenialSpike {
        threshold: u32,
        window: Duration,
        scope: Scope,
    },
    /// A refused reload.
    ReloadRefused,
    /// Flow records dropped by the flow log.
    FlowRecordsDropped,
}

/// Where an alert goes, and how long it may take to get there.
#[derive(Debug)]
pub(crate) struct Sink {
    pub(crate) target: AlertSink,
    pub(crate) timeout: Duration,
    /// The manifest's directory: a command runs there.
    pub(crate) dir: Arc<Path>,
}

/// `from` and `to` resolved into the identities records carry; `None` admits any.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    from: Option<HashSet<String>>,
    to: Option<HashSet<String>>,
}

impl Scope {
    fn compile(policy: &Policy, scope: &FlowScope) -> Self {
        let resolve = |selector: &Option<Selector>| {
            selector
                .as_ref()
                .map(|selector| identities(policy, selector))
        };
        Self {
            from: resolve(&scope.from),
            to: resolve(&scope.to),
        }
    }

    /// Whether `record`'s caller and callee are the ones this scope watches.
    pub(crate) fn admits(&self, record: &FlowRecord) -> bool {
        let side = |set: &Option<HashSet<String>>, identity: &str| {
            set.as_ref().is_none_or(|set| set.contains(identity))
        };
        side(&self.from, &record.src) && side(&self.to, &record.dst)
    }
}

/// The identities `selector` selects, as flow records name them: `function:NAME`,
/// `endpoint:NAME`, or `gateway`.
fn identities(policy: &Policy, selector: &Selector) -> HashSet<String> {
    if *selector == Selector::Gateway {
        return HashSet::from([GATEWAY.to_owned()]);
    }
    policy
        .selected(selector)
        .iter()
        .map(|&f| policy.function(f).identity.clone())
        .collect()
}

impl Rule {
    fn compile(policy: &Policy, alert: &Alert, dir: &Arc<Path>) -> Self {
        let watch = match &alert.trigger {
            AlertTrigger::LateralMovement { scope } => {
                Watch::LateralMovement(Scope::compile(policy, scope))
            }
            AlertTrigger::DenialSpike {
                threshold,
                window_s,
                scope,
            } => Watch::DenialSpike {
                threshold: *threshold,
                window: Duration::from_secs(u64::from(*window_s)),
                scope: Scope::compile(policy, scope),
            },
            AlertTrigger::ReloadRefused => Watch::ReloadRefused,
            AlertTrigger::FlowRecordsDropped => Watch::FlowRecordsDropped,
        };
        Self {
            id: Arc::from(alert.id.as_str()),
            on: alert.trigger.as_str(),
            watch,
            sink: Arc::new(Sink {
                target: alert.sink.clone(),
                timeout: Duration::from_millis(u64::from(alert.timeout_ms)),
                dir: dir.clone(),
            }),
            min_interval: Duration::from_secs(u64::from(alert.min_interval_s)),
            trigger: alert.trigger.clone(),
        }
    }
}

/// Whether `record` is a function's call to another function or an endpoint.
pub(crate) fn is_lateral(record: &FlowRecord) -> bool {
    matches!(record.kind, FlowKind::Mesh | FlowKind::Endpoint)
}
