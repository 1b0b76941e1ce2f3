//! Where things live: segments with their subnets and tiers, security groups, a function's
//! placement, and the enforce-or-audit mode a segment hands down to its functions.

use std::collections::BTreeMap;
use std::fmt;

use super::Name;
use crate::diagnostic::Location;

/// The tier of a subnet, which bounds what its functions may do whatever the rules say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubnetKind {
    /// The gateway may route to functions here.
    Public,
    /// Reachable by mesh rules only; egress only as declared.
    Private,
    /// Reachable by mesh rules only; no egress at all, not even declared.
    Isolated,
}

impl fmt::Display for SubnetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Isolated => "isolated",
        })
    }
}

/// Whether denials are enforced or only recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Denied flows are refused.
    #[default]
    Enforce,
    /// Denied flows are let through and recorded as `audit`.
    Audit,
}

/// A segment: an isolation boundary that nothing crosses unless a rule allows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Its name.
    pub name: Name,
    /// Its subnets and their tiers.
    pub subnets: BTreeMap<Name, SubnetKind>,
    /// Labels that selectors such as `label:pci` match.
    pub labels: Vec<Name>,
    /// Enforce or audit; functions inherit it unless they set their own.
    pub mode: Mode,
    /// Requests its functions and endpoints may serve at once, together (a bulkhead: past it,
    /// 503 at once); `None` leaves only each function's own `max_concurrency`.
    pub max_concurrency: Option<u32>,
    /// Its weight when segments compete for a worker's CPU: each segment with guests ready to
    /// run on a worker gets a part of it in proportion to its share
    /// ([`Segment::DEFAULT_CPU_SHARE`] unless declared).
    pub cpu_share: u32,
    /// Where it is declared.
    pub location: Location,
}

impl Segment {
    /// The CPU share of a segment that declares none: segments are equal by default.
    pub const DEFAULT_CPU_SHARE: u32 = 100;
    /// The largest CPU share a manifest may give (10 000 against the default's 100: a hundred to
    /// one at most).
    pub const MAX_CPU_SHARE: u32 = 10_000;
}

/// A security group: a named set of functions that rules can refer to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Its name.
    pub name: Name,
    /// What it is for.
    pub description: Option<String>,
    /// Where it is declared.
    pub location: Location,
}

/// Where a function lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Placement {
    /// The segment.
    pub segment: Name,
    /// The subnet within the segment.
    pub subnet: Name,
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.segment, self.subnet)
    }
}
