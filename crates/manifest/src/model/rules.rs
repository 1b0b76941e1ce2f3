//! The rules that open flows: allow rules inside the platform and egress rules out of it, with
//! the methods and paths a rule (or a route) admits.

use super::Name;
use crate::diagnostic::Location;
use crate::egress::EgressTarget;
use crate::selector::Selector;

/// An HTTP method as written in a rule, upper-case.
pub type Method = String;

/// Methods a rule admits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Methods {
    /// Any method (the field was omitted or is `["*"]`).
    Any,
    /// Only these (possibly none: an empty list allows nothing).
    Only(Vec<Method>),
}

impl Methods {
    /// Whether `method` is admitted.
    pub fn admits(&self, method: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Only(list) => list.iter().any(|m| m == method),
        }
    }
}

/// A path pattern as written, with where it was written so later stages can point at it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PathText {
    /// The pattern text, e.g. `/orders/{id}` or `/static/...`.
    pub text: String,
    /// Where it is written.
    pub location: Location,
}

/// Paths a rule admits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Paths {
    /// Any path (the field was omitted).
    Any,
    /// Only paths matching one of these patterns (possibly none: allows nothing).
    Only(Vec<PathText>),
}

/// An allow rule: the only thing that opens a flow inside the platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowRule {
    /// Its id, named by every decision it makes.
    pub id: Name,
    /// Who may call.
    pub from: Selector,
    /// Whom they may call.
    pub to: Selector,
    /// Which methods.
    pub methods: Methods,
    /// Which paths.
    pub paths: Paths,
    /// Where it is declared.
    pub location: Location,
}

/// An egress rule: what functions may reach outside the platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressRule {
    /// Its id, named by every decision it makes.
    pub id: Name,
    /// Which functions.
    pub from: Selector,
    /// The destinations.
    pub to: Vec<EgressTarget>,
    /// Where it is declared.
    pub location: Location,
}
