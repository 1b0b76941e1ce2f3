//! Selectors: the names rules use for sets of things (`segment:edge`, `group:pci-app`, ...).

use std::fmt;

use std::collections::BTreeMap;

use crate::model::{Function, Name, Segment};

/// A set of flow sources or destinations.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Selector {
    /// The API gateway, i.e. the internet.
    Gateway,
    /// Every function in a segment.
    Segment(Name),
    /// Every function in one subnet of a segment.
    Subnet(Name, Name),
    /// Every function in a security group.
    Group(Name),
    /// One function (a component).
    Function(Name),
    /// One private endpoint.
    Endpoint(Name),
    /// Every function carrying a label, directly or through its segment.
    Label(Name),
}

/// The selector kinds, for messages and suggestions.
pub(crate) const SELECTOR_KINDS: [&str; 7] = [
    "gateway", "segment", "subnet", "group", "function", "endpoint", "label",
];

impl Selector {
    /// Parses `kind:name` (or `gateway`); the error says what was expected.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "gateway" {
            return Ok(Self::Gateway);
        }
        let Some((kind, rest)) = s.split_once(':') else {
            let hint = crate::diagnostic::did_you_mean(s, SELECTOR_KINDS)
                .map(|k| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            return Err(format!(
                "selector `{s}` is not `KIND:NAME` or `gateway`{hint}; kinds are {}",
                kinds_list()
            ));
        };
        let name = |n: &str| Name::new(n).map_err(|e| format!("in selector `{s}`: {e}"));
        match kind {
            "segment" => Ok(Self::Segment(name(rest)?)),
            "group" => Ok(Self::Group(name(rest)?)),
            "function" => Ok(Self::Function(name(rest)?)),
            "endpoint" => Ok(Self::Endpoint(name(rest)?)),
            "label" => Ok(Self::Label(name(rest)?)),
            "subnet" => {
                let Some((segment, subnet)) = rest.split_once('/') else {
                    return Err(format!(
                        "selector `{s}` must name a subnet as `subnet:SEGMENT/SUBNET`"
                    ));
                };
                Ok(Self::Subnet(name(segment)?, name(subnet)?))
            }
            other => {
                let hint = crate::diagnostic::did_you_mean(other, SELECTOR_KINDS)
                    .map(|k| format!(" (did you mean `{k}:{rest}`?)"))
                    .unwrap_or_default();
                Err(format!(
                    "unknown selector `{s}`{hint}; kinds are {}",
                    kinds_list()
                ))
            }
        }
    }
}

impl Selector {
    /// Whether this selector selects function `f` (a component or an endpoint); `segments`
    /// supplies the labels a function inherits from its segment. This is the one definition of
    /// what a selector means.
    pub fn selects(&self, segments: &BTreeMap<Name, Segment>, f: &Function) -> bool {
        match self {
            Self::Gateway => false,
            Self::Segment(s) => f.placement.segment == *s,
            Self::Subnet(s, n) => f.placement.segment == *s && f.placement.subnet == *n,
            Self::Group(g) => f.groups.contains(g),
            Self::Function(n) => f.name == *n && !f.is_endpoint(),
            Self::Endpoint(n) => f.name == *n && f.is_endpoint(),
            Self::Label(l) => {
                f.labels.contains(l)
                    || segments
                        .get(&f.placement.segment)
                        .is_some_and(|s| s.labels.contains(l))
            }
        }
    }
}

fn kinds_list() -> String {
    SELECTOR_KINDS
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Gateway => f.write_str("gateway"),
            Self::Segment(n) => write!(f, "segment:{n}"),
            Self::Subnet(s, n) => write!(f, "subnet:{s}/{n}"),
            Self::Group(n) => write!(f, "group:{n}"),
            Self::Function(n) => write!(f, "function:{n}"),
            Self::Endpoint(n) => write!(f, "endpoint:{n}"),
            Self::Label(n) => write!(f, "label:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_and_round_trips() {
        for s in [
            "gateway",
            "segment:edge",
            "subnet:payments/app",
            "group:pci-app",
            "function:checkout",
            "label:pci",
        ] {
            assert_eq!(Selector::parse(s).map(|x| x.to_string()), Ok(s.to_owned()));
        }
    }

    #[test]
    fn typo_in_kind_suggests_the_right_one() {
        let err = Selector::parse("segmnt:edge").unwrap_err();
        assert!(err.contains("did you mean `segment:edge`"), "{err}");
    }
}
