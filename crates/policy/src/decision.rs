//! Decisions: what the policy says about one flow, and why.
//!
//! Every decision names the rule that allowed it or the reason it was refused, so a flow record,
//! a metric or an auditor's finding can be derived from it without re-deciding.

use std::fmt;

use septa_manifest::Name;

use serde::{Deserialize, Serialize};

use crate::reason::Reason;

/// The outcome of a decision, as flow records, metrics and alerts spell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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

/// What decided a flow: a rule of the manifest, by its id and kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RuleId {
    /// A gateway route (`[[route]]`).
    Route(Name),
    /// An allow rule (`[[allow]]`).
    Allow(Name),
    /// An egress rule (`[[egress]]`).
    Egress(Name),
    /// A `[jwt.NAME]` issuer's `jwks_url`, which opens the gateway's fetch of its keys.
    IssuerKeys(Name),
}

impl RuleId {
    /// The id as the manifest writes it (`jwt.NAME` for an issuer's keys).
    pub fn name(&self) -> &Name {
        match self {
            Self::Route(n) | Self::Allow(n) | Self::Egress(n) | Self::IssuerKeys(n) => n,
        }
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IssuerKeys(issuer) => write!(f, "jwt.{issuer}"),
            other => write!(f, "{}", other.name()),
        }
    }
}

/// What the policy decided about one flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Allow, deny or audit.
    pub verdict: Verdict,
    /// The rule that decided the flow: the one that allowed it, or, for ingress, the route a
    /// refused or audited request matched.
    pub rule: Option<RuleId>,
    /// Why.
    pub reason: Reason,
}

impl Decision {
    /// Allowed by `rule`.
    pub fn allow(rule: RuleId) -> Self {
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
