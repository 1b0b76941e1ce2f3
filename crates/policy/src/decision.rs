//! Decisions: what the policy says about one flow, and why.
//!
//! Every decision names the rule that allowed it or the reason it was refused, so a flow record,
//! a metric or an auditor's finding can be derived from it without re-deciding.

use std::fmt;

use septa_manifest::Name;

use crate::ceiling::CeilingBlock;

/// The outcome of a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The flow goes through because a rule allows it.
    Allow,
    /// The flow is refused.
    Deny,
    /// Enforcement would refuse the flow, but the source or destination is in audit mode, so it
    /// goes through and is recorded.
    Audit,
}

impl Verdict {
    /// Whether the flow may proceed (`allow` or `audit`).
    pub fn permits(self) -> bool {
        !matches!(self, Self::Deny)
    }

    /// Lowercase name, as flow records spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Audit => "audit",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A function as flow records name it, `function:NAME` or `endpoint:NAME`: its name and kind
/// rather than the text, so a refusal that names it copies a few words and touches no shared
/// reference count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    name: Name,
    endpoint: bool,
}

impl Identity {
    /// The identity of the function called `name`, an endpoint or a component.
    pub fn new(name: Name, endpoint: bool) -> Self {
        Self { name, endpoint }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.endpoint {
            "endpoint"
        } else {
            "function"
        };
        write!(f, "{kind}:{}", self.name)
    }
}

/// Why a flow was allowed or refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A rule admitted it; [`Decision::rule`] names the rule.
    Allowed,
    /// No rule connects this source to this destination at all.
    NoRule {
        /// The source identity, e.g. `function:storefront`.
        from: Identity,
        /// The destination, e.g. `function:ledger`.
        to: Identity,
    },
    /// Rules connect source and destination, but none admits this method.
    MethodNotAllowed {
        /// The refused method.
        method: String,
        /// The rules that connect the two, whose `methods` would have to change.
        nearest: Vec<Name>,
    },
    /// Rules connect source and destination and admit the method, but not this path.
    PathNotAllowed {
        /// The refused path.
        path: String,
        /// The rules whose `paths` would have to change.
        nearest: Vec<Name>,
    },
    /// The destination name is not a function of this application.
    UnknownDestination(String),
    /// Egress from a function in an isolated subnet, which no rule can open.
    IsolatedSubnet {
        /// The function's placement, `SEGMENT/SUBNET`.
        placement: String,
    },
    /// No egress rule of the function admits this scheme, host and port.
    NoEgressRule {
        /// `scheme://host:port` as requested.
        target: String,
    },
    /// The address that would be dialled is inside the operator ceiling.
    Ceiling(CeilingBlock),
    /// A protocol that no rule kind can open (for example UDP or listening sockets).
    UnsupportedProtocol(String),
}

impl Reason {
    /// Whether audit mode may let this through. Operator limits (the ceiling, isolated
    /// subnets) and destinations that do not exist are refused in every mode.
    pub fn is_auditable(&self) -> bool {
        matches!(
            self,
            Self::NoRule { .. }
                | Self::MethodNotAllowed { .. }
                | Self::PathNotAllowed { .. }
                | Self::NoEgressRule { .. }
        )
    }
}

fn ids(list: &[Name]) -> String {
    list.iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Allowed => f.write_str("allowed"),
            Self::NoRule { from, to } => write!(f, "no allow rule from `{from}` to `{to}`"),
            Self::MethodNotAllowed { method, nearest } => {
                write!(
                    f,
                    "method `{method}` is not admitted by rule {}",
                    ids(nearest)
                )
            }
            Self::PathNotAllowed { path, nearest } => {
                write!(f, "path `{path}` is not admitted by rule {}", ids(nearest))
            }
            Self::UnknownDestination(name) => write!(f, "unknown destination `{name}`"),
            Self::IsolatedSubnet { placement } => {
                write!(
                    f,
                    "functions in isolated subnet `{placement}` have no egress"
                )
            }
            Self::NoEgressRule { target } => write!(f, "no egress rule admits `{target}`"),
            Self::Ceiling(block) => write!(f, "{block}"),
            Self::UnsupportedProtocol(what) => write!(f, "{what} is not allowed by any rule kind"),
        }
    }
}

/// What the policy decided about one flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Allow, deny or audit.
    pub verdict: Verdict,
    /// The rule that allowed the flow (for `allow`), if any.
    pub rule: Option<Name>,
    /// Why.
    pub reason: Reason,
}

impl Decision {
    /// Allowed by `rule`.
    pub fn allow(rule: Name) -> Self {
        Self {
            verdict: Verdict::Allow,
            rule: Some(rule),
            reason: Reason::Allowed,
        }
    }

    /// Refused for `reason`, or let through as `audit` when `audit_mode` is on and the reason is
    /// one that audit mode may soften.
    pub fn refuse(reason: Reason, audit_mode: bool) -> Self {
        let verdict = if audit_mode && reason.is_auditable() {
            Verdict::Audit
        } else {
            Verdict::Deny
        };
        Self {
            verdict,
            rule: None,
            reason,
        }
    }
}
